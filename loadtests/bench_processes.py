"""Processes for loadtests/bench.py: free ports, SIPp instances and their statistics files,
the router as a subprocess, and a CPU/RSS sampler for it. Only 127.0.0.1 is ever used."""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "loadtests" / "scenarios"
LOOPBACK = "127.0.0.1"

# --- ports, files ----------------------------------------------------------------------------


class PortPool:
    """Free 127.0.0.1 ports, none handed out twice in one run (SIPps start side by side)."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def take(self, span: int = 1) -> int:
        """A port P with P..P+span-1 free for UDP (and P for TCP) right now."""
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((LOOPBACK, 0))
                port: int = udp.getsockname()[1]
            wanted = set(range(port, port + span))
            if wanted & self.taken or port + span > 65535 or not _all_free(wanted):
                continue
            self.taken |= wanted
            return port
        raise RuntimeError("no free port range on 127.0.0.1")


def _all_free(ports: set[int]) -> bool:
    for port in ports:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    return False
    return True


def udp_rcvbuf_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (Linux)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    except OSError:
        return 0
    udp = [line for line in lines if line and line[0] == "Udp:"]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


# --- SIPp ------------------------------------------------------------------------------------


def sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise SystemExit("sipp is not installed (Debian package sip-tester; `make deps`)")
    return found


def sipp_version(binary: str) -> str:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"SIPp v\S+", out)
    return match.group(0) if match else out.strip()[:80]


def read_stat_lines(path: Path) -> list[dict[str, str]]:
    """Every line of a ``-trace_stat`` file as {column: value}."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return []
    header = lines[0].split(";")
    return [dict(zip(header, line.split(";"), strict=False)) for line in lines[1:]]


def stat_int(stats: dict[str, str], column: str) -> int:
    value = stats.get(column, "") or "0"
    return int(value) if value.isdigit() else 0


def read_rtt(directory: Path) -> dict[str, list[float]]:
    """Response times in ms per timer name from the ``*_rtt.csv`` files SIPp wrote there;
    ``<name>_at`` holds when each was measured (ms since SIPp started), in the same order."""
    times: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*_rtt.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                try:
                    value, at = float(row["response_time_ms"]), float(row["Date_ms"])
                except (KeyError, TypeError, ValueError):
                    continue  # a line cut short when SIPp was stopped
                times.setdefault(row["rtd_no"], []).append(value)
                times.setdefault(f"{row['rtd_no']}_at", []).append(at)
    return times


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(max(1, math.ceil(fraction * len(ordered))), len(ordered))
    return ordered[rank - 1]


@dataclass
class Sipp:
    """One SIPp process in the foreground, in its own folder."""

    name: str
    workdir: Path
    command: list[str]
    process: subprocess.Popen[bytes]

    def stop(self) -> int:
        """SIGINT (SIPp writes its final statistics), then harder if it does not go."""
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                continue
        return self.process.wait()

    def final_stats(self) -> dict[str, str]:
        lines = read_stat_lines(self.workdir / "stat.csv")
        return lines[-1] if lines else {}


def start_sipp(
    binary: str, name: str, workdir: Path, scenario: str, ports: PortPool, args: Sequence[str],
    *, media_port: int | None = None,
) -> Sipp:
    """SIPp in ``workdir``; ``media_port`` (-mp, default: a free block of 4) when the caller
    needs to know it (the media bench's scenarios put their RTP at media port + 4)."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        binary, "-sf", str(SCENARIOS / scenario), "-i", LOOPBACK, "-nostdin",
        "-cp", str(ports.take()), "-mp", str(media_port or ports.take(4)),
        "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        "-trace_err", "-error_file", "errors.log",
        *args,
    ]  # fmt: skip
    with (workdir / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=stderr, env={**os.environ, "TERM": "dumb"},
        )  # fmt: skip
    return Sipp(name, workdir, command, process)


# --- the router ------------------------------------------------------------------------------


def router_command(config: Path) -> list[str]:
    script = Path(sys.executable).with_name("nodrute")
    if script.exists():
        return [str(script), "serve", "--config", str(config)]
    return [sys.executable, "-m", "router", "serve", "--config", str(config)]


def send_options(port: int, timeout_s: float = 0.3) -> str | None:
    """One OPTIONS over UDP; the final response's text, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local = sock.getsockname()[1]
        token = uuid.uuid4().hex[:16]
        request = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK{token};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:bench@{LOOPBACK}>;tag={token}\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\nCall-ID: {token}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout_s)
        try:
            sock.sendto(request.encode(), (LOOPBACK, port))
            while True:
                data = sock.recv(65535).decode("utf-8", errors="replace")
                if not data.startswith("SIP/2.0 1"):
                    return data
        except OSError:
            return None


