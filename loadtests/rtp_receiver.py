"""RTP receiver for the media bench: counts what the router sends, per stream, and echoes.

A stream is one (local port, source address, SSRC): every router leg has its own port and
SSRC, so many calls can share one receiving socket. Per stream it counts packets, sequence
gaps (missing numbers), duplicates and reordered packets, and **late packets**: an
inter-arrival over ``--late-ms`` (60 ms = three 20 ms frames) before a packet without the
marker bit. A packet with the marker bit starts a talkspurt (RFC 3551 §4.1: a new prompt, or
the switch from the prompt to the centre's audio): a longer silence before it is legitimate,
so it is counted apart (``switch_gaps``, ``switch_gap_max_ms``) and does not count as late.

Arrival times are the kernel's receive timestamps (``SO_TIMESTAMPNS``), so a moment in which
this process itself was not scheduled does not show up as a late packet: what is measured is
when the router's datagrams arrived on 127.0.0.1.

``--echo PORT`` sockets also send every packet straight back to its source (a centre that
echoes, like SIPp's ``-rtp_echo``); ``echo_lag_max_ms`` is the longest a packet waited here
before being echoed (this process's own delay, which the other direction then inherits).

Run by ``loadtests/bench_media.py``; by hand::

    .venv/bin/python loadtests/rtp_receiver.py --listen 41204 --echo 41304 --out rtp.json

It prints ``ready`` once bound, runs until SIGINT/SIGTERM, then writes the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
_TIMESPEC = struct.Struct("@qq")
_HEAD = struct.Struct("!BBH4xI")  # V/P/X/CC, M/PT, sequence, (timestamp), SSRC
BUCKET_S = 0.1


@dataclass(slots=True)
class StreamStats:
    """One RTP stream as received."""

    first_at: float
    last_at: float
    last_seq: int
    packets: int = 1
    seq_gaps: int = 0
    """Sequence numbers that never arrived (counted when a later one does)."""
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    """Packets (no marker bit) that came more than the late threshold after the previous."""
    max_gap_s: float = 0.0
    """Longest inter-arrival before a packet without the marker bit."""
    switch_gaps: int = 0
    """Packets with the marker bit after more than the late threshold (a talkspurt start)."""
    switch_gap_max_s: float = 0.0


@dataclass
class RtpMeter:
    """Sans-IO: feed it datagrams with their arrival time, read the summary."""

    late_after_s: float = 0.060
    streams: dict[tuple[int, str, int, int], StreamStats] = field(default_factory=dict)
    buckets: dict[tuple[int, int], int] = field(default_factory=dict)
    """(local port, arrival // BUCKET_S) -> packets, to count packets inside a window."""
    late_buckets: dict[tuple[int, int], int] = field(default_factory=dict)
    """The same for late packets: when in a run they came (set-up, steady, tear-down)."""
    not_rtp: int = 0

    def packet(self, local_port: int, source: tuple[str, int], data: bytes, at: float) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76:
            self.not_rtp += 1  # too short, not version 2, or RTCP on a muxed port
            return
        _b0, b1, seq, ssrc = _HEAD.unpack_from(data)
        bucket = (local_port, int(at / BUCKET_S))
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1
        key = (local_port, source[0], source[1], ssrc)
        stream = self.streams.get(key)
        if stream is None:
            self.streams[key] = StreamStats(at, at, seq)
            return
        stream.packets += 1
        step = (seq - stream.last_seq) & 0xFFFF
        if step == 0:
            stream.duplicates += 1
            return
        if step >= 0x8000:  # older than the newest: late arrival of a reordered packet
            stream.reordered += 1
            return
        stream.seq_gaps += step - 1
        stream.last_seq = seq
        gap = at - stream.last_at
        stream.last_at = at
        if b1 & 0x80:
            if gap > self.late_after_s:
                stream.switch_gaps += 1
                stream.switch_gap_max_s = max(stream.switch_gap_max_s, gap)
            return
        if gap > stream.max_gap_s:
            stream.max_gap_s = gap
        if gap > self.late_after_s:
            stream.late += 1
            self.late_buckets[bucket] = self.late_buckets.get(bucket, 0) + 1

    def packets_between(self, port: int, start: float, end: float) -> int:
        first, last = int(start / BUCKET_S), int(end / BUCKET_S)
        return sum(n for (p, b), n in self.buckets.items() if p == port and first <= b < last)

    def summary(self, port: int) -> dict[str, Any]:
        """Totals over the streams received on ``port``, plus each stream's life."""
        streams = [s for (p, *_rest), s in self.streams.items() if p == port]
        return {
            "streams": len(streams),
            "packets": sum(s.packets for s in streams),
            "seq_gaps": sum(s.seq_gaps for s in streams),
            "duplicates": sum(s.duplicates for s in streams),
            "reordered": sum(s.reordered for s in streams),
            "late": sum(s.late for s in streams),
            "streams_with_late": sum(1 for s in streams if s.late),
            "max_gap_ms": round(1000 * max((s.max_gap_s for s in streams), default=0.0), 1),
            "switch_gaps": sum(s.switch_gaps for s in streams),
            "switch_gap_max_ms": round(
                1000 * max((s.switch_gap_max_s for s in streams), default=0.0), 1),
            "lives": [[round(s.first_at, 3), round(s.last_at, 3), s.packets] for s in streams],
        }  # fmt: skip


def _open(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((LOOPBACK, port))
    sock.setblocking(False)
    return sock


def _kernel_time(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec + nsec / 1e9
    return time.time()


def serve(listen: Sequence[int], echo: Sequence[int], meter: RtpMeter) -> dict[str, Any]:
    """Receive (and echo) until SIGINT/SIGTERM; the summary per port."""
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    selector = selectors.DefaultSelector()
    sockets = {port: _open(port) for port in [*listen, *echo]}
    for port, sock in sockets.items():
        selector.register(sock, selectors.EVENT_READ, (port, port in echo))
    ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
    echo_lag_max = 0.0
    echo_errors = 0
    print("ready", flush=True)
    while not stop:
        for key, _mask in selector.select(timeout=0.2):
            port, echoing = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            for _ in range(256):
                try:
                    data, ancdata, _flags, source = sock.recvmsg(2048, ancillary)
                except (BlockingIOError, InterruptedError):
                    break
                at = _kernel_time(ancdata)
                meter.packet(port, source, data, at)
                if echoing:
                    try:
                        sock.sendto(data, source)
                    except OSError:
                        echo_errors += 1
                    echo_lag_max = max(echo_lag_max, time.time() - at)
    for sock in sockets.values():
        sock.close()
    return {
        "ports": {str(port): {"echo": port in echo, **meter.summary(port)} for port in sockets},
        "echo_lag_max_ms": round(1000 * echo_lag_max, 1),
        "echo_errors": echo_errors,
        "not_rtp": meter.not_rtp,
        "buckets": [[port, bucket, n] for (port, bucket), n in sorted(meter.buckets.items())],
        "late_buckets": [[port, bucket, n]
                         for (port, bucket), n in sorted(meter.late_buckets.items())],
        "bucket_s": BUCKET_S,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, action="append", default=[],
                        help="a 127.0.0.1 UDP port to count on (repeatable)")
    parser.add_argument("--echo", type=int, action="append", default=[],
                        help="a port to count on and echo every packet back from")
    parser.add_argument("--late-ms", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True, help="JSON summary written here")
    args = parser.parse_args(argv)
    result = serve(args.listen, args.echo, RtpMeter(late_after_s=args.late_ms / 1000))
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
