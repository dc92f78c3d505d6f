"""Emergency calls through a flood: garbage and scanners from strangers while a trunk calls.

    .venv/bin/python loadtests/flood_bench.py [--flood-pps 5000] [--calls-per-s 50]
        [--seconds 10] [--sources 50] [--unknown-source drop|403]
    .venv/bin/python loadtests/flood_bench.py send --port P [--pps 5000] [--seconds 12] ...

Everything on 127.0.0.1/8. The router (``nodrute serve``, UDP, its trunk ``127.0.0.1/32``,
metrics on) routes 113 calls for Oslo to a SIPp ``uas_centre.xml`` (AMK-OSLO); a SIPp UAC
(``uac_emergency.xml``, 1 s hold) places ``--calls-per-s`` calls for ``--seconds`` from the
trunk while a sender process floods the router from ``--sources`` addresses 127.0.0.2... that
are in no trunk: OPTIONS from "friendly-scanner", INVITEs to random numbers, random bytes, in
equal parts, at ``--flood-pps``. Two phases, each on a fresh router: ``calls`` alone (the
baseline), then ``calls + flood``.

Reported per phase: calls offered / successful / failed, INVITE->200 p50/p99 (SIPp rtd), the
garbage actually sent (the sender paces itself and says what it achieved: a Python sender on a
busy 2-core box may not reach the asked rate, and the report says so rather than pretend), the
router's CPU (mean, peak) and RSS (before, peak, after) from /proc, and
``nodrute_rejected_total`` by reason. Output: ``bench-results/flood-<timestamp>.json`` and
``.md`` (both printed).

``send`` is the sender alone (tests/e2e/test_flood_e2e.py runs it as a subprocess): it prints
one JSON object, ``{"sent", "errors", "seconds", "achieved_pps", "asked_pps", "sources"}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import socket
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
TABLE_DIR = REPO / "configs" / "tables" / "sample-2024"

# --- the flood -------------------------------------------------------------------------------


def scanner_options(rng: random.Random, source: str, port: int, target_port: int) -> bytes:
    n = rng.getrandbits(48)
    return (
        f"OPTIONS sip:100@{LOOPBACK}:{target_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK-{n:x};rport\r\n"
        f'From: "sipvicious"<sip:100@1.1.1.1>;tag={n:x}\r\n'
        f"To: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: {n}\r\nCSeq: 1 OPTIONS\r\n"
        "Contact: <sip:100@1.1.1.1>\r\nAccept: application/sdp\r\n"
        "User-Agent: friendly-scanner\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def random_invite(rng: random.Random, source: str, port: int, target_port: int) -> bytes:
    n = rng.getrandbits(48)
    number = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 12)))
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n" \
        b"m=audio 4000 RTP/AVP 0\r\n"
    return (
        f"INVITE sip:{number}@{LOOPBACK}:{target_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{n:x}\r\n"
        f"From: <sip:{number}@{source}>;tag={n:x}\r\nTo: <sip:{number}@{LOOPBACK}>\r\n"
        f"Call-ID: {n:x}@{source}\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{source}:{port}>\r\n"
        f"Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def random_bytes(rng: random.Random, source: str, port: int, target_port: int) -> bytes:
    return rng.randbytes(rng.randint(1, 1400))


KINDS = (scanner_options, random_invite, random_bytes)


@dataclass
class FloodResult:
    sent: int
    errors: int
    seconds: float
    achieved_pps: float
    asked_pps: float
    sources: int


def flood(port: int, pps: float, seconds: float, sources: int, *, seed: int = 9,
          pool: int = 3000) -> FloodResult:
    """Send ``pps`` packets/s for ``seconds`` to 127.0.0.1:``port`` from 127.0.0.2...; paced in
    2 ms slices, never more than 100 ms of catch-up at once (a starved sender does not burst)."""
    rng = random.Random(seed)
    socks = []
    for i in range(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.0.{2 + i % 250}", 0))
        sock.setblocking(False)
        socks.append(sock)
    packets = []
    for i in range(pool):
        sock = socks[i % len(socks)]
        source, source_port = sock.getsockname()
        packets.append((sock, KINDS[i % 3](rng, source, source_port, port)))
    dest = (LOOPBACK, port)
    sent = errors = i = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - start) * pps)
        due = min(due, sent + errors + int(pps * 0.1) + 1)
        while sent + errors < due:
            sock, data = packets[i % pool]
            i += 1
            try:
                sock.sendto(data, dest)
                sent += 1
            except OSError:  # ENOBUFS, or an ICMP error queued on the socket
                errors += 1
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    for sock in socks:
        sock.close()
    return FloodResult(sent, errors, round(elapsed, 2), round(sent / elapsed, 1), pps, sources)


# --- the router, measured --------------------------------------------------------------------


def proc_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB from /proc/<pid>/status."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rejected_by_reason(metrics_port: int) -> dict[str, float]:
    """``nodrute_rejected_total`` by reason from the node's /metrics."""
    url = f"http://{LOOPBACK}:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("nodrute_rejected_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            found[reason] = float(line.rsplit(" ", 1)[1])
    return found


