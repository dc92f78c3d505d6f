"""The load bench: how many calls per second the router carries, next to a SIPp-only ceiling.

``make bench`` runs it with the defaults; ``.venv/bin/python loadtests/bench.py --help`` lists
the flags. One run, everything on 127.0.0.1:

1. **Router ramp.** Starts ``nodrute serve --config configs/bench.toml`` (log level WARNING,
   UDP, its own port) on a copy of the sample table whose centres point at the bench's own
   ports, and one SIPp UAS (``uas_centre.xml``) per centre that the call mix reaches: 20
   municipalities, 113 calls to the two AMKs and 116117 calls to the two legevaktsentraler
   with the most municipalities, so four UAS processes (idle SIPps poll and burn CPU, so
   fewer of them = fairer numbers). A SIPp UAC (``uac_emergency.xml``) then places calls at
   each rate of ``--rates`` for ``--step-s`` seconds, hold time ``--hold-ms``. The UAS
   processes are started afresh for each step (their statistics are per step), the router
   stays up for the whole ramp. The ramp stops after the first step with a failed call
   (``--keep-going`` runs every step).
2. **Ceiling.** The same steps with the UAC pointed straight at one of the same four UAS
   processes (no router): what SIPp itself manages on this machine. Ratios router/ceiling
   per step.
3. **Held calls** (``--held-rate``, ``--held-hold-s``; ``--no-held`` skips it): a fresh router,
   calls with a long hold time at a moderate rate until ``rate x hold`` calls are up at
   once; reports the peak of concurrent calls and the router's RSS growth per held call.

The media section (bench_media.py), the caller-location section (bench_location.py:
geo_bench.py lookup times, location_parse_bench.py parse times, no SIPp) and the failover
section (failover_bench.py: the time each kind of primary-centre failure adds before the
backup answers) follow; ``--only calls|media|location|failover``, ``--no-media``,
``--no-location``, ``--no-failover``.

Per step it records calls/s achieved (successful calls / the longer of the step's length and
the time of the last 200 OK), failed calls (by SIPp's reason), retransmissions (UAC and UAS),
response times p50/p95/p99/max from ``-trace_rtt`` for INVITE->100 (``trying``), INVITE->180
(``ringing``) and INVITE->200 (``answer``), the peak of concurrent calls (SIPp's
``CurrentCall``, sampled every second), and the router's CPU (mean over the step, 100 % = one
core) and RSS (psutil, sampled every 0.25 s). ``--repeat N`` runs each step N times; the
tables quote medians, a step counts as zero-failure only if every repeat was.

Output: ``bench-results/bench-<timestamp>.json`` (every raw figure and the environment:
CPUs, load average, Python, uvloop in the router, SIPp version, git commit) and
``bench-results/bench-<timestamp>.md`` (also printed). SIPp's own files of a run stay in
``bench-results/work-<timestamp>/`` with ``--keep-work``.

Whether the router runs on uvloop is read from the router process itself: uvloop's
extension module must be mapped into it (``/proc/<pid>/maps``), and the router must not have
logged "uvloop not installed".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_kamailio import kamailio_binary, kamailio_version, running_kamailio
from bench_location import markdown_location, run_location_section
from bench_media import (
    DEFAULT_BRIDGED_STEPS,
    DEFAULT_IVR_STEPS,
    markdown_media,
    run_media_section,
)
from bench_processes import (
    LOOPBACK,
    REPO,
    PortPool,
    ProcessSampler,
    Router,
    Sipp,
    copy_table_with_uris,
    percentile,
    read_rtt,
    read_stat_lines,
    running_router,
    sipp_binary,
    sipp_version,
    start_sipp,
    stat_int,
    udp_rcvbuf_errors,
)
from failover_bench import markdown as failover_markdown
from failover_bench import parse_args as failover_parse_args
from failover_bench import run_failover_section

BENCH_CONFIG = REPO / "configs" / "bench.toml"
# SIPp's socket buffers default to 64 KiB; at 1000+ calls/s its own sockets overflow. 4 MiB
# (the kernel caps it at net.core.rmem_max) keeps the load generator from dropping datagrams.
SIPP_BUFFERS = ("-buff_size", str(4 * 1024 * 1024))
SAMPLE_TABLE = REPO / "configs" / "tables" / "sample-2024"
RTDS = ("trying", "ringing", "answer")
DEFAULT_RATES = "200,400,600,800,1000,1200,1500"
FAILURE_COLUMNS = (
    "FailedTimeoutOnRecv(C)", "FailedUnexpectedMessage(C)", "FailedMaxUDPRetrans(C)",
    "FailedCannotSendMessage(C)", "FailedCallRejected(C)",
)  # fmt: skip


@dataclass(frozen=True)
class BenchCentre:
    centre_id: str
    service: str
    port: int


@dataclass(frozen=True)
class CallMix:
    rows: list[tuple[str, str, str]]
    """(dialled, municipality code, caller) per injection line."""
    centres: list[BenchCentre]
    """The centres these calls reach, with the port the bench gives each."""


def choose_call_mix(
    table_dir: Path, ports: PortPool, *, centres_per_service: int = 2, per_centre: int = 5
) -> CallMix:
    """Calls to the ``centres_per_service`` AMKs (113) and legevaktsentraler (116117) that
    serve the most municipalities, ``per_centre`` municipalities each, read from the table's
    CSV files (deterministic: same table, same mix)."""
    with (table_dir / "municipalities.csv").open(encoding="utf-8-sig", newline="") as f:
        municipalities = list(csv.DictReader(f))
    rows: list[tuple[str, str, str]] = []
    centres: list[BenchCentre] = []
    for service, column in (("113", "amk_id"), ("116117", "lvs_id")):
        by_centre: dict[str, list[str]] = {}
        for row in municipalities:
            by_centre.setdefault(row[column].strip(), []).append(row["kommunenummer"].strip())
        ranked = sorted(by_centre.items(), key=lambda item: (-len(item[1]), item[0]))
        for centre_id, codes in ranked[:centres_per_service]:
            centres.append(BenchCentre(centre_id, service, ports.take()))
            for code in sorted(codes)[:per_centre]:
                rows.append((service, code, f"+479{len(rows) + 1:07d}"))
    # Interleave services and centres so that every second of calls hits every centre.
    rows = [rows[i] for k in range(per_centre) for i in range(k, len(rows), per_centre)]
    return CallMix(rows, centres)


def write_bench_table(source: Path, target: Path, centres: Sequence[BenchCentre]) -> Path:
    """Copy the routing table, pointing the bench centres at the bench's ports."""
    port_of = {c.centre_id: c.port for c in centres}

    def uris_for(centre_id: str, uris: str) -> str:
        port = port_of.get(centre_id)
        if port is None:
            return uris
        return re.sub(r"@[^;>]+", f"@{LOOPBACK}:{port}", uris.split()[0], count=1)

    return copy_table_with_uris(source, target, uris_for)


