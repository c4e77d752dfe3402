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
import sys
import threading
import time

from . import harness as h


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
        # The handler started again after an attempt the outage cut short: allowed (its side
        # effects have unique keys); what must not happen twice is checked on those effects.
        "handler_restarts": sum(1 for v in ours.values() if v["attempts"] > 1),
        "unknown_rows": len(rows.keys() - sent),
        # A few of the rows that break a rule, to start the investigation from.
        "examples_restarted": [v for v in ours.values() if v["attempts"] > 1][:5],
        "examples_not_done": [v for v in ours.values() if v["status"] not in ("done", "skipped")][:5],
    }


# --- Redis or PostgreSQL stopped while Lever (the sandbox) sends stage changes -------------------

def retry_delays(outage: float) -> list[float]:
    """Growing intervals whose sum covers the outage twice over (the sandbox's retry schedule)."""
    delays, step = [], 1.0
    while sum(delays) < 2 * outage + 10:
        delays.append(step)
        step = min(step * 2, max(outage / 2, 2))
    return delays


def scenario_outage(args, service: str) -> dict:
    """Candidates reach a linked stage at a steady pace while ``service`` is down for a while.

    The whole path runs: sandbox webhook → gunicorn intake → inbox → worker → Lever re-read →
    invitation → email at the SMTP sink. Nothing lost: every move the sandbox delivered is in
    the inbox once and processed. Nothing twice: one invitation and one email per candidate.
    """
    stack = h.HubStack(f"fault-{service}", private_pg=service == "postgres", sandbox=True, smtp=True)
    try:
        admin = stack.admin
        delays = retry_delays(args.outage)
        admin.configure(SANDBOX_WEBHOOK_RETRY_DELAYS=delays)
        conn_id, url = h.registered_connection(stack, "Bench")
        posting, stage = h.link_a_test(stack, conn_id)
        per_second = max(1, int(args.rate))
        candidates = h.add_candidates(stack, posting, int(per_second * (2 * args.lead + args.outage + 2)),
                                      service)
        opportunities = list(candidates)
        stop = threading.Event()
        moved: list[str] = []

        def mover():
            # Candidates reach the stage at a steady pace before, during and after the outage.
            for i in range(0, len(opportunities), per_second):
                if stop.is_set():
                    return
                batch = opportunities[i:i + per_second]
                admin.move("acme", batch, stage)
                moved.extend(batch)
                stop.wait(1)

        thread = threading.Thread(target=mover, daemon=True)
        thread.start()
        time.sleep(args.lead)
        h.log(f"stopping {service} for {args.outage:.0f} s (sandbox retries after {delays})")
        down_at = time.time()
        (stack.redis if service == "redis" else stack.pg).stop()
        time.sleep(args.outage)
        (stack.redis if service == "redis" else stack.pg).start()
        up_at = time.time()
        h.log(f"{service} is back")
        time.sleep(args.lead)
        stop.set()
        thread.join(30)

        def sandbox_done():
            found = [d for d in admin.deliveries() if d["url"] == url]
            return found if found and all(d["finished"] for d in found) else None

        deliveries = h.wait_until(sandbox_done, sum(delays) + 60, 1, "the sandbox's retries")
        tokens = {d["payload"]["token"] for d in deliveries}
        delivered = {d["payload"]["token"] for d in deliveries if d["delivered"]}
        emails = {candidates[o] for o in moved}

        def finished():
            return _final(h.inbox(stack.app, conn_id), delivered) and emails <= set(h.mailed(stack))
        try:
            # Emails whose send job Redis lost wait for hub.mail.sweep_outbox (2 minutes' staleness).
            h.wait_until(finished, args.outage + 240, 1, "every delivery processed and emailed")
            drained_at = time.time()
        except TimeoutError:
            drained_at = None
        time.sleep(2)  # a late duplicate would show now
        rows = h.inbox(stack.app, conn_id)
        checks = inbox_checks(rows, delivered, tokens)
        invited, sent = h.invitations(stack), h.mailed(stack)
        attempts_by_answer: dict[str, int] = {}
        for d in deliveries:
            for attempt in d["attempts"]:
                key = str(attempt.get("status") or attempt.get("error") or "none")
                attempts_by_answer[key] = attempts_by_answer.get(key, 0) + 1
        during = [d for d in deliveries if down_at * 1000 <= d["payload"]["triggeredAt"] < up_at * 1000]
        result = {
            "scenario": service, "outage_seconds": args.outage, "moves_per_second": per_second,
            "sandbox_retry_delays": delays, "moved": len(moved), "sandbox_deliveries": len(deliveries),
            "delivered": len(delivered), "given_up": len(tokens - delivered),
            "moves_during_outage": len(during),
            "first_answers_during_outage": _count(str(d["attempts"][0].get("status")) for d in during if d["attempts"]),
            "attempts_by_answer": attempts_by_answer,
            "max_attempts": max((len(d["attempts"]) for d in deliveries), default=0),
            "invited": sum(1 for o in moved if invited.get(o)),
            "emailed": sum(1 for o in moved if candidates[o] in sent),
            "duplicate_invitations": sum(invited.get(o, 0) - 1 for o in moved if invited.get(o, 0) > 1),
            "duplicate_emails": sum(len(sent[e]) - 1 for e in emails if len(sent.get(e, [])) > 1),
            "processed_and_emailed_within_seconds_of_return": drained_at and drained_at - up_at,
            "workers_alive": stack.alive_workers(), "web_alive": stack.web.proc.poll() is None,
            **checks,
        }
        result["failed_checks"] = [name for name, bad in (
            ("the sandbox gave up on deliveries", result["given_up"]),
            ("a delivery was refused during the Redis outage",
             service == "redis" and set(result["first_answers_during_outage"]) - {"200"}),
            ("no 503 was answered during the PostgreSQL outage",
             service == "postgres" and "503" not in attempts_by_answer),
            ("delivered deliveries are missing from the inbox", checks["lost"]),
            ("duplicated rows", checks["duplicates"]),
            ("deliveries not processed", checks["not_done"]),
            ("candidates not invited or not emailed", drained_at is None),
            ("duplicate invitations", result["duplicate_invitations"]),
            ("duplicate emails", result["duplicate_emails"]),
            ("a worker or the web server died", result["workers_alive"] < 2 or not result["web_alive"]),
        ) if bad]
        if result["failed_checks"]:
            result["worker_log"] = stack.procs.tail("worker-1")
        return result
    finally:
        stack.close()


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def scenario_redis(args) -> dict:
    return scenario_outage(args, "redis")


