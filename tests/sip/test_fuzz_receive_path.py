"""A short, bounded run of the fuzz target fuzz/fuzz_parser.py in the suite.

The pure-Python mutation runner always runs (a fixed seed, so a failure reproduces); the
coverage-guided atheris run too when atheris is installed. Both go through the whole receive
path with no sockets. Bounded by iteration counts, not by time. Longer runs: fuzz/README.md.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from test_rfc4475 import REPO, fuzz_parser

from municipality_map import default_table_dir, load_snapshot

ITERATIONS = 8_000
WARMUP = 3_000
MAX_GROWTH_BYTES = 1_500_000
"""Python heap growth allowed between input 3,000 and 8,000. Caches bounded by entry count
fill slowly (~10 bytes per input); keeping one received datagram (~300 bytes) per input would
show as 1.5 MB here."""


def test_mutation_run_finds_nothing_and_memory_stays_flat() -> None:
    report = fuzz_parser.run(iterations=ITERATIONS, seed=20261123, warmup=WARMUP,
                             snapshot=load_snapshot(default_table_dir()))
    assert report.iterations == ITERATIONS
    stats = report.stats
    # the run reached every layer: parsed and refused messages, answers and routed calls
    assert stats.parsed > 500 and stats.rejected > 500 and stats.answered > 500
    assert stats.sent > 500 and stats.stream_messages > 10
    assert report.peak_state < 1_000  # transactions + timer entries + calls
    assert report.traced_at_end - report.traced_after_warmup < MAX_GROWTH_BYTES


def test_mutation_runner_reports_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # the runner stops at the first input that breaks the receive path and names it
    def broken(data: bytes, *, stream: bool = False) -> object:
        raise KeyError("boom")

    monkeypatch.setattr(fuzz_parser, "parse_message", broken)
    with pytest.raises(fuzz_parser.Finding, match="unhandled KeyError"):
        fuzz_parser.run(iterations=10, warmup=1)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    done = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "fuzz_parser.py"), "-atheris", "-runs=3000",
         f"-dict={REPO / 'fuzz' / 'sip.dict'}", "-rss_limit_mb=1024", str(corpus)],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 3000 runs" in done.stderr
    assert not list(tmp_path.glob("crash-*"))
