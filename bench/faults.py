"""Fault scenarios: Redis or PostgreSQL down, a worker killed mid-job, a 5xx storm from Lever.

    python -m bench.faults redis        [--outage 30]   Redis stopped during intake
    python -m bench.faults postgres     [--outage 30]   PostgreSQL stopped; the sandbox redelivers
    python -m bench.faults worker-kill  [--rounds 3]    kill -9 of a worker and its work horse mid-job
    python -m bench.faults storm        [--outage 30]   every Lever API call answers 500 for a while
    python -m bench.faults all          [--smoke]       each of them in turn

Each scenario runs real processes (gunicorn hub, `hub worker`s, Redis, PostgreSQL, the Lever
sandbox), ends by checking that nothing was lost and nothing was done twice, prints one summary
line and writes JSON to bench/results/. Exit status 1 when a check failed.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time

from . import harness as h

Stack = h.HubStack


def _final(rows: dict, tokens) -> bool:
    return all(t in rows and rows[t]["status"] in ("done", "skipped", "failed") for t in tokens)


def inbox_checks(rows: dict, acked: set[str], sent: set[str]) -> dict:
    """Lost, duplicated, unfinished, run twice: what every intake scenario checks at the end."""
    ours = {k: v for k, v in rows.items() if k in sent}
    statuses: dict[str, int] = {}
    for row in ours.values():
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return {
        "acknowledged": len(acked), "stored": len(ours), "inbox_statuses": statuses,
        "lost": len(acked - ours.keys()),
        "duplicates": sum(v["copies"] - 1 for v in ours.values()),
        "not_done": sum(1 for v in ours.values() if v["status"] not in ("done", "skipped")),
        "run_twice": sum(1 for v in ours.values() if v["attempts"] > 1),
        "unknown_rows": len(rows.keys() - sent),
        # A few of the rows that break a rule, to start the investigation from.
        "examples_run_twice": [v for v in ours.values() if v["attempts"] > 1][:5],
        "examples_not_done": [v for v in ours.values() if v["status"] not in ("done", "skipped")][:5],
    }


# --- Redis stopped during intake ---------------------------------------------------------------

def scenario_redis(args) -> dict:
    stack = Stack("fault-redis")
    try:
        secret = secrets.token_hex(16)
        conn_id, endpoint = h.known_secret_connection(stack.app, secret)
        sender = h.Sender(f"{stack.web.url}/webhooks/wecp_lever/{endpoint}", secret, args.rate)
        sender.start()
        time.sleep(args.lead)
        h.log(f"stopping Redis for {args.outage:.0f} s")
        down_at = time.time()
        stack.redis.stop()
        time.sleep(args.outage)
        stack.redis.start()
        up_at = time.time()
        h.log("Redis is back")
        time.sleep(args.lead)
        sender.stop()
        acked, sent = sender.acked, {t for _, t, _, _ in sender.answers}
        try:
            h.wait_until(lambda: _final(h.inbox(stack.app, conn_id), acked), args.outage + 120,
                         what="every acknowledged delivery processed")
            drained_at = time.time()
        except TimeoutError:
            drained_at = None
        rows = h.inbox(stack.app, conn_id)
        checks = inbox_checks(rows, acked, sent)
        during = sender.statuses(down_at, up_at)
        result = {
            "scenario": "redis", "outage_seconds": args.outage, "rate": args.rate,
            "answers_before": sender.statuses(0, down_at), "answers_during": during,
            "answers_after": sender.statuses(up_at),
            "latency_during_p99_ms": 1000 * (h.percentile(
                [s for at, _, _, s in sender.answers if down_at <= at < up_at], 99) or 0),
            "processed_within_seconds_of_redis_return": drained_at and drained_at - up_at,
            "workers_alive": stack.alive_workers(), **checks,
        }
        result["failed_checks"] = [name for name, bad in (
            ("not every delivery was acknowledged during the outage", set(during) - {"200"}),
            ("acknowledged deliveries are missing from the inbox", checks["lost"]),
            ("duplicated rows", checks["duplicates"]),
            ("deliveries not processed after Redis returned", checks["not_done"] or drained_at is None),
            ("deliveries processed twice", checks["run_twice"]),
            ("a worker died", result["workers_alive"] < len(stack.workers)),
        ) if bad]
        if result["failed_checks"]:
            result["worker_log"] = stack.procs.tail("worker-1")
        return result
    finally:
        stack.close()


# --- PostgreSQL stopped; Lever (the sandbox) redelivers --------------------------------------

def retry_delays(outage: float) -> list[float]:
    """Growing intervals whose sum covers the outage twice over (the sandbox's retry schedule)."""
    delays, step = [], 1.0
    while sum(delays) < 2 * outage + 10:
        delays.append(step)
        step = min(step * 2, max(outage / 2, 2))
    return delays


def scenario_postgres(args) -> dict:
    stack = Stack("fault-postgres", private_pg=True, sandbox=True)
    try:
        admin = stack.admin
        delays = retry_delays(args.outage)
        admin.configure(SANDBOX_WEBHOOK_RETRY_DELAYS=delays)
        conn_id, url = h.registered_connection(stack, "Bench")
        account = admin.state("acme")
        posting = next(p for p, s in account["postings"].items() if s == "published")
        target = next(s for s in account["stages"] if s != "applicant-new")
        per_second = max(1, int(args.rate))
        total_seconds = 2 * args.lead + args.outage
        opportunities = admin.add_candidates("acme", posting, "applicant-new",
                                             count=int(per_second * (total_seconds + 2)))
        stop = threading.Event()

        def mover():
            # Candidates reach the stage at a steady pace before, during and after the outage.
            for i in range(0, len(opportunities), per_second):
                if stop.is_set():
                    return
                admin.move("acme", opportunities[i:i + per_second], target)
                stop.wait(1)

        thread = threading.Thread(target=mover, daemon=True)
        thread.start()
        time.sleep(args.lead)
        h.log(f"stopping PostgreSQL for {args.outage:.0f} s (sandbox retries after {delays})")
        down_at = time.time()
        stack.pg.stop()
        time.sleep(args.outage)
        stack.pg.start()
        up_at = time.time()
        h.log("PostgreSQL is back")
        time.sleep(args.lead)
        stop.set()
        thread.join(30)

        def sandbox_done():
            found = [d for d in admin.deliveries() if d["url"] == url]
            return found if found and all(d["finished"] for d in found) else None

        deliveries = h.wait_until(sandbox_done, sum(delays) + 60, 1, "the sandbox's retries")
        tokens = {d["payload"]["token"] for d in deliveries}
        delivered = {d["payload"]["token"] for d in deliveries if d["delivered"]}
        try:
            h.wait_until(lambda: _final(h.inbox(stack.app, conn_id), delivered), 120,
                         what="every delivery processed")
            drained_at = time.time()
        except TimeoutError:
            drained_at = None
        rows = h.inbox(stack.app, conn_id)
        checks = inbox_checks(rows, delivered, tokens)
        attempts_by_status: dict[str, int] = {}
        for d in deliveries:
            for attempt in d["attempts"]:
                key = str(attempt.get("status") or attempt.get("error") or "none")
                attempts_by_status[key] = attempts_by_status.get(key, 0) + 1
        result = {
            "scenario": "postgres", "outage_seconds": args.outage, "sandbox_retry_delays": delays,
            "sandbox_deliveries": len(deliveries), "delivered": len(delivered),
            "given_up": len(tokens - delivered),
            "max_attempts": max(len(d["attempts"]) for d in deliveries),
            "attempts_by_answer": attempts_by_status,
            "processed_within_seconds_of_postgres_return": drained_at and drained_at - up_at,
            "workers_alive": stack.alive_workers(), "web_alive": stack.web.proc.poll() is None,
            "moves_during_outage": sum(1 for d in deliveries
                                       if down_at * 1000 <= d["payload"]["triggeredAt"] < up_at * 1000),
            **checks,
        }
        result["failed_checks"] = [name for name, bad in (
            ("the sandbox gave up on deliveries", result["given_up"]),
            ("no 503 was answered during the outage", "503" not in attempts_by_status),
            ("delivered deliveries are missing from the inbox", checks["lost"]),
            ("duplicated rows", checks["duplicates"]),
            ("deliveries not processed after PostgreSQL returned", checks["not_done"] or drained_at is None),
            ("deliveries processed twice", checks["run_twice"]),
            ("a worker or the web server died", result["workers_alive"] < 2 or not result["web_alive"]),
        ) if bad]
        if result["failed_checks"]:
            result["worker_log"] = stack.procs.tail("worker-1")
        return result
    finally:
        stack.close()


# --- a worker killed with kill -9 mid-job -------------------------------------------------------

def scenario_worker_kill(args) -> dict:
    """register_webhook (the on-connect job) slowed by Lever latency; its worker and horse are killed."""
    from hub.jobs import enqueue, get_queue

    stack = Stack("fault-worker-kill", sandbox=True, web=False)
    rounds = []
    try:
        admin = stack.admin
        for i in range(args.rounds):
            conn_id = h.sandbox_connection(stack.app, admin, f"Kill {i}")
            job_id = f"on-connect-{conn_id}"
            since = max([r["seq"] for r in admin.requests_log()] or [0])
            # Each Lever webhook call takes a while, so the job is surely mid-flight when killed.
            admin.add_fault(route="^/v1/webhooks", latency_ms=int(args.latency * 1000))
            with stack.app.app_context():
                enqueue("plugins.wecp_lever.jobs.register_webhook", conn_id, job_id=job_id)

            def running():
                for proc in stack.workers:
                    if proc.poll() is None and h.children_of(proc.pid):
                        return proc, h.children_of(proc.pid)[0]
            worker, horse = h.wait_until(running, 30, 0.05, "a work horse")
            time.sleep(args.latency / 3)
            # A machine dying: the worker first, so it cannot record the horse's death.
            h.log(f"round {i + 1}: kill -9 worker {worker.pid} and work horse {horse}")
            os.kill(worker.pid, 9)
            os.kill(horse, 9)
            killed_at = time.monotonic()
            stack.procs.stop(worker)
            stack.workers.remove(worker)
            stack.workers += h.start_workers(stack.procs, stack.env, 1)
            h.wait_workers_ready(stack.redis.url, 1, stack.procs)

            def job_finished():
                with stack.app.app_context():
                    job = get_queue("default").fetch_job(job_id)
                    return job is not None and job.get_status(refresh=True) in ("finished", "failed")
            try:
                h.wait_until(job_finished, 120 + 4 * args.latency, 0.2, "the job to finish")
                recovered = time.monotonic() - killed_at
            except TimeoutError:
                recovered = None
            admin.clear_faults()
            with stack.app.app_context():
                job = get_queue("default").fetch_job(job_id)
                status = str(job.get_status(refresh=True).value) if job else None
            from hub.connections import webhook_url
            from hub.models import Connection

            conn = stack.query(lambda db: (lambda c: {"url": webhook_url(c), "webhook_id": c.webhook_id,
                                                      "secret": c.webhook_secret,
                                                      "setup": c.setup_completed_at is not None})(
                db.session.get(Connection, conn_id)))
            hooks = [w for w in admin.webhooks("acme") if w["url"] == conn["url"]]
            creates = [r for r in admin.requests_log(since)
                       if r["method"] == "POST" and r["path"] == "/v1/webhooks" and r["status"] < 300]
            rounds.append({
                "job_status": status, "recovered_seconds": recovered, "setup_completed": conn["setup"],
                "webhooks_at_url": len(hooks), "webhooks_created": len(creates),
                "secret_matches": bool(hooks) and hooks[0]["id"] == conn["webhook_id"]
                and hooks[0]["configuration"]["signatureToken"] == conn["secret"],
            })
            h.log(f"  {rounds[-1]}")
        result = {"scenario": "worker-kill", "rounds": rounds, "latency_seconds": args.latency,
                  "recovered_seconds_max": max((r["recovered_seconds"] or 1e9) for r in rounds)}
        result["failed_checks"] = sorted({name for r in rounds for name, bad in (
            ("the job did not finish", r["job_status"] != "finished"),
            ("the connection was not set up", not r["setup_completed"]),
            ("not exactly one webhook at the connection's URL", r["webhooks_at_url"] != 1),
            ("the webhook was created more than once", r["webhooks_created"] != 1),
            ("the stored secret is not the webhook's", not r["secret_matches"]),
        ) if bad})
        return result
    finally:
        stack.close()


# --- a 5xx storm from Lever during API calls ------------------------------------------------------

def scenario_storm(args) -> dict:
    """Connections set up (register_webhook: list, create) while every /v1 call answers 500."""
    from hub.connections import webhook_url
    from hub.jobs import enqueue, get_queue
    from hub.models import Connection

    stack = Stack("fault-storm", sandbox=True, web=False)
    try:
        admin = stack.admin
        conn_ids = [h.sandbox_connection(stack.app, admin, f"Storm {i}") for i in range(args.connections)]
        since = max([r["seq"] for r in admin.requests_log()] or [0])
        admin.add_fault(route="^/v1/", storm_seconds=args.outage, status=500)
        storm_end = time.monotonic() + args.outage
        with stack.app.app_context():
            for conn_id in conn_ids:
                enqueue("plugins.wecp_lever.jobs.register_webhook", conn_id, job_id=f"on-connect-{conn_id}")

        def all_set_up():
            return stack.query(lambda db: all(
                c.setup_completed_at is not None and c.setup_error is None
                for c in db.session.scalars(db.select(Connection).where(Connection.id.in_(conn_ids)))))
        try:
            h.wait_until(all_set_up, args.outage + 180, 0.5, "every connection set up")
            recovered = time.monotonic() - storm_end
        except TimeoutError:
            recovered = None
        urls = stack.query(lambda db: {c.id: (webhook_url(c), c.webhook_id, c.webhook_secret)
                                       for c in db.session.scalars(db.select(Connection).where(
                                           Connection.id.in_(conn_ids)))})
        hooks = admin.webhooks("acme")
        log = admin.requests_log(since)
        with stack.app.app_context():
            jobs = [get_queue("default").fetch_job(f"on-connect-{c}") for c in conn_ids]
            statuses = [str(job.get_status(refresh=True).value) if job else None for job in jobs]
            failed_registry = get_queue("default").failed_job_registry.count
        answers: dict[str, int] = {}
        for r in log:
            if r["path"].startswith("/v1/"):
                answers[str(r["status"])] = answers.get(str(r["status"]), 0) + 1
        per_conn = []
        for conn_id, (url, hook_id, secret) in urls.items():
            at_url = [w for w in hooks if w["url"] == url]
            per_conn.append({"webhooks_at_url": len(at_url),
                             "secret_matches": len(at_url) == 1 and at_url[0]["id"] == hook_id
                             and at_url[0]["configuration"]["signatureToken"] == secret})
        creates = sum(1 for r in log if r["method"] == "POST" and r["path"] == "/v1/webhooks"
                      and r["status"] < 300)
        result = {
            "scenario": "storm", "storm_seconds": args.outage, "connections": len(conn_ids),
            "lever_answers": answers, "webhooks_created": creates,
            "set_up_within_seconds_of_storm_end": recovered,
            "job_statuses": sorted(set(map(str, statuses))),
            "failed_jobs": failed_registry, "workers_alive": stack.alive_workers(),
        }
        result["failed_checks"] = [name for name, bad in (
            ("not every connection was set up after the storm", recovered is None),
            ("a connection has not exactly one webhook", any(p["webhooks_at_url"] != 1 for p in per_conn)),
            ("a stored secret is not its webhook's", not all(p["secret_matches"] for p in per_conn)),
            ("webhooks created more than once", creates != len(conn_ids)),
            ("a job failed for good", failed_registry),
            ("no 500 was answered", "500" not in answers),
        ) if bad]
        if result["failed_checks"]:
            result["worker_log"] = stack.procs.tail("worker-1")
        return result
    finally:
        stack.close()


SCENARIOS = {"redis": scenario_redis, "postgres": scenario_postgres,
             "worker-kill": scenario_worker_kill, "storm": scenario_storm}


def summary_line(result: dict) -> str:
    name = result["scenario"]
    verdict = "OK" if not result["failed_checks"] else "FAILED: " + "; ".join(result["failed_checks"])
    if name == "redis":
        detail = (f"{result['acknowledged']} acknowledged ({result['answers_during']} during a "
                  f"{result['outage_seconds']:.0f} s outage), {result['lost']} lost, "
                  f"{result['run_twice']} run twice, all processed "
                  f"{_s(result['processed_within_seconds_of_redis_return'])} after Redis returned")
    elif name == "postgres":
        detail = (f"{result['sandbox_deliveries']} deliveries, attempts {result['attempts_by_answer']}, "
                  f"{result['given_up']} given up, {result['lost']} lost, {result['run_twice']} run twice, "
                  f"processed {_s(result['processed_within_seconds_of_postgres_return'])} after "
                  f"PostgreSQL returned")
    elif name == "worker-kill":
        detail = (f"{len(result['rounds'])} kill(s), job finished once each, recovered within "
                  f"{_s(result['recovered_seconds_max'])}")
    else:
        detail = (f"{result['connections']} connections through a {result['storm_seconds']:.0f} s storm "
                  f"(Lever answered {result['lever_answers']}), {result['webhooks_created']} webhooks "
                  f"created, all set up {_s(result['set_up_within_seconds_of_storm_end'])} after it")
    return f"fault {name}: {verdict}; {detail}"


def _s(seconds) -> str:
    return "never" if seconds is None or seconds >= 1e9 else f"{seconds:.1f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--outage", type=float, default=30, help="seconds Redis/PostgreSQL are down, or of the storm")
    parser.add_argument("--lead", type=float, default=5, help="seconds of traffic before and after the outage")
    parser.add_argument("--rate", type=float, default=20, help="deliveries (or moves) per second")
    parser.add_argument("--rounds", type=int, default=3, help="worker-kill: kills")
    parser.add_argument("--latency", type=float, default=3, help="worker-kill: seconds each Lever webhook call takes")
    parser.add_argument("--connections", type=int, default=5, help="storm: connections set up during it")
    parser.add_argument("--smoke", action="store_true", help="5 s outages, small counts (the test suite)")
    parser.add_argument("--out", help="JSON path (default bench/results/faults-<scenario>-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.outage, args.lead, args.rate, args.rounds, args.connections = 5, 2, 5, 1, 2
        args.latency = 2
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results, failed = [], False
    machine = h.machine()
    for name in names:
        h.log(f"scenario {name}")
        result = SCENARIOS[name](args)
        result.update(command="python -m bench.faults " + " ".join(argv or sys.argv[1:]),
                      settings={k: v for k, v in vars(args).items() if k != "out"}, machine=machine)
        results.append(result)
        failed |= bool(result["failed_checks"])
        print(summary_line(result), flush=True)
    payload = results[0] if len(results) == 1 else {"scenarios": results}
    payload["ok"] = not failed
    path = h.write_result(f"faults-{args.scenario}", payload, args.out)
    h.log(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
