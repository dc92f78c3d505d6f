"""Micro-benchmark of point -> municipality (municipality_map/geo.py), printed as JSON.

    .venv/bin/python loadtests/geo_bench.py [--points 100000] [--seed 1] [--radius-m 1000]

Measures, in one fresh process:

* ``load``: seconds to import shapely (and numpy) and to build ``MunicipalityLocator.bundled()``
  (read and parse the GeoJSON, validate, index), and the process RSS before and after each
  (``/proc/self/status`` VmRSS, so Linux only);
* ``cold``: the first lookup of each municipality's representative point (GEOS builds a
  prepared polygon's own index on its first use);
* per-lookup time (``time.perf_counter_ns`` around each ``locate`` call; median, p90, p99, max,
  mean in microseconds) for: ``random`` (uniform points in Norway's bounding box: inland,
  at sea near the coast, far out, abroad, so every branch), ``representative`` (every
  municipality's representative point, ``--repeat`` times), and both again with an uncertainty
  circle of ``--radius-m`` metres.

Timings are wall clock on a shared machine: quote the load average with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# lon/lat bounding box of the mainland polygons (lon 4.1-31.2, lat 57.9-71.2), a little wider.
BBOX = (4.0, 57.8, 31.5, 71.3)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def summarise_ns(samples: Sequence[int]) -> dict[str, float]:
    ordered = sorted(samples)

    def rank(q: float) -> float:  # nearest-rank percentile, microseconds
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] / 1000

    return {
        "n": len(ordered),
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p90_us": round(rank(0.90), 2),
        "p99_us": round(rank(0.99), 2),
        "max_us": round(ordered[-1] / 1000, 2),
        "mean_us": round(statistics.fmean(ordered) / 1000, 2),
    }


def time_lookups(
    locate: Callable[..., Any], points: Sequence[tuple[float, float]], radius: float | None
) -> dict[str, Any]:
    samples: list[int] = []
    outcomes: Counter[str] = Counter()
    clock = time.perf_counter_ns
    for lat, lon in points:
        start = clock()
        match = locate(lat, lon, radius)
        samples.append(clock() - start)
        outcome = "none" if match is None else match.method
        outcomes[outcome + ("_ambiguous" if match is not None and match.ambiguous else "")] += 1
    return {**summarise_ns(samples), "outcomes": dict(sorted(outcomes.items()))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="random points (default 1e5)")
    parser.add_argument("--repeat", type=int, default=100, help="passes over the 357 rep. points")
    parser.add_argument("--radius-m", type=float, default=1_000.0, help="uncertainty circle")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rss_start = rss_kib()
    t0 = time.perf_counter()
    import numpy as np
    import shapely

    t1 = time.perf_counter()
    rss_imported = rss_kib()
    from municipality_map.geo import MunicipalityLocator

    locator = MunicipalityLocator.bundled()
    t2 = time.perf_counter()
    rss_loaded = rss_kib()

    # Representative points straight from the bundled polygons (not through the locator).
    data = (REPO / "municipality_map" / "data" / "kommuner_2024_S.geojson").read_bytes()
    features = json.loads(data)["features"]
    geoms = [shapely.geometry.shape(f["geometry"]) for f in features]
    representative = [(p.y, p.x) for p in (g.representative_point() for g in geoms)]

    cold = time_lookups(locator.locate, representative, None)
    rng = np.random.default_rng(args.seed)
    lons = rng.uniform(BBOX[0], BBOX[2], args.points)
    lats = rng.uniform(BBOX[1], BBOX[3], args.points)
    random_points = list(zip(lats.tolist(), lons.tolist(), strict=True))
    repeated = representative * args.repeat

    report = {
        "environment": {
            "python": platform.python_version(),
            "shapely": shapely.__version__,
            "geos": shapely.geos_version_string,
            "cpu_count": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "parameters": {
            "points": args.points,
            "repeat": args.repeat,
            "radius_m": args.radius_m,
            "seed": args.seed,
            "bbox_lon_lat": BBOX,
            "max_nearest_m": locator.max_nearest_m,
            "max_uncertainty_m": locator.max_uncertainty_m,
        },
        "load": {
            "import_shapely_s": round(t1 - t0, 4),
            "build_locator_s": round(t2 - t1, 4),
            "municipalities": len(locator),
            "rss_kib_start": rss_start,
            "rss_kib_delta_import": rss_imported - rss_start,
            "rss_kib_delta_locator": rss_loaded - rss_imported,
        },
        "cold_first_lookup_per_municipality": cold,
        "lookup": {
            "random": time_lookups(locator.locate, random_points, None),
            "representative": time_lookups(locator.locate, repeated, None),
            "random_circle": time_lookups(locator.locate, random_points, args.radius_m),
            "representative_circle": time_lookups(locator.locate, repeated, args.radius_m),
        },
        "rss_kib_end": rss_kib(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
