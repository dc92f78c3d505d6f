"""The media part of ``make bench``: IVR sessions and bridged anchored calls through the real
router (``[media] enabled = true``), stepped until a step fails, and its CPU per 100 streams.

Run by ``loadtests/bench.py`` (``--only media`` runs nothing else, ``--no-media`` skips it).
One router for the section, everything on 127.0.0.1:

1. **Engine baseline**: ``media_bench.py --mode play`` and ``--mode bridge`` with 100
   streams: the media engine alone, in a process of its own (no SIP, no router).
2. **IVR sessions**: SIPp callers to 116117 (``uac_ivr_listen.xml``) get the router's 183 and
   listen to the greeting (the bench's flow repeats it, so every call hears prompt audio for
   its whole life), then CANCEL. Their SDP points at an RTP receiver
   (``rtp_receiver.py``) that counts each call's stream.
3. **Bridged calls**: SIPp callers to 113 (``uac_rtp_talk.xml``) play a continuous G.711
   A-law pcap (20 ms frames, Debian's ``g711a.pcap`` speech re-framed and looped) through the
   router to a SIPp centre (``uas_centre_rtp.xml``) whose SDP points at an RTP echo: the router
   relays caller -> centre, the echo sends it back, the router relays centre -> caller, where
   a second receiver counts it. Two streams sent by the router per call.

Each step: calls ramp up at ``--media-rate`` calls/s, all of them are up for ``settle`` +
``window`` seconds, then they end. Router CPU is measured over the window only (no call
set-up or tear-down in it): user+system time from ``/proc/<pid>/stat`` ÷ wall time (100 % =
one core), divided by the router-sent streams that were alive for the whole window, per 100.
A step passes with every call successful, every expected stream alive through the window,
no sequence gap, and no late packet (> 60 ms after the previous one, talkspurt starts
excepted: see ``rtp_receiver.py``). The ramp of each kind stops after its first failed step.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_processes import (
    LOOPBACK,
    REPO,
    PortPool,
    Router,
    Sipp,
    machine_cpu_ticks,
    read_stat_lines,
    running_router,
    start_sipp,
    stat_int,
    udp_rcvbuf_errors,
)
from rtp_pcap import speech_frames, write_talk_pcap

LOADTESTS = REPO / "loadtests"
GREETING_S = 7.1  # ivr/prompts/nb/greeting_116117.wav
RTP_OFFSET = 4  # the media scenarios put their SDP port at -mp + 4
FAILURE_COLUMNS = (
    "FailedTimeoutOnRecv(C)", "FailedUnexpectedMessage(C)", "FailedMaxUDPRetrans(C)",
    "FailedCannotSendMessage(C)", "FailedCallRejected(C)",
)  # fmt: skip
DEFAULT_IVR_STEPS = "100,400,800,1200,1600,2000"
DEFAULT_BRIDGED_STEPS = "50,100,200,300,400"


# --- the router's media configuration --------------------------------------------------------


def media_env(rtp_first: int, rtp_last: int, hold_max_s: float) -> dict[str, str]:
    """Environment turning the bench router config into the media router (the environment
    overrides the file): anchored media, and a 116117 flow that repeats the greeting for
    longer than any call of the section lasts (113 keeps the shipped early_113)."""
    plays = math.ceil((hold_max_s + 10) / GREETING_S)
    greeting = {"kind": "play", "prompt": "greeting_116117"}
    flows = {
        "early_113": {"early_media": True, "repeat_last_prompt": True,
                      "steps": [{"kind": "play", "prompt": "please_wait_113"}]},
        "bench_greeting": {"max_total_s": math.ceil(plays * GREETING_S) + 5,
                           "steps": [greeting] * plays + [{"kind": "route"}]},
    }  # fmt: skip
    return {
        "NODRUTE__MEDIA__ENABLED": "true",
        "NODRUTE__MEDIA__ADDRESS": LOOPBACK,
        "NODRUTE__MEDIA__MODE": "anchor",
        "NODRUTE__MEDIA__RTP_PORT_FIRST": str(rtp_first),
        "NODRUTE__MEDIA__RTP_PORT_LAST": str(rtp_last),
        "NODRUTE__IVR__ENABLED": "true",
        "NODRUTE__IVR__LANGUAGE": "nb",
        "NODRUTE__IVR__FLOWS": json.dumps(flows),
        "NODRUTE__IVR__SERVICES": json.dumps({"113": "early_113", "116117": "bench_greeting"}),
        "NODRUTE__IVR__CENTRES": "{}",
    }


# --- processes -------------------------------------------------------------------------------


@dataclass
class Receiver:
    """An ``rtp_receiver.py`` process."""

    process: subprocess.Popen[str]
    out: Path

    @classmethod
    def start(cls, workdir: Path, name: str, *, listen: Sequence[int] = (),
              echo: Sequence[int] = ()) -> Receiver:
        workdir.mkdir(parents=True, exist_ok=True)
        out = workdir / f"{name}.json"
        command = [sys.executable, str(LOADTESTS / "rtp_receiver.py"), "--out", str(out)]
        command += [arg for port in listen for arg in ("--listen", str(port))]
        command += [arg for port in echo for arg in ("--echo", str(port))]
        with (workdir / f"{name}.log").open("w") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise SystemExit(f"rtp_receiver {name} did not start: {workdir / (name + '.log')}")
        return cls(process, out)

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.out.exists():
            return {}
        result: dict[str, Any] = json.loads(self.out.read_text(encoding="utf-8"))
        return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024), 1)


# --- one step --------------------------------------------------------------------------------


@dataclass
class MediaStepResult:
    """One step: ``calls`` at once, of one kind (``ivr`` or ``bridged``)."""

    kind: str
    calls: int
    streams_expected: int
    """RTP streams the router should send: 1 per IVR call, 2 per bridged call."""
    successful_calls: int
    failed_calls: int
    failures_by_reason: dict[str, int]
    uac_exit: int
    uas_failed_calls: int
    window_s: float
    streams_through_window: int
    """Router-sent streams that carried packets from before the window to its end."""
    packets_per_stream_per_s: float | None
    router_cpu_percent: float
    """Router CPU over the window, 100 = one core."""
    cpu_percent_per_100_streams: float | None
    router_rss_mib: float
    seq_gaps: int
    late_packets: int
    late_events: int
    """Stalls: runs of consecutive 100 ms with late packets (the most of the two sides). One
    event with a late packet on every stream = the router (or machine) paused once; many =
    it could not keep the pace."""
    max_gap_ms: float
    switch_gap_max_ms: float
    """Longest silence before a talkspurt start (a prompt's first frame, or the first relayed
    packet after the centre answered): reported, not counted as late."""
    echo_lag_max_ms: float | None
    load: dict[str, float] = field(default_factory=dict)
    """Who else used the machine: ``machine_busy_cores`` (all processes, over the window),
    ``receivers_cpu_percent`` (the bench's RTP receivers), ``udp_rcvbuf_errors`` (datagrams
    the kernel dropped machine-wide for a full socket buffer during the step)."""
    rtp: dict[str, Any] = field(default_factory=dict)
    """The receivers' totals per side (``caller``, ``centre``)."""
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class MediaBench:
    binary: str
    workdir: Path
    ports: PortPool
    router: Router
    ivr_calls_file: Path
    bridged_calls_file: Path
    centre_id: str
    centre_port: int
    rate: float
    settle_s: float
    window_s: float
    speech: list[bytes]

    def hold_s(self, calls: int) -> float:
        """Every call is up from the end of the ramp through settle + window, plus 1 s."""
        return calls / self.rate + self.settle_s + self.window_s + 1.0

    def run_step(self, kind: str, calls: int) -> MediaStepResult:
        step_dir = self.workdir / f"{kind}-{calls}"
        while step_dir.exists():  # the same step again
            step_dir = step_dir.with_name(step_dir.name + "+")
        step_dir.mkdir(parents=True)
        hold_s = self.hold_s(calls)
        uac_mp = self.ports.take(RTP_OFFSET + 1)
        receivers: dict[str, Receiver] = {}
        sipps: list[Sipp] = []
        try:
            receivers["caller"] = Receiver.start(step_dir, "caller-rtp",
                                                 listen=[uac_mp + RTP_OFFSET])
            if kind == "bridged":
                uas_mp = self.ports.take(RTP_OFFSET + 1)
                receivers["centre"] = Receiver.start(step_dir, "centre-rtp",
                                                     echo=[uas_mp + RTP_OFFSET])
                sipps.append(start_sipp(
                    self.binary, "centre", step_dir / "uas", "uas_centre_rtp.xml", self.ports,
                    ["-p", str(self.centre_port), "-key", "centre", self.centre_id,
                     "-buff_size", str(4 << 20)],
                    media_port=uas_mp,
                ))  # fmt: skip
                uac_dir = step_dir / "uac"
                uac_dir.mkdir()
                write_talk_pcap(uac_dir / "talk.pcap", hold_s + 3, self.speech)
                scenario, calls_file = "uac_rtp_talk.xml", self.bridged_calls_file
                time.sleep(0.5)
            else:
                scenario, calls_file = "uac_ivr_listen.xml", self.ivr_calls_file
            timeout_s = int(2 * calls / self.rate + hold_s + 30)
            uac_args = [
                "-inf", str(calls_file), "-m", str(calls), "-l", str(calls),
                "-r", f"{self.rate:g}", "-rp", "1000", "-d", str(int(hold_s * 1000)),
                "-recv_timeout", "10000", "-timeout", str(timeout_s), "-timeout_error",
                "-buff_size", str(4 << 20), f"{LOOPBACK}:{self.router.port}",
            ]  # fmt: skip
            drops_before = udp_rcvbuf_errors()
            started = time.time()
            uac = start_sipp(self.binary, "uac", step_dir / "uac", scenario, self.ports,
                             uac_args, media_port=uac_mp)
            sipps.append(uac)
            window_from = started + calls / self.rate + self.settle_s
            time.sleep(max(0.0, window_from - time.time()))
            pids = [r.process.pid for r in receivers.values()]
            sipp_pids = [s.process.pid for s in sipps]
            machine_before, receivers_before = machine_cpu_ticks(), sum(map(cpu_seconds, pids))
            sipp_before = sum(map(cpu_seconds, sipp_pids))
            cpu_before, window_from = cpu_seconds(self.router.pid), time.time()
            time.sleep(self.window_s)
            cpu_after, window_to = cpu_seconds(self.router.pid), time.time()
            machine_after, receivers_after = machine_cpu_ticks(), sum(map(cpu_seconds, pids))
            sipp_after = sum(map(cpu_seconds, sipp_pids))
            rss = rss_mib(self.router.pid)
            try:
                uac_exit = uac.process.wait(timeout=timeout_s + 15)
            except subprocess.TimeoutExpired:
                uac_exit = uac.stop()
        finally:
            for sipp in sipps:
                sipp.stop()
            results = {side: receiver.stop() for side, receiver in receivers.items()}
        busy, total = (after - before for after, before in zip(machine_after, machine_before,
                                                                strict=True))
        wall = window_to - window_from
        busy_cores = (os.cpu_count() or 1) * busy / max(1, total)
        ours = (cpu_after - cpu_before + receivers_after - receivers_before
                + sipp_after - sipp_before) / wall
        load = {
            "machine_busy_cores": round(busy_cores, 2),
            "receivers_cpu_percent": round(100 * (receivers_after - receivers_before) / wall, 1),
            "sipp_cpu_percent": round(100 * (sipp_after - sipp_before) / wall, 1),
            "other_processes_cores": round(max(0.0, busy_cores - ours), 2),
            "udp_rcvbuf_errors": udp_rcvbuf_errors() - drops_before,
        }
        final = (read_stat_lines(uac.workdir / "stat.csv") or [{}])[-1]
        uas_final = sipps[0].final_stats() if kind == "bridged" else {}
        cpu_percent = 100 * (cpu_after - cpu_before) / (window_to - window_from)
        result = self._result(kind, calls, results, final, uas_final, uac_exit,
                              window_from, window_to, cpu_percent, rss)
        result.load = load
        if result.problems and busy_cores >= 0.95 * (os.cpu_count() or 1):
            result.problems.append(
                f"machine saturated: {busy_cores:.2f} cores busy, "
                f"{load['other_processes_cores']} of them by processes outside the bench")
        return result

    def _result(self, kind: str, calls: int, results: dict[str, dict[str, Any]],
                final: dict[str, str], uas_final: dict[str, str], uac_exit: int,
                window_from: float, window_to: float, cpu_percent: float,
                rss: float) -> MediaStepResult:
        successful = stat_int(final, "SuccessfulCall(C)")
        window = window_to - window_from
        sides = {side: side_figures(result, window_from, window_to)
                 for side, result in results.items()}
        through = sum(side["streams_through_window"] for side in sides.values())
        rate_through = sum(side["packets_per_s_in_window"] for side in sides.values())
        streams_expected = calls * (2 if kind == "bridged" else 1)
        seq_gaps = sum(s.get("seq_gaps", 0) for s in sides.values())
        late = sum(s.get("late", 0) for s in sides.values())
        result = MediaStepResult(
            kind=kind, calls=calls, streams_expected=streams_expected,
            successful_calls=successful, failed_calls=calls - successful,
            failures_by_reason={col.removesuffix("(C)"): stat_int(final, col)
                                for col in FAILURE_COLUMNS if stat_int(final, col)},
            uac_exit=uac_exit, uas_failed_calls=stat_int(uas_final, "FailedCall(C)"),
            window_s=round(window, 2), streams_through_window=through,
            packets_per_stream_per_s=(round(rate_through / through, 1) if through else None),
            router_cpu_percent=round(cpu_percent, 1),
            cpu_percent_per_100_streams=(round(cpu_percent * 100 / through, 2)
                                         if through else None),
            router_rss_mib=rss, seq_gaps=seq_gaps, late_packets=late,
            late_events=max((s.get("late_events", 0) for s in sides.values()), default=0),
            max_gap_ms=max((s.get("max_gap_ms", 0.0) for s in sides.values()), default=0.0),
            switch_gap_max_ms=max((s.get("switch_gap_max_ms", 0.0) for s in sides.values()),
                                  default=0.0),
            echo_lag_max_ms=results.get("centre", {}).get("echo_lag_max_ms"),
            rtp=sides,
        )  # fmt: skip
        if result.failed_calls or uac_exit != 0:
            result.problems.append(f"{result.failed_calls} failed calls (SIPp exit {uac_exit})")
        if result.uas_failed_calls:
            result.problems.append(f"{result.uas_failed_calls} failed calls at the centre")
        if through < streams_expected:
            result.problems.append(f"{through}/{streams_expected} streams through the window")
        if seq_gaps:
            result.problems.append(f"{seq_gaps} packets missing (sequence gaps)")
        if late:
            result.problems.append(f"{late} late packets (> 60 ms) in {result.late_events} "
                                   "stall(s)")
        return result


