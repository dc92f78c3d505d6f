"""The media engine: RTP legs, prompt playback on one shared pacing clock, leg-to-leg relay.

``MediaEngine`` is the interface the router drives (a later issue puts rtpengine behind it);
``AsyncioMediaEngine`` is the in-process implementation:

* every leg owns an even RTP port and the odd RTCP port above it, taken from a configured range;
  sockets are non-blocking and read through ``loop.add_reader`` (no transport objects), so
  allocating a leg is synchronous;
* ONE clock paces every playing stream: a single ``loop.call_at`` tick every 20 ms sends the due
  frame of each playing leg (never a timer per stream), scheduled on absolute instants so it
  does not drift, catching up at most ``MAX_CATCH_UP`` missed frames after a stall;
* each leg keeps one outgoing SSRC, sequence and timestamp for its whole life: prompt frames
  and relayed packets are rewritten onto them, so the caller sees one continuous stream when a
  prompt gives way to the centre's audio (no re-INVITE);
* symmetric RTP (RFC 4961) with latching: a leg sends to the SDP address until the first valid
  RTP packet arrives, then to that packet's source;
* G.711 A-law <-> µ-law is transcoded with a 256-octet table when the legs differ; RFC 4733
  events are relayed with the payload type mapped, and detected as DTMF on every leg.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from sip.sdp import NegotiatedAudio

from .codec import alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear
from .prompts import FRAME_SAMPLES, Prompt
from .rtp import DtmfDetector, RtpError, RtpPacket, is_rtcp, parse_rtcp

__all__ = [
    "AsyncioMediaEngine",
    "DtmfReceived",
    "EngineStats",
    "LocalMedia",
    "MediaEngine",
    "MediaEngineError",
    "MediaEvent",
    "PortRange",
    "PromptFinished",
    "RemoteLatched",
]

log = logging.getLogger(__name__)

TICK_S = 0.020
MAX_CATCH_UP = 3
_EARLY_TOLERANCE = 0.25
_HDR = struct.Struct("!BBHII")
_ALAW_TO_ULAW = bytes(linear_to_ulaw(alaw_to_linear(c)) for c in range(256))
_ULAW_TO_ALAW = bytes(linear_to_alaw(ulaw_to_linear(c)) for c in range(256))
_RECV_BATCH = 64


class MediaEngineError(RuntimeError):
    """The engine cannot do what was asked (no free port, unknown leg): fail the call cleanly."""


@dataclass(frozen=True, slots=True)
class PortRange:
    """RTP ports to allocate from; each leg takes an even port and the RTCP port above it."""

    first: int
    """First port (rounded up to even)."""
    last: int
    """Last port, inclusive."""

    def __post_init__(self) -> None:
        if not 1024 <= self.first < self.last <= 65535:
            raise ValueError("RTP port range must satisfy 1024 <= first < last <= 65535")


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """Where a leg receives RTP: put it in the SDP offer/answer for that leg."""

    address: str
    port: int


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF digit arrived on a leg (RFC 4733), reported once per key press."""

    leg_id: str
    """The leg it arrived on."""
    digit: str
    """``0-9 * # A-D``."""


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A prompt played to its end on a leg (not sent when stopped or bridged)."""

    leg_id: str
    """The leg that played it."""
    prompt: str
    """The prompt's name."""


@dataclass(frozen=True, slots=True)
class RemoteLatched:
    """A leg learnt its peer's real RTP address from the first packet received."""

    leg_id: str
    """The leg."""
    address: tuple[str, int]
    """The source address now used for sending."""


MediaEvent = DtmfReceived | PromptFinished | RemoteLatched


@dataclass(slots=True)
class EngineStats:
    """Counters for metrics and tests."""

    frames_played: int = 0
    packets_received: int = 0
    packets_relayed: int = 0
    rtcp_received: int = 0
    malformed: int = 0
    send_errors: int = 0
    ticks: int = 0
    """Pacing-clock timer callbacks (one per 20 ms while anything plays)."""
    frames_skipped: int = 0
    """Prompt frames dropped because the loop stalled for more than MAX_CATCH_UP ticks."""