def centre_port(centre_id: str) -> int:
    """The port of ``centre_id``'s first URI in the sample table (sip:x@127.0.0.1:PORT)."""
    with (TABLE_DIR / "centres.csv").open(encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if row["centre_id"] == centre_id:
                return int(row["uris"].split()[0].rsplit(":", 1)[1].split(";", 1)[0])
    raise SystemExit(f"{centre_id} is not in {TABLE_DIR}")


def router_config(path: Path, *, metrics_port: int, unknown_source: str) -> Path:
    database = (path.parent / "nodrute.db").resolve().as_posix()
    path.write_text(f"""\
[sip]
host = "{LOOPBACK}"
port = 5570
transports = ["udp"]

[routing]
table_dir = "{TABLE_DIR.as_posix()}"

[[trunks]]
name = "carrier"
sources = ["127.0.0.1/32"]
municipality_sources = ["header", "uri_param", "prefix"]

[security]
unknown_source = "{unknown_source}"

[log]
level = "WARNING"

[database]
url = "sqlite+aiosqlite:///{database}"

[metrics]
enabled = true
host = "{LOOPBACK}"
port = {metrics_port}

[media]
enabled = false

[health]
enabled = false
""", encoding="utf-8")
    return path


def run_phase(name: str, args: argparse.Namespace, workdir: Path,
              with_flood: bool) -> dict[str, Any]:
    import subprocess
    import threading

    sys.path.insert(0, str(REPO / "loadtests"))
    from bench_processes import PortPool, read_rtt, running_router, sipp_binary, start_sipp

    ports = PortPool()
    metrics_port = ports.take()
    router_port = ports.take()
    (workdir / name).mkdir(parents=True, exist_ok=True)
    config = router_config(workdir / name / "nodrute.toml", metrics_port=metrics_port,
                           unknown_source=args.unknown_source)
    binary = sipp_binary()
    calls = int(args.calls_per_s * args.seconds)
    inf = workdir / name / "calls.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"113;0301;47{n:08d};\n" for n in range(calls)))
    centre = start_sipp(binary, "centre", workdir / name / "centre", "uas_centre.xml", ports,
                        ["-p", str(centre_port("AMK-OSLO")), "-key", "centre", "AMK-OSLO"])
    result: dict[str, Any] = {"phase": name, "calls_offered": calls}
    try:
        with running_router(config, workdir / name / "router", router_port,
                            TABLE_DIR, {}) as router:
            pid = router.pid
            rss_before, _ = proc_rss_kib(pid)
            cpu_before = proc_cpu_seconds(pid)
            samples: list[tuple[float, int]] = []
            stop = threading.Event()

            def sample() -> None:
                last_t, last_cpu = time.monotonic(), proc_cpu_seconds(pid)
                while not stop.wait(0.5):
                    t, cpu = time.monotonic(), proc_cpu_seconds(pid)
                    samples.append((100 * (cpu - last_cpu) / (t - last_t), proc_rss_kib(pid)[0]))
                    last_t, last_cpu = t, cpu

            sampler = threading.Thread(target=sample, daemon=True)
            wall = time.monotonic()
            sampler.start()
            sender = None
            if with_flood:
                sender = subprocess.Popen(
                    [sys.executable, __file__, "send", "--port", str(router_port),
                     "--pps", str(args.flood_pps), "--seconds", str(args.seconds + 3),
                     "--sources", str(args.sources)], stdout=subprocess.PIPE)
                time.sleep(1.0)  # the flood is on before the first call
            uac_dir = workdir / name / "uac"
            uac = start_sipp(binary, "uac", uac_dir, "uac_emergency.xml", ports, [
                "-p", str(ports.take()), "-inf", str(inf), "-m", str(calls),
                "-r", f"{args.calls_per_s:g}", "-rp", "1000", "-l", "1000", "-d", "1000",
                "-recv_timeout", "10000", "-timeout", f"{int(args.seconds + 40)}",
                "-timeout_error", "-trace_rtt", "-rtt_freq", "1", f"{LOOPBACK}:{router_port}",
            ])  # fmt: skip
            uac.process.wait(timeout=args.seconds + 60)
            if sender is not None:
                out, _ = sender.communicate(timeout=60)
                result["flood"] = json.loads(out)
            stop.set()
            sampler.join()
            wall = time.monotonic() - wall
            rss_after, hwm = proc_rss_kib(pid)
            stats = uac.final_stats()
            answer = read_rtt(uac_dir).get("answer", [])
            result.update({
                "successful_calls": int(stats.get("SuccessfulCall(C)", 0)),
                "failed_calls": int(stats.get("FailedCall(C)", 0)),
                "answer_ms_p50": _pct(answer, 0.5), "answer_ms_p99": _pct(answer, 0.99),
                "router_cpu_percent_mean": round(
                    100 * (proc_cpu_seconds(pid) - cpu_before) / wall, 1),
                "router_cpu_percent_peak": round(max((c for c, _ in samples), default=0.0), 1),
                "router_rss_mib_before": round(rss_before / 1024, 1),
                "router_rss_mib_peak": round(max([rss_after, *(r for _, r in samples)]) / 1024, 1),
                "router_rss_mib_after": round(rss_after / 1024, 1),
                "router_rss_mib_hwm": round(hwm / 1024, 1),
                "rejected": rejected_by_reason(metrics_port),
            })  # fmt: skip
    finally:
        centre.stop()
    return result


def _pct(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Flood bench {report['started']}", "",
             f"{report['machine']}; load average at start {report['loadavg']}; "
             f"unknown_source = {report['unknown_source']}", "",
             "| phase | garbage asked/sent pps | calls ok/offered | failed | answer p50/p99 ms "
             "| router CPU mean/peak % | RSS MiB before/peak/after | rejected by reason |",
             "|---|---|---|---|---|---|---|---|"]
    for p in report["phases"]:
        flood_text = (f"{p['flood']['asked_pps']:g} / {p['flood']['achieved_pps']:g}"
                      if "flood" in p else "-")
        rejected = ", ".join(f"{k} {v:g}" for k, v in sorted(p["rejected"].items())) or "-"
        lines.append(
            f"| {p['phase']} | {flood_text} | {p['successful_calls']}/{p['calls_offered']} "
            f"| {p['failed_calls']} | {p['answer_ms_p50']}/{p['answer_ms_p99']} "
            f"| {p['router_cpu_percent_mean']}/{p['router_cpu_percent_peak']} "
            f"| {p['router_rss_mib_before']}/{p['router_rss_mib_peak']}/"
            f"{p['router_rss_mib_after']} | {rejected} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["send"]:
        parser = argparse.ArgumentParser(prog="flood_bench.py send")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--pps", type=float, default=5000)
        parser.add_argument("--seconds", type=float, default=12)
        parser.add_argument("--sources", type=int, default=50)
        sargs = parser.parse_args(argv[1:])
        print(json.dumps(asdict(flood(sargs.port, sargs.pps, sargs.seconds, sargs.sources))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--flood-pps", type=float, default=5000)
    parser.add_argument("--calls-per-s", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--unknown-source", choices=["drop", "403"], default="drop")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    args = parser.parse_args(argv)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = args.out / f"flood-{started}"
    report: dict[str, Any] = {
        "started": started, "machine": f"{platform.node()} {os.cpu_count()} CPUs",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "unknown_source": args.unknown_source, "phases": [],
    }
    for name, with_flood in (("calls", False), ("calls+flood", True)):
        report["phases"].append(run_phase(name, args, workdir, with_flood))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"flood-{started}.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / f"flood-{started}.md").write_text(text)
    print(json.dumps(report, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
