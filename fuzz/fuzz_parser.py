"""Fuzz target: untrusted bytes through the whole receive path, no sockets.

Each input goes where a datagram or a TCP segment from the network would go (sip/transport.py
``SipEndpoint.receive``): :func:`sip.parser.parse_message` (UDP) or a
:class:`sip.parser.StreamFramer` (TCP), a :class:`sip.errors.SipParseError` answered by
:func:`sip.stateless.error_response_bytes`, a parsed message handed to
:meth:`sip.transaction.TransactionLayer.receive`, its events to the real B2BUA dispatcher
(:class:`router.b2bua.B2bua`, sample routing table, default trunk = every source), and every
datagram it queues parsed again as its peer would. A fake clock advances per input so
transactions and calls time out as they would in service: state must stay bounded.

A finding is any exception other than ``SipParseError`` escaping a layer, a fault the B2BUA
caught and counted (``internal_errors``: it answered 500 instead of crashing, still a bug), or
a message we send that our own parser refuses.

Two drivers share :class:`ReceivePath`:

* atheris (coverage-guided, libFuzzer)::

      .venv/bin/python fuzz/fuzz_parser.py -atheris [libFuzzer flags, e.g. -max_total_time=600]

* a pure-Python random-mutation runner (no atheris needed; what the test suite runs)::

      .venv/bin/python fuzz/fuzz_parser.py --seconds 600 [--seed 1] [--iterations N]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import re
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ATHERIS = __name__ == "__main__" and "-atheris" in sys.argv
if ATHERIS:  # coverage instrumentation of our own packages only (all of them takes minutes)
    import atheris  # type: ignore[import-not-found]  # optional: pip install atheris

    _instrumented = atheris.instrument_imports(include=["sip", "router"])
else:
    _instrumented = contextlib.nullcontext()

with _instrumented:
    from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
    from router.b2bua import B2bua
    from router.config import NodruteSettings
    from sip.errors import SipParseError
    from sip.events import Outgoing
    from sip.parser import StreamFramer, parse_message
    from sip.stateless import error_response_bytes
    from sip.timers import TimerConfig
    from sip.transaction import TransactionLayer

CARRIER = ("192.0.2.10", 5080)
STEP_S = 0.05
"""Fake time per input: 20 inputs per simulated second, so Timer B/F (32 s) and the calls'
own timers fire every few hundred inputs and state cannot pile up forever."""


class Finding(AssertionError):
    """The receive path misbehaved on an input (the input is in ``args[1]``)."""


@dataclass
class Stats:
    inputs: int = 0
    parsed: int = 0
    rejected: int = 0
    answered: int = 0
    sent: int = 0
    stream_messages: int = 0


@dataclass
class ReceivePath:
    """Parser → stateless answers → transaction layer → B2BUA, with a fake clock."""

    snapshot: RoutingSnapshot
    now: float = 1000.0
    stats: Stats = field(default_factory=Stats)
    source: tuple[str, int] = CARRIER
    record: bool = False
    """Keep every message sent in :attr:`sent` (tests); off while fuzzing."""
    sent: list[Outgoing] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.layer = TransactionLayer(TimerConfig())
        self.b2bua = B2bua(self.layer, NodruteSettings(), self.snapshot, port=5060)
        self.framer = StreamFramer()

    def feed(self, data: bytes) -> None:
        """One input: a UDP datagram, or (first byte odd) a TCP segment."""
        self.stats.inputs += 1
        self.now += STEP_S
        if data[:1] and data[0] & 1 and data[:1] not in (b"I", b"O", b"S", b"A", b"C", b"M"):
            self._stream(data[1:])
        else:
            self.receive(data, "UDP")
        self.layer.handle_timers(self.now)
        self.b2bua.handle_timers(self.now)
        self._pump()
        faults = self.b2bua.counters["internal_errors"]
        if faults:
            raise Finding("the B2BUA caught a fault (answered 500)", data)

    def advance(self, seconds: float) -> None:
        """Move the fake clock, firing the timers due (e.g. the 200 ms 100 Trying, §17.2.1)."""
        self.now += seconds
        self.layer.handle_timers(self.now)
        self.b2bua.handle_timers(self.now)
        self._pump()

    def _stream(self, data: bytes) -> None:
        if self.framer.broken:
            self.framer = StreamFramer()  # the transport closes the connection; a new one
        for item in self.framer.feed(data):
            if isinstance(item, SipParseError):
                self._answer(b"", item, "TCP")
            else:
                self.stats.stream_messages += 1
                self.receive(item, "TCP")

    def receive(self, data: bytes, transport: str) -> None:
        """What ``SipEndpoint.receive`` does with one complete message."""
        try:
            message = parse_message(data, stream=transport != "UDP")
        except SipParseError as err:
            self._answer(data, err, transport)
            return
        self.stats.parsed += 1
        try:
            self.layer.receive(message, self.source, transport, self.now)
        except SipParseError as err:
            self._answer(data, err, transport)
            return
        self._pump()

    def _answer(self, data: bytes, err: SipParseError, transport: str = "UDP") -> None:
        self.stats.rejected += 1
        if not (400 <= err.status < 700) or not err.reason.isprintable():
            raise Finding(f"bad error status/reason {err.status} {err.reason!r}", data)
        response = error_response_bytes(data, err)
        if response is not None:
            self.stats.answered += 1
            _check_stateless(response, data)
            if self.record:
                self.sent.append(Outgoing(response, self.source, transport))

    def _pump(self) -> None:
        layer = self.layer
        while (event := layer.next_event()) is not None:
            self.b2bua.handle_event(event, self.now)
        for out in layer.datagrams_to_send():
            self.stats.sent += 1
            self._check_ours(out.data)
            if self.record:
                self.sent.append(out)

    def _check_ours(self, data: bytes) -> None:
        try:
            parse_message(data)
        except SipParseError as err:
            raise Finding(f"we sent a message our parser refuses: {err}", data) from err

    def state_size(self) -> int:
        """Live transactions, timer entries, calls: what must stay bounded."""
        return len(self.layer) + self.layer.timer_entries + self.b2bua.active_calls


_STATUS_LINE = re.compile(rb"SIP/2\.0 [4-6][0-9][0-9] [ -~]*")


def _check_stateless(response: bytes, data: bytes) -> None:
    """A stateless answer echoes the peer's Via/From/To/Call-ID/CSeq text as received, so it
    need not parse (RFC 4475 §3.1.2.1 wants a 400 even for a broken Via); it must still be one
    well-framed message: our status line, no bare CR or LF inside a header line, no body."""
    head, sep, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not sep or body or not _STATUS_LINE.fullmatch(lines[0]) or \
            any(b"\r" in line or b"\n" in line for line in lines) or \
            lines[-1] != b"Content-Length: 0":
        raise Finding(f"malformed stateless answer {response!r}", data)


# ------------------------------------------------------------------------------ seed corpus


def _message(lines: list[str], body: bytes = b"") -> bytes:
    if body:
        lines = [*lines, "Content-Type: application/sdp"]
    return ("\r\n".join([*lines, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body


_SDP = (b"v=0\r\no=c 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")


def builtin_seeds() -> list[bytes]:
    """Messages a carrier sends: an emergency INVITE (routed), its CANCEL, ACK, BYE, OPTIONS,
    a response to a request we never sent."""
    head = [
        "Via: SIP/2.0/UDP 192.0.2.10:5080;branch=z9hG4bKseed1;rport",
        "Max-Forwards: 70",
        'From: "Kari" <sip:4790000001@carrier.example>;tag=seedtag',
        "To: <sip:113@127.0.0.1>",
        "Call-ID: seed1@carrier.example",
    ]
    return [
        _message(["INVITE sip:113@127.0.0.1 SIP/2.0", *head, "CSeq: 1 INVITE",
                  "Contact: <sip:4790000001@192.0.2.10:5080>", "X-Kommunenummer: 0301"], _SDP),
        _message(["INVITE sip:116117@127.0.0.1;kommune=4601 SIP/2.0", *head, "CSeq: 1 INVITE",
                  "Contact: <sip:4790000001@192.0.2.10:5080>"], _SDP),
        _message(["CANCEL sip:113@127.0.0.1 SIP/2.0", *head, "CSeq: 1 CANCEL"]),
        _message(["ACK sip:113@127.0.0.1 SIP/2.0", *head, "CSeq: 1 ACK"]),
        _message(["BYE sip:nodrute@127.0.0.1 SIP/2.0", *head[:3],
                  "To: <sip:113@127.0.0.1>;tag=abc", head[4], "CSeq: 2 BYE"]),
        _message(["OPTIONS sip:127.0.0.1 SIP/2.0", *head, "CSeq: 7 OPTIONS",
                  "Accept: application/sdp"]),
        _message(["SIP/2.0 180 Ringing", *head[:4], "To: <sip:113@127.0.0.1>;tag=c",
                  head[4], "CSeq: 1 INVITE"]),
        b"\r\n\r\n",
    ]


def corpus() -> list[bytes]:
    """Built-in seeds plus the RFC 4475/5118 torture messages when the tests are present."""
    data = REPO / "tests" / "data"
    files = sorted(data.glob("rfc4475/*.dat")) + sorted(data.glob("rfc5118/wire/*.dat"))
    return builtin_seeds() + [path.read_bytes() for path in files]


# --------------------------------------------------------------------- pure-Python mutator

_TOKENS = [b"\r\n", b"\r\n ", b"\r\n\r\n", b"\n", b"\r", b":", b",", b";", b'"', b"<", b">",
           b"\\", b"%", b"%00", b" ", b"\t", b"\x00", b"\xff", b"\xc3\xa6", b"=", b"@", b"[",
           b"]", b"SIP/2.0", b"SIP/7.0", b"Content-Length: 99999", b"l: -1", b"l: 0",
           b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx", b"CSeq: 1 INVITE", b"tag=",
           b";tag=abc", b"branch=z9hG4bK", b"Max-Forwards: 0", b"Require: 100rel",
           b"9" * 30, b"sip:113@127.0.0.1", b"tel:113", b"urn:service:sos", b"INVITE",
           b"ACK", b"CANCEL", b"BYE", b"Contact: *", b"Route: <sip:x;lr>"]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """1 to 4 random edits: byte flips, token inserts, cuts, line duplication/removal,
    splices with another seed, header folding."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        pos = rng.randint(0, len(out))
        if op == 0 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 1:
            out[pos:pos] = rng.choice(_TOKENS)
        elif op == 2:
            del out[pos:pos + rng.randint(1, 16)]
        elif op == 3:
            del out[pos:]
        elif op in (4, 5):
            lines = bytes(out).split(b"\r\n")
            i = rng.randrange(len(lines))
            if op == 4:
                lines.insert(i, lines[i])
            elif len(lines) > 1:
                del lines[i]
            out = bytearray(b"\r\n".join(lines))
        elif op == 6:
            other = rng.choice(pool)
            cut = rng.randint(0, len(other))
            out = out[:pos] + other[cut:cut + rng.randint(1, 200)]
        elif op == 7:
            out = out.replace(b": ", b":\r\n  ", rng.randint(1, 3))
        else:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def inputs(rng: random.Random, pool: list[bytes]) -> Iterator[bytes]:
    """Endless inputs: now and then a seed as-is (calls get set up), mostly mutants."""
    while True:
        seed = rng.choice(pool)
        yield seed if rng.random() < 0.1 else mutate(seed, rng, pool)


