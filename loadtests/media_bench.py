"""Media bench: CPU of the asyncio media engine per 100 streams (prompts, and bridged relay).

Not part of ``make test``; run by hand (``.venv/bin/python loadtests/media_bench.py --help``).
Everything on 127.0.0.1, three processes so that only the engine's own work is measured:

* the **engine** process under test (this one, on uvloop when installed): ``--streams``
  legs playing the Norwegian 116117 greeting in a loop (``play``), or ``--streams`` legs
  bridged in pairs (``bridge``): half the legs receive from the feeder, the other half relay to
  the receiver, so ``--streams`` counts every RTP stream the engine sends;
* a **feeder** process (bridge mode only): another engine playing into the bridged legs;
* a **receiver** process counting packets per SSRC, sequence gaps and late packets
  (inter-arrival over 60 ms).

CPU is the engine process's user+system time over the measured window divided by wall time
(100 % = one core), reported per 100 streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.engine import AsyncioMediaEngine, PortRange
from ivr.prompts import PromptCatalogue
from sip.sdp import PCMA, NegotiatedAudio


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def receiver(conn: Connection, warmup_s: float, measure_s: float) -> None:
    """Count packets for ``measure_s`` starting ``warmup_s`` after the first one arrives."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    conn.send(sock.getsockname()[1])
    data = sock.recv(2048)
    measure_from = time.monotonic() + warmup_s
    measure_to = measure_from + measure_s
    sock.settimeout(0.2)
    last: dict[int, tuple[int, float]] = {}
    packets = gaps = late = 0
    while (now := time.monotonic()) < measure_to:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        now = time.monotonic()
        seq, _ts, ssrc = struct.unpack_from("!HII", data, 2)
        previous = last.get(ssrc)
        last[ssrc] = (seq, now)
        if now < measure_from or previous is None:
            continue
        packets += 1
        gaps += ((seq - previous[0]) & 0xFFFF) - 1
        late += now - previous[1] > 0.060
    conn.send({"packets": packets, "streams": len(last), "seq_gaps": gaps,
               "late_over_60ms": late,
               "packets_per_stream_per_s": round(packets / max(1, len(last)) / measure_s, 2)})


async def _play_into(ports: list[int], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    engine = AsyncioMediaEngine("127.0.0.1", PortRange(46000, 47999), lambda _e: None, loop)
    prompt = PromptCatalogue.load().get("nb", "greeting_116117")
    for i, port in enumerate(ports):
        engine.allocate(f"f{i}")
        engine.set_remote(f"f{i}", NegotiatedAudio("127.0.0.1", port, PCMA, 8, 101, 20,
                                                   "sendrecv"))
        engine.play(f"f{i}", prompt, repeat=True)
    await asyncio.sleep(seconds)
    engine.close()


def feeder(ports: list[int], seconds: float) -> None:
    _new_loop().run_until_complete(_play_into(ports, seconds))


async def run_engine(mode: str, streams: int, target_port: int, warmup_s: float,
                     measure_s: float) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    engine = AsyncioMediaEngine("127.0.0.1", PortRange(44000, 45999), lambda _e: None, loop)
    prompt = PromptCatalogue.load().get("nb", "greeting_116117")
    feed: mp.Process | None = None

    def remote(port: int) -> NegotiatedAudio:
        return NegotiatedAudio("127.0.0.1", port, PCMA, 8, 101, 20, "sendrecv")

    if mode == "play":
        for i in range(streams):
            engine.allocate(f"p{i}")
            engine.set_remote(f"p{i}", remote(target_port))
            engine.play(f"p{i}", prompt, repeat=True)
    else:
        inbound_ports = []
        for i in range(streams):
            inbound = engine.allocate(f"in{i}")
            engine.allocate(f"out{i}")
            engine.set_remote(f"in{i}", remote(9))  # latches to the feeder
            engine.set_remote(f"out{i}", remote(target_port))
            engine.bridge(f"in{i}", f"out{i}")
            inbound_ports.append(inbound.port)
        feed = mp.Process(target=feeder, args=(inbound_ports, warmup_s + measure_s + 2))
        feed.start()
    await asyncio.sleep(warmup_s)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(measure_s)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    await asyncio.sleep(1.0)  # the receiver's window started a little later
    stats = engine.stats
    engine.close()
    if feed is not None:
        feed.join()
    return {"cpu_percent": 100 * cpu / wall, "frames_skipped": stats.frames_skipped,
            "send_errors": stats.send_errors, "ticks": stats.ticks,
            "packets_relayed": stats.packets_relayed, "frames_played": stats.frames_played}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("play", "bridge"), default="play")
    parser.add_argument("--streams", type=int, default=100,
                        help="RTP streams the engine sends (bridge: legs pairs)")
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--measure-s", type=float, default=10.0)
    args = parser.parse_args()
    parent, child = mp.Pipe()
    recv = mp.Process(target=receiver, args=(child, args.warmup_s, args.measure_s))
    recv.start()
    port = parent.recv()
    result = _new_loop().run_until_complete(
        run_engine(args.mode, args.streams, port, args.warmup_s, args.measure_s))
    received = parent.recv()
    recv.join()
    report = {"mode": args.mode, "streams": args.streams, "measure_s": args.measure_s,
              **result, "cpu_percent_per_100_streams":
              round(float(result["cpu_percent"]) * 100 / args.streams, 2),  # type: ignore[arg-type]
              "received": received}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
