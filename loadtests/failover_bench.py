"""Failover time per failure type: how much later a call is answered when its centre fails.

    .venv/bin/python loadtests/failover_bench.py [--calls 200] [--rate 100]
        [--first-response-s 2] [--attempt-ring-s 20] [--types 503,486,...]

One run, everything on 127.0.0.1. For each type a fresh ``nodrute serve --config
configs/bench.toml`` (UDP and TCP; health probing off, so every call tries the primary first)
on a copy of the sample table where AMK-OSLO (the primary of a 113 call for Oslo) and its
backup AMK-INNLANDET are on the bench's ports and every other centre on a closed TCP port.
The backup is a SIPp ``uas_centre.xml``; the primary, per type:

* ``direct``: ``uas_centre.xml`` answers (the baseline: nothing fails);
* ``503``, ``486``: ``uas_unavailable.xml``, ``uas_busy.xml`` refuse at once;
* ``ring_no_answer``: ``uas_no_answer.xml`` rings until CANCELled (``attempt_ring_113_s``);
* ``no_response``: ``uas_no_response.xml`` swallows the INVITE (``first_response_s``);
* ``port_closed_tcp``: the primary's URI is ``;transport=tcp`` and nothing listens (connect
  refused: a transport error);
* ``port_closed_udp``: nothing listens on the UDP port (the ICMP port unreachable is not
  reported to the router's socket today: ``first_response_s`` decides);
* ``killed``: ``uas_centre.xml`` answering, SIGKILLed when half the calls are placed.

A SIPp UAC (``uac_emergency.xml``) places ``--calls`` 113 calls at ``--rate`` per second; every
call's INVITE -> 200 time comes from its message trace (``-trace_msg``, microsecond stamps). The
failover time of a call is that time minus the ``direct`` run's median (measured in the same
run); the calls that failed over are the k slowest ones, k = the increase of
``nodrute_failover_total`` (all of them but in ``killed``, where the calls answered before the
kill are not failovers). Per type: median, p99 and max of the failover time, and its median
minus the knob that decides it (``first_response_s``, ``attempt_ring_113_s``, 0 for a refusal or
transport error): what the router adds on top of its own timer. Anchored media is off
(``configs/bench.toml``): the hunt is signalling.

Output: ``bench-results/failover-<timestamp>.json`` and ``.md`` (both printed too). Times are
wall clock on a shared machine: the load average is in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_processes import (
    REPO,
    PortPool,
    Sipp,
    copy_table_with_uris,
    percentile,
    running_router,
    sipp_binary,
    sipp_version,
    start_sipp,
    stat_int,
)
from prometheus_client.parser import text_string_to_metric_families

TABLE_DIR = REPO / "configs" / "tables" / "sample-2024"
CONFIG = REPO / "configs" / "bench.toml"
PRIMARY, BACKUP = "AMK-OSLO", "AMK-INNLANDET"
OSLO = "0301"
TYPES = ("direct", "503", "486", "ring_no_answer", "no_response", "port_closed_tcp",
         "port_closed_udp", "killed")
PRIMARY_SCENARIO = {
    "direct": "uas_centre.xml",
    "503": "uas_unavailable.xml",
    "486": "uas_busy.xml",
    "ring_no_answer": "uas_no_answer.xml",
    "no_response": "uas_no_response.xml",
    "killed": "uas_centre.xml",
}
"""SIPp on the primary's port; a type not listed has nothing listening there."""


@dataclass
class TypeResult:
    """One failure type's run."""

    type: str
    knob: str
    knob_s: float
    calls: int
    successful: int
    failed: int
    failovers: int
    """Increase of nodrute_failover_total (AMK-OSLO -> AMK-INNLANDET) during the run."""
    reasons: dict[str, int]
    """Failover steps by reason label, from -> to included: 'AMK-OSLO->AMK-INNLANDET:rejected'."""
    answer_ms: dict[str, float | None]
    """INVITE -> 200 at the caller, all calls: p50/p99/max."""
    failover_ms: dict[str, float | None] = field(default_factory=dict)
    """The failed-over calls' answer time minus the direct median: p50/p99/max."""
    overhead_ms: float | None = None
    """failover p50 minus the knob: what the router adds to its own timer."""
    raw_answer_ms: list[float] = field(default_factory=list)


