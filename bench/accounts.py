"""B4 many accounts: organizations, each on its own Lever account, bulk-move candidates at the same moment.

    python -m bench.accounts                        # 10 orgs × 100 candidates, with 2 then 4 workers
    python -m bench.accounts --workers 2 --runs 3   # one worker count, three fresh stacks
    python -m bench.accounts --smoke                # 2 orgs × 3 candidates (the test suite)

Each organization gets its own generated sandbox account (its own users, stages, postings and
access token, so its own rate limit: 10 requests/s, burst 20), a connection whose webhook is
registered by the on-connect job, and the sample test linked to a published posting and stage.
Then every account moves all its candidates into that stage in one bulk move, all accounts
released together by a barrier. Timed per account from the moves until every candidate is
invited and every invitation email arrived at the SMTP sink. From the sandbox's request log:
each account's Lever calls, its busiest second and its lower bound (calls ÷ 10/s); from the
workers: CPU per job and the queue backlog, to tell a Lever-bound run from a worker-bound one.
``--rate`` scales the limit down in the sandbox and the hub alike, for a run Lever bounds even on
a slow machine. Exit 1 when a candidate was not invited and emailed exactly once (by the deadline)
or was invited in another organization.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC

from . import harness as h

#: Lever's documented limit per account (token): the sandbox enforces it, the hub's bucket keeps to it.
RATE, BURST = 10.0, 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.accounts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=10, help="organizations, one Lever account each")
    parser.add_argument("--candidates", type=int, default=100, help="candidates moved per account")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4],
                        help="hub worker processes; one set of runs per value")
    parser.add_argument("--runs", type=int, default=1, help="fresh stacks per worker count")
    parser.add_argument("--rate", type=float, default=RATE,
                        help="Lever's limit per account, requests/s (burst 2×), set in the sandbox and "
                             "the hub alike: a lower one makes a slow machine's run rate-bound")
    parser.add_argument("--queues", help="the workers' queue order (hub worker --queues), e.g. "
                                         "mail,webhooks,default,sync; default: the hub's")
    parser.add_argument("--smoke", action="store_true", help="2 orgs × 3 candidates, 2 workers, 1 run")
    parser.add_argument("--out", help="JSON path (default bench/results/accounts-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.orgs, args.candidates, args.workers, args.runs = 2, 3, [2], 1
    return args


# --- setting up -------------------------------------------------------------------------------

def set_up_accounts(stack, orgs: int, candidates: int) -> list[dict]:
    """Generated sandbox accounts, each with a registered connection, a linked test and candidates."""
    accounts = []
    for account in stack.admin.add_accounts(orgs, prefix="org"):
        conn_id, _ = h.registered_connection(stack, f"Org {account}", account=account)
        posting, stage = h.link_a_test(stack, conn_id, account=account,
                                       admin_email=f"bench-admin@{account}.example")
        added = h.add_candidates(stack, posting, candidates, account, account=account)
        accounts.append({"account": account, "connection": conn_id, "posting": posting,
                         "stage": stage, "candidates": added})
    return accounts


def move_all_at_once(sandbox_url: str, accounts: list[dict]) -> float:
    """Every account's bulk move, released together; returns when the first one started."""
    from sandboxes.lever.testing import AdminClient

    barrier = threading.Barrier(len(accounts))
    started: list[float] = []
    errors: list[BaseException] = []

    def move(spec):
        client = AdminClient(sandbox_url, timeout=60)  # a session of its own per thread
        barrier.wait()
        started.append(time.time())
        try:
            client.move(spec["account"], list(spec["candidates"]), spec["stage"])
        except BaseException as exc:  # re-raised below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(spec,)) for spec in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return min(started)


# --- watching ---------------------------------------------------------------------------------

def invitation_rows(stack) -> list[tuple[str, int, float]]:
    """(opportunity id, organization id, created at as epoch seconds) of every Lever invitation."""
    from hub.assessments.models import Invitation

    def read(db):
        rows = db.session.execute(db.select(Invitation.source_ref, Invitation.organization_id,
                                            Invitation.created_at).filter_by(source="wecp_lever"))
        return [(ref, org, at.replace(tzinfo=UTC).timestamp()) for ref, org, at in rows]
    return stack.query(read)