class MediaEngine(ABC):
    """What the router asks of a media plane. Leg ids are chosen by the caller of the API."""

    @abstractmethod
    def allocate(self, leg_id: str) -> LocalMedia:
        """Reserve RTP/RTCP ports for a new leg; raise MediaEngineError when none is free."""

    @abstractmethod
    def set_remote(self, leg_id: str, audio: NegotiatedAudio) -> None:
        """The negotiated codec and the remote address from SDP (latching may override it)."""

    @abstractmethod
    def play(self, leg_id: str, prompt: Prompt, *, repeat: bool = False) -> None:
        """Start playing ``prompt`` on the leg (replacing any prompt playing there)."""

    @abstractmethod
    def stop(self, leg_id: str) -> None:
        """Stop any prompt on the leg at once."""

    @abstractmethod
    def bridge(self, leg_a: str, leg_b: str) -> None:
        """Stop prompts on both legs and relay RTP between them in both directions."""

    @abstractmethod
    def release(self, leg_id: str) -> None:
        """Stop everything on the leg, unbridge its peer, free its ports (idempotent)."""

    @abstractmethod
    def close(self) -> None:
        """Release every leg."""


@dataclass(slots=True, eq=False)
class _Leg:
    leg_id: str
    rtp: socket.socket
    rtcp: socket.socket
    port: int
    remote: tuple[str, int] | None = None
    signalled: tuple[str, int] | None = None
    latched: bool = False
    payload_type: int = 8
    codec_name: str = "PCMA"
    event_pt: int | None = None
    dtmf: DtmfDetector | None = None
    # outgoing stream state, continuous for the life of the leg
    ssrc: int = 0
    seq: int = 0
    ts: int = 0
    last_sent_at: float | None = None
    # prompt playback
    prompt: Prompt | None = None
    frames: tuple[bytes, ...] = ()
    frame_index: int = 0
    repeat: bool = False
    marker_next: bool = True
    # relay
    peer: _Leg | None = None
    transcode: bytes | None = None
    in_ssrc: int | None = None
    ts_offset: int = 0
    seq_offset: int = 0
    event_map: dict[int, int] = field(default_factory=dict)