# --- the table, the metrics -------------------------------------------------------------------


def failover_table(dst: Path, primary_uri: str, backup_uri: str, closed_port: int) -> Path:
    """The sample table with the primary and backup on the bench's ports, every other centre
    on a closed TCP port (refused at once: a call that went past the backup fails, not hangs;
    a cheap miss when the health monitor probes it)."""
    return copy_table_with_uris(TABLE_DIR, dst, lambda cid, _: {
        PRIMARY: primary_uri, BACKUP: backup_uri}.get(
            cid, f"sip:{cid.lower()}@127.0.0.1:{closed_port};transport=tcp"))


def failover_steps(metrics_port: int) -> Counter[str]:
    """'from->to:reason' -> count, from the router's nodrute_failover_total."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    steps: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "nodrute_failover_total":
                key = f"{s.labels['from_centre']}->{s.labels['to_centre']}:{s.labels['reason']}"
                steps[key] += int(s.value)
    return steps


_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d [\d:.]+)\s*$", re.MULTILINE)


def answer_times_ms(message_log: Path) -> list[float]:
    """Per call, INVITE sent -> 200 (to the INVITE) received, in ms, from a SIPp
    ``-trace_msg`` file: its stamps are in microseconds, where ``-trace_rtt`` counts whole
    milliseconds of SIPp's loop clock (4 ms steps on a busy machine). Sorted."""
    text = message_log.read_text(encoding="utf-8", errors="replace")
    stamps = list(_SEPARATOR.finditer(text))
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    for n, stamp in enumerate(stamps):
        end = stamps[n + 1].start() if n + 1 < len(stamps) else len(text)
        lines = [line.strip() for line in text[stamp.end():end].splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[2:]) if _}
        call_id = headers.get("call-id") or headers.get("i")
        if call_id is None:
            continue
        at = datetime.fromisoformat(stamp.group(1)).timestamp()
        if "message sent" in lines[0] and lines[1].startswith("INVITE "):
            sent.setdefault(call_id, at)
        elif ("message received" in lines[0] and lines[1].startswith("SIP/2.0 200")
              and headers.get("cseq", "").endswith("INVITE")):
            answered.setdefault(call_id, at)
    return sorted((answered[c] - sent[c]) * 1000 for c in answered if c in sent)