def scenario_postgres(args) -> dict:
    return scenario_outage(args, "postgres")


# --- a worker killed with kill -9 mid-job -------------------------------------------------------

def scenario_worker_kill(args) -> dict:
    """register_webhook (the on-connect job) slowed by Lever latency; its worker and horse are killed."""
    from hub.jobs import enqueue, get_queue

    stack = h.HubStack("fault-worker-kill", sandbox=True, web=False)
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
                # The worker running our job (not a periodic one), and its work horse.
                with stack.app.app_context():
                    job = get_queue("default").fetch_job(job_id)
                    worker_name = job.worker_name if job and job.get_status(refresh=True) == "started" else None
                for proc in stack.workers:
                    if worker_name and getattr(proc, "rq_name", None) == worker_name and h.children_of(proc.pid):
                        return proc, h.children_of(proc.pid)[0]
            worker, horse = h.wait_until(running, 30, 0.05, "our job in a work horse")
            time.sleep(args.latency / 3)
            # A machine dying: the worker first, so it cannot record the horse's death.
            h.log(f"round {i + 1}: kill -9 worker {worker.pid} and work horse {horse}")
            for pid in (worker.pid, horse):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            killed_at = time.monotonic()
            stack.procs.stop(worker)
            stack.workers.remove(worker)
            stack.workers += h.start_workers(stack.procs, stack.env, 1)
            # The dead worker's registration lingers until its TTL: wait for the new one by name.
            h.wait_worker_named(stack.redis.url, stack.workers[-1].rq_name, stack.procs)

            def job_finished():
                with stack.app.app_context():
                    job = get_queue("default").fetch_job(job_id)
                    return job is not None and job.get_status(refresh=True) in ("finished", "failed")
            try:
                h.wait_until(job_finished, 120 + 4 * args.latency, 0.2, "the job to finish")
                recovered = time.monotonic() - killed_at
            except TimeoutError:
                recovered = None
            diagnostics = None if recovered is not None else h.rq_snapshot(stack)
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
            if diagnostics:
                rounds[-1]["diagnostics"] = diagnostics
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

    stack = h.HubStack("fault-storm", sandbox=True, web=False)
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
    if name in ("redis", "postgres"):
        detail = (f"{result['moved']} candidates moved ({result['moves_during_outage']} during a "
                  f"{result['outage_seconds']:.0f} s outage; first answers then "
                  f"{result['first_answers_during_outage']}), {result['given_up']} given up, "
                  f"{result['lost']} lost, {result['invited']} invited and {result['emailed']} emailed "
                  f"({result['duplicate_invitations']} + {result['duplicate_emails']} duplicates), all done "
                  f"{_s(result['processed_and_emailed_within_seconds_of_return'])} after it returned")
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
    parser.add_argument("--rate", type=float, default=5,
                        help="candidate moves per second (Lever's rate limit, 10 calls/s, bounds the processing)")
    parser.add_argument("--rounds", type=int, default=3, help="worker-kill: kills")
    parser.add_argument("--latency", type=float, default=3, help="worker-kill: seconds each Lever webhook call takes")
    parser.add_argument("--connections", type=int, default=5, help="storm: connections set up during it")
    parser.add_argument("--smoke", action="store_true", help="5 s outages, small counts (the test suite)")
    parser.add_argument("--out", help="JSON path (default bench/results/faults-<scenario>-<time>.json)")
    args = parser.parse_args(argv)
    h.stop_on_sigterm()
    if args.smoke:
        args.outage, args.lead, args.rate, args.rounds, args.connections = 5, 2, 2, 1, 2
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