def wait_until_answering(server: Router, name: str, *, timeout_s: float, poll_s: float) -> None:
    """Block until ``server`` answers an OPTIONS with 200; SystemExit with its log otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            raise SystemExit(f"{name} exited at start:\n{server.log_text()[-3000:]}")
        answer = send_options(server.port)
        if answer is not None and answer.startswith("SIP/2.0 200"):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not answer OPTIONS:\n{server.log_text()[-3000:]}")
        time.sleep(poll_s)


@dataclass
class Router:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def uvloop_on(self) -> bool:
        """uvloop's extension is loaded in the router, and it did not say it fell back."""
        try:
            maps = Path(f"/proc/{self.pid}/maps").read_text()
        except OSError:
            maps = ""
        return "uvloop/loop" in maps and "uvloop not installed" not in self.log_text()


@contextmanager
def running_router(
    config: Path, workdir: Path, port: int, table_dir: Path, extra_env: dict[str, str]
) -> Iterator[Router]:
    """``nodrute serve --config config`` on ``port`` with ``table_dir``, answering OPTIONS;
    SIGTERM at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODRUTE__")}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "NODRUTE__SIP__PORT": str(port),
        "NODRUTE__ROUTING__TABLE_DIR": str(table_dir),
        **extra_env,
    })  # fmt: skip
    log_path = workdir / "router.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            router_command(config), cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    router = Router(port, process, log_path)
    try:
        wait_until_answering(router, "the router", timeout_s=30, poll_s=0.1)
        yield router
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class ProcessSampler:
    """CPU and RSS of a process and its children (Kamailio forks workers), sampled in a thread
    while a step runs. RSS is summed over the processes, so shared memory counts per process."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        root = psutil.Process(pid)
        self.processes = [root, *root.children(recursive=True)]
        self.interval_s = interval_s
        self.rss: list[int] = []
        self.cpu_percent: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self.rss_before = self._rss()
        self.cpu_before = self._cpu_seconds()
        self.wall_before = time.monotonic()
        for process in self.processes:
            process.cpu_percent(None)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_seconds = self._cpu_seconds() - self.cpu_before
        self.wall_seconds = time.monotonic() - self.wall_before
        self.rss_after = self._rss()

    def _rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes)

    def _cpu_seconds(self) -> float:
        return sum(float(t.user + t.system) for t in (p.cpu_times() for p in self.processes))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.rss.append(self._rss())
                self.cpu_percent.append(sum(p.cpu_percent(None) for p in self.processes))
            except psutil.Error:
                return

    def figures(self) -> dict[str, float]:
        mib = 1024 * 1024
        return {
            "router_cpu_percent_mean": round(100 * self.cpu_seconds / self.wall_seconds, 1),
            "router_cpu_percent_peak": round(max(self.cpu_percent, default=0.0), 1),
            "router_rss_mib_before": round(self.rss_before / mib, 1),
            "router_rss_mib_peak": round(max([*self.rss, self.rss_after]) / mib, 1),
            "router_rss_mib_after": round(self.rss_after / mib, 1),
        }


def copy_table_with_uris(source: Path, target: Path,
                         uris_for: Callable[[str, str], str]) -> Path:
    """Copy the routing table to ``target``; each centre's ``uris`` becomes
    ``uris_for(centre_id, uris)`` (the bench's and tests' ports, closed ports …)."""
    shutil.copytree(source, target)
    path = target / "centres.csv"
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        fieldnames = list(reader.fieldnames or [])
        rows = list(reader)
    for row in rows:
        row["uris"] = uris_for(row["centre_id"], row["uris"])
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target