def _ms(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": max(values) if values else None}


# --- one type -----------------------------------------------------------------------------------


class FailoverBench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.binary = sipp_binary()
        self.ports = PortPool()

    def knob(self, kind: str) -> tuple[str, float]:
        if kind == "ring_no_answer":
            return "attempt_ring_113_s", self.args.attempt_ring_s
        if kind in ("no_response", "port_closed_udp", "killed"):
            return "first_response_s", self.args.first_response_s
        return "-", 0.0

    def run(self, kind: str) -> TypeResult:
        args, ports = self.args, self.ports
        work = self.workdir / kind
        primary_port, backup_port, closed_port = ports.take(), ports.take(), ports.take()
        transport = ";transport=tcp" if kind == "port_closed_tcp" else ""
        table = failover_table(
            work / "table", f"sip:{PRIMARY.lower()}@127.0.0.1:{primary_port}{transport}",
            f"sip:{BACKUP.lower()}@127.0.0.1:{backup_port}", closed_port)
        metrics_port = ports.take()
        env = {
            "NODRUTE__SIP__TRANSPORTS": '["udp", "tcp"]',
            "NODRUTE__FAILOVER__FIRST_RESPONSE_S": str(args.first_response_s),
            "NODRUTE__FAILOVER__ATTEMPT_RING_113_S": str(args.attempt_ring_s),
            "NODRUTE__MEDIA__ENABLED": "false",
            "NODRUTE__METRICS__ENABLED": "true",
            "NODRUTE__METRICS__PORT": str(metrics_port),
            "NODRUTE__DATABASE__URL": f"sqlite+aiosqlite:///{(work / 'records.db').resolve()}",
        }
        sipps: list[Sipp] = []
        with running_router(CONFIG, work / "router", ports.take(), table, env) as router:
            scenario = PRIMARY_SCENARIO.get(kind)
            primary = None
            if scenario is not None:
                primary = self._uas(work / "primary", scenario, PRIMARY, primary_port)
                sipps.append(primary)
            sipps.append(self._uas(work / "backup", "uas_centre.xml", BACKUP, backup_port))
            time.sleep(0.3)  # SIPp binds its sockets
            before = failover_steps(metrics_port)
            uac = self._uac(work / "caller", router.port)
            sipps.append(uac)
            if kind == "killed" and primary is not None:
                time.sleep(args.calls / args.rate / 2)
                primary.process.kill()
            uac.process.wait(timeout=args.calls / args.rate + self._recv_timeout_s() + 60)
            steps = failover_steps(metrics_port) - before
            for sipp in sipps:
                sipp.stop()
        stats = uac.final_stats()
        answers = answer_times_ms(uac.workdir / "messages.log")
        knob, knob_s = self.knob(kind)
        moved = sum(n for key, n in steps.items() if key.startswith(f"{PRIMARY}->{BACKUP}:"))
        return TypeResult(
            type=kind, knob=knob, knob_s=knob_s, calls=args.calls,
            successful=stat_int(stats, "SuccessfulCall(C)"),
            failed=stat_int(stats, "FailedCall(C)"), failovers=moved, reasons=dict(steps),
            answer_ms=_ms(answers), raw_answer_ms=answers,
        )  # fmt: skip

    def _recv_timeout_s(self) -> float:
        return max(self.args.first_response_s, self.args.attempt_ring_s) + 10

    def _uas(self, work: Path, scenario: str, centre: str, port: int) -> Sipp:
        return start_sipp(self.binary, centre, work, scenario, self.ports,
                          ["-p", str(port), "-t", "u1", "-key", "centre", centre])

    def _uac(self, work: Path, router_port: int) -> Sipp:
        args = self.args
        work.mkdir(parents=True, exist_ok=True)
        inf = work / "calls.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(
            f"113;{OSLO};+47{n:08d};\n" for n in range(args.calls)), encoding="utf-8")
        concurrent = int(args.rate * (max(args.first_response_s, args.attempt_ring_s) + 5))
        return start_sipp(self.binary, "caller", work, "uac_emergency.xml", self.ports, [
            "-p", str(self.ports.take()), "-t", "u1", "-inf", str(inf),
            "-m", str(args.calls), "-r", f"{args.rate:g}", "-rp", "1000",
            "-l", str(max(concurrent, 100)),
            "-recv_timeout", str(int(self._recv_timeout_s() * 1000)),
            "-trace_msg", "-message_file", "messages.log",
            f"127.0.0.1:{router_port}",
        ])  # fmt: skip


def add_failover_times(results: Sequence[TypeResult]) -> float | None:
    """Fill in each type's failover times against the direct run's median; returns it."""
    direct = next((r for r in results if r.type == "direct"), None)
    baseline = direct.answer_ms["p50"] if direct is not None else None
    if baseline is None:
        return None
    for result in results:
        if result.type == "direct" or result.failovers == 0:
            continue
        moved = result.raw_answer_ms[-result.failovers:]  # the k slowest calls
        times = [t - baseline for t in moved]
        result.failover_ms = _ms(times)
        p50 = result.failover_ms["p50"]
        result.overhead_ms = None if p50 is None else p50 - result.knob_s * 1000
    return baseline


