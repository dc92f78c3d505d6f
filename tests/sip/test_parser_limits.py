"""ParserLimits: each limit refuses with the right response, and only past its bound.

513 Message Too Large for the message as a whole (RFC 3261 §21.5.14: its size, a Via stack
deeper than any real path), 413 Request Entity Too Large for the body (§21.4.11), 400 for a
header count or line length no SIP element sends. Messages go through the whole receive path
(fuzz/fuzz_parser.py ReceivePath: parser, stateless answer, transaction layer, B2BUA) so the
answer on the wire is what is checked.
"""

from __future__ import annotations

import pytest
from test_rfc4475 import fuzz_parser

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
from sip.errors import SipParseError
from sip.parser import (
    DEFAULT_LIMITS,
    ParserLimits,
    StreamFramer,
    make_error_response,
    parse_message,
)
from sip.stateless import error_response_bytes

VIA = "Via: SIP/2.0/UDP 192.0.2.{n}:5060;branch=z9hG4bKhop{n}"


@pytest.fixture(scope="module")
def snapshot() -> RoutingSnapshot:
    return load_snapshot(default_table_dir())


def options(*, vias: int = 1, extra: tuple[str, ...] | list[str] = (), body: bytes = b"") -> bytes:
    lines = [
        "OPTIONS sip:127.0.0.1 SIP/2.0",
        *(VIA.format(n=n % 250 + 1) for n in range(vias)),
        "Max-Forwards: 70",
        "From: <sip:probe@carrier.example>;tag=lim",
        "To: <sip:127.0.0.1>",
        "Call-ID: limits@carrier.example",
        "CSeq: 1 OPTIONS",
        *extra,
    ]
    if body:
        lines.append("Content-Type: text/plain")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answered(snapshot: RoutingSnapshot, data: bytes) -> tuple[int, str]:
    """(status, reason) of the one response the node sends back for ``data``."""
    path = fuzz_parser.ReceivePath(snapshot, record=True)
    path.receive(data, "UDP")
    assert len(path.sent) == 1, path.sent
    status_line = path.sent[0].data.split(b"\r\n", 1)[0].decode()
    _, status, reason = status_line.split(" ", 2)
    return int(status), reason


def test_via_depth(snapshot: RoutingSnapshot) -> None:
    limit = DEFAULT_LIMITS.max_via
    assert answered(snapshot, options(vias=limit)) == (200, "OK")
    assert answered(snapshot, options(vias=limit + 1)) == (513, "Too many Via headers")
    # a comma-separated Via list counts by value, not by header line
    many = options(extra=["Via: " + ", ".join(["SIP/2.0/UDP 192.0.2.9"] * limit)])
    assert answered(snapshot, many) == (513, "Too many Via headers")


def test_body_size(snapshot: RoutingSnapshot) -> None:
    limit = DEFAULT_LIMITS.max_body_bytes
    assert answered(snapshot, options(body=b"x" * limit))[0] == 200
    assert answered(snapshot, options(body=b"x" * (limit + 1))) == (
        413, "Request Entity Too Large")


def test_claimed_body_larger_than_datagram_is_a_400_not_a_413(snapshot: RoutingSnapshot) -> None:
    data = options(body=b"x" * 10).replace(b"Content-Length: 10", b"Content-Length: 99999")
    assert answered(snapshot, data) == (400, "Content-Length mismatch")


def test_header_count(snapshot: RoutingSnapshot) -> None:
    room = DEFAULT_LIMITS.max_headers - 7  # the 7 header lines options() always has
    assert answered(snapshot, options(extra=[f"X-H{i}: v" for i in range(room)]))[0] == 200
    assert answered(snapshot, options(extra=[f"X-H{i}: v" for i in range(room + 1)])) == (
        400, "Too many header fields")


def test_line_length(snapshot: RoutingSnapshot) -> None:
    limit = DEFAULT_LIMITS.max_line_chars
    fits = "X-Long: " + "a" * (limit - len("X-Long: "))
    assert answered(snapshot, options(extra=[fits]))[0] == 200
    assert answered(snapshot, options(extra=[fits + "a"])) == (400, "Header line too long")


def test_message_size_over_udp() -> None:
    # a datagram cannot exceed the 65,535 default, so a small limit shows the answer
    data = options(extra=["X-Pad: " + "p" * 600])
    with pytest.raises(SipParseError) as info:
        parse_message(data, limits=ParserLimits(max_message_bytes=500))
    assert (info.value.status, info.value.reason) == (513, "Message Too Large")
    response = error_response_bytes(data, info.value)  # answered from the raw bytes
    assert response is not None and response.startswith(b"SIP/2.0 513 Message Too Large\r\n")
    assert b"CSeq: 1 OPTIONS\r\n" in response


def test_stream_body_over_limit_is_refused_before_it_is_buffered() -> None:
    framer = StreamFramer(ParserLimits(max_body_bytes=1000))
    head = options(body=b"x" * 5000)[:-5000]  # the header section only: the body never comes
    (error,) = framer.feed(head)
    assert isinstance(error, SipParseError) and error.status == 413 and framer.broken
    response = make_error_response(error)  # answered before the connection is closed
    assert response is not None and response.status == 413


def test_long_unique_values_are_not_memoised(snapshot: RoutingSnapshot) -> None:
    # Memo caches are bounded by entry count; only short texts enter them, so a peer sending
    # long unique names and values cannot make them pin memory (4,000 such OPTIONS held
    # ~200 MB before: fuzz/fuzz_parser.py finding).
    from sip import headers, parser, uri

    def sizes() -> tuple[int, int, int, int]:
        return (len(parser._NAME_CACHE), headers._parse_name_addr_memo.cache_info().currsize,
                uri._parse_uri_memo.cache_info().currsize,
                headers._parse_cseq_memo.cache_info().currsize)

    long_name = "X-" + "n" * 2000
    long_display = '"' + "d" * 2000 + '" <sip:a@carrier.example>;tag=t'
    long_uri = "sip:" + "u" * 2000 + "@127.0.0.1"
    data = options(extra=[f"{long_name}: 1"]).replace(
        b"From: <sip:probe@carrier.example>;tag=lim", f"From: {long_display}".encode()).replace(
        b"OPTIONS sip:127.0.0.1 ", f"OPTIONS {long_uri} ".encode())
    answered(snapshot, data)  # warm every short value of the message
    before = sizes()
    for i in range(3):
        unique = data.replace(b"nnnn", f"{i:04d}".encode(), 1).replace(
            b"dddd", f"{i:04d}".encode(), 1).replace(b"uuuu", f"{i:04d}".encode(), 1)
        assert answered(snapshot, unique)[0] == 200
    assert sizes() == before
    assert headers.parse_name_addr_shared(long_display).display == "d" * 2000
