"""What the node's metrics cost per call: the router core with and without a NodeMetrics.

Two :class:`profile_core.CoreBench` instances in one process, one wired as ``router/app.py``
wires a ``NodeMetrics`` (call-ended, failover, hunt and routing hooks, the transport's SIP
traffic counter), one without; blocks of calls alternate between them, so the noise of a
shared machine falls on both alike. Reported: CPU µs per call (process time) of each, and the
median of the per-round ratios — the figure to compare.

    .venv/bin/python loadtests/metrics_cost.py                  # 100 rounds of 100 calls each
    .venv/bin/python loadtests/metrics_cost.py --rounds 200 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_core import CoreBench


def measure(block: int, rounds: int, warmup: int) -> dict[str, object]:
    benches = {"without": CoreBench(0.02, metrics=False), "with": CoreBench(0.02, metrics=True)}
    for bench in benches.values():
        for _ in range(warmup):
            bench.call()
    cpu: dict[str, list[float]] = {name: [] for name in benches}
    for n in range(rounds):
        order = list(benches.items())
        for name, bench in order if n % 2 == 0 else reversed(order):
            started = time.process_time()
            for _ in range(block):
                bench.call()
            cpu[name].append((time.process_time() - started) / block * 1e6)
    ratios = [w / wo for w, wo in zip(cpu["with"], cpu["without"], strict=True)]
    return {
        "calls_per_block": block, "rounds": rounds,
        "cpu_us_per_call_median": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
        "cpu_us_per_call_min": {k: round(min(v), 1) for k, v in cpu.items()},
        "with_over_without_median_ratio": round(statistics.median(ratios), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--block", type=int, default=100, help="calls per block")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", stream=open("/dev/null", "w"))  # noqa: SIM115
    result = measure(args.block, args.rounds, args.warmup)
    if args.json:
        print(json.dumps(result))
        return
    median = result["cpu_us_per_call_median"]
    print(f"router core CPU per call: {median} µs (median of {args.rounds} blocks); "
          f"with metrics / without: {result['with_over_without_median_ratio']}")


if __name__ == "__main__":
    main()
