"""StreamFramer: cutting a TCP byte stream into SIP messages (RFC 3261 §18.3, RFC 5626)."""

from __future__ import annotations

import pytest
from test_parser_corpus import COMPACT, INVITE, OK_200, RINGING, SDP

from sip.errors import SipParseError, SipUsageError
from sip.message import Request
from sip.parser import ParserLimits, StreamFramer, make_error_response, parse_message


def _messages(items: list[bytes | SipParseError]) -> list[bytes]:
    assert all(isinstance(item, bytes) for item in items), items
    return [item for item in items if isinstance(item, bytes)]


def test_one_message_per_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE) == [INVITE]
    assert framer.feed(RINGING) == [RINGING]
    assert framer.buffered == 0
    assert parse_message(INVITE, stream=True).body == SDP


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    stream = INVITE + OK_200 + COMPACT
    for i in range(len(stream)):
        out += _messages(framer.feed(stream[i:i + 1]))
    assert out == [INVITE, OK_200, COMPACT]
    assert framer.buffered == 0 and not framer.broken


def test_several_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE + RINGING + COMPACT[:10]) == [INVITE, RINGING]
    assert framer.feed(COMPACT[10:]) == [COMPACT]


def test_body_split_over_chunks() -> None:
    framer = StreamFramer()
    head_end = INVITE.index(b"\r\n\r\n") + 4
    assert framer.feed(INVITE[:head_end + 5]) == []
    assert framer.feed(INVITE[head_end + 5:-3]) == []
    assert framer.feed(INVITE[-3:]) == [INVITE]


def test_header_terminator_split_over_chunks() -> None:
    framer = StreamFramer()
    cut = COMPACT.index(b"\r\n\r\n") + 2
    assert framer.feed(COMPACT[:cut]) == []
    assert framer.feed(COMPACT[cut:cut + 1]) == []
    assert framer.feed(COMPACT[cut + 1:]) == [COMPACT]


def test_keepalive_ping_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pong_needed and framer.pings_received == 1
    framer.pong_needed = False  # the transport sent "\r\n"
    assert framer.feed(INVITE + b"\r\n") == [INVITE]
    assert not framer.pong_needed  # a lone CRLF is not a ping
    assert framer.feed(COMPACT) == [COMPACT]
    assert not framer.pong_needed
    # a ping split over two reads, right after a message
    assert framer.feed(RINGING + b"\r\n") == [RINGING]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == []
    assert framer.pong_needed and framer.pings_received == 2


def test_crlfs_are_not_counted_inside_a_message() -> None:
    framer = StreamFramer()
    assert framer.feed(INVITE[:40]) == []
    assert framer.feed(INVITE[40:]) == [INVITE]
    assert not framer.pong_needed


def test_missing_content_length_breaks_the_stream() -> None:
    framer = StreamFramer()
    no_length = COMPACT.replace(b"l: 0\r\n", b"")
    items = framer.feed(INVITE + no_length + RINGING)
    assert items[0] == INVITE
    err = items[1]
    assert isinstance(err, SipParseError) and err.reason == "Missing Content-Length header"
    assert len(items) == 2 and framer.broken
    response = make_error_response(err)  # answered before the connection is closed
    assert response is not None and (response.status, response.reason) == (
        400, "Missing Content-Length header")
    with pytest.raises(SipUsageError):
        framer.feed(RINGING)


@pytest.mark.parametrize(("old", "new", "reason"), [
    (b"l: 0", b"l: -1", "Bad Content-Length header"),
    (b"l: 0", b"l: 0\r\nContent-Length: 5", "Multiple Content-Length headers"),
    (b"l: 0", b"l: \xff", "Bad Content-Length header"),
])
def test_bad_content_length_breaks_the_stream(old: bytes, new: bytes, reason: str) -> None:
    framer = StreamFramer()
    items = framer.feed(COMPACT.replace(old, new))
    assert len(items) == 1 and isinstance(items[0], SipParseError)
    assert items[0].reason == reason and framer.broken


def test_folded_content_length_is_found() -> None:
    framer = StreamFramer()
    folded = COMPACT.replace(b"l: 0", b"l:\r\n 0")
    assert framer.feed(folded) == [folded]


def test_oversize_messages() -> None:
    framer = StreamFramer(max_message_bytes=400)
    items = framer.feed(INVITE)  # declares a body past the limit
    assert len(items) == 1 and isinstance(items[0], SipParseError)
    assert items[0].status == 513 and framer.broken  # §21.5.14 Message Too Large
    endless = StreamFramer(ParserLimits(max_message_bytes=300))
    assert endless.feed(b"INVITE sip:a@b SIP/2.0\r\n") == []
    items = endless.feed(b"X-Junk: " + b"j" * 400)  # no end of headers in sight
    assert len(items) == 1 and isinstance(items[0], SipParseError) and items[0].status == 513


def test_framed_message_with_a_header_error_keeps_the_stream() -> None:
    framer = StreamFramer()
    bad = INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    assert framer.feed(bad + COMPACT) == [bad, COMPACT]
    with pytest.raises(SipParseError) as info:
        parse_message(bad, stream=True)
    response = make_error_response(info.value)
    assert response is not None and response.status == 400
    assert isinstance(parse_message(COMPACT, stream=True), Request)
