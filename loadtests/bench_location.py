"""The "Caller location" section of ``make bench`` (loadtests/bench.py): point -> municipality
lookup time (geo_bench.py) and worst-case PIDF-LO parse time (location_parse_bench.py).

Each micro-benchmark runs in its own fresh Python process (so the locator's load time and the
first lookups are real) and prints JSON; this module keeps that JSON whole under
``location.geo`` / ``location.parse`` of the bench report and writes the Markdown section.
No SIPp and no router: these are the per-call costs on the call path, measured alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GEO_BENCH = HERE / "geo_bench.py"
PARSE_BENCH = HERE / "location_parse_bench.py"
# Cases of location_parse_bench.py that are refused before any parsing (not "worst parsed").
REFUSED = ("over the cap",)


def _run_json(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_location_section(*, points: int, repeat: int, runs: int,
                         log: Callable[[str], None]) -> dict[str, Any]:
    """Both micro-benchmarks; their JSON as printed, and a summary of the headline figures."""
    python = sys.executable
    log(f"location: geo_bench.py --points {points} --repeat {repeat}")
    geo = _run_json([python, str(GEO_BENCH), "--points", str(points), "--repeat", str(repeat)])
    log(f"location: location_parse_bench.py --runs {runs}")
    parse = _run_json([python, str(PARSE_BENCH), "--runs", str(runs)])
    parsed = {name: case for name, case in parse.items()
              if not any(mark in name for mark in REFUSED)}
    worst = max(parsed, key=lambda name: parsed[name]["cpu_max_us"])
    summary = {
        "lookup_median_us": {kind: v["median_us"] for kind, v in geo["lookup"].items()},
        "lookup_p99_us": {kind: v["p99_us"] for kind, v in geo["lookup"].items()},
        "locator_load_s": round(geo["load"]["import_shapely_s"] + geo["load"]["build_locator_s"],
                                3),
        "parse_worst_case": worst,
        "parse_worst_cpu_max_us": parsed[worst]["cpu_max_us"],
        "parse_worst_wall_median_us": parsed[worst]["wall_median_us"],
    }
    log(f"location: lookup median {summary['lookup_median_us']} µs, p99 "
        f"{summary['lookup_p99_us']} µs; worst parse ({worst}) CPU max "
        f"{summary['parse_worst_cpu_max_us']} µs")
    return {"geo": geo, "parse": parse, "summary": summary}


def markdown_location(section: dict[str, Any]) -> list[str]:
    geo, parse = section["geo"], section["parse"]
    load, params = geo["load"], geo["parameters"]
    rss_mib = (load["rss_kib_delta_import"] + load["rss_kib_delta_locator"]) / 1024
    lines = [
        "",
        "## Caller location",
        "",
        f"Point → municipality (`loadtests/geo_bench.py`, one fresh process, load average "
        f"{', '.join(f'{x:.2f}' for x in geo['environment']['loadavg'])}): locator built in "
        f"{load['import_shapely_s'] + load['build_locator_s']:.2f} s (shapely import "
        f"{load['import_shapely_s']:.2f} s), +{rss_mib:.0f} MiB RSS; "
        f"uncertainty circle {params['radius_m']:g} m; GEOS {geo['environment']['geos']}.",
        "",
        "| points | lookups | median µs | p90 µs | p99 µs | max µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = {"cold: first lookup per municipality": geo["cold_first_lookup_per_municipality"],
            **geo["lookup"]}
    for kind, v in rows.items():
        lines.append(f"| {kind} | {v['n']} | {v['median_us']} | {v['p90_us']} | {v['p99_us']} "
                     f"| {v['max_us']} |")
    lines += [
        "",
        "PIDF-LO parse per request (`loadtests/location_parse_bench.py`: hostile documents at "
        "the caps; CPU time is the thread's, wall time includes preemption):",
        "",
        "| case | bytes | wall median µs | wall p99 µs | CPU median µs | CPU max µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in parse.items():
        lines.append(f"| {name} | {v['bytes']} | {v['wall_median_us']} | {v['wall_p99_us']} | "
                     f"{v['cpu_median_us']} | {v['cpu_max_us']} |")
    return lines