@dataclass
class RunReport:
    iterations: int
    seconds: float
    stats: Stats
    peak_state: int
    final_state: int
    traced_after_warmup: int
    traced_at_end: int


def run(iterations: int | None = None, seconds: float | None = None, seed: int = 0,
        warmup: int = 2_000, snapshot: RoutingSnapshot | None = None) -> RunReport:
    """Feed mutated inputs until ``iterations`` or ``seconds`` runs out.

    Raises :class:`Finding` (or whatever escaped) on the first failing input. Measures Python
    heap use (tracemalloc) after ``warmup`` inputs and at the end, so a caller can check that
    memory does not grow with the number of inputs.
    """
    if iterations is None and seconds is None:
        raise ValueError("give iterations or seconds")
    rng = random.Random(seed)
    pool = corpus()
    path = ReceivePath(snapshot or load_snapshot(default_table_dir()))
    started = time.monotonic()
    tracing = not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    logging.disable(logging.CRITICAL)  # every unrouted call logs; the fuzzer wants none of it
    try:
        after_warmup = 0
        peak = 0
        count = 0
        for data in inputs(rng, pool):
            if iterations is not None and count >= iterations:
                break
            if seconds is not None and count % 256 == 0 and \
                    time.monotonic() - started >= seconds:
                break
            try:
                path.feed(data)
            except Finding:
                raise
            except Exception as exc:
                raise Finding(f"unhandled {type(exc).__name__}: {exc}", data) from exc
            count += 1
            if count % 64 == 0:
                peak = max(peak, path.state_size())
            if count == warmup:
                after_warmup = tracemalloc.get_traced_memory()[0]
        at_end = tracemalloc.get_traced_memory()[0]
    finally:
        logging.disable(logging.NOTSET)
        if tracing:
            tracemalloc.stop()
    return RunReport(count, time.monotonic() - started, path.stats, peak, path.state_size(),
                     after_warmup, at_end)


