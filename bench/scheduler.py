"""B8 the scheduler's tick with many connections: what one worker's scheduler thread spends a second.

    python -m bench.scheduler                        # 10,000 connections, 600 simulated seconds
    python -m bench.scheduler --connections 1000
    python -m bench.scheduler --smoke                # 50 connections, 30 s (the test suite)

Every ``hub worker`` runs a scheduler thread that ticks once a second and enqueues each periodic
job's runs (``hub.worker.enqueue_periodic_jobs``); Lever's reconciliation (every 5 min) and
reminders (every 10 min) run once per usable connection. The connections are made directly in
the database (one insert, no OAuth round trip each), then the scheduler's own function is called
as its thread calls it (its ``tried`` map and its connection cache), on a simulated clock of one
tick a second from the first tick on, against a private PostgreSQL and Redis. Per tick: CPU
(``time.process_time``), wall and jobs enqueued. Nothing consumes the queues: what is measured
is the scheduler's side only, and the jobs it enqueues per second (the queue's inflow).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from . import harness as h

#: A first tick that is not on any slot boundary of the 5- and 10-minute jobs.
START = 1_800_000_017.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000, help="usable Lever connections")
    parser.add_argument("--seconds", type=int, default=600, help="simulated seconds, one tick each")
    parser.add_argument("--smoke", action="store_true", help="50 connections, 30 s (the test suite)")
    parser.add_argument("--out", help="JSON path (default bench/results/scheduler-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.connections, args.seconds = 50, 30
    return args


def make_connections(app, count: int) -> None:
    """``count`` organizations, each with a usable Lever connection, in two inserts."""
    import json

    from hub.extensions import db
    from hub.models import Connection, Organization, utcnow

    with app.app_context():
        now = utcnow()
        orgs = [Organization(name=f"Scheduler {n}") for n in range(count)]
        db.session.add_all(orgs)
        db.session.flush()
        # The scheduler reads ids only; the tokens are never used here.
        credentials = Connection(organization_id=orgs[0].id, plugin_key="wecp_lever", provider="lever")
        credentials.credentials = json.dumps({"access_token": "a", "refresh_token": "r"})
        cipher = credentials.credentials_ciphertext
        if credentials in db.session:
            db.session.expunge(credentials)
        db.session.add_all(Connection(organization_id=org.id, plugin_key="wecp_lever", provider="lever",
                                      connected_at=now, setup_completed_at=now, credentials_ciphertext=cipher)
                           for org in orgs)
        db.session.commit()
        db.session.remove()


def ran(redis, job_ids: list[str]) -> None:
    """As if workers had run the jobs: their status finished (a queued run of the last slot
    would make the scheduler skip the next one). Not measured."""
    from rq.job import Job

    with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hset(Job.key_for(job_id), "status", "finished")
        pipe.execute()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_on_sigterm()
    # The hub's own tick (the benchmarks' fast one is half a second): one call a second.
    stack = h.HubStack("scheduler", private_pg=True, web=False, workers=0, HUB_SCHEDULER_TICK=1.0)
    try:
        from hub.worker import UsableConnections, enqueue_periodic_jobs

        h.log(f"{args.connections} connections")
        make_connections(stack.app, args.connections)
        tried: dict = {}
        connections = UsableConnections(float(stack.app.config["HUB_SCHEDULER_CONNECTIONS_EVERY"]))
        ticks = []
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(stack.redis_url)
        h.log(f"{args.seconds} ticks")
        for second in range(args.seconds + 1):
            now = START + second
            cpu, wall = time.process_time(), time.perf_counter()
            with stack.app.app_context():
                ids = enqueue_periodic_jobs(stack.app, now, tried=tried, connections=connections)
            ticks.append({"second": second, "cpu_ms": 1000 * (time.process_time() - cpu),
                          "wall_ms": 1000 * (time.perf_counter() - wall), "enqueued": len(ids)})
            ran(redis, ids)
        # The first tick enqueues every job's first run (a worker starting on a full database);
        # the steady state is every tick after it.
        steady = ticks[1:]
        idle = [t["cpu_ms"] for t in steady if t["enqueued"] == 0]
        inflow = [t["enqueued"] for t in steady]
        mean_inflow = statistics.fmean(inflow) if inflow else 0.0
        busiest = max(steady, key=lambda t: t["cpu_ms"]) if steady else ticks[0]
        result = {
            "benchmark": "B8 scheduler tick",
            "command": "python -m bench.scheduler " + " ".join(argv if argv is not None else sys.argv[1:]),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "machine": h.machine(stack.database_url, stack.redis_url),
            "first_tick": ticks[0],
            "idle_ticks": len(idle),
            "idle_tick_cpu_ms": {"median": round(statistics.median(idle), 2) if idle else None,
                                 "p99": round(percentile(idle, 0.99), 2) if idle else None},
            "busiest_tick": {k: round(v, 1) for k, v in busiest.items()},
            "ticks_over_50_ms_cpu": sum(1 for t in steady if t["cpu_ms"] > 50),
            "cpu_ms_per_second": round(statistics.fmean(t["cpu_ms"] for t in steady), 2) if steady else None,
            "jobs_per_second": {"mean": round(mean_inflow, 2), "max": max(inflow) if inflow else 0},
            "ticks": ticks,
        }
        path = h.write_result("scheduler", result, args.out)
        print(f"B8 scheduler: {args.connections} connections, {args.seconds} ticks: idle tick "
              f"{result['idle_tick_cpu_ms']['median']} ms CPU (p99 {result['idle_tick_cpu_ms']['p99']}); busiest "
              f"tick {busiest['cpu_ms']:.0f} ms CPU, {busiest['wall_ms']:.0f} ms wall, {busiest['enqueued']} jobs; "
              f"{result['ticks_over_50_ms_cpu']} ticks over 50 ms; jobs a second mean {mean_inflow:.1f}, max "
              f"{result['jobs_per_second']['max']} -> {path}")
        return 0
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