# --- report ---------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value + 0.0:.{digits}f}".replace("-0.0", "0.0")


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Failover bench {report['started']}",
        "",
        f"{report['calls']} calls per type at {report['rate']:g}/s; first_response_s = "
        f"{report['first_response_s']:g}, attempt_ring_113_s = {report['attempt_ring_s']:g}. "
        f"Direct answer (baseline) median {_fmt(report['baseline_ms'])} ms. "
        f"{env['cpus']} CPUs, load average before {env['load_before']}, after "
        f"{env['load_after']}; {env['sipp']}, git {env['git']}.",
        "",
        "| type | failed calls | failed over | reasons | knob | failover p50 ms | p99 ms "
        "| max ms | p50 - knob ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["types"]:
        reasons = ", ".join(f"{k.split(':')[-1]} {v}" for k, v in sorted(r["reasons"].items()))
        knob = "-" if r["knob"] == "-" else f"{r['knob']} {r['knob_s']:g} s"
        fo = r["failover_ms"]
        if r["type"] == "direct":
            fo = {"p50": r["answer_ms"]["p50"], "p99": r["answer_ms"]["p99"],
                  "max": r["answer_ms"]["max"]}
            knob = "(answer time)"
        lines.append(
            f"| {r['type']} | {r['failed']} / {r['calls']} | {r['failovers']} | {reasons or '-'} "
            f"| {knob} | {_fmt(fo.get('p50'))} | {_fmt(fo.get('p99'))} | {_fmt(fo.get('max'))} "
            f"| {_fmt(r['overhead_ms'])} |")
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Failover time per failure type of the primary centre (SIPp, 127.0.0.1).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=200, help="calls per type")
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second")
    parser.add_argument("--first-response-s", type=float, default=2.0,
                        help="[failover] first_response_s of the router")
    parser.add_argument("--attempt-ring-s", type=float, default=20.0,
                        help="[failover] attempt_ring_113_s of the router")
    parser.add_argument("--types", default=",".join(TYPES),
                        help="comma-separated; 'direct' (the baseline) is always run first")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results",
                        help="folder for failover-<timestamp>.json/.md")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep SIPp's and the router's files in <out>/failover-work-<ts>")
    args = parser.parse_args(argv)
    unknown = set(args.types.split(",")) - set(TYPES)
    if unknown:
        parser.error(f"unknown types {sorted(unknown)}; known: {', '.join(TYPES)}")
    return args


def run_failover_section(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    """Every failure type of ``args`` (see :func:`parse_args`), the direct baseline first;
    the report (also the ``failover`` section of ``make bench``)."""
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"failover-work-{stamp}"
    bench = FailoverBench(args, workdir)
    kinds = ["direct"] + [t for t in args.types.split(",") if t and t != "direct"]
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: list[TypeResult] = []
    try:
        for kind in kinds:
            print(f"failover bench: {kind} ...", file=sys.stderr, flush=True)
            results.append(bench.run(kind))
    finally:
        if not args.keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
    baseline = add_failover_times(results)
    report: dict[str, Any] = {
        "started": stamp,
        "calls": args.calls,
        "rate": args.rate,
        "first_response_s": args.first_response_s,
        "attempt_ring_s": args.attempt_ring_s,
        "baseline_ms": baseline,
        "types": [{k: v for k, v in asdict(r).items() if k != "raw_answer_ms"} for r in results],
        "environment": {
            "cpus": os.cpu_count(), "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(), "sipp": sipp_version(bench.binary),
            "git": git_commit(), "median_answer_direct_ms": baseline,
        },
    }
    return report


def report_is_clean(report: dict[str, Any]) -> bool:
    """Zero failed calls in every type."""
    return all(t["failed"] == 0 and t["successful"] == t["calls"] for t in report["types"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = run_failover_section(args, stamp)
    text = json.dumps(report, indent=2)
    table = markdown(report)
    (args.out / f"failover-{stamp}.json").write_text(text + "\n", encoding="utf-8")
    (args.out / f"failover-{stamp}.md").write_text(table, encoding="utf-8")
    print(text)
    print(table)
    return 0 if report_is_clean(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
