"""The asyncio media engine on real 127.0.0.1 sockets: pacing, DTMF, latching, bridging.

Timing is checked loosely (counts in a generous window, sequence/timestamp increments), never
to the millisecond: the speed figure comes from loadtests/media_bench.py.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

from ivr.codec import alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear
from ivr.engine import (
    AsyncioMediaEngine,
    DtmfReceived,
    MediaEngineError,
    MediaEvent,
    PortRange,
    PromptFinished,
    RemoteLatched,
)
from ivr.prompts import Prompt
from ivr.rtp import RtpPacket, TelephoneEvent
from sip.sdp import PCMA, PCMU, Codec, NegotiatedAudio

pytestmark = pytest.mark.timeout(30)
_ULAW_TO_ALAW = bytes(linear_to_alaw(ulaw_to_linear(c)) for c in range(256))
EngineAndEvents = tuple[AsyncioMediaEngine, list[MediaEvent]]


def make_prompt(frames: int, name: str = "test") -> Prompt:
    pcma = tuple(bytes([i % 256]) * 160 for i in range(frames))
    return Prompt("nb", name, pcma, tuple(f.translate(bytes(range(256))) for f in pcma))


class Peer:
    """A test RTP endpoint: a UDP socket on 127.0.0.1 collecting what arrives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.received: list[tuple[float, RtpPacket]] = []
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            self.received.append((asyncio.get_running_loop().time(), RtpPacket.parse(data)))

    def send(self, packet: RtpPacket, port: int) -> None:
        self.sock.sendto(packet.pack(), ("127.0.0.1", port))

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def seq_steps(packets: list[RtpPacket]) -> set[int]:
    return {(b.sequence - a.sequence) & 0xFFFF for a, b in itertools.pairwise(packets)}


def ts_steps(packets: list[RtpPacket]) -> set[int]:
    return {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)}


def audio(peer_port: int, codec: Codec = PCMA, pt: int = 8, event_pt: int | None = 101,
          ) -> NegotiatedAudio:
    return NegotiatedAudio("127.0.0.1", peer_port, codec, pt, event_pt, 20, "sendrecv")


@pytest.fixture
async def engine_events() -> AsyncIterator[EngineAndEvents]:
    events: list[MediaEvent] = []
    engine = AsyncioMediaEngine("127.0.0.1", PortRange(41000, 41999), events.append)
    yield engine, events
    engine.close()


async def check_pacing() -> None:
    events: list[MediaEvent] = []
    engine = AsyncioMediaEngine("127.0.0.1", PortRange(43000, 43999), events.append)
    peers = [Peer() for _ in range(5)]
    prompt = make_prompt(100)  # 2 s
    for i, peer in enumerate(peers):
        engine.allocate(f"leg{i}")
        engine.set_remote(f"leg{i}", audio(peer.address[1]))
        engine.play(f"leg{i}", prompt)
    await asyncio.sleep(1.0)
    halfway = [len(p.received) for p in peers]
    await asyncio.sleep(1.6)
    for peer, mid in zip(peers, halfway, strict=True):
        # ~50 frames after 1 s (a loaded machine may lag; never faster than real time)
        assert 30 <= mid <= 52
        packets = [p for _, p in peer.received]
        assert [p.payload for p in packets] == list(prompt.pcma)  # every frame, in order
        assert {p.ssrc for p in packets} == {packets[0].ssrc}
        assert seq_steps(packets) == {1}
        assert ts_steps(packets) == {160}
        assert [p.marker for p in packets[:2]] == [True, False]
        span = peer.received[-1][0] - peer.received[0][0]
        assert 1.9 <= span <= 2.6  # 99 intervals of 20 ms, not a burst
    # one shared clock: each tick served all five streams
    assert engine.stats.frames_played == 500
    assert engine.stats.ticks <= 110
    assert sorted(e.leg_id for e in events if isinstance(e, PromptFinished)) == [
        f"leg{i}" for i in range(5)]
    for peer in peers:
        peer.close()
    engine.close()


async def test_one_clock_paces_every_stream_at_20_ms() -> None:
    await check_pacing()


@pytest.mark.skipif(uvloop is None, reason="uvloop not installed")
def test_one_clock_paces_every_stream_at_20_ms_on_uvloop() -> None:
    """uvloop (the router's loop) may fire a timer a millisecond early: still one tick per frame."""
    assert uvloop is not None
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(check_pacing())
    finally:
        loop.close()


