"""RTP and RTCP packets (RFC 3550) and RFC 4733 telephone-events, sans-IO.

``RtpPacket`` packs/parses the fixed header (CSRCs and a header extension are skipped on parse,
never produced). ``classify`` tells RTP from RTCP on a muxed or unmuxed port (RFC 5761 §4).
``DtmfDetector`` turns a stream of telephone-event payloads into digits, each reported once
even though RFC 4733 §2.5.1.4 repeats the end packet three times and an event may span
several packets with the same timestamp.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "DTMF_EVENTS",
    "DtmfDetector",
    "DtmfDigit",
    "RtcpSummary",
    "RtpError",
    "RtpPacket",
    "TelephoneEvent",
    "is_rtcp",
    "parse_rtcp",
]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")
_EVENT = struct.Struct("!BBH")
# RFC 4733 §3.2: events 0-9 digits, 10 '*', 11 '#', 12-15 A-D.
DTMF_EVENTS = "0123456789*#ABCD"


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP/RTCP packet (dropped, counted)."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """An RTP packet (RFC 3550 §5.1)."""

    payload_type: int
    """7-bit payload type."""
    sequence: int
    """16-bit sequence number."""
    timestamp: int
    """32-bit media timestamp (8 kHz clock for G.711 and telephone-event)."""
    ssrc: int
    """32-bit synchronisation source."""
    payload: bytes
    """Payload after header, CSRCs, extension and padding are removed."""
    marker: bool = False
    """Marker bit: start of a talkspurt (RFC 3551 §4.1) or first packet of an event."""

    def pack(self) -> bytes:
        """Serialise with no CSRC, extension or padding."""
        return _HEADER.pack(
            RTP_VERSION << 6,
            (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
            self.sequence & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        ) + self.payload

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse a datagram; raise RtpError when it is not RTP version 2."""
        if len(data) < _HEADER.size:
            raise RtpError("shorter than the RTP fixed header")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError("RTP version is not 2")
        offset = _HEADER.size + 4 * (b0 & 0x0F)  # CSRC list
        if b0 & 0x10:  # header extension, RFC 3550 §5.3.1
            if len(data) < offset + 4:
                raise RtpError("truncated header extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if b0 & 0x20:  # padding: last octet counts the padding octets
            if end == 0 or data[-1] == 0:
                raise RtpError("bad padding")
            end -= data[-1]
        if offset > end:
            raise RtpError("header longer than the packet")
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80))


def is_rtcp(data: bytes) -> bool:
    """True for RTCP on a muxed port: packet types 192-223 in octet 1 (RFC 5761 §4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtcpSummary:
    """Enough of a compound RTCP packet to count and log it."""

    packet_types: tuple[int, ...]
    """Packet types in order (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP)."""
    ssrc: int
    """SSRC of the sender of the first packet."""
    has_bye: bool
    """The sender left the session (RFC 3550 §6.6)."""


def parse_rtcp(data: bytes) -> RtcpSummary:
    """Walk a compound RTCP packet (RFC 3550 §6.1); raise RtpError if malformed."""
    types: list[int] = []
    ssrc = -1
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise RtpError("truncated RTCP packet")
        b0, pt, length_words, sender = struct.unpack_from("!BBHI", data, offset)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError("RTCP version is not 2")
        if ssrc < 0:
            ssrc = sender
        types.append(pt)
        offset += 4 * (length_words + 1)
    if offset != len(data) or not types:
        raise RtpError("RTCP length fields do not add up")
    return RtcpSummary(tuple(types), ssrc, 203 in types)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """An RFC 4733 §2.3 telephone-event payload."""

    event: int
    """Event code (0-15 DTMF)."""
    end: bool
    """E bit: this packet ends the event."""
    volume: int
    """Power level, 0 to -63 dBm0 given as 0..63."""
    duration: int
    """Duration so far, in timestamp units."""

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < _EVENT.size:
            raise RtpError("telephone-event payload shorter than 4 octets")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def pack(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F),
                           self.duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A DTMF digit detected on a stream."""

    digit: str
    """One of ``0123456789*#ABCD``."""
    duration: int
    """Duration in timestamp units (8 kHz: 800 = 100 ms); 0 if reported at start."""


class DtmfDetector:
    """Digits from one stream's telephone-event packets, each reported exactly once.

    An event is identified by its RTP timestamp (RFC 4733 §2.5.1.1: all packets of one event
    carry the event's start timestamp). The digit is reported on the first packet of a new
    event, so a lost end packet never loses the digit, and the redundant end packets
    (§2.5.1.4) and retransmitted updates are ignored.
    """

    __slots__ = ("_last_timestamp", "payload_type")

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self._last_timestamp: int | None = None

    def feed(self, packet: RtpPacket) -> DtmfDigit | None:
        """The digit this packet starts, or None (other payload, repeat, or unknown event)."""
        if packet.payload_type != self.payload_type:
            return None
        try:
            event = TelephoneEvent.parse(packet.payload)
        except RtpError:
            return None
        if packet.timestamp == self._last_timestamp:
            return None
        self._last_timestamp = packet.timestamp
        if event.event >= len(DTMF_EVENTS):
            return None
        return DtmfDigit(DTMF_EVENTS[event.event], event.duration if event.end else 0)