def side_figures(result: dict[str, Any], window_from: float,
                 window_to: float) -> dict[str, Any]:
    """One receiver's totals, plus what it saw in the window: streams alive through it,
    packets (whole 100 ms buckets of kernel receive time), late packets by phase, stalls."""
    ports = result.get("ports", {})
    summary = dict(next(iter(ports.values()), {})) if ports else {}
    lives = summary.pop("lives", [])
    port = next(iter(ports), None)
    width = result.get("bucket_s", 0.1)
    first_bucket = math.ceil(window_from / width)
    last_bucket = math.floor(window_to / width)  # exclusive
    in_window = sum(n for p, bucket, n in result.get("buckets", [])
                    if str(p) == port and first_bucket <= bucket < last_bucket)
    late_in = {"before_window": 0, "in_window": 0, "after_window": 0}
    late_events, previous = 0, -2
    for p, bucket, n in result.get("late_buckets", []):
        if str(p) == port:
            phase = ("before_window" if bucket < first_bucket else
                     "in_window" if bucket < last_bucket else "after_window")
            late_in[phase] += n
            late_events += bucket > previous + 1  # a run of 100 ms buckets = one stall
            previous = bucket
    return {
        **summary,
        "streams_through_window": sum(1 for first, last, _n in lives
                                      if first <= window_from and last >= window_to - 0.1),
        "packets_in_window": in_window,
        "packets_per_s_in_window": round(
            in_window / (max(1, last_bucket - first_bucket) * width), 1),
        "late_by_phase": late_in,
        "late_events": late_events,
    }  # fmt: skip


