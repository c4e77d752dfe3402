"""B2 bulk move, B3 completion burst, B5 on the heavy path and B6 latency, through the Lever sandbox.

    python -m bench.flow                   # B2/B3: 1,000 candidates; B6: 60 moves and 60 submits at 2/s
    python -m bench.flow --smoke           # tiny sizes, for the test suite

The whole product path runs: the sandbox sends signed ``candidateStageChange`` webhooks to the
gunicorn hub, ``hub worker``s re-read each opportunity from Lever (sandbox rate limit 10/s,
burst 20, shared by every worker through Redis), create one invitation per candidate and test,
send its email to an SMTP sink and tag the opportunity. Candidates then take their test through
the candidate pages (``/t/<token>`` from the email), and each result becomes a note in Lever.

- B2 moves ``--candidates`` opportunities into the linked stage in one bulk move and times until
  every invitation email arrived (and until the last Lever write, the tags).
- B3: every B2 candidate opens the link and presses Start; then all submit at once. Timed until
  every result note is in the sandbox (and until the last result tag).
- B5: CPU seconds of the workers (work horses included) and the web processes per 1,000
  invitations (B2) and per 1,000 notes (B3), and their peak RSS.
- B6 moves ``--latency-moves`` new opportunities at ``--rate`` a second (Lever's ``triggeredAt`` →
  the email at the SMTP server), then those candidates submit at the same rate (Submit → the
  note's ``createdAt`` in the sandbox).

Lever calls are counted from the sandbox's request log (``/v1`` only): GETs are reads, POST and
PUT are writes; the bound is calls ÷ 10/s, Lever's rate limit (the burst of 20 ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from html import unescape

import requests

from . import harness as h

LEVER_RATE = 10.0  # requests/s per account (the sandbox's SANDBOX_RATE_LIMIT, Lever's documented limit)
REPORT_LINE = re.compile(r"View a detailed report on WeCP: (https?://\S+/r/[A-Za-z0-9_-]+)")
LINK = re.compile(r"(https?://\S+/t/[A-Za-z0-9_-]+)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=1000,
                        help="B2: opportunities in the bulk move; B3: the same candidates complete")
    parser.add_argument("--latency-moves", type=int, default=60,
                        help="B6: single moves (and later single submits) at --rate a second")
    parser.add_argument("--rate", type=float, default=2.0, help="B6: moves and submits per second")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes")
    parser.add_argument("--clients", type=int, default=16, help="B3: candidate threads submitting")
    parser.add_argument("--smoke", action="store_true", help="10 candidates, 4 moves (the test suite)")
    parser.add_argument("--out", help="JSON path (default bench/results/flow-<time>.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.candidates, args.latency_moves, args.rate = 10, 4, 4.0
    return args


# --- Lever calls --------------------------------------------------------------------------------

def last_seq(stack) -> int:
    return max([r["seq"] for r in stack.admin.requests_log()] or [0])


def api_calls(stack, since: int) -> list[dict]:
    return [r for r in stack.admin.requests_log(since) if r["path"].startswith("/v1/")]


def lever_calls(calls: list[dict], items: int, started: float, until: float | None = None) -> dict:
    """Reads and writes per item, 429s, the busiest second, and the rate-limit bound of ``calls``.

    ``until`` (epoch s) keeps only the calls made by then; the bound is those calls ÷ 10/s.
    """
    if until is not None:
        calls = [r for r in calls if r["at"] / 1000 <= until]
    by_answer: dict[str, int] = {}
    by_path: dict[str, int] = {}
    accepted: dict[str, int] = {}  # answered 2xx: what Lever acted on (a 429 is retried)
    per_second: dict[int, int] = {}
    for r in calls:
        by_answer[f"{r['method']} {r['status']}"] = by_answer.get(f"{r['method']} {r['status']}", 0) + 1
        # The kind of call: ids replaced, so /v1/opportunities/<id>/notes counts as one path.
        kind = r["method"] + " " + re.sub(r"/[0-9a-f-]{36}", "/:id", r["path"])
        by_path[kind] = by_path.get(kind, 0) + 1
        if 200 <= r["status"] < 300:
            accepted[kind] = accepted.get(kind, 0) + 1
        per_second[r["at"] // 1000] = per_second.get(r["at"] // 1000, 0) + 1
    reads = sum(1 for r in calls if r["method"] == "GET")
    writes = sum(1 for r in calls if r["method"] in ("POST", "PUT", "DELETE"))
    last = max((r["at"] / 1000 for r in calls), default=None)
    bound = len(calls) / LEVER_RATE
    return {"calls": len(calls), "reads": reads, "writes": writes,
            "reads_per_item": reads / items if items else None,
            "writes_per_item": writes / items if items else None,
            "answered_429": sum(1 for r in calls if r["status"] == 429),
            "by_answer": by_answer, "by_path": by_path, "accepted_by_path": accepted,
            "max_per_second": max(per_second.values(), default=0),
            "bound_seconds": bound, "last_call_seconds": last and last - started}


def writes_done(stack, since: int, fragment: str, expected: int) -> bool:
    """``expected`` successful writes whose path contains ``fragment`` since ``since``."""
    return sum(1 for r in api_calls(stack, since) if r["method"] == "POST" and fragment in r["path"]
               and 200 <= r["status"] < 300) >= expected


def ratio(seconds, bound) -> float | None:
    return seconds / bound if seconds and bound else None


# --- B5 footprint -------------------------------------------------------------------------------

class Footprint:
    """CPU of the workers (their reaped work horses included) and the web processes over a phase, and peak RSS."""

    def __init__(self, stack):
        self.stack = stack
        workers = [p.pid for p in stack.workers]
        self.horses = h.PeakSampler(lambda: [c for pid in workers for c in h.descendants(pid)])
        self.horses.start()
        self.cpu = self._cpu()

    def _cpu(self) -> dict:
        sandbox = self.stack.sandboxes["wecp_lever"].proc
        return {"worker": sum(h.tree_cpu_seconds(p.pid) for p in self.stack.workers),
                "web": h.tree_cpu_seconds(self.stack.web.proc.pid),
                "redis": h.cpu_seconds(self.stack.redis.proc.pid),
                "postgres": h.tree_cpu_seconds(self.stack.pg.postmaster_pid()),
                # Lever's side: in production it runs elsewhere; here it shares the two cores.
                "sandbox": h.tree_cpu_seconds(sandbox.pid),
                "machine_busy": h.machine_cpu_seconds()["busy"], "wall": time.time()}

    def finish(self, events: int) -> dict:
        cpu = {k: v - self.cpu[k] for k, v in self._cpu().items()}
        wall = cpu.pop("wall")
        ours = sum(v for k, v in cpu.items() if k != "machine_busy")
        horse_kb = self.horses.stop()
        return {
            "events": events, "cpu_seconds": cpu, "wall_seconds": wall,
            "cpu_seconds_per_1000": {k: v * 1000 / max(events, 1) for k, v in cpu.items()
                                     if k != "machine_busy"},
            # Everything else that ran on the machine meanwhile (other work shares the cores).
            "other_cpu_seconds": cpu["machine_busy"] - ours,
            "machine_busy_share": cpu["machine_busy"] / (wall * (os.cpu_count() or 1)),
            "peak_rss_mb": {
                "worker_main": max(h.memory_kb(p.pid) for p in self.stack.workers) / 1024,
                "work_horse": horse_kb / 1024,
                "web_worker": max([h.memory_kb(pid) for pid in h.children_of(self.stack.web.proc.pid)]
                                  or [0]) / 1024},
            "horses_seen": len(self.horses.seen)}


# --- candidates ---------------------------------------------------------------------------------

def candidate_links(stack, emails) -> dict[str, str]:
    """The link in each candidate's invitation email, as the candidate finds it: {email: url}."""
    wanted, links = set(emails), {}
    for message in list(stack.smtp.messages):
        rcpt = message.envelope_recipients[0].lower()
        if rcpt in wanted and rcpt not in links:
            body = message.get_body(("plain",)).get_content()
            found = LINK.search(body)
            if found:
                links[rcpt] = found.group(1)
    return links


