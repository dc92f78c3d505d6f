"""The caller-location section of ``make bench`` (loadtests/bench_location.py), tiny: both
micro-benchmarks run in their own processes and their figures reach the JSON summary and the
Markdown. Not a speed test: only the shape and the consistency of the report are checked."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtests"))

from bench_location import markdown_location, run_location_section


def test_location_section_reports_lookup_and_parse_figures() -> None:
    logged: list[str] = []
    section = run_location_section(points=500, repeat=1, runs=3, log=logged.append)
    geo, parse, summary = section["geo"], section["parse"], section["summary"]

    assert geo["load"]["municipalities"] == 357
    assert geo["lookup"]["random"]["n"] == 500
    assert geo["lookup"]["representative"]["n"] == 357
    # every representative point lies inside its municipality
    assert geo["lookup"]["representative"]["outcomes"] == {"inside": 357}
    for kind, figures in geo["lookup"].items():
        assert summary["lookup_median_us"][kind] == figures["median_us"]
        assert summary["lookup_p99_us"][kind] == figures["p99_us"]
        assert 0 < figures["median_us"] <= figures["p99_us"] <= figures["max_us"]

    worst = summary["parse_worst_case"]
    assert "over the cap" not in worst  # refused documents are not the worst parse
    assert summary["parse_worst_cpu_max_us"] == max(
        case["cpu_max_us"] for name, case in parse.items() if "over the cap" not in name)
    assert parse["typical: one Point (uac_pidf_lo.xml)"]["first_problem"] is None

    markdown = "\n".join(markdown_location(section))
    assert "## Caller location" in markdown
    assert f"| representative | 357 | {geo['lookup']['representative']['median_us']} |" in markdown
    assert f"| {worst} |" in markdown
    assert any("lookup median" in line for line in logged)
