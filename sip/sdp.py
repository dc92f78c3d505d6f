"""SDP (RFC 4566) parse/serialise and RFC 3264 offer/answer for audio, sans-IO.

Only what a B2BUA terminating G.711 audio needs: session and media lines are kept in order with
their attributes, so a description we do not understand still round-trips; ``answer_offer``
implements RFC 3264 §6 for one audio stream plus telephone-event (RFC 4733 §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "PCMA",
    "PCMU",
    "TELEPHONE_EVENT",
    "Codec",
    "MediaDescription",
    "NegotiatedAudio",
    "OfferRejected",
    "SdpError",
    "SessionDescription",
    "answer_offer",
    "make_offer",
    "negotiated_audio",
    "with_connection",
]


class SdpError(ValueError):
    """The peer sent an SDP body we cannot parse (answer 400, or 488 for an offer)."""


class OfferRejected(Exception):
    """No acceptable media in an offer: reject the INVITE with ``status`` (RFC 3261 §13.3.1.1)."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format as named in ``a=rtpmap`` (RFC 4566 §6)."""

    name: str
    """Encoding name, compared case-insensitively (``PCMA``)."""
    clock_rate: int
    """Timestamp clock rate in Hz."""
    static_pt: int | None = None
    """The RFC 3551 static payload type, None for dynamic formats."""

    def same_format(self, other: Codec) -> bool:
        return self.name.lower() == other.name.lower() and self.clock_rate == other.clock_rate


