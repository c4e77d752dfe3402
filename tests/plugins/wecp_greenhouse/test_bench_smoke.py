"""The Greenhouse benchmark at smoke size: it still runs and its invariants hold (each send and each
completion exactly once, repeats answered with the same interview). Speed is never asserted here:
the numbers live in docs/performance.md."""
from __future__ import annotations

import pytest

from tests.bench.test_smoke import run_bench

pytestmark = pytest.mark.slow


def test_greenhouse_benchmark(tmp_path):
    result, line = run_bench(tmp_path, "bench.greenhouse")
    assert line.startswith("G1: 10/10 emailed") and line.rstrip().split(" -> ")[0].endswith("OK")
    g1, g2 = result["g1"], result["g2"]
    assert g1["emails"] == 10 and g1["repeats_answered_same_id"] == 10
    assert g2["complete"] == 10 and g2["patches"] == {"1": 10} and g2["response_errors"] == 0
    assert g1["sends"]["cpu_ms_per_event"]["web"] > 0 and g2["cpu_ms_per_event"]["worker"] > 0