def right_answers(stack) -> dict[str, list[str]]:
    """The sample test's correct option indexes by form field (``q-<question id>``)."""
    from hub.assessments.models import AssessmentQuestion

    return stack.query(lambda db: {f"q-{q.id}": [str(i) for i in q.correct]
                                   for q in db.session.scalars(db.select(AssessmentQuestion))})


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    if found is None:
        raise RuntimeError("no csrf_token on the candidate page")
    return unescape(found.group(1))


class Candidate:
    """One candidate's browser: opens the emailed link, presses Start, later submits the answers."""

    def __init__(self, opportunity: str, url: str, answers: dict):
        self.opportunity, self.url, self.answers = opportunity, url, answers
        self.http = requests.Session()
        self.token = self.submitted_at = None
        self.thanked = False

    def start(self) -> None:
        intro = self.http.get(self.url, timeout=60)
        questions = self.http.post(f"{self.url}/start", data={"csrf_token": csrf(intro.text)},
                                   timeout=60)  # follows the redirect to the questions page
        self.token = csrf(questions.text)

    def submit(self) -> None:
        # A new connection: the one kept from Start may have been closed by the server's
        # keep-alive timeout meanwhile, and a POST on it fails with "connection reset".
        self.http.close()
        self.submitted_at = time.time()
        done = self.http.post(f"{self.url}/submit", timeout=120,
                              data={"csrf_token": self.token, **self.answers})
        self.thanked = done.status_code == 200 and "Thank you" in done.text


