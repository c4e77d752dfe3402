"""B1 intake throughput against a bare Flask endpoint, and B5 footprint of web and worker processes.

    python -m bench.intake                 # 3 runs of 15 s per server, medians (a few minutes)
    python -m bench.intake --smoke         # one tiny run: the test suite's check that it works

B1: signed ``candidateStageChange`` deliveries, each with its own token, are posted to
``/webhooks/wecp_lever/<endpoint_id>`` of the hub (gunicorn, ``--web-workers`` × ``--threads``)
and to a bare Flask endpoint that parses the JSON and answers 204, served the same way, in the
same run. Redis runs, so the intake's enqueue is measured; no worker runs during intake (the
jobs wait in Redis). Every body whose answer was 2xx must be in the inbox table afterwards.

B5: peak RSS of the web processes under that load; then one ``hub worker`` (the real Lever
handler) works through the stored deliveries for ``--worker-seconds``: its peak RSS (main
process and work horses) and CPU seconds per 1,000 events.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

from . import harness as h
from .loadgen import ensure_wrk, run_python, run_wrk


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15, help="seconds of load per server and run")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--web-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4, help="threads per web worker (1 = sync workers)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--worker-seconds", type=float, default=20,
                        help="how long one hub worker processes the stored deliveries (B5)")
    parser.add_argument("--max-rate", type=float, default=5000,
                        help="bodies are pre-generated for this many requests/s")
    parser.add_argument("--postgres", choices=("private", "shared"), default="private",
                        help="a private cluster (its CPU is measured) or a database on the local server")
    parser.add_argument("--smoke", action="store_true", help="1 run of 2 s, for the test suite")
    parser.add_argument("--out", help="JSON path (default bench/results/intake-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.duration, args.connections, args.worker_seconds = 1, 2, 4, 3
        args.max_rate = 3000
    return args


def postgres_cpu(handle) -> float:
    """CPU of every process of our private cluster (0 on a shared server: not ours to measure)."""
    if not isinstance(handle, h.PrivatePostgres):
        return 0.0
    pid = handle.postmaster_pid()
    if not pid:
        return 0.0
    return h.cpu_seconds(pid, waited_children=True) + sum(h.cpu_seconds(p) for p in h.descendants(pid))


def server_cpu(server: h.Server) -> float:
    return h.cpu_seconds(server.proc.pid, waited_children=True) + \
        sum(h.cpu_seconds(p) for p in h.children_of(server.proc.pid))


def load(args, wrk, url, bodies):
    if wrk:
        return run_wrk(wrk, url, bodies, args.duration, args.connections)
    return run_python(url, bodies, args.duration, args.connections)


def measure_hub(args, wrk, ctx) -> dict:
    app, secret, conn_id, server = ctx["app"], ctx["secret"], ctx["connection_id"], ctx["hub"]
    count = int(args.max_rate * args.duration) + 100
    bodies = [h.stage_change_body(secret) for _ in range(count)]
    tokens = [t for t, _ in bodies]
    cpu = {"web": server_cpu(server), "postgres": postgres_cpu(ctx["pg"]),
           "redis": h.cpu_seconds(ctx["redis"].proc.pid)}
    result = load(args, wrk, server.url + ctx["path"], [b for _, b in bodies])
    cpu = {"web": server_cpu(server) - cpu["web"], "postgres": postgres_cpu(ctx["pg"]) - cpu["postgres"],
           "redis": h.cpu_seconds(ctx["redis"].proc.pid) - cpu["redis"]}
    answers = result.pop("answers")
    statuses: dict[str, int] = {}
    for status in answers.values():
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    acked = {tokens[i] for i, status in answers.items() if 200 <= status < 300}
    sent = set(tokens)
    run_rows, not_enqueued = _settled(app, conn_id, sent)
    result.update({
        "statuses": statuses,
        "acknowledged": len(acked),
        "stored": len(run_rows),
        "lost": len(acked - run_rows.keys()),
        "stored_unacknowledged": len(run_rows.keys() - acked),
        "duplicates": sum(v["copies"] - 1 for v in run_rows.values()),
        "not_enqueued": not_enqueued,
        "cpu_seconds": cpu,
        "cpu_seconds_per_1000": {k: v * 1000 / max(len(acked), 1) for k, v in cpu.items()},
    })
    return result


def _settled(app, conn_id: str, sent: set[str], patience: float = 3.0) -> tuple[dict, int]:
    """This run's stored deliveries and how many have no job, once the requests in flight are done.

    The load generator stops at its deadline with requests still inside the hub: each stores its
    row, commits, then enqueues. Read at once, such a row looks stored but never enqueued, so the
    count is read again until it is 0 or has had ``patience`` seconds to settle.
    """
    deadline = time.monotonic() + patience
    while True:
        rows = {k: v for k, v in h.inbox(app, conn_id).items() if k in sent}
        missing = _without_job(app, [v["id"] for v in rows.values() if v["status"] == "pending"])
        if missing == 0 or time.monotonic() > deadline:
            return rows, missing
        time.sleep(0.2)


def _without_job(app, delivery_ids: list[int]) -> int:
    """Stored deliveries still pending whose job is not in Redis (intake could not enqueue them)."""
    from hub.inbox import job_id
    from hub.jobs import missing_jobs

    with app.app_context():
        return len(missing_jobs([job_id(i) for i in delivery_ids]))


def measure_bare(args, wrk, ctx) -> dict:
    bodies = [h.stage_change_body(ctx["secret"])[1] for _ in range(2000)]  # reused: nothing dedupes
    before = server_cpu(ctx["bare"])
    result = load(args, wrk, ctx["bare"].url + ctx["path"], bodies)
    answers = result.pop("answers")
    result["statuses"] = {}
    for status in answers.values():
        result["statuses"][str(status)] = result["statuses"].get(str(status), 0) + 1
    result["cpu_seconds"] = {"web": server_cpu(ctx["bare"]) - before}
    return result


def measure_worker(args, ctx) -> dict:
    """One `hub worker` on the stored deliveries: events/s, CPU per 1,000 events, peak RSS."""
    from hub.extensions import db
    from hub.inbox import WebhookDelivery

    def finished() -> int:
        with ctx["app"].app_context():
            n = db.session.scalar(db.select(db.func.count()).select_from(WebhookDelivery).where(
                WebhookDelivery.status.in_(("done", "skipped", "failed"))))
            db.session.remove()
        return n

    before = finished()
    (proc,) = h.start_workers(ctx["procs"], ctx["env"], 1, "--no-scheduler", prefix="b5-worker")
    sampler = h.PeakSampler(lambda: h.children_of(proc.pid))
    sampler.start()
    started = time.monotonic()
    time.sleep(args.worker_seconds)
    cpu = h.tree_cpu_seconds(proc.pid)  # with its work process (or RQ's reaped work horses)
    main_peak = h.memory_kb(proc.pid)
    seconds = time.monotonic() - started
    processed = finished() - before
    horse_peak = sampler.stop()
    ctx["procs"].stop(proc)
    with ctx["app"].app_context():
        results = dict(db.session.execute(db.select(WebhookDelivery.status, db.func.count())
                                          .group_by(WebhookDelivery.status)).all())
        twice = db.session.scalar(db.select(db.func.count()).select_from(WebhookDelivery)
                                  .where(WebhookDelivery.attempts > 1))
        db.session.remove()
    return {"seconds": seconds, "processed": processed, "events_per_second": processed / seconds,
            "cpu_seconds": cpu, "cpu_seconds_per_1000": cpu * 1000 / max(processed, 1),
            "peak_rss_mb": {"main": main_peak / 1024, "work_horse": horse_peak / 1024},
            "horses_seen": len(sampler.seen), "inbox_statuses": results, "run_twice": twice}


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_on_sigterm()
    wrk = None if args.generator == "python" else ensure_wrk()
    if args.generator == "wrk" and not wrk:
        sys.exit("wrk is not installed and could not be installed (Debian package wrk)")
    procs = h.Procs(h.run_dir("intake"))
    redis = pg = None
    try:
        redis = h.RedisServer()
        database_url, pg = h.postgres(args.postgres == "private")
        hub_port = h.free_port()
        config = h.hub_config(database_url, redis.url, f"http://127.0.0.1:{hub_port}")
        app = h.make_app(config)
        secret = secrets.token_hex(16)
        connection_id, endpoint_id = h.known_secret_connection(app, secret)
        env = h.hub_env(app)
        h.log(f"starting gunicorn ({args.web_workers} workers × {args.threads} threads): hub and bare")
        hub = h.start_gunicorn(procs, "hub-web", "wsgi:app", env, workers=args.web_workers,
                               threads=args.threads, port=hub_port)
        bare = h.start_gunicorn(procs, "bare-web", "bench.bare:app", env, workers=args.web_workers,
                                threads=args.threads)
        ctx = {"app": app, "secret": secret, "connection_id": connection_id, "hub": hub, "bare": bare,
               "path": f"/webhooks/wecp_lever/{endpoint_id}", "pg": pg, "redis": redis,
               "procs": procs, "env": env}
        # Warm-up: imports, connection pools and caches of every web worker.
        run_python(hub.url + ctx["path"], [h.stage_change_body(secret)[1] for _ in range(300)], 1.5, 4)
        run_python(bare.url + ctx["path"], [h.stage_change_body(secret)[1] for _ in range(300)], 1.5, 4)

        runs = []
        for i in range(args.runs):
            h.log(f"run {i + 1}/{args.runs}")
            order = ("hub", "bare") if i % 2 == 0 else ("bare", "hub")
            run = {}
            for target in order:
                load_before = os.getloadavg()[0]
                run[target] = (measure_hub if target == "hub" else measure_bare)(args, wrk, ctx)
                # The machine is shared: the 1-minute load average says how much else ran.
                run[target]["load_average_1m"] = [load_before, os.getloadavg()[0]]
                h.log(f"  {target}: {run[target]['rps']:.0f} req/s, p50 {run[target]['p50_ms']:.1f} ms, "
                      f"p99 {run[target]['p99_ms']:.1f} ms, statuses {run[target]['statuses']}")
            run["ratio"] = run["hub"]["rps"] / run["bare"]["rps"] if run["bare"]["rps"] else None
            run["worker"] = measure_worker(args, ctx)
            h.log(f"  worker: {run['worker']['processed']} events in {run['worker']['seconds']:.0f} s, "
                  f"{run['worker']['cpu_seconds_per_1000']:.1f} CPU s / 1000")
            runs.append(run)

        web_peaks = [h.memory_kb(pid) / 1024 for pid in h.children_of(hub.proc.pid)]
        bare_peaks = [h.memory_kb(pid) / 1024 for pid in h.children_of(bare.proc.pid)]
        med = lambda f: h.median(f(r) for r in runs)
        summary = {
            "hub_rps": med(lambda r: r["hub"]["rps"]),
            "bare_rps": med(lambda r: r["bare"]["rps"]),
            "ratio": med(lambda r: r["ratio"]),
            "hub_p50_ms": med(lambda r: r["hub"]["p50_ms"]),
            "hub_p99_ms": med(lambda r: r["hub"]["p99_ms"]),
            "bare_p50_ms": med(lambda r: r["bare"]["p50_ms"]),
            "bare_p99_ms": med(lambda r: r["bare"]["p99_ms"]),
            "acknowledged": sum(r["hub"]["acknowledged"] for r in runs),
            "lost": sum(r["hub"]["lost"] for r in runs),
            "duplicates": sum(r["hub"]["duplicates"] for r in runs),
            "not_enqueued": sum(r["hub"]["not_enqueued"] for r in runs),
            "hub_non_2xx": sum(n for r in runs for s, n in r["hub"]["statuses"].items()
                               if not s.startswith("2")),
            "web_cpu_s_per_1000": med(lambda r: r["hub"]["cpu_seconds_per_1000"]["web"]),
            "postgres_cpu_s_per_1000": med(lambda r: r["hub"]["cpu_seconds_per_1000"]["postgres"]),
            "redis_cpu_s_per_1000": med(lambda r: r["hub"]["cpu_seconds_per_1000"]["redis"]),
            "web_peak_rss_mb": max(web_peaks) if web_peaks else None,
            "bare_peak_rss_mb": max(bare_peaks) if bare_peaks else None,
            "worker_events_per_s": med(lambda r: r["worker"]["events_per_second"]),
            "worker_cpu_s_per_1000": med(lambda r: r["worker"]["cpu_seconds_per_1000"]),
            "worker_peak_rss_mb": max(r["worker"]["peak_rss_mb"]["main"] for r in runs),
            "work_horse_peak_rss_mb": max(r["worker"]["peak_rss_mb"]["work_horse"] for r in runs),
            "worker_run_twice": max(r["worker"]["run_twice"] for r in runs),
            "load_average_1m": [min(v for r in runs for t in ("hub", "bare") for v in r[t]["load_average_1m"]),
                                max(v for r in runs for t in ("hub", "bare") for v in r[t]["load_average_1m"])],
        }
        result = {
            "benchmark": "B1 intake + B5 footprint", "command": "python -m bench.intake " + " ".join(argv or sys.argv[1:]),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "generator": "wrk" if wrk else "python",
            "workers_during_intake": "none (jobs wait in Redis); B5 then runs one hub worker with "
                                     "the real Lever handler",
            "machine": h.machine(database_url, redis.url),
            "summary": summary, "runs": runs,
            "ok": summary["lost"] == 0 and summary["duplicates"] == 0 and summary["not_enqueued"] == 0,
        }
        path = h.write_result("intake", result, args.out)
        print(f"B1 intake: hub {summary['hub_rps']:.0f} req/s vs bare {summary['bare_rps']:.0f} "
              f"(ratio {summary['ratio']:.2f}), p50 {summary['hub_p50_ms']:.1f} ms, p99 "
              f"{summary['hub_p99_ms']:.1f} ms, {summary['lost']} lost of {summary['acknowledged']} "
              f"acknowledged; B5 web {summary['web_peak_rss_mb']:.0f} MB, "
              f"{summary['web_cpu_s_per_1000']:.2f} CPU s/1000, worker "
              f"{summary['worker_events_per_s']:.0f} ev/s {summary['worker_cpu_s_per_1000']:.1f} CPU s/1000; "
              f"load {summary['load_average_1m'][0]:.1f}-{summary['load_average_1m'][1]:.1f} -> {path}")
        return 0 if result["ok"] else 1
    finally:
        procs.stop_all()
        if redis:
            redis.stop()
        if pg:
            h.close_service(pg)


if __name__ == "__main__":
    sys.exit(main())
