"""CPU cost of one signalling-only call through the router's core, without sockets.

Drives the real :class:`~sip.transport.SipEndpoint` receive path (parse → transaction layer →
B2BUA → serialise → ``sendto``) with a fake event loop and a fake UDP transport, for the call
flow SIPp runs in ``make bench`` (``uac_emergency.xml`` → router → ``uas_centre.xml``)::

    caller INVITE → 100 (ours) → centre INVITE → centre 100, 180, 200 → relayed 180, 200
    caller ACK → centre ACK; caller BYE → centre BYE → centre 200 → 200 to the caller

Only the router's side is timed (``time.perf_counter_ns`` around each ``receive`` and each timer
callback); the peers' side — answering what the router sent — is done by copying header lines,
SIPp-style, outside the timed region. The fake clock advances ``--step`` seconds per call, so
the lingering transactions (Timers J, K, L, M: up to 64·T1 = 32 s) expire and their cost is
counted, as it is in a live run. Repeats are reported as the median, which is what to compare
on a shared, noisy machine; ``--cprofile`` prints the hottest functions instead.

    .venv/bin/python loadtests/profile_core.py                 # µs per call, median of 7
    .venv/bin/python loadtests/profile_core.py --cprofile 30   # top 30 functions by own time
    .venv/bin/python loadtests/profile_core.py --json          # one JSON object on stdout

Needs nothing but the repository (no SIPp, no network).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from municipality_map import default_table_dir, load_snapshot
from router.b2bua import B2bua
from router.config import NodruteSettings
from router.metrics import NodeMetrics
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer
from sip.transport import SipEndpoint

ROUTER = ("127.0.0.1", 5060)
CALLER = ("127.0.0.1", 5070)
CENTRE = ("127.0.0.1", 5110)  # AMK-OSLO in the sample table

SDP = (
    "v=0\r\no=caller 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=sendrecv\r\n"
)


def _caller_invite(n: int) -> bytes:
    """The INVITE of ``uac_emergency.xml`` with ``113;0301;4790000001;``."""
    return (
        f"INVITE sip:113@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4242-{n}-invite;rport\r\n"
        f"From: <sip:4790000001@127.0.0.1>;tag=4242-{n}\r\n"
        f"To: <sip:113@127.0.0.1:5060>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:4790000001@127.0.0.1:5070;transport=UDP>\r\n"
        f"Max-Forwards: 70\r\n"
        f"P-Asserted-Identity: <sip:4790000001@127.0.0.1>\r\n"
        f"X-Kommunenummer: 0301\r\n"
        f"User-Agent: SIPp nodrute-loadtest\r\n"
        f"Subject: nodrute emergency call\r\n"
        f"Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def _lines(data: bytes) -> dict[str, str]:
    """First value of each header of a message we sent (names as we spell them)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    out: dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        out.setdefault(name, value)
    return out


def _response(request: bytes, status: str, *, to_tag: str | None, contact: str | None,
              body: str = "") -> bytes:
    """What SIPp's ``[last_Via:] [last_From:] …`` answers to ``request``."""
    h = _lines(request)
    to = h["To"] + (f";tag={to_tag}" if to_tag else "")
    text = (f"SIP/2.0 {status}\r\nVia: {h['Via']}\r\nFrom: {h['From']}\r\nTo: {to}\r\n"
            f"Call-ID: {h['Call-ID']}\r\nCSeq: {h['CSeq']}\r\n")
    if contact:
        text += f"Contact: {contact}\r\n"
    text += "X-Centre: AMK-OSLO\r\n"
    if body:
        text += "Content-Type: application/sdp\r\n"
    return f"{text}Content-Length: {len(body)}\r\n\r\n{body}".encode()