def started_candidates(stack, candidates: dict[str, str], clients: int) -> list[Candidate]:
    """Every candidate opened their link and pressed Start; half will answer right, half not at all."""
    links = candidate_links(stack, candidates.values())
    right = right_answers(stack)
    people = [Candidate(opp, links[email], right if i % 2 == 0 else {})
              for i, (opp, email) in enumerate(candidates.items()) if email in links]
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(Candidate.start, people))
    return people


def posting_owner(posting: str) -> str | None:
    """The posting's owner in the sandbox's shipped seed (the harness starts it with that seed)."""
    from pathlib import Path

    import sandboxes.lever as sandbox

    seed = json.loads((Path(sandbox.__file__).parent / "seed.json").read_text())
    for account in seed["accounts"]:
        for p in account["postings"]:
            if p["id"] == posting:
                return p.get("owner")
    return None


def notes_of(stack, opportunities) -> dict[str, list[dict]]:
    wanted, found = set(opportunities), {}
    for note in stack.admin.notes("acme"):
        if note["opportunity_id"] in wanted:
            found.setdefault(note["opportunity_id"], []).append(note)
    return found


def check_notes(notes: dict[str, list[dict]], owner: str | None, sample: int = 3) -> dict:
    """Every note names the report link and was written as the posting's owner; a few links open."""
    flat = [n for group in notes.values() for n in group]
    links = [m.group(1) for m in (REPORT_LINE.search(n["value"]) for n in flat) if m]
    opened = [requests.get(url, timeout=30).status_code for url in links[:sample]]
    return {"with_report_link": len(links),
            "as_posting_owner": sum(1 for n in flat if n["perform_as"] == owner and n["user"] == owner),
            "posting_owner": owner, "report_links_opened": opened}


# --- the benchmarks -----------------------------------------------------------------------------