PCMU = Codec("PCMU", 8000, 0)
PCMA = Codec("PCMA", 8000, 8)
TELEPHONE_EVENT = Codec("telephone-event", 8000, None)
_STATIC = {0: PCMU, 8: PCMA}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# RFC 3264 §6.1: the answer's direction given the offer's.
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly",
                     "recvonly": "sendonly", "inactive": "inactive"}


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` section and what follows it."""

    media: str
    """``audio``, ``video``…"""
    port: int
    """Transport port; 0 rejects/disables the stream (RFC 3264 §5.1)."""
    proto: str
    """``RTP/AVP`` etc."""
    formats: list[str]
    """Format list in order of preference (payload types for RTP)."""
    connection: str | None = None
    """Media-level ``c=`` address, None to inherit the session's."""
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    """``a=`` lines in order: (name, value or None for property attributes)."""
    other_lines: list[str] = field(default_factory=list)
    """Other media-level lines (``b=``, ``i=``, ``k=``) kept verbatim, type included."""

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    @property
    def direction(self) -> str:
        """The media-level direction attribute, ``sendrecv`` by default (RFC 4566 §6)."""
        return _direction(self.attributes) or "sendrecv"

    @property
    def ptime_ms(self) -> int | None:
        value = self.attribute("ptime")
        return int(value) if value and _is_number(value) else None

    def rtpmap(self) -> dict[int, Codec]:
        """Payload type -> codec, from ``a=rtpmap`` with RFC 3551 static types as fallback."""
        found: dict[int, Codec] = {}
        for key, value in self.attributes:
            if key != "rtpmap" or not value:
                continue
            pt_text, _, encoding = value.partition(" ")
            parts = encoding.strip().split("/")
            if not _is_number(pt_text) or len(parts) < 2 or not _is_number(parts[1]):
                continue
            pt = int(pt_text)
            found[pt] = Codec(parts[0], int(parts[1]), pt if pt < 96 else None)
        for fmt in self.formats:
            if _is_number(fmt) and int(fmt) in _STATIC and int(fmt) not in found:
                found[int(fmt)] = _STATIC[int(fmt)]
        return found

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for key, value in self.attributes:
            if key == "fmtp" and value and value.startswith(prefix):
                return value[len(prefix):]
        return None


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body."""

    origin_username: str = "-"
    session_id: int = 0
    session_version: int = 0
    origin_address: str = "127.0.0.1"
    session_name: str = "-"
    connection: str | None = None
    """Session-level ``c=`` address (IN IP4/IP6)."""
    address_type: str = "IP4"
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)
    """Session-level lines we do not interpret (``b=``, ``i=``, ``u=``…), type included."""
    media: list[MediaDescription] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes | str) -> SessionDescription:
        """Parse an SDP body (CRLF or LF line ends); raise SdpError when malformed."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        sdp = cls()
        current: MediaDescription | None = None
        seen_version = False
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line:
                continue
            if len(line) < 2 or line[1] != "=":
                raise SdpError(f"not a type=value line: {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "v":
                if value != "0":
                    raise SdpError("SDP version must be 0")
                seen_version = True
            elif kind == "o":
                _parse_origin(sdp, value)
            elif kind == "s" and current is None:
                sdp.session_name = value
            elif kind == "t" and current is None:
                sdp.timing = value
            elif kind == "c":
                address, addr_type = _parse_connection(value)
                if current is None:
                    sdp.connection, sdp.address_type = address, addr_type
                else:
                    current.connection = address
            elif kind == "m":
                current = _parse_media(value)
                sdp.media.append(current)
            elif kind == "a":
                name, sep, attr_value = value.partition(":")
                (sdp.attributes if current is None else current.attributes).append(
                    (name, attr_value if sep else None))
            else:
                (sdp.other_lines if current is None else current.other_lines).append(line)
        if not seen_version:
            raise SdpError("no v= line")
        return sdp

    def serialise(self) -> bytes:
        """The body with CRLF line ends, in RFC 4566 §5 order."""
        lines = [
            "v=0",
            f"o={self.origin_username} {self.session_id} {self.session_version} IN "
            f"{self.address_type} {self.origin_address}",
            f"s={self.session_name}",
        ]
        lines += [line for line in self.other_lines if line[0] in "iuep"]
        if self.connection is not None:
            lines.append(f"c=IN {self.address_type} {self.connection}")
        lines += [line for line in self.other_lines if line[0] == "b"]
        lines.append(f"t={self.timing}")
        lines += [line for line in self.other_lines if line[0] not in "iuepb"]
        lines += [_attr_line(a) for a in self.attributes]
        for m in self.media:
            lines.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
            lines += [line for line in m.other_lines if line[0] == "i"]
            if m.connection is not None:
                lines.append(f"c=IN {self.address_type} {m.connection}")
            lines += [line for line in m.other_lines if line[0] != "i"]
            lines += [_attr_line(a) for a in m.attributes]
        return ("\r\n".join(lines) + "\r\n").encode()

    def media_direction(self, media: MediaDescription) -> str:
        """Direction of ``media``: its own attribute, else the session's (RFC 4566 §6)."""
        return _direction(media.attributes) or _direction(self.attributes) or "sendrecv"

    def media_address(self, media: MediaDescription) -> str | None:
        """The connection address that applies to ``media`` (RFC 4566 §5.7)."""
        return media.connection if media.connection is not None else self.connection


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²', which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _direction(attributes: list[tuple[str, str | None]]) -> str | None:
    return next((key for key, _ in attributes if key in _DIRECTIONS), None)


def _attr_line(attr: tuple[str, str | None]) -> str:
    name, value = attr
    return f"a={name}" if value is None else f"a={name}:{value}"


def _parse_origin(sdp: SessionDescription, value: str) -> None:
    parts = value.split()
    if len(parts) != 6 or not _is_number(parts[1]) or not _is_number(parts[2]):
        raise SdpError("malformed o= line")
    sdp.origin_username, sdp.origin_address = parts[0], parts[5]
    sdp.session_id, sdp.session_version = int(parts[1]), int(parts[2])
    sdp.address_type = parts[4]


def _parse_connection(value: str) -> tuple[str, str]:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("malformed c= line")
    return parts[2].split("/")[0], parts[1]  # drop multicast TTL/count


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError("malformed m= line")
    port_text = parts[1].split("/")[0]
    if not _is_number(port_text) or int(port_text) > 65535:
        raise SdpError("bad port in m= line")
    return MediaDescription(parts[0], int(port_text), parts[2], parts[3:])


@dataclass(frozen=True, slots=True)
class NegotiatedAudio:
    """The result of an offer/answer exchange for the audio stream, as the media engine needs it."""

    remote_address: str
    """Where to send RTP (the other side's ``c=``)."""
    remote_port: int
    """The other side's RTP port."""
    codec: Codec
    """The one audio codec both sides use."""
    payload_type: int
    """Payload type of ``codec`` in this exchange."""
    event_payload_type: int | None
    """Payload type of telephone-event, None when not negotiated."""
    ptime_ms: int
    """Packetisation time (20 unless the remote asked otherwise)."""
    direction: str
    """Our direction (``sendrecv``…)."""


def answer_offer(
    offer: SessionDescription,
    local_address: str,
    local_port: int,
    supported: Sequence[Codec] = (PCMA, PCMU, TELEPHONE_EVENT),
    session_id: int = 0,
) -> tuple[SessionDescription, NegotiatedAudio]:
    """Answer an offer (RFC 3264 §6): accept the first audio stream with a codec we support.

    The chosen codec is the offer's most preferred one that we support (§6.1: the answerer
    SHOULD keep the offerer's order); telephone-event is kept with the offer's payload type.
    Every other ``m=`` line is refused with port 0 (§6), so the answer has as many as the
    offer. Raise OfferRejected (488) when no audio stream is acceptable.
    """
    audio_codecs = [c for c in supported if not c.same_format(TELEPHONE_EVENT)]
    want_events = any(c.same_format(TELEPHONE_EVENT) for c in supported)
    answer = SessionDescription(session_id=session_id, session_version=session_id,
                                origin_address=local_address, connection=local_address,
                                session_name="nodrute")
    chosen: NegotiatedAudio | None = None
    for m in offer.media:
        accepted = None
        if chosen is None and m.media == "audio" and m.port != 0 and m.proto == "RTP/AVP":
            accepted = _accept_audio(offer, m, audio_codecs, want_events)
        if accepted is None:
            answer.media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1]))
            continue
        pt, codec, event_pt = accepted
        direction = _ANSWER_DIRECTION[offer.media_direction(m)]
        ptime = m.ptime_ms or 20
        answer.media.append(_audio_media(local_port, [(pt, codec)], event_pt, direction, ptime))
        address = offer.media_address(m)
        if address is None:
            raise OfferRejected("no connection address for the audio stream")
        chosen = NegotiatedAudio(address, m.port, codec, pt, event_pt, ptime, direction)
    if chosen is None:
        raise OfferRejected("no common audio codec (PCMA/PCMU)")
    return answer, chosen


def _accept_audio(
    offer: SessionDescription, m: MediaDescription, codecs: Sequence[Codec], want_events: bool,
) -> tuple[int, Codec, int | None] | None:
    rtpmap = m.rtpmap()
    chosen: tuple[int, Codec] | None = None
    event_pt: int | None = None
    for fmt in m.formats:
        if not _is_number(fmt) or int(fmt) not in rtpmap:
            continue
        pt, codec = int(fmt), rtpmap[int(fmt)]
        if chosen is None and any(codec.same_format(c) for c in codecs):
            chosen = (pt, codec)
        elif want_events and event_pt is None and codec.same_format(TELEPHONE_EVENT):
            event_pt = pt
    if chosen is None:
        return None
    return chosen[0], chosen[1], event_pt


def _audio_media(port: int, codecs: Sequence[tuple[int, Codec]], event_pt: int | None,
                 direction: str, ptime_ms: int) -> MediaDescription:
    formats = [str(pt) for pt, _ in codecs]
    attrs: list[tuple[str, str | None]] = [
        ("rtpmap", f"{pt} {c.name}/{c.clock_rate}") for pt, c in codecs]
    if event_pt is not None:
        formats.append(str(event_pt))
        attrs.append(("rtpmap", f"{event_pt} telephone-event/8000"))
        attrs.append(("fmtp", f"{event_pt} 0-15"))
    attrs.append(("ptime", str(ptime_ms)))
    attrs.append((direction, None))
    return MediaDescription("audio", port, "RTP/AVP", formats, attributes=attrs)


def make_offer(
    local_address: str,
    local_port: int,
    codecs: Sequence[Codec] = (PCMA, PCMU),
    event_payload_type: int | None = 101,
    session_id: int = 0,
    ptime_ms: int = 20,
    direction: str = "sendrecv",
) -> SessionDescription:
    """An offer with one audio stream (RFC 3264 §5), codecs in preference order."""
    numbered = []
    next_dynamic = 96
    for codec in codecs:
        if codec.static_pt is not None:
            numbered.append((codec.static_pt, codec))
        else:
            numbered.append((next_dynamic, codec))
            next_dynamic += 1
    media = _audio_media(local_port, numbered, event_payload_type, direction, ptime_ms)
    return SessionDescription(session_id=session_id, session_version=session_id,
                              origin_address=local_address, connection=local_address,
                              session_name="nodrute", media=[media])


def negotiated_audio(offer: SessionDescription, answer: SessionDescription,
                     ) -> NegotiatedAudio:
    """What the offerer uses once ``answer`` arrives (RFC 3264 §7): the answer's first codec.

    Raise OfferRejected when the answer refused the audio stream.
    """
    for index, m in enumerate(answer.media):
        if m.media != "audio" or m.port == 0:
            continue
        offered = offer.media[index].rtpmap() if index < len(offer.media) else {}
        rtpmap = {**offered, **m.rtpmap()}
        codec_pt = next((int(f) for f in m.formats if _is_number(f) and int(f) in rtpmap
                         and not rtpmap[int(f)].same_format(TELEPHONE_EVENT)), None)
        if codec_pt is None:
            continue
        event_pt = next((pt for pt, c in rtpmap.items()
                         if c.same_format(TELEPHONE_EVENT) and str(pt) in m.formats), None)
        address = answer.media_address(m)
        if address is None:
            raise OfferRejected("answer has no connection address")
        return NegotiatedAudio(address, m.port, rtpmap[codec_pt], codec_pt, event_pt,
                               m.ptime_ms or 20, _ANSWER_DIRECTION[answer.media_direction(m)])
    raise OfferRejected("answer accepted no audio stream")


def with_connection(sdp: SessionDescription, address: str, port: int) -> SessionDescription:
    """A copy of ``sdp`` whose first audio stream points at ``address``:``port`` (anchoring)."""
    media = [replace(m, attributes=list(m.attributes), other_lines=list(m.other_lines))
             for m in sdp.media]
    for index, m in enumerate(media):
        if m.media == "audio" and m.port != 0:
            media[index] = replace(m, port=port, connection=None)
            break
    return replace(sdp, connection=address, origin_address=address, media=media,
                   attributes=list(sdp.attributes), other_lines=list(sdp.other_lines))