def backlog(stack) -> dict[str, int]:
    from hub.jobs import QUEUES, get_queue

    with stack.app.app_context():
        return {name: get_queue(name).count for name in QUEUES}


def watch(stack, accounts: list[dict], started: float, deadline: float) -> list[dict]:
    """Poll until every candidate is invited and emailed (or the deadline); the backlog over time."""
    opportunities = {o for a in accounts for o in a["candidates"]}
    emails = {e for a in accounts for e in a["candidates"].values()}
    samples, last_sample = [], 0.0
    while time.monotonic() < deadline:
        invited = opportunities & {ref for ref, _, _ in invitation_rows(stack)}
        sent = emails & set(h.mailed(stack))
        now = time.time()
        if now - last_sample >= 5:  # the queues' backlog: what the workers had not got to yet
            samples.append({"t": round(now - started, 1), "invited": len(invited),
                            "emailed": len(sent), **backlog(stack)})
            last_sample = now
            if len(samples) % 6 == 0:
                h.log(f"  {samples[-1]}")
        if len(invited) == len(opportunities) and len(sent) == len(emails):
            break
        time.sleep(0.5)
    return samples


# --- Lever's view -----------------------------------------------------------------------------

def rate_profile(times_ms: list[int], rate: float = RATE) -> dict:
    """Calls, the most in any sliding second, the sustained rate, and how far the calls ever went
    beyond a bucket of ``rate``/s and burst 2 × rate (0 = never; log timestamps jitter by a few ms)."""
    times = sorted(times_ms)
    burst = burst_of(rate)
    busiest, lo = 0, 0
    excess, best = 0.0, None  # max over i ≤ j of (j - i + 1) - burst - rate·(t_j - t_i)
    for j, t in enumerate(times):
        while t - times[lo] >= 1000:
            lo += 1
        busiest = max(busiest, j - lo + 1)
        # (j - i + 1) - rate·(t_j - t_i)/1000 = (j + 1 - rate·t_j/1000) + (rate·t_i/1000 - i)
        candidate = rate * t / 1000 - j
        best = candidate if best is None else max(best, candidate)
        excess = max(excess, (j + 1 - rate * t / 1000) + best - burst)
    span = (times[-1] - times[0]) / 1000 if len(times) > 1 else 0.0
    return {"calls": len(times), "busiest_second": busiest,
            "sustained_per_second": round((len(times) - 1) / span, 2) if span else None,
            "beyond_bucket": round(excess, 2)}


def burst_of(rate: float) -> int:
    return max(1, round(rate * BURST / RATE))


def lever_calls(requests_log: list[dict], rate: float = RATE) -> dict[str, dict]:
    """Per account: calls by method and answer, and the rate profile of its calls."""
    by_account: dict[str, dict] = {}
    for r in requests_log:
        if not r["path"].startswith("/v1/") or not r.get("account_id"):
            continue
        entry = by_account.setdefault(r["account_id"], {"by_answer": {}, "times": []})
        key = f"{r['method']} {r['status']}"
        entry["by_answer"][key] = entry["by_answer"].get(key, 0) + 1
        entry["times"].append(r["at"])
    return {account: {"by_answer": e["by_answer"], "answered_429": sum(
        n for k, n in e["by_answer"].items() if k.endswith(" 429")), **rate_profile(e["times"], rate)}
        for account, e in by_account.items()}


def webhook_arrivals(deliveries: list[dict], started: float) -> dict[str, dict]:
    """Per account: when its first and last webhook reached the hub (seconds after the moves)."""
    found: dict[str, list[float]] = {}
    for d in deliveries:
        ok = [a["at"] for a in d["attempts"] if a["status"] and 200 <= a["status"] < 300]
        if ok:
            found.setdefault(d["account_id"], []).append(min(ok) / 1000 - started)
    return {account: {"first": round(min(t), 2), "last": round(max(t), 2), "delivered": len(t)}
            for account, t in found.items()}