def bulk_move(stack, posting: str, stage: str, count: int) -> tuple[dict, dict]:
    """B2: ``count`` opportunities moved into the linked stage at once; (B2 figures, candidates)."""
    candidates = h.add_candidates(stack, posting, count, "bulk")
    since = last_seq(stack)
    footprint = Footprint(stack)
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
    # The tags ("WeCP: invited") wait on the sync queue behind the emails: the Lever work ends later.
    try:
        h.wait_until(lambda: writes_done(stack, since, "/addTags", count), 60 + count / 5, 1,
                     "every invited tag")
    except TimeoutError:
        pass
    time.sleep(2)  # anything arriving late would be a duplicate: give it a chance to show
    invited, sent = h.invitations(stack), h.mailed(stack)
    calls = api_calls(stack, since)
    until_emailed = lever_calls(calls, count, started, emailed_at)
    everything = lever_calls(calls, count, started)
    emailed = sum(1 for e in emails if e in sent)
    b2 = {
        "candidates": count,
        "all_invited_seconds": invited_at and invited_at - started,
        "all_emailed_seconds": emailed_at and emailed_at - started,
        "invitations_per_second": emailed_at and count / (emailed_at - started),
        "invited": sum(1 for o in candidates if o in invited),
        "emailed": emailed, "lost": count - emailed,
        "duplicate_invitations": sum(invited.get(o, 0) - 1 for o in candidates if invited.get(o, 0) > 1),
        "duplicate_emails": sum(len(sent.get(e, [])) - 1 for e in emails if len(sent.get(e, [])) > 1),
        # The figure: time to the last email ÷ (Lever calls made by then ÷ 10/s).
        "ratio_to_bound": ratio(emailed_at and emailed_at - started, until_emailed["bound_seconds"]),
        "lever_until_emailed": until_emailed,
        # Everything the move caused in Lever (tags included): the last call ÷ all calls ÷ 10/s.
        "lever": everything,
        "lever_done_ratio_to_bound": ratio(everything["last_call_seconds"], everything["bound_seconds"]),
        "footprint": footprint.finish(count),
    }
    return b2, candidates


def completion_burst(stack, candidates: dict[str, str], owner: str | None, clients: int) -> dict:
    """B3: the invited candidates, all started, submit at once; until every result note is in Lever."""
    people = started_candidates(stack, candidates, clients)
    count = len(people)
    opportunities = [c.opportunity for c in people]
    since = last_seq(stack)
    footprint = Footprint(stack)
    started = time.time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(Candidate.submit, people))
    submitted_at = time.time()
    noted_at = None
    deadline = time.monotonic() + 120 + count
    while time.monotonic() < deadline:
        if len(notes_of(stack, opportunities)) >= count:
            noted_at = time.time()
            break
        time.sleep(1)
    try:
        h.wait_until(lambda: writes_done(stack, since, "/addTags", count), 60 + count / 5, 1,
                     "every result tag")
    except TimeoutError:
        pass
    time.sleep(2)
    notes = notes_of(stack, opportunities)
    calls = api_calls(stack, since)
    until_noted = lever_calls(calls, count, started, noted_at)
    everything = lever_calls(calls, count, started)
    return {
        "completions": count, "thanked": sum(c.thanked for c in people),
        "all_submitted_seconds": submitted_at - started,
        "all_noted_seconds": noted_at and noted_at - started,
        "notes_per_second": noted_at and count / (noted_at - started),
        "noted": len(notes), "lost": count - len(notes),
        "duplicate_notes": sum(len(group) - 1 for group in notes.values()),
        "ratio_to_bound": ratio(noted_at and noted_at - started, until_noted["bound_seconds"]),
        "lever_until_noted": until_noted,
        "lever": everything,
        "lever_done_ratio_to_bound": ratio(everything["last_call_seconds"], everything["bound_seconds"]),
        "note_checks": check_notes(notes, owner),
        "footprint": footprint.finish(count),
    }