def write_injection_file(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    lines = ["SEQUENTIAL", *(";".join(row) + ";" for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- one step --------------------------------------------------------------------------------


@dataclass
class StepResult:
    """Everything measured in one step (one rate, one target, one repeat)."""

    target: str
    rate: float
    repeat: int
    hold_ms: int
    calls_offered: int
    successful_calls: int
    failed_calls: int
    failures_by_reason: dict[str, int]
    uac_exit: int
    uac_seconds: float
    achieved_cps: float
    retransmissions_uac: int
    retransmissions_uas: int
    peak_concurrent_calls: int
    response_ms: dict[str, dict[str, float | None]]
    router: dict[str, float] = field(default_factory=dict)
    uas_failed_calls: int = 0
    udp_rcvbuf_errors: int = 0
    """Datagrams the kernel dropped because a UDP socket's receive buffer was full, during
    the step, machine-wide (/proc/net/snmp RcvbufErrors): the router's, SIPp's, or others'."""

    @property
    def zero_failures(self) -> bool:
        return self.failed_calls == 0 and self.successful_calls == self.calls_offered


@dataclass
class Bench:
    binary: str
    workdir: Path
    ports: PortPool
    mix: CallMix
    calls_file: Path
    table_dir: Path
    recv_timeout_ms: int
    router_env: dict[str, str]

    def _drive(
        self, step_dir: Path, calls: int, rate: float, hold_ms: int, seconds: float,
        router: Router | None, started_sipps: list[Sipp],
    ) -> tuple[list[Sipp], Sipp, int, float, ProcessSampler | None, int]:
        """Start the centres, run the UAC to its end, stop the centres."""
        centres: list[Sipp] = []
        for c in self.mix.centres:
            args = ["-p", str(c.port), "-t", "u1", "-key", "centre", c.centre_id, *SIPP_BUFFERS]
            centres.append(start_sipp(
                self.binary, c.centre_id, step_dir / f"uas-{c.centre_id}", "uas_centre.xml",
                self.ports, args,
            ))  # fmt: skip
            started_sipps.append(centres[-1])
        time.sleep(0.5)
        dead = [c.name for c in centres if c.process.poll() is not None]
        if dead:
            raise SystemExit(f"centre SIPp exited at start (port taken?): {dead} in {step_dir}")
        destination = router.port if router is not None else self.mix.centres[0].port
        # Room for every call of the step at once, under SIPp's open-files check (20000).
        concurrent_limit = min(19000, max(1000, int(rate * (hold_ms / 1000 + 3) * 1.2)))
        timeout_s = int(seconds + hold_ms / 1000 + self.recv_timeout_ms / 1000 + 30)
        uac_args = [
            "-p", str(self.ports.take()), "-t", "u1", "-inf", str(self.calls_file),
            "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000", "-l", str(concurrent_limit),
            "-d", str(hold_ms), "-recv_timeout", str(self.recv_timeout_ms),
            "-timeout", str(timeout_s), "-timeout_error",
            "-trace_rtt", "-rtt_freq", "100", *SIPP_BUFFERS,
            f"{LOOPBACK}:{destination}",
        ]  # fmt: skip
        sampler = ProcessSampler(router.pid) if router is not None else None
        drops_before = udp_rcvbuf_errors()
        started = time.monotonic()
        if sampler is not None:
            sampler.__enter__()
        uac = start_sipp(
            self.binary, "uac", step_dir / "uac", "uac_emergency.xml", self.ports, uac_args
        )
        started_sipps.append(uac)
        try:
            uac_exit = uac.process.wait(timeout=timeout_s + 15)
        except subprocess.TimeoutExpired:
            uac_exit = uac.stop()
        uac_seconds = time.monotonic() - started
        if sampler is not None:
            sampler.__exit__(None, None, None)
        drops = udp_rcvbuf_errors() - drops_before
        for centre in centres:
            centre.stop()
        return centres, uac, uac_exit, uac_seconds, sampler, drops

    def run_step(
        self, target: str, rate: float, seconds: float, hold_ms: int, repeat: int,
        router: Router | None,
    ) -> StepResult:
        """Fresh UAS processes for the bench centres, one UAC run, the figures."""
        step_dir = self.workdir / f"{target}-{rate:g}-h{hold_ms}-r{repeat}"
        calls = max(1, round(rate * seconds))
        started_sipps: list[Sipp] = []
        try:
            centres, uac, uac_exit, uac_seconds, sampler, drops = self._drive(
                step_dir, calls, rate, hold_ms, seconds, router, started_sipps
            )
        finally:  # never leave a SIPp behind, also on Ctrl-C or an error
            for sipp in started_sipps:
                sipp.stop()
        stat_lines = read_stat_lines(uac.workdir / "stat.csv")
        final = stat_lines[-1] if stat_lines else {}
        uas_finals = [c.final_stats() for c in centres]
        successful = stat_int(final, "SuccessfulCall(C)")
        times = read_rtt(uac.workdir)
        # Calls answered per second of offered time: the step lasts calls/rate, or longer if
        # the last 200 OK came later (by SIPp's clock; -trace_rtt stamps ms since its start).
        last_answer_s = max(times.get("answer_at", [0.0])) / 1000
        run_seconds = max(calls / rate, last_answer_s)
        return StepResult(
            target=target, rate=rate, repeat=repeat, hold_ms=hold_ms,
            calls_offered=calls, successful_calls=successful,
            failed_calls=calls - successful,
            failures_by_reason={
                col.removesuffix("(C)"): stat_int(final, col)
                for col in FAILURE_COLUMNS if stat_int(final, col)
            },
            uac_exit=uac_exit, uac_seconds=round(uac_seconds, 3),
            achieved_cps=round(successful / run_seconds, 1) if run_seconds > 0 else 0.0,
            retransmissions_uac=stat_int(final, "Retransmissions(C)"),
            retransmissions_uas=sum(stat_int(s, "Retransmissions(C)") for s in uas_finals),
            peak_concurrent_calls=max((stat_int(s, "CurrentCall") for s in stat_lines),
                                      default=0),
            response_ms={
                rtd: {
                    "n": len(times.get(rtd, [])),
                    "p50": percentile(times.get(rtd, []), 0.50),
                    "p95": percentile(times.get(rtd, []), 0.95),
                    "p99": percentile(times.get(rtd, []), 0.99),
                    "max": max(times.get(rtd, []), default=None),
                }
                for rtd in RTDS
            },
            router=sampler.figures() if sampler is not None else {},
            uas_failed_calls=sum(stat_int(s, "FailedCall(C)") for s in uas_finals),
            udp_rcvbuf_errors=drops,
        )  # fmt: skip


# --- aggregation and report ------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(results: Sequence[StepResult]) -> dict[str, Any]:
    """Medians over the repeats of one (target, rate) step; zero failures only if all were."""
    first = results[0]
    summary: dict[str, Any] = {
        "target": first.target, "rate": first.rate, "hold_ms": first.hold_ms,
        "repeats": len(results),
        "zero_failures": all(r.zero_failures for r in results),
        "failed_calls_total": sum(r.failed_calls for r in results),
    }  # fmt: skip
    for name in (
        "calls_offered", "successful_calls", "failed_calls", "achieved_cps",
        "retransmissions_uac", "retransmissions_uas", "peak_concurrent_calls",
        "udp_rcvbuf_errors",
    ):
        summary[name] = _median([getattr(r, name) for r in results])
    summary["response_ms"] = {
        rtd: {q: _median([r.response_ms[rtd][q] for r in results])
              for q in ("p50", "p95", "p99", "max")}
        for rtd in RTDS
    }  # fmt: skip
    summary["router"] = {
        key: _median([r.router.get(key) for r in results]) for key in first.router
    }
    return summary


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _triple(resp: dict[str, float | None]) -> str:
    return "/".join(_fmt(resp[q]) for q in ("p50", "p95", "p99"))


def highest_clean_rate(summaries: Sequence[dict[str, Any]]) -> float | None:
    """The highest rate of a ramp below which (and at which) every step had zero failures."""
    best = None
    for summary in sorted(summaries, key=lambda s: s["rate"]):
        if not summary["zero_failures"]:
            break
        best = summary["rate"]
    return best


def markdown_report(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# nodrute bench {report['started_at']}",
        "",
        f"{env['cpu_count']} CPUs, load average before {env['loadavg_before']}, after "
        f"{env['loadavg_after']}; Python {env['python']}; uvloop in the router: "
        f"**{ {True: 'on', False: 'off'}.get(env['router_uvloop'], 'not run')}**; "
        f"{env['sipp_version']}; "
        f"commit {env['git_commit']}{' (dirty)' if env['git_dirty'] else ''}.",
    ]
    if report["parameters"]["calls"]:
        lines += _markdown_calls(report)
    if report.get("media"):
        lines += markdown_media(report["media"])
    if report.get("location"):
        lines += markdown_location(report["location"])
    if report.get("failover"):
        lines += ["", *failover_markdown(report["failover"]).replace(
            "# Failover bench", "## Failover (loadtests/failover_bench.py)").splitlines()]
    return "\n".join(lines) + "\n"


def _markdown_calls(report: dict[str, Any]) -> list[str]:
    params = report["parameters"]
    lines = [
        f"Steps of {params['step_s']:g} s, hold {params['hold_ms']} ms, "
        f"{params['repeat']} repeat(s) (medians), {len(report['call_mix']['centres'])} centre "
        f"UAS, {len(report['call_mix']['rows'])} municipalities in the mix. Times in ms "
        "(p50/p95/p99), SIPp's clock has ~1-4 ms steps.",
        "",
        "| calls/s offered | router ok/s | failed | retrans | UDP drops | INVITE→100 | "
        "INVITE→180 | "
        "INVITE→200 | peak calls | router CPU % | router RSS MiB | ceiling ok/s | ceiling "
        "failed | ceiling INVITE→180 | ok/s router/ceiling |",
        "|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    ceilings = {s["rate"]: s for s in report["steps"]["ceiling"]}
    for summary in report["steps"]["router"]:
        ceiling = ceilings.get(summary["rate"])
        resp = summary["response_ms"]
        ratio = (
            summary["achieved_cps"] / ceiling["achieved_cps"]
            if ceiling and ceiling["achieved_cps"] else None
        )
        lines.append(
            f"| {summary['rate']:g} | {_fmt(summary['achieved_cps'])} | "
            f"{_fmt(summary['failed_calls'])} | "
            f"{_fmt(summary['retransmissions_uac'])}+{_fmt(summary['retransmissions_uas'])} | "
            f"{_fmt(summary['udp_rcvbuf_errors'])} | {_triple(resp['trying'])} | "
            f"{_triple(resp['ringing'])} | "
            f"{_triple(resp['answer'])} | {_fmt(summary['peak_concurrent_calls'])} | "
            f"{_fmt(summary['router'].get('router_cpu_percent_mean'))} | "
            f"{_fmt(summary['router'].get('router_rss_mib_peak'), 1)} | "
            + (
                f"{_fmt(ceiling['achieved_cps'])} | {_fmt(ceiling['failed_calls'])} | "
                f"{_triple(ceiling['response_ms']['ringing'])} | "
                if ceiling else "- | - | - | "
            )
            + f"{_fmt(ratio, 2)} |"
        )
    kamailio = report["steps"]["kamailio"]
    if kamailio:
        routers = {s["rate"]: s for s in report["steps"]["router"]}
        lines += [
            "",
            "Peer baseline, Kamailio (stateful proxy, htable lookup; CPU and RSS summed over "
            "its processes):",
            "",
            "| calls/s offered | kamailio ok/s | failed | retrans | INVITE→180 | INVITE→200 | "
            "kamailio CPU % | ok/s router/kamailio |",
            "|---:|---:|---:|---:|---|---|---:|---:|",
        ]
        for summary in kamailio:
            router_step = routers.get(summary["rate"])
            ratio = (
                router_step["achieved_cps"] / summary["achieved_cps"]
                if router_step and summary["achieved_cps"] else None
            )
            lines.append(
                f"| {summary['rate']:g} | {_fmt(summary['achieved_cps'])} | "
                f"{_fmt(summary['failed_calls'])} | "
                f"{_fmt(summary['retransmissions_uac'])}+{_fmt(summary['retransmissions_uas'])}"
                f" | {_triple(summary['response_ms']['ringing'])} | "
                f"{_triple(summary['response_ms']['answer'])} | "
                f"{_fmt(summary['router'].get('router_cpu_percent_mean'))} | {_fmt(ratio, 2)} |"
            )
    ok = report["highest_zero_failure_rate"]
    lines += [
        "",
        f"Highest rate with zero failures: router **{_fmt(ok['router'])}** calls/s, "
        f"ceiling (SIPp→SIPp) {_fmt(ok['ceiling'])} calls/s"
        + (f", kamailio {_fmt(ok['kamailio'])} calls/s" if kamailio else "")
        + " (of the rates tried). "
        "Retransmissions: caller+centres. UDP drops: datagrams dropped machine-wide for a "
        "full socket receive buffer during the step (/proc/net/snmp RcvbufErrors).",
    ]
    held = report.get("held")
    if held:
        lines += [
            "",
            f"Held calls: {held['rate']:g} calls/s with {held['hold_ms'] / 1000:g} s hold: peak "
            f"**{held['peak_concurrent_calls']}** concurrent calls, {held['failed_calls']} "
            f"failed; router RSS {held['router']['router_rss_mib_before']} → "
            f"{held['router']['router_rss_mib_peak']} MiB, "
            f"**{_fmt(held['rss_kib_per_held_call'], 1)} KiB per held call**; router CPU "
            f"{held['router']['router_cpu_percent_mean']} %.",
        ]
    return lines


# --- environment -----------------------------------------------------------------------------


def git_state() -> tuple[str, bool]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return commit, dirty


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ramp SIPp calls through the router and straight SIPp→SIPp (the ceiling).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rates", default=DEFAULT_RATES, help="calls/s per step, comma-separated")
    parser.add_argument("--step-s", type=float, default=10.0, help="seconds of calls per step")
    parser.add_argument("--hold-ms", type=int, default=0, help="hold time of each call (-d)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per step (medians reported)")
    parser.add_argument("--keep-going", action="store_true",
                        help="run every rate even after a step with failures")
    parser.add_argument("--no-ceiling", action="store_true", help="skip SIPp→SIPp steps")
    parser.add_argument("--no-held", action="store_true", help="skip the held-calls run")
    parser.add_argument("--with-kamailio", action="store_true",
                        help="also ramp Debian's kamailio as a stateful proxy (peer baseline)")
    parser.add_argument("--held-rate", type=float, default=400.0,
                        help="calls/s of the held-calls run")
    parser.add_argument("--held-hold-s", type=float, default=26.0,
                        help="hold time in the held-calls run (peak = rate x hold)")
    parser.add_argument("--router-port", type=int, default=None,
                        help="router port (default: configs/bench.toml's; 0 = any free)")
    parser.add_argument("--recv-timeout-ms", type=int, default=10000,
                        help="a call fails if an expected message is this late")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results",
                        help="folder for bench-<timestamp>.json/.md")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep SIPp's and the router's files in <out>/work-<timestamp>")
    media = parser.add_argument_group("media (loadtests/bench_media.py)")
    media.add_argument("--only", choices=("calls", "media", "location", "failover"),
                       default=None,
                       help="run only the call bench (ramp, ceiling, held), the media, the "
                       "caller-location micro-benchmarks or the failover times")
    media.add_argument("--no-media", action="store_true", help="skip the media section")
    media.add_argument("--ivr-steps", default=DEFAULT_IVR_STEPS,
                       help="concurrent IVR sessions (116117 callers hearing the greeting)")
    media.add_argument("--bridged-steps", default=DEFAULT_BRIDGED_STEPS,
                       help="concurrent bridged 113 calls (RTP both ways through the router)")
    media.add_argument("--media-rate", type=float, default=300.0,
                       help="calls/s at which a media step's calls are set up")
    media.add_argument("--media-settle-s", type=float, default=1.5,
                       help="wait after the last call is set up before measuring")
    media.add_argument("--media-window-s", type=float, default=5.0,
                       help="measured window with every call of the step up")
    media.add_argument("--media-baseline-s", type=float, default=4.0,
                       help="media_bench.py measure time per mode (0 = no engine baseline)")
    media.add_argument("--media-keep-going", action="store_true",
                       help="run every media step even after a failing one")
    location = parser.add_argument_group("caller location (loadtests/bench_location.py)")
    location.add_argument("--no-location", action="store_true",
                          help="skip geo_bench.py and location_parse_bench.py")
    location.add_argument("--geo-points", type=int, default=100_000,
                          help="random points per geo_bench.py lookup series")
    failover = parser.add_argument_group("failover times (loadtests/failover_bench.py)")
    failover.add_argument("--no-failover", action="store_true",
                          help="skip the failover section")
    failover.add_argument("--failover-calls", type=int, default=100,
                          help="calls per failure type at 100 calls/s")
    args = parser.parse_args(argv)
    if args.only == "media" and args.no_media:
        parser.error("--only media and --no-media exclude each other")
    return args


def config_port() -> int:
    import tomllib

    with BENCH_CONFIG.open("rb") as f:
        return int(tomllib.load(f)["sip"]["port"])


def media_section(
    args: argparse.Namespace, binary: str, workdir: Path, ports: PortPool,
    router_env: dict[str, str], log: Callable[[str], None],
) -> dict[str, Any]:
    """The media part (bench_media.py) on its own table copy: one AMK for the bridged 113
    calls (a SIPp centre), one legevaktsentral for 116117 (never called: the callers hang up
    during the greeting, and a call that got routed would fail)."""
    mix = choose_call_mix(SAMPLE_TABLE, ports, centres_per_service=1, per_centre=5)
    workdir.mkdir(parents=True, exist_ok=True)
    table_dir = write_bench_table(SAMPLE_TABLE, workdir / "table", mix.centres)
    amk = next(c for c in mix.centres if c.service == "113")
    env = {**router_env, "NODRUTE__METRICS__PORT": str(ports.take()),
           "NODRUTE__DATABASE__URL": f"sqlite+aiosqlite:///{(workdir / 'records.db').resolve()}"}
    steps = {name: [int(n) for n in value.split(",") if n.strip()]
             for name, value in (("ivr", args.ivr_steps), ("bridged", args.bridged_steps))}
    section = run_media_section(
        binary=binary, workdir=workdir, ports=ports, base_config=BENCH_CONFIG,
        table_dir=table_dir, centre_id=amk.centre_id, centre_port=amk.port,
        ivr_calls_file=write_injection_file(
            workdir / "calls-116117.csv", [r for r in mix.rows if r[0] == "116117"]),
        bridged_calls_file=write_injection_file(
            workdir / "calls-113.csv", [r for r in mix.rows if r[0] == "113"]),
        router_env=env, ivr_steps=steps["ivr"], bridged_steps=steps["bridged"],
        rate=args.media_rate, settle_s=args.media_settle_s, window_s=args.media_window_s,
        baseline_s=args.media_baseline_s, log=log, keep_going=args.media_keep_going,
    )  # fmt: skip
    section["call_mix"] = {"rows": [list(r) for r in mix.rows],
                           "centres": [asdict(c) for c in mix.centres]}
    return section


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the finally blocks stop every SIPp and the router.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    binary = sipp_binary()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"work-{stamp}"
    workdir.mkdir()
    ports = PortPool()
    router_port = config_port() if args.router_port is None else args.router_port
    if router_port == 0:
        router_port = ports.take()
    ports.taken.add(router_port)
    mix = choose_call_mix(SAMPLE_TABLE, ports)
    table_dir = write_bench_table(SAMPLE_TABLE, workdir / "table", mix.centres)
    # Metrics on its own free port and call records in the work folder: the router runs as in
    # production (fields a router version does not know are ignored).
    router_env = {
        "NODRUTE__METRICS__PORT": str(ports.take()),
        "NODRUTE__DATABASE__URL": f"sqlite+aiosqlite:///{(workdir / 'records.db').resolve()}",
    }
    bench = Bench(
        binary, workdir, ports, mix, write_injection_file(workdir / "calls.csv", mix.rows),
        table_dir, args.recv_timeout_ms, router_env,
    )  # fmt: skip
    commit, dirty = git_state()
    report: dict[str, Any] = {
        "started_at": stamp,
        "parameters": {
            "rates": rates, "step_s": args.step_s, "hold_ms": args.hold_ms,
            "repeat": args.repeat, "keep_going": args.keep_going,
            "recv_timeout_ms": args.recv_timeout_ms, "router_config": str(BENCH_CONFIG),
            "calls": args.only in (None, "calls"),
            "media": args.only in (None, "media") and not args.no_media,
            "location": args.only in (None, "location") and not args.no_location,
            "failover": args.only in (None, "failover") and not args.no_failover,
        },
        "environment": {
            "cpu_count": os.cpu_count(), "loadavg_before": load_average(),
            "python": platform.python_version(), "platform": platform.platform(),
            "sipp_version": sipp_version(binary), "git_commit": commit, "git_dirty": dirty,
            "router_uvloop": None,
        },
        "call_mix": {
            "rows": [list(r) for r in mix.rows],
            "centres": [asdict(c) for c in mix.centres],
        },
        "raw": {"router": [], "ceiling": [], "kamailio": []},
        "steps": {"router": [], "ceiling": [], "kamailio": []},
    }  # fmt: skip

    def log(text: str) -> None:
        print(text, flush=True)

    def ramp(target: str, router: Router | None, step_rates: Sequence[float]) -> list[float]:
        done: list[float] = []
        for rate in step_rates:
            runs = []
            for repeat in range(args.repeat):
                result = bench.run_step(target, rate, args.step_s, args.hold_ms, repeat, router)
                runs.append(result)
                report["raw"][target].append(asdict(result))
                resp = result.response_ms
                log(
                    f"{target:8} {rate:6g}/s #{repeat + 1}: {result.successful_calls}/"
                    f"{result.calls_offered} ok, {result.achieved_cps:.0f}/s, retrans "
                    f"{result.retransmissions_uac}+{result.retransmissions_uas}, UDP drops "
                    f"{result.udp_rcvbuf_errors}, 180 "
                    f"{_triple(resp['ringing'])} ms, 200 {_triple(resp['answer'])} ms"
                    + (f", router CPU {result.router['router_cpu_percent_mean']} %"
                       if result.router else "")
                )  # fmt: skip
                time.sleep(1.0)
            report["steps"][target].append(summarise(runs))
            done.append(rate)
            if not all(r.zero_failures for r in runs) and not args.keep_going:
                log(f"{target}: failures at {rate:g} calls/s; stopping the ramp (--keep-going)")
                break
        return done

    run_calls = report["parameters"]["calls"]
    if run_calls:
        ramp_dir = workdir / "router-ramp"
        with running_router(
            BENCH_CONFIG, ramp_dir, router_port, table_dir, router_env
        ) as router:
            report["environment"]["router_uvloop"] = router.uvloop_on()
            router_rates = ramp("router", router, rates)
    if run_calls and not args.no_ceiling:
        ramp("ceiling", None, router_rates)
    if run_calls and args.with_kamailio:
        kamailio = kamailio_binary()
        if kamailio is None:
            raise SystemExit("--with-kamailio: kamailio is not installed (apt-get install)")
        report["environment"]["kamailio_version"] = kamailio_version(kamailio)
        kam_dir = workdir / "kamailio"
        with running_kamailio(kamailio, kam_dir, ports.take(), table_dir) as proxy:
            ramp("kamailio", proxy, router_rates)
    if run_calls and not args.no_held:
        hold_ms = int(args.held_hold_s * 1000)
        with running_router(
            BENCH_CONFIG, workdir / "router-held", router_port, table_dir, router_env
        ) as router:
            time.sleep(1.0)
            held = bench.run_step(
                "held", args.held_rate, args.held_hold_s + 3, hold_ms, 0, router
            )
        rss_delta_kib = (
            held.router["router_rss_mib_peak"] - held.router["router_rss_mib_before"]
        ) * 1024
        report["held"] = {
            **asdict(held),
            "rss_kib_per_held_call": (
                rss_delta_kib / held.peak_concurrent_calls if held.peak_concurrent_calls else None
            ),
        }
        log(
            f"held     {args.held_rate:g}/s, hold {args.held_hold_s:g} s: peak "
            f"{held.peak_concurrent_calls} calls, {held.failed_calls} failed, RSS "
            f"{held.router['router_rss_mib_before']} -> {held.router['router_rss_mib_peak']} MiB"
        )
    if report["parameters"]["media"]:
        report["media"] = media_section(args, binary, workdir / "media", ports, router_env, log)
        if report["environment"]["router_uvloop"] is None:
            report["environment"]["router_uvloop"] = report["media"]["router_uvloop"]
    if report["parameters"]["location"]:
        report["location"] = run_location_section(
            points=args.geo_points, repeat=100, runs=300, log=log)
    if report["parameters"]["failover"]:
        log("failover: one primary failure type at a time, 100 calls/s ...")
        report["failover"] = run_failover_section(failover_parse_args(
            ["--calls", str(args.failover_calls), "--out", str(workdir / "failover")]), stamp)
    report["highest_zero_failure_rate"] = {
        target: highest_clean_rate(report["steps"][target])
        for target in ("router", "ceiling", "kamailio")
    }
    report["environment"]["loadavg_after"] = load_average()
    json_path = args.out / f"bench-{stamp}.json"
    md_path = args.out / f"bench-{stamp}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = markdown_report(report)
    md_path.write_text(markdown, encoding="utf-8")
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    log("")
    log(markdown)
    log(f"written: {json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
