"""Fixtures for the end-to-end tests: the router as a subprocess, SIPp callers and centres.

Helpers live in ``sipp_harness.py`` (SIPp processes, message traces, statistics),
``router_process.py`` (``nodrute serve`` and a raw OPTIONS probe) and ``expected_routing.py``
(where a call should land, from the committed CSV files). A test that uses SIPp needs
``sipp`` (Debian package sip-tester; ``make test`` installs it) and is skipped without it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from router_process import RunningRouter, running_router
from sipp_harness import SIPP_MISSING, SippFleet, free_port, sipp_binary


@pytest.fixture
def port_factory() -> Callable[[], int]:
    """Call it for a port free on 127.0.0.1 for both UDP and TCP."""
    return free_port


@pytest.fixture
def router(tmp_path: Path) -> Iterator[RunningRouter]:
    """``nodrute serve`` on a free 127.0.0.1 port with the committed sample-2024 table,
    answering OPTIONS; stopped with SIGTERM afterwards."""
    with running_router(tmp_path / "router") as running:
        yield running


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFleet]:
    """Starts SIPp UAS/UAC instances in folders under tmp_path; stops leftovers afterwards."""
    binary = sipp_binary()
    if binary is None:
        pytest.skip(SIPP_MISSING)
    fleet = SippFleet(tmp_path / "sipp", binary)
    try:
        yield fleet
    finally:
        fleet.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, append the router's stderr and SIPp's error logs to the report."""
    report: pytest.TestReport = yield
    if report.failed and isinstance(item, pytest.Function):
        for name, value in item.funcargs.items():
            failure_report = getattr(value, "failure_report", None)
            if callable(failure_report):
                text = failure_report()
                if text:
                    report.sections.append((f"e2e diagnostics: {name}", text))
    return report
