"""The router as the end-to-end tests see it: a ``nodrute serve`` subprocess on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sipp_harness import LOOPBACK, REPO, free_port, tail

TABLE_DIR = REPO / "configs" / "tables" / "sample-2024"
DEFAULT_CENTRE_113 = "AMK-OSLO"
DEFAULT_CENTRE_116117 = "LVS-0301"
STARTUP_TIMEOUT_S = 20.0


def router_command(config: Path) -> list[str]:
    """``nodrute serve`` from the running venv, or ``python -m router serve`` without it."""
    script = Path(sys.executable).with_name("nodrute")
    if script.exists():
        return [str(script), "serve", "--config", str(config)]
    return [sys.executable, "-m", "router", "serve", "--config", str(config)]


def write_router_config(path: Path, port: int, table_dir: Path = TABLE_DIR, *,
                        extra: str = "",
                        municipality_sources: str = '["header", "uri_param", "prefix"]') -> Path:
    """A config for the test router: 127.0.0.1:``port``, UDP and TCP, the given table.

    The table database is a SQLite file next to the config (unless ``extra`` has its own
    ``[database]``); the metrics endpoint is off unless ``extra`` has a ``[metrics]``, and
    centre probing (``[health]``) likewise. ``municipality_sources`` is the trunk's list
    (TOML), e.g. ``'["geo", "header"]'``.
    """
    if "[database]" not in extra:
        database = (path.parent / "nodrute.db").resolve().as_posix()
        extra += f'\n[database]\nurl = "sqlite+aiosqlite:///{database}"\n'
    if "[metrics]" not in extra:
        extra += "\n[metrics]\nenabled = false\n"
    if "[media]" not in extra:
        # Most e2e tests are about signalling and check the SDP end to end; media tests (and
        # the pjsua2 audio test) pass their own [media].
        extra += "\n[media]\nenabled = false\n"
    if "[health]" not in extra:
        # The SIPp centres of most scenarios answer INVITEs only: an OPTIONS probe would be an
        # unexpected message there. Health tests pass their own [health].
        extra += "\n[health]\nenabled = false\n"
    path.write_text(
        f"""\
[sip]
host = "{LOOPBACK}"
port = {port}
transports = ["udp", "tcp"]

[routing]
table_dir = "{table_dir.resolve().as_posix()}"
default_centre_113 = "{DEFAULT_CENTRE_113}"
default_centre_116117 = "{DEFAULT_CENTRE_116117}"

[[trunks]]
name = "default"
municipality_sources = {municipality_sources}
municipality_header = "X-Kommunenummer"
{extra}""",
        encoding="utf-8",
    )
    return path


def send_options(port: int, *, host: str = LOOPBACK, timeout_s: float = 0.5) -> str | None:
    """Send one out-of-dialog OPTIONS over UDP; the response text, or None if none came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        token = uuid.uuid4().hex[:16]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK{token};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={token}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {token}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout_s)
        try:
            sock.sendto(request.encode(), (host, port))
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                data = sock.recv(65535).decode("utf-8", errors="replace")
                if not data.startswith("SIP/2.0 1"):  # skip provisional responses
                    return data
        except OSError:  # timeout, or ICMP port unreachable while nothing listens yet
            return None
    return None


@dataclass
class RunningRouter:
    """A ``nodrute serve`` process listening on 127.0.0.1:``port`` (UDP and TCP)."""

    port: int
    config_path: Path
    process: subprocess.Popen[bytes]
    stderr_path: Path
    host: str = LOOPBACK

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def failure_report(self) -> str:
        return (
            f"--- router on {self.host}:{self.port}, exit {self.process.poll()}\n"
            f"stderr (last lines):\n{tail(self.stderr_path, 200)}"
        )


@contextmanager
def running_router(
    workdir: Path, table_dir: Path = TABLE_DIR, *, extra_config: str = "", port: int | None = None,
    municipality_sources: str = '["header", "uri_param", "prefix"]',
) -> Iterator[RunningRouter]:
    """Start the router, wait until it answers OPTIONS with 200, stop it after (stop_router).

    Fails (AssertionError with the router's stderr) if it does not come up, or if it died
    while in use.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = write_router_config(workdir / "nodrute.toml", port, table_dir, extra=extra_config,
                                 municipality_sources=municipality_sources)
    stderr_path = workdir / "router.stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODRUTE__")}
    env["PYTHONUNBUFFERED"] = "1"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            router_command(config), cwd=REPO, stdin=subprocess.DEVNULL,
            stdout=stderr, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    router = RunningRouter(port, config, process, stderr_path)
    try:
        _wait_until_ready(router)
        yield router
        assert process.poll() is None, f"the router died during the test\n{router.failure_report()}"
    finally:
        stop_router(process)


def stop_router(process: subprocess.Popen[bytes], drain_s: float = 5.0) -> None:
    """SIGTERM (the node drains: calls in progress go on), after ``drain_s`` a second SIGTERM
    (calls still up are released at once), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, drain_s), (signal.SIGTERM, 5.0)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.kill()
        process.wait()


def _wait_until_ready(router: RunningRouter) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last: str | None = None
    while time.monotonic() < deadline:
        if router.process.poll() is not None:
            raise AssertionError(f"the router exited at start\n{router.failure_report()}")
        last = send_options(router.port, timeout_s=0.3)
        if last is not None and last.startswith("SIP/2.0 200"):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"the router did not answer OPTIONS with 200 within {STARTUP_TIMEOUT_S:.0f} s "
        f"(last answer: {last!r})\n{router.failure_report()}"
    )
