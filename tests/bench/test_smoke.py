"""Smoke-size runs of the benchmarks and fault scenarios: they still work and their invariants hold.

Speed is never asserted here (the numbers live in docs/performance.md); only that each command
finishes, writes complete JSON, loses nothing and does nothing twice.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.slow


def run_bench(tmp_path, *argv: str, timeout: float = 300) -> tuple[dict, str]:
    """Run ``python -m <argv> --smoke``; its JSON result and its one line of output."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", *argv, "--smoke", "--out", str(out)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                          timeout=timeout)
    assert out.exists(), f"no JSON written (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(out.read_text())
    assert proc.returncode == 0, \
        f"{proc.stdout}\n{json.dumps(result, indent=1)[:6000]}\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout  # one summary line; progress goes to stderr
    return result, lines[0]


def test_intake_benchmark(tmp_path):
    result, line = run_bench(tmp_path, "bench.intake")
    summary = result["summary"]
    assert line.startswith("B1 intake:")
    assert summary["acknowledged"] > 0 and summary["hub_rps"] > 0 and summary["bare_rps"] > 0
    assert summary["lost"] == 0 and summary["duplicates"] == 0 and summary["not_enqueued"] == 0
    assert summary["worker_run_twice"] == 0
    for key in ("ratio", "hub_p50_ms", "hub_p99_ms", "web_peak_rss_mb", "web_cpu_s_per_1000",
                "worker_peak_rss_mb", "worker_cpu_s_per_1000"):
        assert summary[key] is not None, key
    assert result["machine"]["nproc"] and result["machine"]["postgresql"] and result["machine"]["redis"]
    (run,) = result["runs"]
    assert run["hub"]["stored"] >= run["hub"]["acknowledged"]
    assert run["worker"]["processed"] > 0


def test_intake_benchmark_without_wrk(tmp_path):
    result, _ = run_bench(tmp_path, "bench.intake", "--generator", "python")
    assert result["generator"] == "python"
    assert result["summary"]["acknowledged"] > 0 and result["summary"]["lost"] == 0


@pytest.mark.parametrize("scenario", ["redis", "postgres", "worker-kill", "storm", "429-storm", "revoke",
                                      "hub-down"])
def test_fault_scenario(tmp_path, scenario):
    result, line = run_bench(tmp_path, "bench.faults", scenario)
    assert line.startswith(f"fault {scenario}: OK"), line
    assert result["ok"] and result["failed_checks"] == []
    if scenario in ("redis", "postgres"):
        assert result["moved"] > 0 and result["moves_during_outage"] > 0
        assert result["given_up"] == 0 and result["lost"] == 0 and result["duplicates"] == 0
        assert result["not_done"] == 0
        assert result["invited"] == result["emailed"] == result["moved"]
        assert result["duplicate_invitations"] == 0 and result["duplicate_emails"] == 0
    if scenario == "redis":
        assert set(result["first_answers_during_outage"]) == {"200"}  # acknowledged while Redis was down
    if scenario == "postgres":
        assert result["attempts_by_answer"].get("503", 0) > 0  # refused while down, redelivered after
    if scenario == "worker-kill":
        assert all(r["webhooks_created"] == 2 and r["job_status"] == "finished" for r in result["rounds"])
    if scenario == "storm":
        assert result["lever_answers"].get("500", 0) > 0
        assert result["webhooks_created"] == 2 * result["connections"]  # stage and archive changes
    if scenario in ("429-storm", "revoke", "hub-down"):
        assert not any(result["failed_jobs"].values())  # nothing failed for good
    if scenario == "429-storm":
        assert sorted(r["retry_after"] for r in result["rounds"]) == [False, True]
        for r in result["rounds"]:
            assert r["invited"] == r["emailed"] == r["tagged"] == r["candidates"] > 0
            assert r["duplicate_invitations"] == 0 and r["duplicate_emails"] == 0
            assert r["lost"] == 0 and r["not_done"] == 0
            assert r["lever"]["injected_429"] > 0  # the storm happened
            assert r["lever"]["over_limit"] == {}  # never faster than Lever's 10/s, bursts of 20
    if scenario == "revoke":
        assert result["most_paused"] > 0 and result["most_failed"] == 0  # paused, not failed
        assert result["connection_status_while_revoked"] == result["card_while_revoked"] == "Revoked"
        assert result["connection_status_end"] == result["card_after"] == "Active"
        assert result["invited"] == result["emailed"] == result["tagged"] == result["candidates"]
        assert result["duplicate_invitations"] == 0 and result["duplicate_emails"] == 0
        assert result["webhooks_at_new_url"] == 1 and set(result["inbox_end"]) <= {"done", "skipped"}
    if scenario == "hub-down":
        missed = result["missed_by_webhooks"]
        # A delivery the sender timed out on may still have been stored and acted on: "webhook".
        assert missed > 0 and sum(result["missed_invited_via"].values()) == missed
        assert result["missed_invited_via"].get("reconcile", 0) > 0
        assert result["found_every_missed_in_first_reconcile"]
        assert result["invited"] == result["emailed"] == result["moved"] > 0
        assert result["duplicate_invitations"] == 0 and result["duplicate_emails"] == 0
        assert result["lost"] == 0 and result["not_done"] == 0


