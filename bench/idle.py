"""B7 idle cost: what the workers spend when nothing happens, with many accounts connected.

    python -m bench.idle                     # 100 connections, 2 workers, 60 s measured
    python -m bench.idle --smoke             # 3 connections, 5 s (the test suite)

An operator pays for the workers whether or not candidates move: each ``hub worker`` keeps a
scheduler (due retries promoted, abandoned jobs recovered, periodic jobs enqueued) and a work
loop waiting on Redis, and every connection has its periodic jobs (reconciliation every 5 min,
reminders every 10). The stack runs with the hub's production timings (scheduler tick, sweep and
periodic intervals, heartbeats); each connection holds real sandbox tokens. After every
connection's first reconciliation, the workers' CPU (supervisor and work process), PostgreSQL's
and Redis's are read from ``/proc`` over ``--seconds``, with the jobs that ran meanwhile.
"""
from __future__ import annotations

import argparse
import sys
import time

from . import harness as h

#: The hub's own timings, not the benchmarks' fast ones (``harness.FAST``).
PRODUCTION = {"HUB_SCHEDULER_TICK": 1.0, "HUB_SWEEP_AFTER_SECONDS": 10, "HUB_PERIODIC_INTERVALS": {},
              "HUB_JOB_MONITORING_INTERVAL": 5, "HUB_JOB_HEARTBEAT_GRACE": 10}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100, help="connected Lever accounts")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes")
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured idle window")
    parser.add_argument("--smoke", action="store_true", help="3 connections, 5 s (the test suite)")
    parser.add_argument("--out", help="JSON path (default bench/results/idle-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.connections, args.seconds = 3, 5.0
    return args


def jobs_finished(stack) -> int:
    """Jobs in the finished registries of every queue (kept for RQ's result TTL: longer than a run)."""
    from hub.jobs import QUEUES, get_queue

    with stack.app.app_context():
        return sum(get_queue(name).finished_job_registry.count for name in QUEUES)


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_on_sigterm()
    stack = h.HubStack("idle", private_pg=True, sandbox=True, web=False, workers=args.workers, **PRODUCTION)
    try:
        h.log(f"{args.connections} connections")
        connections = [h.sandbox_connection(stack.app, stack.admin, f"Idle {n}")
                       for n in range(args.connections)]
        h.wait_first_reconciliations(stack, connections, timeout=max(120, args.connections))
        time.sleep(2)  # the last reconciliations' follow-ups settle
        load = {"before": h.load_average()}
        pids = [p.pid for p in stack.workers]
        jobs_before = jobs_finished(stack)
        before = {"workers": [h.tree_cpu_seconds(pid) for pid in pids],
                  "postgres": h.tree_cpu_seconds(stack.pg.postmaster_pid()),
                  "redis": h.cpu_seconds(stack.redis.proc.pid), "wall": time.time()}
        h.log(f"measuring {args.seconds:.0f} s of idle")
        time.sleep(args.seconds)
        wall = time.time() - before["wall"]
        workers = [h.tree_cpu_seconds(pid) - cpu for pid, cpu in zip(pids, before["workers"])]
        postgres = h.tree_cpu_seconds(stack.pg.postmaster_pid()) - before["postgres"]
        redis = h.cpu_seconds(stack.redis.proc.pid) - before["redis"]
        jobs = jobs_finished(stack) - jobs_before
        load["after"] = h.load_average()
        per_worker = [round(1000 * cpu / wall, 2) for cpu in workers]
        result = {
            "benchmark": "B7 idle cost",
            "command": "python -m bench.idle " + " ".join(argv if argv is not None else sys.argv[1:]),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "machine": h.machine(stack.database_url, stack.redis.url), "load_average": load,
            "wall_seconds": round(wall, 2), "jobs_run": jobs,
            "worker_cpu_ms_per_second": per_worker,
            "workers_cpu_ms_per_second": round(sum(per_worker), 2),
            "postgres_cpu_ms_per_second": round(1000 * postgres / wall, 2),
            "redis_cpu_ms_per_second": round(1000 * redis / wall, 2),
            "worker_peak_rss_mb": round(max(h.memory_kb(pid, "VmRSS") for pid in pids) / 1024, 1),
        }
        failed = [] if all(cpu > 0 for cpu in workers) else ["a worker's CPU could not be read"]
        result.update(failed_checks=failed, ok=not failed)
        path = h.write_result("idle", result, args.out)
        print(f"B7 idle: {args.workers} workers with {args.connections} connections spend "
              f"{result['workers_cpu_ms_per_second']} ms of CPU a second ({per_worker} each), PostgreSQL "
              f"{result['postgres_cpu_ms_per_second']}, Redis {result['redis_cpu_ms_per_second']}; "
              f"{jobs} jobs in {wall:.0f} s; {'OK' if not failed else 'FAILED: ' + '; '.join(failed)} -> {path}")
        return 0 if not failed else 1
    finally:
        stack.close()


if __name__ == "__main__":
    sys.exit(main())