def at_rate(items, rate: float, act) -> None:
    """Call ``act(item)`` for each item on a fixed schedule of ``rate`` a second."""
    begin = time.monotonic()
    for i, item in enumerate(items):
        time.sleep(max(0.0, begin + i / rate - time.monotonic()))
        act(item)


def summary(seconds: list[float]) -> dict:
    return {"count": len(seconds), "p50_seconds": h.percentile(seconds, 50),
            "p95_seconds": h.percentile(seconds, 95), "p99_seconds": h.percentile(seconds, 99),
            "max_seconds": max(seconds) if seconds else None}


def latency(stack, posting: str, stage: str, moves: int, rate: float, clients: int) -> dict:
    """B6: moves at ``rate``/s (triggeredAt → email), then submits at ``rate``/s (Submit → note)."""
    candidates = h.add_candidates(stack, posting, moves, "latency")
    since = last_seq(stack)
    at_rate(list(candidates), rate, lambda opp: stack.admin.move("acme", [opp], stage))
    emails = set(candidates.values())
    try:
        h.wait_until(lambda: len(emails & set(h.mailed(stack))) == moves, 120, 0.2, "every latency email")
        # The tags go out after the emails; the second half starts on a quiet stack.
        h.wait_until(lambda: writes_done(stack, since, "/addTags", moves), 60, 0.5, "every latency tag")
    except TimeoutError:
        pass
    # Lever's own timestamp is the start: the webhook's triggeredAt.
    triggered = {d["payload"]["data"]["opportunityId"]: d["payload"]["triggeredAt"] / 1000
                 for d in stack.admin.deliveries()
                 if d["payload"]["data"]["opportunityId"] in candidates}
    sent = h.mailed(stack)
    invite = [min(sent[e]) - triggered[o] for o, e in candidates.items() if e in sent and o in triggered]

    people = started_candidates(stack, candidates, clients)
    at_rate(people, rate, Candidate.submit)
    opportunities = [c.opportunity for c in people]
    try:
        h.wait_until(lambda: len(notes_of(stack, opportunities)) == len(people), 120, 0.2,
                     "every latency note")
    except TimeoutError:
        pass
    notes = notes_of(stack, opportunities)
    note = [min(n["createdAt"] for n in notes[c.opportunity]) / 1000 - c.submitted_at
            for c in people if c.opportunity in notes]
    return {"moves": moves, "rate_per_second": rate,
            "emailed": len(invite), "submitted": sum(c.thanked for c in people), "noted": len(notes),
            "invite": summary(invite), "note": summary(note),
            "duplicate_emails": sum(len(sent.get(e, [])) - 1 for e in emails if len(sent.get(e, [])) > 1),
            "duplicate_notes": sum(len(group) - 1 for group in notes.values())}


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
    msg = stack.smtp.messages[0]
    body = msg.get_body(("plain",))
    return bool(msg["Subject"]) and body is not None and "http" in body.get_content()


def checks(args, b2: dict, b3: dict, b6: dict, stack) -> list[str]:
    """The invariants: everything arrived, once; names of those that broke."""
    n = args.candidates
    notes = b3["note_checks"]
    return [name for name, bad in (
        ("B2: not every candidate was invited", b2["invited"] != n),
        ("B2: not every invitation email arrived", b2["emailed"] != n),
        ("B2: duplicate invitations", b2["duplicate_invitations"]),
        ("B2: duplicate emails", b2["duplicate_emails"]),
        ("B3: not every candidate could submit", b3["thanked"] != n or b3["completions"] != n),
        ("B3: not every result became a note", b3["noted"] != n),
        ("B3: duplicate notes", b3["duplicate_notes"]),
        ("B3: a note without the report link", notes["with_report_link"] != n),
        ("B3: a note not written as the posting's owner", notes["as_posting_owner"] != n),
        ("B3: a report link does not open", any(s != 200 for s in notes["report_links_opened"])),
        ("B6: not every email arrived", b6["emailed"] != args.latency_moves),
        ("B6: not every note arrived", b6["noted"] != args.latency_moves),
        ("B6: duplicate emails", b6["duplicate_emails"]),
        ("B6: duplicate notes", b6["duplicate_notes"]),
        ("the email has no subject or link", not check_message(stack)),
    ) if bad]