def test_flow_benchmark(tmp_path):
    result, line = run_bench(tmp_path, "bench.flow")
    assert line.startswith("B2 bulk move:") and result["ok"] and result["failed_checks"] == [], line
    b2, b3, b5, b6 = result["b2"], result["b3"], result["b5"], result["b6"]
    candidates, moves = result["settings"]["candidates"], result["settings"]["latency_moves"]
    # B2: every candidate invited and emailed once; Lever calls counted as reads and writes.
    assert b2["invited"] == b2["emailed"] == candidates and b2["lost"] == 0
    assert b2["duplicate_invitations"] == 0 and b2["duplicate_emails"] == 0
    assert b2["all_emailed_seconds"] is not None and b2["ratio_to_bound"] is not None
    lever = b2["lever"]
    assert lever["reads"] + lever["writes"] == lever["calls"] > 0 and lever["answered_429"] >= 0
    # Counted as Lever accepted them: a call answered 429 was not acted on and is retried.
    assert lever["accepted_by_path"]["GET /v1/opportunities/:id"] >= candidates  # re-read, never trusted
    assert lever["accepted_by_path"]["POST /v1/opportunities/:id/addTags"] == candidates  # "WeCP: invited"
    assert b2["lever_until_emailed"]["calls"] <= lever["calls"]
    # B3: one note per result, with its report link, written as the posting's owner.
    assert b3["completions"] == b3["thanked"] == b3["noted"] == candidates and b3["lost"] == 0
    assert b3["duplicate_notes"] == 0 and b3["all_noted_seconds"] is not None
    assert b3["lever"]["accepted_by_path"]["POST /v1/opportunities/:id/notes"] == candidates
    assert b3["lever"]["accepted_by_path"]["POST /v1/opportunities/:id/addTags"] == candidates  # result tags
    checks = b3["note_checks"]
    assert checks["with_report_link"] == checks["as_posting_owner"] == candidates
    assert checks["posting_owner"] and checks["report_links_opened"] and \
        set(checks["report_links_opened"]) == {200}
    # B5: footprint of the heavy path, per phase.
    for phase in ("invitations", "notes"):
        assert b5[phase]["events"] == candidates and b5[phase]["horses_seen"] > 0
        assert all(b5[phase]["peak_rss_mb"][k] > 0 for k in ("worker_main", "work_horse", "web_worker"))
        assert b5[phase]["cpu_seconds_per_1000"]["worker"] > 0
    # B6: both halves measured for every move, nothing twice.
    assert b6["emailed"] == b6["submitted"] == b6["noted"] == moves
    assert b6["duplicate_emails"] == 0 and b6["duplicate_notes"] == 0
    for half in ("invite", "note"):
        assert b6[half]["count"] == moves and b6[half]["p95_seconds"] is not None
        assert b6[half]["p50_seconds"] <= b6[half]["p95_seconds"]
    assert result["load_average"]["before"] and result["load_average"]["after"]


def test_accounts_benchmark(tmp_path):
    result, line = run_bench(tmp_path, "bench.accounts")
    assert line.startswith("B4 many accounts:") and result["ok"], line
    (run,) = result["runs"]
    orgs, candidates = result["settings"]["orgs"], result["settings"]["candidates"]
    assert run["invited"] == run["emailed"] == run["candidates"] == orgs * candidates
    assert run["missing_at_end"] == 0 and run["duplicate_invitations"] == 0 and run["duplicate_emails"] == 0
    assert run["invitations_in_the_wrong_org"] == 0
    # Each organization on its own account: every account made its own Lever calls.
    accounts = run["per_account"]
    assert len({a["account"] for a in accounts}) == orgs
    assert all(a["lever"]["calls"] > 0 and a["all_emailed_seconds"] is not None for a in accounts)


def test_idle_benchmark(tmp_path):
    result, line = run_bench(tmp_path, "bench.idle")
    assert line.startswith("B7 idle:") and result["ok"], line
    assert result["settings"]["connections"] == 3 and len(result["worker_cpu_ms_per_second"]) == 2
    # Every worker spends something while idle (its scheduler runs): read from /proc, never zero.
    assert all(ms > 0 for ms in result["worker_cpu_ms_per_second"])
    assert result["wall_seconds"] >= result["settings"]["seconds"]
    assert result["postgres_cpu_ms_per_second"] >= 0 and result["redis_cpu_ms_per_second"] >= 0