# --- the section -----------------------------------------------------------------------------


def engine_baseline(workdir: Path, streams: int, measure_s: float) -> dict[str, Any]:
    """``media_bench.py`` in both modes: the engine alone, per 100 streams."""
    baseline: dict[str, Any] = {}
    for mode in ("play", "bridge"):
        completed = subprocess.run(
            [sys.executable, str(LOADTESTS / "media_bench.py"), "--mode", mode,
             "--streams", str(streams), "--warmup-s", "1", "--measure-s", f"{measure_s:g}"],
            capture_output=True, text=True, timeout=measure_s + 60, check=False,
        )  # fmt: skip
        (workdir / f"engine-{mode}.log").write_text(completed.stdout + completed.stderr)
        try:
            figures = json.loads(completed.stdout)
        except json.JSONDecodeError:
            baseline[mode] = {"error": completed.stderr[-500:]}
            continue
        baseline[mode] = {
            "streams": figures["streams"],
            "cpu_percent_per_100_streams": figures["cpu_percent_per_100_streams"],
            "seq_gaps": figures["received"]["seq_gaps"],
            "late_over_60ms": figures["received"]["late_over_60ms"],
            "packets_per_stream_per_s": figures["received"]["packets_per_stream_per_s"],
            "frames_skipped": figures["frames_skipped"],
        }
    return baseline