class AsyncioMediaEngine(MediaEngine):
    """The in-process engine (module docstring). Call from the event loop thread only."""

    def __init__(self, address: str, ports: PortRange,
                 on_event: Callable[[MediaEvent], None],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.address = address
        self.ports = ports
        self.stats = EngineStats()
        self._on_event = on_event
        self._loop = loop or asyncio.get_running_loop()
        self._legs: dict[str, _Leg] = {}
        self._used_ports: set[int] = set()
        first = ports.first + (ports.first & 1)
        self._port_slots = list(range(first, ports.last, 2))
        self._cursor = 0
        self._playing: dict[str, _Leg] = {}
        self._clock: asyncio.TimerHandle | None = None
        self._in_tick = False
        self._clock_origin = 0.0
        self._tick_number = 0

    # -- legs ----------------------------------------------------------------------------------

    def allocate(self, leg_id: str) -> LocalMedia:
        if leg_id in self._legs:
            raise MediaEngineError(f"leg {leg_id} exists")
        for _ in range(len(self._port_slots)):
            port = self._port_slots[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._port_slots)
            if port in self._used_ports:
                continue
            pair = self._bind_pair(port)
            if pair is None:
                continue
            leg = _Leg(leg_id, pair[0], pair[1], port,
                       ssrc=int.from_bytes(os.urandom(4), "big"),
                       seq=int.from_bytes(os.urandom(2), "big"),
                       ts=int.from_bytes(os.urandom(4), "big"))
            self._legs[leg_id] = leg
            self._used_ports.add(port)
            self._loop.add_reader(leg.rtp.fileno(), self._on_rtp_readable, leg)
            self._loop.add_reader(leg.rtcp.fileno(), self._on_rtcp_readable, leg)
            return LocalMedia(self.address, port)
        raise MediaEngineError("no free RTP port in the configured range")

    def _bind_pair(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.setblocking(False)
                sock.bind((self.address, p))
        except OSError as err:
            for sock in socks:
                sock.close()
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise MediaEngineError(f"cannot bind RTP port {port}: {err}") from err
        return socks[0], socks[1]

    def _leg(self, leg_id: str) -> _Leg:
        try:
            return self._legs[leg_id]
        except KeyError:
            raise MediaEngineError(f"no leg {leg_id}") from None

    def set_remote(self, leg_id: str, audio: NegotiatedAudio) -> None:
        leg = self._leg(leg_id)
        signalled = (audio.remote_address, audio.remote_port)
        if signalled != leg.signalled:  # new SDP address (re-INVITE): learn the source afresh
            leg.signalled = signalled
            leg.latched = False
            # RFC 3264 §8.4: 0.0.0.0 means "do not send" (old-style hold); port 0 disables
            usable = audio.remote_address not in ("0.0.0.0", "::") and audio.remote_port > 0
            leg.remote = signalled if usable else None
        leg.payload_type = audio.payload_type
        leg.codec_name = audio.codec.name.upper()
        leg.event_pt = audio.event_payload_type
        leg.dtmf = DtmfDetector(audio.event_payload_type) if audio.event_payload_type else None
        if leg.peer is not None:
            _link(leg, leg.peer)
            _link(leg.peer, leg)

    def release(self, leg_id: str) -> None:
        leg = self._legs.pop(leg_id, None)
        if leg is None:
            return
        self._playing.pop(leg_id, None)
        if leg.peer is not None:
            leg.peer.peer = None
            leg.peer = None
        for sock in (leg.rtp, leg.rtcp):
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._used_ports.discard(leg.port)
        self._maybe_stop_clock()

    def close(self) -> None:
        for leg_id in list(self._legs):
            self.release(leg_id)

    @property
    def leg_count(self) -> int:
        return len(self._legs)

    # -- prompts and the shared clock ------------------------------------------------------------

    def play(self, leg_id: str, prompt: Prompt, *, repeat: bool = False) -> None:
        leg = self._leg(leg_id)
        leg.prompt = prompt
        leg.frames = prompt.frames(leg.codec_name)
        leg.frame_index = 0
        leg.repeat = repeat
        leg.marker_next = True
        self._playing[leg_id] = leg  # on a bridged leg the prompt wins until it ends
        self._start_clock()

    def stop(self, leg_id: str) -> None:
        leg = self._leg(leg_id)
        self._stop_prompt(leg)

    def _stop_prompt(self, leg: _Leg) -> None:
        leg.prompt = None
        leg.frames = ()
        leg.in_ssrc = None  # relayed audio resumes on a fresh timestamp anchor
        self._playing.pop(leg.leg_id, None)
        self._maybe_stop_clock()

    def _start_clock(self) -> None:
        if self._clock is None and not self._in_tick:
            self._clock_origin = self._loop.time()
            self._tick_number = 0
            self._clock = self._loop.call_at(self._clock_origin, self._tick)

    def _maybe_stop_clock(self) -> None:
        if not self._playing and self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _tick(self) -> None:
        """Send every playing leg its due frame(s), then re-arm for the next 20 ms instant.

        Event handlers run inside the tick (PromptFinished -> play the next prompt): while it
        runs, play/stop never start or stop the clock; the tick re-arms itself at the end, so
        there is never more than one clock.
        """
        self._clock = None  # this handle has fired
        self._in_tick = True
        try:
            self._send_due_frames()
        finally:
            self._in_tick = False
        if self._playing:
            self._clock = self._loop.call_at(
                self._clock_origin + self._tick_number * TICK_S, self._tick)

    def _send_due_frames(self) -> None:
        now = self._loop.time()
        self.stats.ticks += 1
        # Ticks due by now (1-based). Event loops may fire a timer up to a clock granule early
        # (uvloop rounds to 1 ms): a quarter-tick tolerance keeps that from re-arming at once.
        due = int((now - self._clock_origin) / TICK_S + _EARLY_TOLERANCE) + 1
        if due <= self._tick_number:  # far too early: wait for the instant
            return
        frames = min(due - self._tick_number, MAX_CATCH_UP)
        self.stats.frames_skipped += (due - self._tick_number - frames) * len(self._playing)
        self._tick_number = due
        finished: list[_Leg] = []
        for leg in list(self._playing.values()):
            for _ in range(frames):
                if not self._send_prompt_frame(leg, now):
                    finished.append(leg)
                    break
        for leg in finished:
            name = leg.prompt.name if leg.prompt else ""
            self._stop_prompt(leg)
            self._on_event(PromptFinished(leg.leg_id, name))

    def _send_prompt_frame(self, leg: _Leg, now: float) -> bool:
        if leg.frame_index >= len(leg.frames):
            if not leg.repeat or not leg.frames:
                return False
            leg.frame_index = 0
        payload = leg.frames[leg.frame_index]
        leg.frame_index += 1
        leg.seq = (leg.seq + 1) & 0xFFFF
        leg.ts = (leg.ts + FRAME_SAMPLES) & 0xFFFFFFFF
        header = _HDR.pack(0x80, leg.payload_type | (0x80 if leg.marker_next else 0),
                           leg.seq, leg.ts, leg.ssrc)
        leg.marker_next = False
        leg.last_sent_at = now
        self.stats.frames_played += 1
        self._send(leg, header + payload)
        return True

    def _send(self, leg: _Leg, data: bytes) -> None:
        if leg.remote is None:
            return
        try:
            leg.rtp.sendto(data, leg.remote)
        except OSError:  # full buffer or ICMP-reported unreachable: RTP is loss tolerant
            self.stats.send_errors += 1

    # -- bridging ------------------------------------------------------------------------------

    def bridge(self, leg_a: str, leg_b: str) -> None:
        a, b = self._leg(leg_a), self._leg(leg_b)
        if a is b:
            raise MediaEngineError("cannot bridge a leg to itself")
        for leg in (a, b):
            if leg.peer is not None and leg.peer not in (a, b):
                leg.peer.peer = None
            self._stop_prompt(leg)
        a.peer, b.peer = b, a
        _link(a, b)
        _link(b, a)

    # -- receiving -----------------------------------------------------------------------------

    def _on_rtp_readable(self, leg: _Leg) -> None:
        for _ in range(_RECV_BATCH):
            try:
                data, source = leg.rtp.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED from an earlier send: nothing to read
                return
            self._on_datagram(leg, data, source)

    def _on_rtcp_readable(self, leg: _Leg) -> None:
        for _ in range(_RECV_BATCH):
            try:
                data, _source = leg.rtcp.recvfrom(2048)
            except OSError:
                return
            try:
                parse_rtcp(data)
                self.stats.rtcp_received += 1
            except RtpError:
                self.stats.malformed += 1

    def _on_datagram(self, leg: _Leg, data: bytes, source: tuple[str, int]) -> None:
        if len(data) >= 8 and data[0] >> 6 == 2 and is_rtcp(data):  # RFC 5761 rtcp-mux
            self.stats.rtcp_received += 1  # an empty RR is only 8 octets
            return
        if len(data) < 12 or data[0] >> 6 != 2:
            self.stats.malformed += 1
            return
        self.stats.packets_received += 1
        pt = data[1] & 0x7F
        if not leg.latched:  # RFC 4961 symmetric RTP: send where the peer sends from
            leg.latched = True
            if leg.remote != source:
                leg.remote = source
                self._on_event(RemoteLatched(leg.leg_id, source))
        if leg.dtmf is not None and pt == leg.event_pt:
            try:
                digit = leg.dtmf.feed(RtpPacket.parse(data))
            except RtpError:
                self.stats.malformed += 1
                return
            if digit is not None:
                self._on_event(DtmfReceived(leg.leg_id, digit.digit))
        peer = leg.peer
        if peer is not None:
            self._relay(leg, peer, data, pt)

    def _relay(self, source: _Leg, target: _Leg, data: bytes, pt: int) -> None:
        """Rewrite onto the target leg's outgoing stream (RFC 3550 §5.1 continuity)."""
        if target.prompt is not None:
            return  # a prompt plays on the target: it owns the stream until it ends
        if pt == source.payload_type:
            out_pt = target.payload_type
            translate = target.transcode
        elif pt in target.event_map:
            out_pt = target.event_map[pt]
            translate = None
        else:
            return  # comfort noise or a format the other leg did not negotiate
        b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
        header_len = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            header_len += 4 + 4 * int.from_bytes(data[header_len + 2:header_len + 4], "big")
        payload = data[header_len:]
        if b0 & 0x20 and payload:
            payload = payload[:len(payload) - payload[-1]]
        marker = b1 & 0x80
        if ssrc != target.in_ssrc:  # first packet relayed, or the source restarted its stream
            target.in_ssrc = ssrc
            gap = FRAME_SAMPLES
            now = self._loop.time()
            if target.last_sent_at is not None:
                gap = max(FRAME_SAMPLES, round((now - target.last_sent_at) * 8000))
            target.ts_offset = (target.ts + gap - ts) & 0xFFFFFFFF
            target.seq_offset = (target.seq + 1 - seq) & 0xFFFF
            marker = 0x80
        out_seq = (seq + target.seq_offset) & 0xFFFF
        out_ts = (ts + target.ts_offset) & 0xFFFFFFFF
        if ((out_seq - target.seq) & 0xFFFF) < 0x8000:  # keep the newest for later switches
            target.seq, target.ts = out_seq, out_ts
        target.last_sent_at = self._loop.time()
        if translate is not None:
            payload = payload.translate(translate)
        self.stats.packets_relayed += 1
        self._send(target, _HDR.pack(0x80, marker | out_pt, out_seq, out_ts, target.ssrc)
                   + payload)


def _link(target: _Leg, source: _Leg) -> None:
    """Precompute how packets from ``source`` become packets of ``target``."""
    target.in_ssrc = None
    target.transcode = None
    if source.codec_name == "PCMA" and target.codec_name == "PCMU":
        target.transcode = _ALAW_TO_ULAW
    elif source.codec_name == "PCMU" and target.codec_name == "PCMA":
        target.transcode = _ULAW_TO_ALAW
    target.event_map = ({source.event_pt: target.event_pt}
                        if source.event_pt is not None and target.event_pt is not None else {})