async def test_dtmf_is_reported_once_and_latching_redirects_the_prompt(
    engine_events: EngineAndEvents,
) -> None:
    engine, events = engine_events
    sdp_peer, real_peer = Peer(), Peer()  # the SDP says one address, RTP comes from another
    local = engine.allocate("caller")
    engine.set_remote("caller", audio(sdp_peer.address[1]))
    engine.play("caller", make_prompt(500), repeat=True)
    await asyncio.sleep(0.2)
    assert sdp_peer.received  # before latching: the SDP address
    for digit_event, ts, seq in ((1, 8000, 100), (1, 16000, 110), (11, 24000, 120)):
        for i, (end, duration) in enumerate(((False, 160), (False, 320), (True, 480),
                                             (True, 480), (True, 480))):
            payload = TelephoneEvent(digit_event, end, 10, duration).pack()
            real_peer.send(RtpPacket(101, seq + i, ts, 77, payload, marker=i == 0), local.port)
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert [e.digit for e in events if isinstance(e, DtmfReceived)] == ["1", "1", "#"]
    assert events[0] == RemoteLatched("caller", real_peer.address)
    before = len(sdp_peer.received)
    real_count = len(real_peer.received)
    await asyncio.sleep(0.3)
    assert len(sdp_peer.received) == before  # nothing more to the SDP address
    assert len(real_peer.received) >= real_count + 8
    engine.release("caller")
    sdp_peer.close()
    real_peer.close()


async def test_bridge_relays_both_ways_with_continuous_timestamps(
    engine_events: EngineAndEvents,
) -> None:
    engine, _events = engine_events
    caller, centre = Peer(), Peer()
    caller_leg = engine.allocate("caller")
    centre_leg = engine.allocate("centre")
    engine.set_remote("caller", audio(caller.address[1], PCMA, 8, 101))
    engine.set_remote("centre", audio(1, PCMU, 0, 96))  # SDP port unusable: latching must fix
    engine.play("caller", make_prompt(500), repeat=True)
    await asyncio.sleep(0.3)
    # the centre answers mid-prompt and starts talking (its own SSRC/seq/ts, µ-law)
    centre.send(RtpPacket(0, 5000, 123456, 0xCE, bytes([0xFF]) * 160), centre_leg.port)
    await asyncio.sleep(0.05)  # read (and latched) before the bridge: not relayed
    engine.bridge("caller", "centre")
    await asyncio.sleep(0.05)  # prompt frames already in flight land first
    prompt_packets = len(caller.received)
    for i in range(1, 25):
        centre.send(RtpPacket(0, 5000 + i, 123456 + 160 * i, 0xCE, bytes([i]) * 160),
                    centre_leg.port)
        caller.send(RtpPacket(8, 900 + i, 777 + 160 * i, 0xCA, bytes([0xD5]) * 160),
                    caller_leg.port)
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    to_caller = [p for _, p in caller.received]
    relayed = to_caller[prompt_packets:]
    assert len(relayed) == 24
    assert all(bytes([i + 1]).translate(_ULAW_TO_ALAW) * 160 == p.payload
               for i, p in enumerate(relayed))  # transcoded µ-law -> A-law
    # one stream for the caller: same SSRC, sequence +1 throughout, timestamps moving forward
    assert {p.ssrc for p in to_caller} == {to_caller[0].ssrc}
    assert seq_steps(to_caller) == {1}
    switch = to_caller[prompt_packets - 1], relayed[0]
    assert 160 <= (switch[1].timestamp - switch[0].timestamp) & 0xFFFFFFFF <= 160 * 30
    assert relayed[0].marker and not any(p.marker for p in relayed[1:])
    assert ts_steps(relayed) == {160}
    # the other way: the centre (latched to its real address) hears the caller as µ-law
    to_centre = [p for _, p in centre.received]
    assert len(to_centre) == 24 and {p.payload_type for p in to_centre} == {0}
    assert to_centre[0].payload == bytes([linear_to_ulaw(alaw_to_linear(0xD5))]) * 160
    engine.release("centre")
    caller.send(RtpPacket(8, 999, 99999, 0xCA, bytes([0xD5]) * 160), caller_leg.port)
    await asyncio.sleep(0.05)
    assert len(centre.received) == 24  # released: nothing relayed
    caller.close()
    centre.close()


async def test_port_range_exhaustion_and_reuse() -> None:
    engine = AsyncioMediaEngine("127.0.0.1", PortRange(42000, 42004), lambda _e: None)
    first = engine.allocate("a")
    engine.allocate("b")
    with pytest.raises(MediaEngineError, match="no free RTP port"):
        engine.allocate("c")
    engine.release("a")
    engine.release("a")  # idempotent
    assert engine.allocate("c").port == first.port
    assert first.port % 2 == 0
    engine.close()
    assert engine.leg_count == 0