def _in_dialog(method: str, ok: bytes, n: int, cseq: int) -> bytes:
    """The caller's ACK/BYE for the 200 OK it received (``[last_To:]``, ``[next_url]``)."""
    h = _lines(ok)
    target = h["Contact"].strip("<>").split(">")[0]
    return (
        f"{method} {target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4242-{n}-{cseq};rport\r\n"
        f"From: <sip:4790000001@127.0.0.1>;tag=4242-{n}\r\n"
        f"To: {h['To']}\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:4790000001@127.0.0.1:5070;transport=UDP>\r\n"
        f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class _Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The two things SipEndpoint asks of its loop: ``time()`` and ``call_at()``."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.handles: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle(when, callback)
        self.handles.append(handle)
        return handle

    def due(self) -> list[_Handle]:
        live = [h for h in self.handles if not h.cancelled]
        ready = [h for h in live if h.when <= self.now]
        self.handles = [h for h in live if h.when > self.now]
        return ready


class FakeUdp:
    """Stands in for the datagram transport: keeps what the router sent, per destination."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def take(self, dest: tuple[str, int], start: bytes) -> bytes:
        for i, (data, addr) in enumerate(self.sent):
            if addr == dest and data.startswith(start):
                del self.sent[i]
                return data
        raise AssertionError(f"router sent no {start!r} to {dest}: {self.sent!r:.500}")


class CoreBench:
    """One router core on a fake loop; ``call()`` runs a whole call and returns timed ns."""

    def __init__(self, step: float, metrics: bool = False) -> None:
        settings = NodruteSettings()
        layer = TransactionLayer(TimerConfig())
        self.loop = FakeLoop()
        self.udp = FakeUdp()
        self.endpoint = SipEndpoint(layer)
        # The two private handles start() would set from a real loop and socket.
        self.endpoint._loop = self.loop  # type: ignore[assignment]
        self.endpoint._udp = self.udp  # type: ignore[assignment]
        self.endpoint.local_address = ROUTER
        hooks: dict[str, Any] = {}
        if metrics:  # wired as router/app.py wires them (the node's default: [metrics] on)
            node = NodeMetrics()
            hooks = {"on_call_ended": node.call_ended, "on_failover": node.failover,
                     "on_hunt_exhausted": node.hunt_exhausted, "on_routed": node.routed}
            self.endpoint.traffic = node.traffic
        self.b2bua = B2bua(layer, settings, load_snapshot(default_table_dir()), port=ROUTER[1],
                           **hooks)
        self.endpoint.user = self.b2bua
        self.step = step
        self.n = 0

    def _rx(self, data: bytes, source: tuple[str, int]) -> int:
        t = time.perf_counter_ns()
        self.endpoint.receive(data, source, "UDP")
        return time.perf_counter_ns() - t

    def _fire_timers(self) -> int:
        spent = 0
        for handle in self.loop.due():
            t = time.perf_counter_ns()
            handle.callback()
            spent += time.perf_counter_ns() - t
        return spent

    def call(self) -> int:
        self.n += 1
        n = self.n
        udp = self.udp
        ns = self._rx(_caller_invite(n), CALLER)
        udp.take(CALLER, b"SIP/2.0 100")
        invite = udp.take(CENTRE, b"INVITE ")
        tag = f"centre{n}"
        contact = "<sip:AMK-OSLO@127.0.0.1:5110;transport=UDP>"
        ns += self._rx(_response(invite, "100 Trying", to_tag=None, contact=None), CENTRE)
        ns += self._rx(_response(invite, "180 Ringing", to_tag=tag, contact=contact), CENTRE)
        udp.take(CALLER, b"SIP/2.0 180")
        ns += self._rx(_response(invite, "200 OK", to_tag=tag, contact=contact, body=SDP),
                       CENTRE)
        ok = udp.take(CALLER, b"SIP/2.0 200")
        ns += self._rx(_in_dialog("ACK", ok, n, 1), CALLER)
        udp.take(CENTRE, b"ACK ")
        ns += self._rx(_in_dialog("BYE", ok, n, 2), CALLER)
        bye = udp.take(CENTRE, b"BYE ")
        udp.take(CALLER, b"SIP/2.0 200")
        ns += self._rx(_response(bye, "200 OK", to_tag=None, contact=None), CENTRE)
        # Anything else sent (retransmissions after a timer) is dropped, as on a lossless LAN.
        udp.sent.clear()
        self.loop.now += self.step
        ns += self._fire_timers()
        return ns


class GcWatch:
    """Time spent in the cyclic garbage collector (pauses of the loop in a live router)."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)


def run(calls: int, repeats: int, warmup: int, step: float,
        metrics: bool = False) -> dict[str, Any]:
    bench = CoreBench(step, metrics)
    for _ in range(warmup):  # fills the timer heap and the lingering transactions
        bench.call()
    watch = GcWatch()
    gc.callbacks.append(watch)
    per_call_us: list[float] = []
    cpu_us: list[float] = []
    for _ in range(repeats):
        cpu0 = time.process_time()
        total = sum(bench.call() for _ in range(calls))
        cpu_us.append((time.process_time() - cpu0) / calls * 1e6)
        per_call_us.append(total / calls / 1000)
    gc.callbacks.remove(watch)
    return {
        "calls_per_repeat": calls,
        "repeats": repeats,
        "router_us_per_call_median": round(statistics.median(per_call_us), 1),
        "router_us_per_call_min": round(min(per_call_us), 1),
        "router_us_per_call_all": [round(x, 1) for x in per_call_us],
        "process_cpu_us_per_call_median": round(statistics.median(cpu_us), 1),
        "core_calls_per_second_one_cpu": round(1e6 / statistics.median(per_call_us)),
        "live_transactions": len(bench.endpoint.layer),
        "active_calls": bench.b2bua.active_calls,
        "gc_collections": len(watch.pauses_ms),
        "gc_pause_ms_max": round(max(watch.pauses_ms, default=0.0), 2),
        "gc_ms_per_call": round(sum(watch.pauses_ms) / (calls * repeats), 4),
        "log_level": logging.getLevelName(logging.getLogger("nodrute").getEffectiveLevel()),
        "metrics": metrics,
    }


def profile(calls: int, warmup: int, step: float, top: int, metrics: bool = False) -> str:
    bench = CoreBench(step, metrics)
    for _ in range(warmup):
        bench.call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        bench.call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2000,
                        help="calls before measuring (with --step 0.02: 40 s of fake time)")
    parser.add_argument("--step", type=float, default=0.02,
                        help="fake seconds per call (time compression for the linger timers)")
    parser.add_argument("--log-level", default="INFO",
                        help="level of the 'nodrute' loggers (the router's default is INFO)")
    parser.add_argument("--log-format", default="json", choices=("json", "console", "plain"),
                        help="router/logs.py as `nodrute serve` with stderr to a file (json), "
                             "or plain stdlib logging (the set-up before structlog)")
    parser.add_argument("--call-events", default="DEBUG", choices=("DEBUG", "INFO"),
                        help="[log] call_events: the level of the per-call state events")
    parser.add_argument("--cprofile", type=int, metavar="TOP", default=0,
                        help="print the TOP functions by own time instead of timing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--metrics", action="store_true",
                        help="wire a NodeMetrics as the node does (its cost is then included)")

    args = parser.parse_args()
    # The router's logging as `nodrute serve` sets it up, written where it costs what a
    # redirected stderr costs (a file), so the per-call log line is measured too.
    sink = open("/dev/null", "w")  # noqa: SIM115
    if args.log_format == "plain":
        logging.basicConfig(level=args.log_level, stream=sink,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        from router.config import LogSettings
        from router.logs import configure_logging

        configure_logging(LogSettings(level=args.log_level, format=args.log_format,
                                      call_events=args.call_events), sink)
    if args.cprofile:
        print(profile(args.calls, args.warmup, args.step, args.cprofile, args.metrics))
        return
    result = run(args.calls, args.repeats, args.warmup, args.step, args.metrics)
    if args.json:
        print(json.dumps(result))
        return
    print(f"router core: {result['router_us_per_call_median']} µs/call median "
          f"(min {result['router_us_per_call_min']}, repeats {result['router_us_per_call_all']}),"
          f" process CPU {result['process_cpu_us_per_call_median']} µs/call incl. harness;"
          f" ≈ {result['core_calls_per_second_one_cpu']} calls/s on one core;"
          f" log level {result['log_level']}; GC pauses max {result['gc_pause_ms_max']} ms,"
          f" {result['gc_collections']} collections")


if __name__ == "__main__":
    main()
