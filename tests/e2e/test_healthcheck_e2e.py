"""The Dockerfile's HEALTHCHECK one-liner, run against a real router (port 5060 swapped for
the test router's port): healthy while it answers, unhealthy when nothing listens."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from router_process import RunningRouter
from sipp_harness import REPO, free_port

pytestmark = pytest.mark.e2e


def health_check_code(port: int) -> str:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    command = json.loads(line[line.index("CMD") + 3 :])
    return str(command[2]).replace("5060", str(port))


def run_health_check(port: int) -> int:
    result = subprocess.run(
        [sys.executable, "-c", health_check_code(port)], capture_output=True, timeout=15
    )
    return result.returncode


def test_health_check_passes_against_the_router(router: RunningRouter) -> None:
    assert run_health_check(router.port) == 0


def test_health_check_fails_when_nothing_listens() -> None:
    assert run_health_check(free_port()) != 0