# --- one run ----------------------------------------------------------------------------------

def cpu_of(procs) -> float:
    """CPU of each process, its reaped children and its live descendants (a worker's work process)."""
    return sum(h.tree_cpu_seconds(p.pid) for p in procs)


def one_run(args, workers: int) -> dict:
    # Reconciliation would invite a moved posting from one paged list (B2's finding): push its
    # next run far away (a slot that does not change) and wait for each connection's first run.
    intervals = {**h.FAST["HUB_PERIODIC_INTERVALS"], "plugins.wecp_lever.flow.reconcile_postings": 10 ** 9}
    stack = h.HubStack("accounts", sandbox=True, smtp=True, workers=0, HUB_PERIODIC_INTERVALS=intervals)
    try:
        # Workers at --rate; this process sets up at Lever's own rate (10/s), the sandbox too
        # until the set-up is done. Workers start before there is work: a worker that forks its
        # first job while its scheduler thread runs its first query can hang (see docs, B4).
        env = dict(stack.env, LEVER_RATE_LIMIT=str(args.rate), LEVER_RATE_BURST=str(burst_of(args.rate)))
        stack.workers = h.start_workers(stack.procs, env, workers,
                                        *(["--queues", args.queues] if args.queues else []))
        h.wait_workers_ready(stack.redis.url, workers, stack.procs)
        time.sleep(2)  # their schedulers' first ticks
        h.log(f"{workers} workers: setting up {args.orgs} accounts × {args.candidates} candidates")
        accounts = set_up_accounts(stack, args.orgs, args.candidates)
        stack.admin.configure(SANDBOX_RATE_LIMIT=args.rate, SANDBOX_RATE_BURST=burst_of(args.rate))
        h.wait_first_reconciliations(stack, [a["connection"] for a in accounts])
        since = max([r["seq"] for r in stack.admin.requests_log()] or [0])
        sandbox_proc = stack.sandboxes["wecp_lever"].proc
        cpu_before = {"workers": cpu_of(stack.workers), "web": cpu_of([stack.web.proc]) +
                      sum(h.cpu_seconds(pid) for pid in h.children_of(stack.web.proc.pid)),
                      "sandbox": h.cpu_seconds(sandbox_proc.pid)}
        load_before = os.getloadavg()
        total = args.orgs * args.candidates
        h.log(f"  moving {total} candidates in {args.orgs} accounts at once")
        started = move_all_at_once(stack.sandbox_url, accounts)
        # Room for a worker-bound run (~1.5 s per candidate here) and for a rate-bound one in
        # which the accounts take their turns (each account's calls at --rate, one after another).
        serial = args.orgs * (2 * args.candidates + 5) / args.rate
        samples = watch(stack, accounts, started, time.monotonic() + 180 + 1.5 * total + serial)
        finished = time.time()
        cpu = {"workers": cpu_of(stack.workers) - cpu_before["workers"],
               "web": cpu_of([stack.web.proc]) + sum(h.cpu_seconds(pid) for pid in
                                                     h.children_of(stack.web.proc.pid)) - cpu_before["web"],
               "sandbox": h.cpu_seconds(sandbox_proc.pid) - cpu_before["sandbox"]}
        load_after = os.getloadavg()
        time.sleep(2)  # anything arriving late would be a duplicate: give it a chance to show
        run = summarize(stack, args.rate, accounts, samples, started, finished, cpu, workers,
                        {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in load_after]}, since)
        run["machine"] = h.machine(stack.database_url, stack.redis.url)
        return run
    finally:
        stack.close()