def highest_passing(steps: Sequence[dict[str, Any]]) -> int | None:
    best = None
    for step in sorted(steps, key=lambda s: s["calls"]):
        if step["problems"]:
            break
        best = step["calls"]
    return best


def run_media_section(
    *, binary: str, workdir: Path, ports: PortPool, base_config: Path, table_dir: Path,
    centre_id: str, centre_port: int, ivr_calls_file: Path, bridged_calls_file: Path,
    router_env: dict[str, str], ivr_steps: Sequence[int], bridged_steps: Sequence[int],
    rate: float, settle_s: float, window_s: float, baseline_s: float,
    log: Callable[[str], None], keep_going: bool = False,
) -> dict[str, Any]:
    """Baseline, then the IVR ramp and the bridged ramp on one media router; the JSON section."""
    section: dict[str, Any] = {
        "parameters": {
            "ivr_steps": list(ivr_steps), "bridged_steps": list(bridged_steps),
            "rate": rate, "settle_s": settle_s, "window_s": window_s,
            "late_threshold_ms": 60, "baseline_s": baseline_s, "keep_going": keep_going,
        },
        "engine_baseline": {}, "ivr": [], "bridged": [],
    }  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    if baseline_s > 0:
        section["engine_baseline"] = engine_baseline(workdir, 100, baseline_s)
        for mode, figures in section["engine_baseline"].items():
            log(f"engine   {mode:6}: {figures.get('cpu_percent_per_100_streams')} % CPU per "
                f"100 streams, gaps {figures.get('seq_gaps')}, late "
                f"{figures.get('late_over_60ms')}")
    steps = [*ivr_steps, *bridged_steps]
    env = {**router_env, **media_env(
        20000, 29999, max((c / rate + settle_s + window_s + 1 for c in steps), default=10.0))}
    (workdir / "router-env.json").write_text(json.dumps(env, indent=2) + "\n")
    section["router_config"] = str(base_config)
    router_port = ports.take()
    with running_router(base_config, workdir / "router", router_port, table_dir,
                        env) as router:
        section["router_uvloop"] = router.uvloop_on()
        bench = MediaBench(binary, workdir, ports, router, ivr_calls_file, bridged_calls_file,
                           centre_id, centre_port, rate, settle_s, window_s,
                           speech_frames())  # fmt: skip
        for kind, kind_steps in (("ivr", ivr_steps), ("bridged", bridged_steps)):
            for calls in kind_steps:
                result = bench.run_step(kind, calls)
                section[kind].append({**asdict(result), "passed": result.passed})
                log(
                    f"{kind:8} {calls:5} calls: {result.successful_calls} ok, streams "
                    f"{result.streams_through_window}/{result.streams_expected}, gaps "
                    f"{result.seq_gaps}, late {result.late_packets}, max gap "
                    f"{result.max_gap_ms} ms, router CPU {result.router_cpu_percent} % = "
                    f"{result.cpu_percent_per_100_streams} % per 100 streams; machine "
                    f"{result.load['machine_busy_cores']} cores busy "
                    f"({result.load['other_processes_cores']} outside the bench), receivers "
                    f"{result.load['receivers_cpu_percent']} %, SIPp "
                    f"{result.load['sipp_cpu_percent']} %, UDP drops "
                    f"{result.load['udp_rcvbuf_errors']}"
                    + (f" -- {'; '.join(result.problems)}" if result.problems else "")
                )
                time.sleep(1.0)
                if not result.passed and not keep_going:
                    break
        section["router_log_tail"] = router.log_text()[-2000:]
    section["max_ivr_sessions"] = highest_passing(section["ivr"])
    section["max_bridged_calls"] = highest_passing(section["bridged"])
    # The router's cost per 100 streams at the largest passing step (fixed costs weigh least).
    section["cpu_percent_per_100_streams"] = {
        kind: next((s["cpu_percent_per_100_streams"] for s in section[kind]
                    if s["calls"] == best), None)
        for kind, best in (("ivr", section["max_ivr_sessions"]),
                           ("bridged", section["max_bridged_calls"]))
    }
    return section


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_media(section: dict[str, Any]) -> list[str]:
    """The "Media" section of the Markdown report."""
    params = section["parameters"]
    lines = [
        "",
        "## Media (`[media] enabled = true`)",
        "",
        f"Calls ramp at {params['rate']:g} calls/s; all of a step's calls are up for "
        f"{params['settle_s']:g} s, then the router's CPU is measured over "
        f"{params['window_s']:g} s (100 % = one core). Streams = RTP streams the router "
        "sends (IVR: 1 per call, the prompt; bridged: 2 per call, one per direction). Late = "
        f"over {params['late_threshold_ms']} ms after the previous packet of its stream "
        "(kernel receive time); switch = silence before a talkspurt start (prompt→centre).",
        "",
        "| kind | calls | ok | streams (window) | gaps | late (stalls) | max gap ms | switch ms | "
        "pkts/stream/s | router CPU % | CPU % per 100 streams | router RSS MiB | "
        "busy cores (others) | receivers CPU % | SIPp CPU % | UDP drops | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind in ("ivr", "bridged"):
        for step in section[kind]:
            lines.append(
                f"| {kind} | {step['calls']} | {step['successful_calls']} | "
                f"{step['streams_through_window']}/{step['streams_expected']} | "
                f"{step['seq_gaps']} | {step['late_packets']} ({step['late_events']}) | "
                f"{_fmt(step['max_gap_ms'], 1)} | "
                f"{_fmt(step['switch_gap_max_ms'], 1)} | "
                f"{_fmt(step['packets_per_stream_per_s'], 1)} | "
                f"{_fmt(step['router_cpu_percent'], 1)} | "
                f"{_fmt(step['cpu_percent_per_100_streams'], 2)} | "
                f"{_fmt(step['router_rss_mib'], 1)} | "
                f"{_fmt(step['load'].get('machine_busy_cores'), 2)} "
                f"({_fmt(step['load'].get('other_processes_cores'), 2)}) | "
                f"{_fmt(step['load'].get('receivers_cpu_percent'), 1)} | "
                f"{_fmt(step['load'].get('sipp_cpu_percent'), 1)} | "
                f"{_fmt(step['load'].get('udp_rcvbuf_errors'))} | "
                f"{'ok' if step['passed'] else '; '.join(step['problems'])} |"
            )
    baseline = section["engine_baseline"]
    engine = ", ".join(
        f"{mode} {_fmt(figures.get('cpu_percent_per_100_streams'), 2)} %"
        for mode, figures in baseline.items()
    )
    per_100 = section["cpu_percent_per_100_streams"]
    lines += [
        "",
        f"Max with zero failures and no gaps/late packets: **{_fmt(section['max_ivr_sessions'])}"
        f" IVR sessions**, **{_fmt(section['max_bridged_calls'])} bridged calls** (of the "
        "steps tried). Router CPU per 100 streams there: IVR "
        f"**{_fmt(per_100['ivr'], 2)} %**, bridged **{_fmt(per_100['bridged'], 2)} %**."
        + (f" Engine alone (`media_bench.py`, 100 streams, CPU % per 100 streams): {engine}."
           if baseline else ""),
    ]
    return lines