# --------------------------------------------------------------------------------- atheris


def atheris_main(argv: list[str]) -> None:
    """libFuzzer over :class:`ReceivePath`. Flags as libFuzzer's; a positional argument is the
    corpus directory (default fuzz/corpus/, seeded from :func:`corpus` when missing or empty)."""
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    dirs = [Path(arg) for arg in argv[1:] if not arg.startswith("-")] or [REPO / "fuzz" / "corpus"]
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.iterdir()):
            for i, seed in enumerate(corpus()):
                (folder / f"seed{i:03d}").write_bytes(seed)
    logging.disable(logging.CRITICAL)
    path = ReceivePath(load_snapshot(default_table_dir()))
    atheris.Setup([argv[0], *flags, *map(str, dirs)], path.feed)
    atheris.Fuzz()


def main() -> None:
    if "-atheris" in sys.argv:
        atheris_main([arg for arg in sys.argv if arg != "-atheris"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.seconds is None and args.iterations is None:
        args.seconds = 60.0
    try:
        report = run(args.iterations, args.seconds, args.seed)
    except Finding as finding:
        print(f"FINDING: {finding.args[0]}\ninput: {finding.args[1]!r}")
        raise SystemExit(1) from None
    s = report.stats
    print(f"{report.iterations} inputs in {report.seconds:.0f} s "
          f"({report.iterations / max(report.seconds, 1e-9):.0f}/s): {s.parsed} parsed, "
          f"{s.rejected} rejected ({s.answered} answered), {s.sent} messages sent, "
          f"{s.stream_messages} framed off TCP; state peak {report.peak_state}, "
          f"end {report.final_state}; traced heap {report.traced_after_warmup / 1e6:.2f} MB "
          f"after warm-up, {report.traced_at_end / 1e6:.2f} MB at the end")


if __name__ == "__main__":
    main()