def summarize(stack, rate, accounts, samples, started, finished, cpu, workers, load, since) -> dict:
    rows = invitation_rows(stack)
    sent = h.mailed(stack)
    calls = lever_calls(stack.admin.requests_log(since), rate)
    arrivals = webhook_arrivals(stack.admin.deliveries(), started)
    from hub.models import Connection

    org_of = stack.query(lambda db: {
        c.id: c.organization_id for c in db.session.scalars(db.select(Connection))})
    per_account, invited_total, emailed_total = [], 0, 0
    duplicate_invitations = duplicate_emails = wrong_org = 0
    for spec in accounts:
        account, opps = spec["account"], spec["candidates"]
        mine = [r for r in rows if r[0] in opps]
        counts: dict[str, int] = {}
        for ref, org, _ in mine:
            counts[ref] = counts.get(ref, 0) + 1
            wrong_org += org != org_of[spec["connection"]]
        invited = sum(1 for o in opps if o in counts)
        emailed = sum(1 for e in opps.values() if e in sent)
        invited_total += invited
        emailed_total += emailed
        duplicate_invitations += sum(n - 1 for n in counts.values() if n > 1)
        duplicate_emails += sum(len(sent[e]) - 1 for e in opps.values() if len(sent.get(e, [])) > 1)
        lever = calls.get(account, rate_profile([], rate))
        bound = lever["calls"] / rate
        # Exact times, not the polling's: invitations' creation and the emails' arrival.
        created = [at - started for _, _, at in mine]
        arrived = [min(sent[e]) - started for e in opps.values() if e in sent]
        complete = invited == emailed == len(opps)
        seconds = max(arrived) if complete else None
        per_account.append({
            "account": account, "candidates": len(opps), "invited": invited, "emailed": emailed,
            "all_invited_seconds": round(max(created), 2) if complete else None,
            "all_emailed_seconds": seconds and round(seconds, 2),
            "first_invitation_seconds": round(min(created), 2) if created else None,
            "invitations_per_second": seconds and round(len(opps) / seconds, 2),
            "bound_seconds": round(bound, 1), "ratio_to_bound": seconds and bound and round(seconds / bound, 2),
            "lever": lever, "webhooks": arrivals.get(account),
        })
    total = sum(len(a["candidates"]) for a in accounts)
    times = [a["all_emailed_seconds"] for a in per_account if a["all_emailed_seconds"] is not None]
    all_done = len(times) == len(accounts)
    wall = max(times) if all_done else finished - started
    jobs = sum(a["webhooks"]["delivered"] for a in per_account if a["webhooks"]) + emailed_total + \
        sum(a["lever"]["by_answer"].get("POST 200", 0) for a in per_account)
    all_calls = sum(a["lever"]["calls"] for a in per_account)
    return {
        "workers": workers, "accounts": len(accounts), "candidates": total,
        "all_emailed_seconds": round(wall, 2) if all_done else None,
        "invitations_per_second": round(emailed_total / wall, 2) if wall else None,
        "invited": invited_total, "emailed": emailed_total,
        "missing_at_end": total - min(invited_total, emailed_total),
        "duplicate_invitations": duplicate_invitations, "duplicate_emails": duplicate_emails,
        "invitations_in_the_wrong_org": wrong_org,
        "account_seconds": {"min": min(times, default=None), "median": h.median(times),
                            "max": max(times, default=None),
                            "spread": round(max(times) - min(times), 2) if times else None},
        "per_account_bound_seconds": max((a["bound_seconds"] for a in per_account), default=None),
        "ratio_to_per_account_bound": round(wall / max(a["bound_seconds"] for a in per_account), 2)
        if all_done and per_account else None,
        "lever": {"calls": all_calls, "per_invitation": round(all_calls / max(invited_total, 1), 2),
                  "answered_429": sum(a["lever"]["answered_429"] for a in per_account),
                  "busiest_second_any_account": max((a["lever"]["busiest_second"] for a in per_account), default=0),
                  "beyond_bucket_any_account": max((a["lever"]["beyond_bucket"] for a in per_account), default=0),
                  "aggregate_per_second": round(all_calls / wall, 2) if wall else None},
        "hub": {"jobs": jobs, "worker_cpu_seconds": round(cpu["workers"], 1),
                "worker_cpu_ms_per_job": round(1000 * cpu["workers"] / jobs, 1) if jobs else None,
                "worker_cores_busy": round(cpu["workers"] / wall, 2) if wall else None,
                "jobs_per_second": round(jobs / wall, 2) if wall else None,
                "web_cpu_seconds": round(cpu["web"], 1), "sandbox_cpu_seconds": round(cpu["sandbox"], 1),
                "max_backlog": {q: max((s[q] for s in samples), default=0)
                                for q in ("webhooks", "default", "mail", "sync")}},
        "load_average": load, "backlog_samples": samples, "per_account": per_account,
    }


