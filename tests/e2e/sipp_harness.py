"""Real SIPp processes for the end-to-end tests: start, stop, and read what they recorded.

Every SIPp runs in the foreground (no ``-bg``) in a folder of its own, so the Popen handle is
the process and its files (``-trace_msg``, ``-trace_stat``, ``-trace_rtt``, ``-trace_err``) do
not mix with another instance's. Only 127.0.0.1 is ever used.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIO_DIR = REPO / "loadtests" / "scenarios"
LOOPBACK = "127.0.0.1"
SIPP_MISSING = "sipp is not installed (Debian package sip-tester; `make deps` installs it)"


def sipp_binary() -> str | None:
    """Path of ``sipp`` (Debian package sip-tester), or None when it is not installed."""
    return shutil.which("sipp")


def free_port() -> int:
    """A port that is free on 127.0.0.1 for both UDP and TCP at the time of the call."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free on both UDP and TCP")


def free_media_port() -> int:
    """A port P with P and P+2 free for UDP: SIPp's ``-mp`` binds its audio and video
    sockets there. (Its own search for a free pair races when many SIPps start at once.)"""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as video:
            try:
                video.bind((LOOPBACK, port + 2))
            except OSError:
                continue
            return port
    raise RuntimeError("no free media port pair")


# --- the message trace (-trace_msg) ----------------------------------------------------------

# fmt: off
_COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
}  # RFC 3261 §7.3.3
# fmt: on
_SEPARATOR = re.compile(r"^-{20,} \d{4}-\d\d-\d\d [\d:.]+\s*$", re.MULTILINE)
_DIRECTION = re.compile(r"^(UDP|TCP|TLS|SCTP) message (received|sent)")
_URI_USER = re.compile(r"<?\s*(?:sips?|tel):([^@;>?]+)", re.IGNORECASE)


@dataclass(frozen=True)
class TracedMessage:
    """One SIP message as SIPp logged it with ``-trace_msg``."""

    direction: str
    """``received`` or ``sent``, seen from the SIPp instance."""
    transport: str
    """``UDP``, ``TCP``…"""
    start_line: str
    headers: tuple[tuple[str, str], ...]
    """(lower-case full header name, value) in order; compact names are expanded."""
    body: str

    @property
    def method(self) -> str | None:
        """Request method, or None for a response."""
        return None if self.start_line.startswith("SIP/") else self.start_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """Response status code, or None for a request."""
        if not self.start_line.startswith("SIP/"):
            return None
        return int(self.start_line.split(" ", 2)[1])

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]

    @property
    def call_id(self) -> str | None:
        return self.header("call-id")

    @property
    def from_user(self) -> str | None:
        """User part of the From URI (the caller number on our calls)."""
        return uri_user(self.header("from") or "")


def uri_user(name_addr: str) -> str | None:
    """User part of the first SIP/SIPS/tel URI in a header value."""
    match = _URI_USER.search(name_addr)
    return match.group(1) if match else None


def header_params(value: str) -> dict[str, str]:
    """``centre=AMK-OSLO;source=header`` -> {"centre": "AMK-OSLO", "source": "header"}."""
    params: dict[str, str] = {}
    for part in value.split(";"):
        key, _, val = part.partition("=")
        if key.strip():
            params[key.strip().lower()] = val.strip()
    return params