def main(argv=None) -> int:
    args = parse_args(argv)
    h.stop_on_sigterm()
    # Reconciliation (first run when the connection appears, then every 5 min) would invite a
    # bulk move's candidates from a few list calls if it happened to run meanwhile: B2 measures
    # the webhook path, so B2 waits for its first run. Periodic slots follow the clock (now //
    # interval): with a day, the next run is at midnight UTC, not at the next full hour.
    # The sweepers keep their production intervals (minutes): the fault scenarios shorten them to
    # recover quickly, but here they would only add work a real deployment does not do.
    intervals = {"plugins.wecp_lever.flow.reconcile_postings": 86400}
    # A private PostgreSQL cluster, so its CPU per event is this run's alone.
    stack = h.HubStack("flow", private_pg=True, sandbox=True, smtp=True, workers=args.workers,
                       HUB_PERIODIC_INTERVALS=intervals)
    try:
        conn_id, _ = h.registered_connection(stack, "Bench")
        posting, stage = h.link_a_test(stack, conn_id)
        wait_first_reconciliation(stack)
        load = {"before": h.load_average()}
        h.log(f"B2: bulk move of {args.candidates}")
        b2, candidates = bulk_move(stack, posting, stage, args.candidates)
        h.log(f"  all emailed in {_s(b2['all_emailed_seconds'])}, ratio {b2['ratio_to_bound']}")
        h.log(f"B3: {args.candidates} completions at once")
        b3 = completion_burst(stack, candidates, posting_owner(posting), args.clients)
        h.log(f"  all noted in {_s(b3['all_noted_seconds'])}, ratio {b3['ratio_to_bound']}")
        h.log(f"B6: {args.latency_moves} moves, then submits, at {args.rate}/s")
        b6 = latency(stack, posting, stage, args.latency_moves, args.rate, args.clients)
        h.log(f"  invite {b6['invite']}; note {b6['note']}")
        load["after"] = h.load_average()
        failed = checks(args, b2, b3, b6, stack)
        result = {"benchmark": "B2 bulk move + B3 completion burst + B5 heavy path + B6 latency",
                  "command": "python -m bench.flow " + " ".join(argv or sys.argv[1:]),
                  "settings": {k: v for k, v in vars(args).items() if k != "out"},
                  "machine": h.machine(stack.database_url, stack.redis.url), "load_average": load,
                  "b2": b2, "b3": b3, "b5": {"invitations": b2["footprint"], "notes": b3["footprint"]},
                  "b6": b6, "failed_checks": failed, "ok": not failed}
        path = h.write_result("flow", result, args.out)
        verdict = "OK" if not failed else "FAILED: " + "; ".join(failed)
        print(f"B2 bulk move: {b2['emailed']}/{args.candidates} emailed in {_s(b2['all_emailed_seconds'])} "
              f"({_x(b2['ratio_to_bound'])} the bound, {_f(b2['lever']['reads_per_item'])} reads + "
              f"{_f(b2['lever']['writes_per_item'])} writes each); B3: {b3['noted']}/{b3['completions']} "
              f"notes in {_s(b3['all_noted_seconds'])} ({_x(b3['ratio_to_bound'])} the bound); "
              f"B6 p95 invite {_s(b6['invite']['p95_seconds'])}, note {_s(b6['note']['p95_seconds'])}; "
              f"{verdict} -> {path}")
        return 0 if not failed else 1
    finally:
        stack.close()


def _s(seconds) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def _x(value) -> str:
    return "?" if value is None else f"{value:.2f} ×"


def _f(value) -> str:
    return "?" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
