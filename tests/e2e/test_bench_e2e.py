"""Throughput baseline with SIPp: not a check, a measurement. Skipped unless asked for:

    NODRUTE_BENCH=1 .venv/bin/python -m pytest -q -s tests/e2e/test_bench_e2e.py

For each rate in NODRUTE_BENCH_RATES (calls/s, default "100,200,300,400") it sends
NODRUTE_BENCH_SECONDS (default 10) seconds of calls from loadtests/data/calls_all.csv (cycled)
through a fresh router to one SIPp UAS per centre, hold time 0, and prints one line per rate:
completed and failed calls, and response times (p50/p99) for 100 Trying and for 200 OK.
The lines are also written to bench-results/baseline.txt (ignored by git).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from expected_routing import CALLS_ALL, load_centres
from router_process import running_router
from sipp_harness import REPO, SippFleet, percentile

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("NODRUTE_BENCH"), reason="set NODRUTE_BENCH=1"),
]

RATES = [float(r) for r in os.environ.get("NODRUTE_BENCH_RATES", "100,200,300,400").split(",")]
SECONDS = float(os.environ.get("NODRUTE_BENCH_SECONDS", "10"))


def test_throughput_baseline(sipp: SippFleet, tmp_path: Path) -> None:
    lines = [f"calls_all.csv, hold 0 ms, {SECONDS:g} s per rate, {os.cpu_count()} CPUs"]
    for rate in RATES:
        calls = int(rate * SECONDS)
        centres = sipp.start_centres(
            "uas_centre.xml", ((c.centre_id, c.port) for c in load_centres().values())
        )
        with running_router(tmp_path / f"router-{rate:g}") as router:
            uac = sipp.run_uac(
                "uac_emergency.xml", router.port, injection_file=CALLS_ALL, calls=calls,
                rate_per_s=rate, max_concurrent=max(100, int(rate)), timeout_s=SECONDS + 60,
                name=f"uac-{rate:g}",
            )  # fmt: skip
        for centre in centres.values():
            centre.stop()
        times = {
            rtd: f"p50 {percentile(values, 0.5):.0f} ms p99 {percentile(values, 0.99):.0f} ms"
            for rtd, values in uac.response_times_ms.items()
        }
        lines.append(
            f"{rate:5g} calls/s: {uac.successful_calls}/{calls} completed, "
            f"{uac.failed_calls} failed (exit {uac.returncode}); "
            f"100 Trying {times.get('trying', '-')}; 200 OK {times.get('answer', '-')}"
        )
        print(lines[-1])
    out = REPO / "bench-results" / "baseline.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