def parse_message_trace(path: Path) -> list[TracedMessage]:
    """All messages of a SIPp ``-trace_msg`` file, in order. A missing file is no messages."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    messages: list[TracedMessage] = []
    for chunk in _SEPARATOR.split(text):
        chunk = chunk.strip("\r\n")
        first, _, rest = chunk.partition("\n")
        direction = _DIRECTION.match(first)
        if not direction:
            continue
        raw = rest.lstrip("\r\n").replace("\r\n", "\n")
        head, _, body = raw.partition("\n\n")
        lines = head.split("\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation (RFC 3261 §7.3.1)
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
                continue
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                headers.append((_COMPACT.get(key, key), value.strip()))
        messages.append(
            TracedMessage(
                direction=direction.group(2),
                transport=direction.group(1),
                start_line=lines[0].strip(),
                headers=tuple(headers),
                body=body,
            )
        )
    return messages


def first_requests(messages: Iterable[TracedMessage], method: str) -> list[TracedMessage]:
    """Received requests of one method, one per Call-ID (retransmissions dropped)."""
    seen: set[str | None] = set()
    found: list[TracedMessage] = []
    for message in messages:
        is_new = message.call_id not in seen
        if message.direction == "received" and message.method == method and is_new:
            seen.add(message.call_id)
            found.append(message)
    return found


# --- statistics (-trace_stat) and response times (-trace_rtt) --------------------------------


def read_final_stats(path: Path) -> dict[str, str]:
    """The last line of a ``-trace_stat`` file as {column: value}; {} if there is none.

    Counters ending in ``(C)`` are cumulative, e.g. ``SuccessfulCall(C)``, ``FailedCall(C)``.
    """
    if not path.exists():
        return {}
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].split(";")
    return dict(zip(header, lines[-1].split(";"), strict=False))


def read_rtt(directory: Path) -> dict[str, list[float]]:
    """Response times in ms per rtd name, from the ``*_rtt.csv`` files SIPp wrote there."""
    times: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*_rtt.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                times.setdefault(row["rtd_no"], []).append(float(row["response_time_ms"]))
    return times


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.5 = median); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(max(1, math.ceil(fraction * len(ordered))), len(ordered))
    return ordered[rank - 1]


def stat_int(stats: dict[str, str], column: str) -> int:
    return int(stats.get(column, "0") or 0)


# --- processes -------------------------------------------------------------------------------


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path.name}: not written)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class SippProcess:
    """One SIPp instance running in the foreground in its own working folder."""

    name: str
    scenario: Path
    workdir: Path
    args: list[str]
    process: subprocess.Popen[bytes]

    @property
    def message_file(self) -> Path:
        return self.workdir / "messages.log"

    @property
    def stat_file(self) -> Path:
        return self.workdir / "stat.csv"

    @property
    def error_file(self) -> Path:
        return self.workdir / "errors.log"

    @property
    def stderr_file(self) -> Path:
        return self.workdir / "stderr.log"

    def messages(self) -> list[TracedMessage]:
        return parse_message_trace(self.message_file)

    def received_invites(self) -> list[TracedMessage]:
        """INVITEs this instance received, one per Call-ID."""
        return first_requests(self.messages(), "INVITE")

    def stats(self) -> dict[str, str]:
        return read_final_stats(self.stat_file)

    def wait(self, timeout_s: float) -> int:
        """Wait for SIPp to end by itself (``-m`` reached); kill it if it does not."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self, timeout_s: float = 5.0) -> int:
        """Ask SIPp to quit (SIGINT: it writes its final statistics and traces), then force."""
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s / 3)
            except subprocess.TimeoutExpired:
                continue
        return self.process.wait()

    def failure_report(self) -> str:
        return (
            f"--- SIPp {self.name} ({self.scenario.name}), exit {self.process.poll()}\n"
            f"command: {' '.join(self.args)}\n"
            f"stderr:\n{tail(self.stderr_file, 20)}\n"
            f"errors:\n{tail(self.error_file, 40)}"
        )