# --- the command ------------------------------------------------------------------------------

def failures(run: dict) -> list[str]:
    prefix = f"{run['workers']} workers: "
    return [prefix + name for name, bad in (
        ("not every candidate was invited", run["invited"] != run["candidates"]),
        ("not every invitation email arrived", run["emailed"] != run["candidates"]),
        ("duplicate invitations", run["duplicate_invitations"]),
        ("duplicate emails", run["duplicate_emails"]),
        ("an invitation in another organization", run["invitations_in_the_wrong_org"]),
    ) if bad]


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_on_sigterm()
    runs = []
    for workers in args.workers:
        for n in range(args.runs):
            h.log(f"run {n + 1}/{args.runs} with {workers} workers")
            run = one_run(args, workers)
            h.log(f"  all emailed in {run['all_emailed_seconds']} s, accounts {run['account_seconds']}, "
                  f"Lever {run['lever']}, hub {run['hub']}")
            runs.append(run)
    machine = runs[0].pop("machine") if runs else h.machine()
    for run in runs[1:]:
        run.pop("machine")
    failed = [f for run in runs for f in failures(run)]
    by_workers = {}
    for workers in args.workers:
        mine = [r for r in runs if r["workers"] == workers]
        by_workers[str(workers)] = {
            "runs": len(mine),
            "all_emailed_seconds": h.median([r["all_emailed_seconds"] for r in mine]),
            "invitations_per_second": h.median([r["invitations_per_second"] for r in mine]),
            "account_seconds_median": h.median([r["account_seconds"]["median"] for r in mine]),
            "account_seconds_spread": h.median([r["account_seconds"]["spread"] for r in mine]),
            "per_account_bound_seconds": h.median([r["per_account_bound_seconds"] for r in mine]),
            "ratio_to_per_account_bound": h.median([r["ratio_to_per_account_bound"] for r in mine]),
            "busiest_second_any_account": max(r["lever"]["busiest_second_any_account"] for r in mine),
            "answered_429": sum(r["lever"]["answered_429"] for r in mine),
            "worker_cpu_ms_per_job": h.median([r["hub"]["worker_cpu_ms_per_job"] for r in mine]),
            "worker_cores_busy": h.median([r["hub"]["worker_cores_busy"] for r in mine]),
        }
    result = {"benchmark": "B4 many accounts",
              "command": "python -m bench.accounts " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "machine": machine, "summary": by_workers, "runs": runs,
              "failed_checks": failed, "ok": not failed}
    path = h.write_result("accounts", result, args.out)
    verdict = "OK" if not failed else "FAILED: " + "; ".join(failed)
    parts = [f"{w} worker{'' if w == '1' else 's'} {_s(s['all_emailed_seconds'])} ({s['invitations_per_second'] or 0:.1f}/s, "
             f"accounts median {_s(s['account_seconds_median'])}, spread {_s(s['account_seconds_spread'])}, "
             f"bound {_s(s['per_account_bound_seconds'])}, busiest second {s['busiest_second_any_account']}, "
             f"{s['answered_429']} × 429)" for w, s in by_workers.items()]
    print(f"B4 many accounts: {args.orgs} × {args.candidates} invited and emailed: " + "; ".join(parts)
          + f"; {sum(r['duplicate_invitations'] + r['duplicate_emails'] for r in runs)} duplicates, "
          f"{sum(r['missing_at_end'] for r in runs)} missing; {verdict} -> {path}")
    return 0 if not failed else 1


def _s(seconds) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
