"""B2 bulk move and B6 latency: stage changes in the Lever sandbox until invitation emails arrive.

    python -m bench.flow                   # B2: 300 candidates moved at once; B6: 20 single moves
    python -m bench.flow --smoke           # tiny sizes, for the test suite

The whole product path runs: the sandbox sends signed ``candidateStageChange`` webhooks to the
gunicorn hub, ``hub worker``s re-read each opportunity from Lever (sandbox rate limit 10/s,
burst 20, shared by every worker through Redis), create one invitation per candidate and test
and send its email to an SMTP sink. B2 moves ``--candidates`` opportunities into the linked
stage in one bulk move and times until every invitation exists and every email arrived. B6
moves ``--latency-moves`` opportunities one by one (one per second) and measures, per move,
the time from Lever's ``triggeredAt`` to the email at the SMTP server.
"""
from __future__ import annotations

import argparse
import sys
import time
from email import message_from_bytes, policy

from . import harness as h


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=300, help="B2: opportunities in the bulk move")
    parser.add_argument("--latency-moves", type=int, default=20, help="B6: single moves, one a second")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes")
    parser.add_argument("--smoke", action="store_true", help="10 candidates, 3 moves (the test suite)")
    parser.add_argument("--out", help="JSON path (default bench/results/flow-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.candidates, args.latency_moves = 10, 3
    return args


def lever_calls(stack, since: int) -> dict:
    """Lever API calls by method and status, and the most made in any one second."""
    counts: dict[str, int] = {}
    per_second: dict[int, int] = {}
    for r in stack.admin.requests_log(since):
        if r["path"].startswith("/v1/"):
            key = f"{r['method']} {r['status']}"
            counts[key] = counts.get(key, 0) + 1
            per_second[r["at"] // 1000] = per_second.get(r["at"] // 1000, 0) + 1
    return {"by_answer": counts, "max_per_second": max(per_second.values(), default=0),
            "seconds_with_calls": len(per_second)}


def bulk_move(stack, posting: str, stage: str, count: int) -> dict:
    """B2: ``count`` opportunities moved into the linked stage at once."""
    candidates = h.add_candidates(stack, posting, count, "bulk")
    since = max([r["seq"] for r in stack.admin.requests_log()] or [0])
    started = time.time()
    stack.admin.move("acme", list(candidates), stage)
    emails = set(candidates.values())
    invited_at = emailed_at = None
    deadline = time.monotonic() + 120 + count  # ≥ count / 10 s at Lever's rate limit, with room
    while time.monotonic() < deadline and emailed_at is None:
        if invited_at is None and len(set(h.invitations(stack)) & set(candidates)) == count:
            invited_at = time.time()
        if len(emails & set(h.mailed(stack))) == count:
            emailed_at = time.time()
            invited_at = invited_at or emailed_at
        time.sleep(0.5)
    time.sleep(2)  # anything arriving late would be a duplicate: give it a chance to show
    invited, sent = h.invitations(stack), h.mailed(stack)
    return {
        "candidates": count,
        "all_invited_seconds": invited_at and invited_at - started,
        "all_emailed_seconds": emailed_at and emailed_at - started,
        "invitations_per_second": emailed_at and count / (emailed_at - started),
        "invited": sum(1 for o in candidates if o in invited),
        "emailed": sum(1 for e in emails if e in sent),
        "duplicate_invitations": sum(invited.get(o, 0) - 1 for o in candidates if invited.get(o, 0) > 1),
        "duplicate_emails": sum(len(sent.get(e, [])) - 1 for e in emails if len(sent.get(e, [])) > 1),
        "lever_calls": lever_calls(stack, since),
    }


def latency(stack, posting: str, stage: str, moves: int) -> dict:
    """B6: one move a second; the time from Lever's triggeredAt to the email at the SMTP server."""
    candidates = h.add_candidates(stack, posting, moves, "latency")
    triggered: dict[str, float] = {}
    for opp in candidates:
        stack.admin.move("acme", [opp], stage)
        triggered[opp] = time.time()
        time.sleep(1)
    emails = set(candidates.values())
    try:
        h.wait_until(lambda: len(emails & set(h.mailed(stack))) == moves, 120, 0.2, "every latency email")
    except TimeoutError:
        pass
    # Lever's own timestamp is the start: the webhook's triggeredAt.
    for d in stack.admin.deliveries():
        opp = d["payload"]["data"]["opportunityId"]
        if opp in triggered:
            triggered[opp] = d["payload"]["triggeredAt"] / 1000
    sent = h.mailed(stack)
    seconds = [min(sent[e]) - triggered[o] for o, e in candidates.items() if e in sent]
    return {"moves": moves, "emailed": len(seconds),
            "p50_seconds": h.percentile(seconds, 50), "p99_seconds": h.percentile(seconds, 99),
            "max_seconds": max(seconds) if seconds else None,
            "duplicate_emails": sum(len(sent.get(e, [])) - 1 for e in emails if len(sent.get(e, [])) > 1)}


def wait_first_reconciliation(stack) -> None:
    from hub.jobs import get_queue

    def done():
        with stack.app.app_context():
            return any("reconcile_postings" in job_id
                       for job_id in get_queue("sync").finished_job_registry.get_job_ids())
    h.wait_until(done, 60, 0.5, "the first reconciliation")


def check_message(stack) -> bool:
    """An invitation email as the candidate gets it: subject and a link to the test."""
    if not stack.smtp.messages:
        return False
    msg = message_from_bytes(stack.smtp.messages[0][2], policy=policy.default)
    body = msg.get_body(("plain",))
    return bool(msg["Subject"]) and body is not None and "http" in body.get_content()


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_on_sigterm()
    # Reconciliation (first run when the connection appears, then every 5 min) would invite a
    # bulk move's candidates from three list calls if it happened to run meanwhile: B2 measures
    # the webhook path, so B2 waits for its first run and the next is an hour away.
    intervals = {**h.FAST["HUB_PERIODIC_INTERVALS"], "plugins.wecp_lever.flow.reconcile_postings": 3600}
    stack = h.HubStack("flow", sandbox=True, smtp=True, workers=args.workers,
                       HUB_PERIODIC_INTERVALS=intervals)
    try:
        conn_id, _ = h.registered_connection(stack, "Bench")
        posting, stage = h.link_a_test(stack, conn_id)
        wait_first_reconciliation(stack)
        h.log(f"B2: bulk move of {args.candidates}")
        b2 = bulk_move(stack, posting, stage, args.candidates)
        h.log(f"  {b2}")
        h.log(f"B6: {args.latency_moves} single moves")
        b6 = latency(stack, posting, stage, args.latency_moves)
        h.log(f"  {b6}")
        failed = [name for name, bad in (
            ("B2: not every candidate was invited", b2["invited"] != args.candidates),
            ("B2: not every invitation email arrived", b2["emailed"] != args.candidates),
            ("B2: duplicate invitations", b2["duplicate_invitations"]),
            ("B2: duplicate emails", b2["duplicate_emails"]),
            ("B6: not every email arrived", b6["emailed"] != args.latency_moves),
            ("B6: duplicate emails", b6["duplicate_emails"]),
            ("the email has no subject or link", not check_message(stack)),
        ) if bad]
        result = {"benchmark": "B2 bulk move + B6 latency",
                  "command": "python -m bench.flow " + " ".join(argv or sys.argv[1:]),
                  "settings": {k: v for k, v in vars(args).items() if k != "out"},
                  "machine": h.machine(stack.database_url, stack.redis.url),
                  "b2": b2, "b6": b6, "failed_checks": failed, "ok": not failed}
        path = h.write_result("flow", result, args.out)
        verdict = "OK" if not failed else "FAILED: " + "; ".join(failed)
        print(f"B2 bulk move: {b2['emailed']}/{args.candidates} invited and emailed in "
              f"{_s(b2['all_emailed_seconds'])} ({b2['invitations_per_second'] or 0:.1f}/s, "
              f"{b2['duplicate_invitations']} duplicates); B6 latency p50 {_s(b6['p50_seconds'])} "
              f"p99 {_s(b6['p99_seconds'])}; {verdict} -> {path}")
        return 0 if not failed else 1
    finally:
        stack.close()


def _s(seconds) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