async def test_a_prompt_on_a_bridged_leg_takes_over_and_the_relay_resumes_seamlessly(
    engine_events: EngineAndEvents,
) -> None:
    engine, events = engine_events
    caller, centre = Peer(), Peer()
    engine.allocate("caller")
    centre_leg = engine.allocate("centre")
    engine.set_remote("caller", audio(caller.address[1]))
    engine.set_remote("centre", audio(centre.address[1]))
    engine.bridge("caller", "centre")

    async def centre_talks(first: int, count: int) -> None:
        for i in range(first, first + count):
            centre.send(RtpPacket(8, i, 160 * i, 0xCE, b"\xee" * 160), centre_leg.port)
            await asyncio.sleep(0.02)

    await centre_talks(1, 5)
    engine.play("caller", make_prompt(10, "all_busy"))  # e.g. an announcement mid-call
    await centre_talks(6, 15)  # 300 ms: the 200 ms prompt ends meanwhile
    await asyncio.sleep(0.1)
    packets = [p for _, p in caller.received]
    kinds = ["relay" if p.payload == b"\xee" * 160 else "prompt" for p in packets]
    assert kinds.count("prompt") == 10
    first_prompt = kinds.index("prompt")
    # relayed audio before, none during, and relayed audio after the prompt
    assert kinds[first_prompt:first_prompt + 10] == ["prompt"] * 10
    assert "relay" in kinds[:first_prompt] and "relay" in kinds[first_prompt + 10:]
    assert seq_steps(packets) == {1}
    assert all(0 < step < 160 * 50 for step in ts_steps(packets))  # only forwards
    assert PromptFinished("caller", "all_busy") in events


async def test_hold_address_sends_nothing_and_a_new_sdp_address_relearns(
    engine_events: EngineAndEvents,
) -> None:
    engine, events = engine_events
    old, new = Peer(), Peer()
    local = engine.allocate("leg")
    engine.set_remote("leg", NegotiatedAudio("0.0.0.0", 4000, PCMA, 8, None, 20, "sendrecv"))
    engine.play("leg", make_prompt(5))
    await asyncio.sleep(0.2)
    assert engine.stats.frames_played == 5 and engine.stats.send_errors == 0
    old.send(RtpPacket(8, 1, 1, 1, b"\xd5" * 160), local.port)  # latches
    await asyncio.sleep(0.05)
    assert events == [PromptFinished("leg", "test"), RemoteLatched("leg", old.address)]
    engine.set_remote("leg", audio(new.address[1]))  # re-INVITE: the new SDP address counts
    engine.play("leg", make_prompt(5))
    await asyncio.sleep(0.2)
    assert len(new.received) == 5 and not old.received
    old.close()
    new.close()


async def test_next_prompt_started_from_the_finished_event_keeps_one_clock() -> None:
    """What IvrSession does (greeting ends -> menu prompt) must not start a second clock."""
    peer = Peer()
    engines: list[AsyncioMediaEngine] = []
    second = make_prompt(200, "second")

    def on_event(event: MediaEvent) -> None:
        if isinstance(event, PromptFinished) and event.prompt == "first":
            engines[0].play(event.leg_id, second)

    engine = AsyncioMediaEngine("127.0.0.1", PortRange(43100, 43199), on_event)
    engines.append(engine)
    engine.allocate("leg")
    engine.set_remote("leg", audio(peer.address[1]))
    engine.play("leg", make_prompt(5, "first"))
    await asyncio.sleep(1.1)
    packets = [p for _, p in peer.received]
    # 1.1 s at 20 ms is 55 frames; a doubled clock would have sent about 100
    assert 35 <= len(packets) <= 57
    assert engine.stats.ticks <= len(packets) + 3
    assert seq_steps(packets) == {1} and ts_steps(packets) == {160}
    engine.close()
    peer.close()


async def test_rtcp_is_counted_and_garbage_is_dropped_without_latching(
    engine_events: EngineAndEvents,
) -> None:
    engine, events = engine_events
    peer = Peer()
    local = engine.allocate("leg")
    engine.set_remote("leg", audio(peer.address[1]))
    receiver_report = bytes([0x80, 201, 0, 1]) + (77).to_bytes(4, "big")
    peer.sock.sendto(receiver_report, ("127.0.0.1", local.port + 1))  # RTCP port
    peer.sock.sendto(receiver_report, ("127.0.0.1", local.port))  # rtcp-mux (RFC 5761)
    peer.sock.sendto(b"\x00" * 40, ("127.0.0.1", local.port))  # not RTP v2
    peer.sock.sendto(b"\x80\x08", ("127.0.0.1", local.port))  # too short
    await asyncio.sleep(0.1)
    assert engine.stats.rtcp_received == 2
    assert engine.stats.malformed == 2
    assert engine.stats.packets_received == 0 and events == []  # nothing latched on it
    peer.close()