@dataclass
class UacResult:
    """What a SIPp UAC run left behind."""

    sipp: SippProcess
    returncode: int
    stats: dict[str, str]
    response_times_ms: dict[str, list[float]]

    @property
    def successful_calls(self) -> int:
        return stat_int(self.stats, "SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        return stat_int(self.stats, "FailedCall(C)")

    def messages(self) -> list[TracedMessage]:
        return self.sipp.messages()

    def summary(self) -> str:
        lines = [
            f"exit {self.returncode}, {self.successful_calls} successful, "
            f"{self.failed_calls} failed calls",
        ]
        for rtd, values in sorted(self.response_times_ms.items()):
            lines.append(
                f"rtd {rtd}: n={len(values)} p50={percentile(values, 0.5):.0f} ms "
                f"p99={percentile(values, 0.99):.0f} ms max={max(values):.0f} ms"
            )
        return "\n".join(lines)


@dataclass
class SippFleet:
    """Starts SIPp instances under one folder and stops whatever is still running at the end."""

    root: Path
    binary: str
    started: list[SippProcess] = field(default_factory=list)
    taken_ports: set[int] = field(default_factory=set)

    def _allocate(self, span: int) -> int:
        """A free port P with P..P+span-1 not handed out before by this fleet.

        Ports from ``free_port()`` are only free until someone binds them; SIPps starting
        side by side must not be given the same one (the kernel may return a released
        port again), so the fleet remembers what it handed out.
        """
        while True:
            port = free_media_port() if span > 1 else free_port()
            wanted = set(range(port, port + span))
            if not wanted & self.taken_ports:
                self.taken_ports |= wanted
                return port

    def _start(
        self, name: str, scenario: str | Path, args: Sequence[str], *, stdout_to_file: bool
    ) -> SippProcess:
        scenario_path = Path(scenario)
        if not scenario_path.is_absolute():
            scenario_path = SCENARIO_DIR / scenario_path
        workdir = self.root / name
        for n in range(1, 1000):
            if not workdir.exists():
                break
            workdir = self.root / f"{name}-{n}"
        workdir.mkdir(parents=True)
        # Own control (-cp) and media (-mp: P and P+2) ports: left to itself, SIPp picks
        # 8888.. and 6000.., and instances starting together collide.
        command = [
            self.binary, "-sf", str(scenario_path), "-i", LOOPBACK, "-nostdin",
            "-cp", str(self._allocate(1)), "-mp", str(self._allocate(4)),
            "-trace_msg", "-message_file", "messages.log",
            "-trace_err", "-error_file", "errors.log",
            "-trace_stat", "-stf", "stat.csv", "-fd", "1",
            *args,
        ]  # fmt: skip
        stdout = (workdir / "screen.log").open("wb") if stdout_to_file else subprocess.DEVNULL
        with (workdir / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                env={**os.environ, "TERM": "dumb"},
            )  # fmt: skip
        if stdout is not subprocess.DEVNULL:
            stdout.close()
        sipp = SippProcess(name, scenario_path, workdir, command, process)
        self.started.append(sipp)
        return sipp

    def start_uas(
        self,
        scenario: str | Path,
        centre_id: str,
        port: int,
        *,
        transport: str = "u1",
        calls: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> SippProcess:
        """A SIPp UAS for one centre on 127.0.0.1:``port``; ``[centre]`` = ``centre_id``.

        With ``calls`` it ends by itself after that many calls (then ``wait()``), without it
        it runs until ``stop()``.
        """
        args = ["-p", str(port), "-t", transport, "-key", "centre", centre_id]
        if calls is not None:
            args += ["-m", str(calls)]
        uas = self._start(
            f"uas-{centre_id}-{port}", scenario, [*args, *extra_args], stdout_to_file=False
        )
        if transport.startswith("t"):
            # A TCP caller started right away would be refused until SIPp has bound its
            # listener (seen on a loaded machine); UDP callers just retransmit.
            _wait_tcp_listening(port, uas, timeout_s=10.0)
        return uas

    def start_centres(
        self, scenario: str | Path, centres: Iterable[tuple[str, int]], *, settle_s: float = 0.5
    ) -> dict[str, SippProcess]:
        """One UAS per (centre_id, port), running until ``stop()``; fails if one of them
        exits at start (its port taken, for instance)."""
        started = {cid: self.start_uas(scenario, cid, port) for cid, port in centres}
        time.sleep(settle_s)
        dead = {cid: uas for cid, uas in started.items() if uas.process.poll() is not None}
        if dead:
            details = "\n".join(uas.failure_report() for uas in dead.values())
            raise AssertionError(f"centre UAS exited at start: {sorted(dead)}\n{details}")
        return started

    def run_uac(
        self,
        scenario: str | Path,
        target_port: int,
        *,
        injection_file: Path,
        calls: int,
        rate_per_s: float = 50,
        max_concurrent: int = 100,
        transport: str = "u1",
        timeout_s: float = 60,
        extra_args: Sequence[str] = (),
        name: str | None = None,
    ) -> UacResult:
        """Run a SIPp UAC against 127.0.0.1:``target_port`` until its ``calls`` calls are done.

        Each call waits at most 10 s for an expected message (``-recv_timeout``), and the
        whole run at most ``timeout_s`` (``-timeout``, then SIPp exits non-zero).
        """
        local_port = self._allocate(1)
        args = [
            "-p", str(local_port), "-t", transport,
            "-inf", str(injection_file),
            "-m", str(calls), "-r", f"{rate_per_s:g}", "-rp", "1000", "-l", str(max_concurrent),
            "-recv_timeout", "10000", "-timeout", f"{int(timeout_s)}", "-timeout_error",
            "-trace_rtt", "-rtt_freq", "1",
            *extra_args,
            f"{LOOPBACK}:{target_port}",
        ]  # fmt: skip
        sipp = self._start(
            name or f"uac-{Path(scenario).stem}-{local_port}", scenario, args, stdout_to_file=True
        )
        try:
            returncode = sipp.process.wait(timeout=timeout_s + 15)
        except subprocess.TimeoutExpired:
            returncode = sipp.stop()
        return UacResult(sipp, returncode, sipp.stats(), read_rtt(sipp.workdir))

    def stop_all(self) -> None:
        for sipp in self.started:
            if sipp.process.poll() is None:
                sipp.stop()

    def failure_report(self) -> str:
        return "\n".join(s.failure_report() for s in self.started if _worth_reporting(s))


def _worth_reporting(sipp: SippProcess) -> bool:
    code = sipp.process.poll()
    errors = sipp.error_file.exists() and sipp.error_file.stat().st_size > 0
    return code not in (0, None) or errors


def write_injection_file(path: Path, rows: Iterable[Sequence[str]]) -> Path:
    """A SEQUENTIAL ``-inf`` file: dialled number; municipality code; caller number; ..."""
    lines = ["SEQUENTIAL"] + [";".join(row) + ";" for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _tcp_listening_ports() -> set[int]:
    """Local ports in LISTEN state, from /proc/net/tcp and tcp6 (no connection made)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # 0A = TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _wait_tcp_listening(port: int, uas: SippProcess, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while port not in _tcp_listening_ports():
        if uas.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"SIPp UAS is not listening on TCP {port}\n"
                                 f"{uas.failure_report()}")
        time.sleep(0.05)
