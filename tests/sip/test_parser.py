"""parse_message and the UAS request checks: valid corpus, round trips, every error status."""

from __future__ import annotations

import timeit

import pytest
from test_parser_corpus import COMPACT, FOLDED, INVITE, MESSAGES, OK_200, RINGING, SDP

from sip.errors import SipParseError
from sip.headers import NameAddr, Via, parse_cseq
from sip.message import Request, Response
from sip.parser import (
    ParserLimits,
    check_max_forwards,
    check_require,
    is_keepalive,
    make_error_response,
    parse_message,
    peek_is_response,
    validate_request,
)


def _replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


def _error(data: bytes, **kwargs: object) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kwargs)  # type: ignore[arg-type]
    return info.value


# ------------------------------------------------------------------------ valid messages


def test_invite_with_sdp() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:113@nodrute.example.no;user=phone"
    assert msg.body == SDP
    assert msg.headers.get("call-id") == "1f9c2a7e-5b3d-4e8f-9a1b-2c3d4e5f6a7b@198.51.100.7"
    assert msg.headers.get_all("Allow") == [
        "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE", "PRACK", "INFO"]
    assert msg.headers.get_all("Supported") == ["timer", "replaces", "100rel"]
    assert NameAddr.parse(msg.headers.get("From") or "").display == "Ola Nordmann"
    validate_request(msg)


def test_responses() -> None:
    ringing = parse_message(RINGING)
    assert isinstance(ringing, Response)
    assert (ringing.status, ringing.reason) == (180, "Ringing")
    assert [Via.parse(v).branch for v in ringing.headers.get_all("Via")] == [
        "z9hG4bKnodrute1", "z9hG4bK-524287-1---8a3b2c1d"]
    ok = parse_message(OK_200)
    assert isinstance(ok, Response) and ok.status == 200 and ok.body == SDP


def test_compact_forms_are_expanded() -> None:
    msg = parse_message(COMPACT)
    assert isinstance(msg, Request)
    names = [name for name, _ in msg.headers]
    assert names == ["Via", "From", "To", "Call-ID", "CSeq", "Supported", "Content-Length"]
    assert msg.headers.get("Max-Forwards") is None  # optional for the parser
    assert msg.body == b""
    validate_request(msg)


def test_folding_multi_value_via_and_quoted_commas() -> None:
    msg = parse_message(FOLDED)
    assert isinstance(msg, Request)
    vias = [Via.parse(v) for v in msg.headers.get_all("Via")]
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "[2001:db8::9]", 5070, "z9hG4bKa1"),
        ("TCP", "proxy.example.no", None, "z9hG4bKa2"),
        ("UDP", "192.0.2.1", None, "z9hG4bKa3"),
    ]
    assert NameAddr.parse(msg.headers.get("From") or "").tag == "1928301774"
    # To is not a list header: the comma in the quoted display name stays
    assert NameAddr.parse(msg.headers.get("To") or "", "To").display == \
        "Legevakt, Oslo (116117)"
    contacts = msg.headers.get_all("Contact")
    assert contacts == ['"A, B" <sip:a@192.0.2.1>', "<sip:b,c@192.0.2.2;x=1>;q=0.5"]
    assert parse_cseq(msg.headers.get("CSeq") or "") == (7, "OPTIONS")
    assert msg.headers.get("Subject") == "a long subject line"
    validate_request(msg)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_round_trip(name: str) -> None:
    first = parse_message(MESSAGES[name])
    wire = first.to_bytes()
    second = parse_message(wire)
    assert type(second) is type(first)
    assert second.headers == first.headers
    assert second.body == first.body
    assert second.to_bytes() == wire
    if isinstance(first, Request):
        assert isinstance(second, Request)
        assert (second.method, second.uri) == (first.method, first.uri)
    else:
        assert isinstance(second, Response)
        assert (second.status, second.reason) == (first.status, first.reason)


def test_udp_body_longer_than_content_length_is_truncated() -> None:
    msg = parse_message(INVITE + b"garbage after the body")
    assert msg.body == SDP


def test_udp_without_content_length_takes_the_rest() -> None:
    data = _replace(INVITE, f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_message(data).body == SDP


def test_stream_requires_exact_content_length() -> None:
    assert parse_message(INVITE, stream=True).body == SDP
    data = _replace(INVITE, f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert _error(data, stream=True).reason == "Missing Content-Length header"
    assert _error(INVITE + b"x", stream=True).reason == "Content-Length mismatch"


def test_leading_crlf_and_bare_lf_line_ends_are_tolerated() -> None:
    assert isinstance(parse_message(b"\r\n\r\n" + COMPACT), Request)
    lf_only = COMPACT.replace(b"\r\n", b"\n")
    msg = parse_message(lf_only)
    assert isinstance(msg, Request) and msg.headers.get("Call-ID") == "1f9c2a7e@198.51.100.7"


def test_missing_empty_line_at_end_of_datagram_means_no_body() -> None:
    msg = parse_message(COMPACT[:-2])  # ends "l: 0\r\n" with no empty line
    assert msg.body == b""


def test_empty_reason_phrase_and_lower_case_version() -> None:
    msg = parse_message(_replace(RINGING, b"SIP/2.0 180 Ringing", b"sip/2.0 180 "))
    assert isinstance(msg, Response) and msg.status == 180 and msg.reason == ""


def test_unknown_headers_and_methods_pass_through() -> None:
    data = _replace(COMPACT, b"BYE sip:", b"FOO sip:")
    data = _replace(data, b"CSeq: 2 BYE", b"CSeq: 2 FOO\r\nX-Kommune: 0301\r\nx-empty:")
    msg = parse_message(data)
    assert isinstance(msg, Request) and msg.method == "FOO"
    assert msg.headers.get("x-kommune") == "0301"
    assert msg.headers.get("X-Empty") == ""


def test_latin1_header_text_is_read_not_refused() -> None:
    data = _replace(INVITE, b'"Ola Nordmann"', b'"\xd8rjan \xc5s"')  # ISO-8859-1
    msg = parse_message(data)
    assert NameAddr.parse(msg.headers.get("From") or "").display == "\u00d8rjan \u00c5s"
    assert b'"\xc3\x98rjan \xc3\x85s"' in msg.to_bytes()  # re-sent as UTF-8


def test_peek_and_keepalive() -> None:
    assert peek_is_response(RINGING) and not peek_is_response(INVITE)
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(INVITE)


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("data", "status", "reason"), [
    pytest.param(_replace(INVITE, b"SIP/2.0\r\n", b"SIP/3.0\r\n"), 505,
                 "Version Not Supported", id="version"),
    pytest.param(_replace(INVITE, b"sip:113@nodrute.example.no;user=phone SIP",
                          b"http://example.no/ SIP"), 416, "Unsupported URI Scheme",
                 id="http-ruri"),
    pytest.param(_replace(INVITE, b"sip:113@nodrute.example.no;user=phone SIP",
                          b"sip:113@nodrute.example.no:port SIP"), 400, "Bad Request-URI",
                 id="bad-ruri"),
    pytest.param(_replace(INVITE, b"INVITE sip", b"INVITE  sip"), 400, "Bad request line",
                 id="double-space"),
    pytest.param(_replace(INVITE, b"INVITE sip", b"INV<ITE sip"), 400, "Bad request line",
                 id="method-not-token"),
    pytest.param(_replace(INVITE, b"Call-ID: 1f9c2a7e-5b3d-4e8f-9a1b-2c3d4e5f6a7b@198.51.100.7"
                          b"\r\n", b""), 400, "Missing Call-ID header", id="no-call-id"),
    pytest.param(_replace(INVITE, b"CSeq: 1 INVITE\r\n", b""), 400, "Missing CSeq header",
                 id="no-cseq"),
    pytest.param(_replace(INVITE, b"To: ", b"X-To: "), 400, "Missing To header", id="no-to"),
    pytest.param(_replace(INVITE, b"From: ", b"X-From: "), 400, "Missing From header",
                 id="no-from"),
    pytest.param(_replace(INVITE, b"Via: ", b"X-Via: "), 400, "Missing Via header",
                 id="no-via"),
    pytest.param(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: one INVITE"), 400,
                 "Bad CSeq header", id="bad-cseq"),
    pytest.param(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: 4294967296 INVITE"), 400,
                 "Bad CSeq header", id="cseq-over-32-bits"),
    pytest.param(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: \xc2\xb2 INVITE"), 400,
                 "Bad CSeq header", id="cseq-superscript-digit"),
    pytest.param(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400,
                 "CSeq method mismatch", id="cseq-method"),
    pytest.param(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE"), 400,
                 "Multiple CSeq headers", id="two-cseq"),
    pytest.param(_replace(INVITE, b"Content-Length: ", b"Content-Length: 9"), 400,
                 "Content-Length mismatch", id="content-length-too-big"),
    pytest.param(_replace(INVITE, b"Content-Length: ", b"Content-Length: -"), 400,
                 "Bad Content-Length header", id="content-length-negative"),
    pytest.param(_replace(INVITE, b"Content-Length: ", b"Content-Length: 0\r\nl: "), 400,
                 "Multiple Content-Length headers", id="content-length-twice"),
    pytest.param(_replace(INVITE, b"Privacy: none", b"Privacy none"), 400, "Bad header line",
                 id="no-colon"),
    pytest.param(_replace(INVITE, b"Privacy: none", b"Pri vacy: none"), 400, "Bad header name",
                 id="name-not-token"),
    pytest.param(_replace(INVITE, b"Privacy: none", b"Privacy: n\rne"), 400,
                 "Bad line ending", id="bare-cr"),
    pytest.param(_replace(INVITE, b"\r\nVia:", b"\r\n Via:"), 400, "Bad start line",
                 id="folded-start-line"),
    pytest.param(_replace(INVITE, b"Supported: timer, replaces", b"Supported: timer,, replaces"),
                 400, "Bad Supported header", id="empty-list-element"),
    pytest.param(_replace(INVITE, b"Record-Route: <sip:198.51.100.7;lr>",
                          b'Record-Route: "x <sip:198.51.100.7;lr>, <sip:p2;lr>'),
                 400, "Bad Record-Route header", id="unbalanced-quote-in-list"),
    pytest.param(INVITE.split(b"\r\n\r\n")[0], 400, "Missing empty line after headers",
                 id="no-header-terminator"),
    pytest.param(_replace(RINGING, b"180 Ringing", b"1800 Ringing"), 400, "Bad status line",
                 id="status-4-digits"),
    pytest.param(_replace(RINGING, b"180 Ringing", b"700 Ringing"), 400, "Bad status line",
                 id="status-700"),
    pytest.param(b"", 400, "Missing empty line after headers", id="empty"),
])
def test_error_status(data: bytes, status: int, reason: str) -> None:
    err = _error(data)
    assert (err.status, err.reason) == (status, reason)


def test_header_errors_carry_the_partial_request() -> None:
    err = _error(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: 1 BYE"))
    assert isinstance(err.partial, Request) and err.partial.method == "INVITE"
    assert err.partial.headers.get("Call-ID") is not None
    assert _error(b"garbage\r\n\r\n").partial is None
    # a duplicated single header is still answered (RFC 4475 §3.3.8 wants a 400 back)
    twice = _error(_replace(INVITE, b"CSeq: 1 INVITE", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE"))
    response = make_error_response(twice)
    assert response is not None and (response.status, response.reason) == (
        400, "Multiple CSeq headers")


def test_limits() -> None:
    small = ParserLimits(max_message_bytes=500)
    assert _error(INVITE, limits=small).status == 513  # §21.5.14 Message Too Large
    assert _error(INVITE, limits=ParserLimits(max_headers=10)).reason == "Too many header fields"
    long_line = _replace(INVITE, b"Privacy: none", b"Privacy: " + b"n" * 200)
    assert _error(long_line, limits=ParserLimits(max_line_chars=150)).reason == \
        "Header line too long"
    many_vias = _replace(INVITE, b"Privacy: none", b"Via: " + b",".join([b"SIP/2.0/UDP h"] * 300))
    assert _error(many_vias).reason == "Too many header fields"


# ---------------------------------------------------------------- UAS request validation


def _request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


@pytest.mark.parametrize(("old", "new", "reason"), [
    (b"To: <sip:113@", b"To: < sip:113@", "Bad URI in To header"),
    (b'From: "Ola Nordmann" <', b"From: Nordmann, Ola <", "Bad display name in From header"),
    (b'From: "Ola Nordmann" <', b'From: "Ola Nordmann <', "Unterminated quoted string in From"),
    (b"Via: SIP/2.0/UDP 198.51.100.7:5060;", b"Via: SIP/2.0/UDP 198.51.100.7:99999;",
     "Bad port in Via"),
    (b"Via: SIP/2.0/UDP", b"Via: HTTP/1.1/UDP", "Bad Via header"),
    (b"Max-Forwards: 69", b"Max-Forwards: lots", "Bad Max-Forwards header"),
    (b"Record-Route: <sip:198.51.100.7;lr>", b"Record-Route: sip:198.51.100.7",
     "Bad Record-Route header"),
    (b"Contact: <sip:4791234567@198.51.100.7:5060;transport=udp>", b"Contact: *",
     "Bad Contact header"),
    (b"Contact: <sip:4791234567@198.51.100.7:5060;transport=udp>",
     b"Contact: sip:a@b?Route=x", "Bad Contact header"),
    (b"sip:113@nodrute.example.no;user=phone SIP", b"sip:113@nodrute.example.no?Route=x SIP",
     "Bad Request-URI"),
    (b"Content-Type: application/sdp\r\n", b"", "Missing Content-Type header"),
])
def test_validate_request_rejects(old: bytes, new: bytes, reason: str) -> None:
    request = _request(_replace(INVITE, old, new))
    with pytest.raises(SipParseError) as info:
        validate_request(request)
    assert (info.value.status, info.value.reason) == (400, reason)
    assert info.value.partial is request


def test_validate_request_accepts_register_star() -> None:
    data = _replace(COMPACT, b"BYE sip:amk@192.0.2.20", b"REGISTER sip:example.no")
    data = _replace(data, b"CSeq: 2 BYE", b"CSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0")
    validate_request(_request(data))


def test_check_max_forwards() -> None:
    assert check_max_forwards(_request(INVITE)) == 69
    assert check_max_forwards(_request(COMPACT)) is None
    with pytest.raises(SipParseError) as info:
        check_max_forwards(_request(_replace(INVITE, b"Max-Forwards: 69", b"Max-Forwards: 00")))
    assert (info.value.status, info.value.reason) == (483, "Too Many Hops")
    with pytest.raises(SipParseError) as info:
        check_max_forwards(_request(_replace(INVITE, b"Max-Forwards: 69", b"Max-Forwards: x")))
    assert info.value.status == 400
    # above 255: clamped (RFC 4475 §3.1.2.4 allows it)
    assert check_max_forwards(_request(_replace(INVITE, b"Max-Forwards: 69",
                                                b"Max-Forwards: 300"))) == 255


def test_check_require() -> None:
    data = _replace(INVITE, b"Privacy: none", b"Require: 100rel, foo\r\nProxy-Require: bar")
    request = _request(data)
    check_require(request, {"100rel", "foo"})  # Proxy-Require is for proxies
    with pytest.raises(SipParseError) as info:
        check_require(request, {"100REL", "timer"})
    err = info.value
    assert (err.status, err.reason) == (420, "Bad Extension")
    assert err.extra_headers == [("Unsupported", "foo")]
    with pytest.raises(SipParseError) as info:
        check_require(request, {"100rel", "foo"}, proxy=True)
    assert info.value.extra_headers == [("Unsupported", "bar")]
    # the 420 response carries Unsupported
    response = make_error_response(info.value)
    assert response is not None and response.status == 420
    assert response.headers.get_all("Unsupported") == ["bar"]


def test_check_require_ignores_ack_and_cancel() -> None:
    data = _replace(COMPACT, b"BYE sip:", b"CANCEL sip:")
    data = _replace(data, b"CSeq: 2 BYE", b"CSeq: 2 CANCEL\r\nRequire: foo")
    check_require(_request(data), set())


def test_make_error_response() -> None:
    err = _error(_replace(INVITE, b"SIP/2.0\r\n", b"SIP/3.0\r\n"))
    response = make_error_response(err)
    assert response is not None
    assert (response.status, response.reason) == (505, "Version Not Supported")
    assert response.headers.get("Call-ID") == "1f9c2a7e-5b3d-4e8f-9a1b-2c3d4e5f6a7b@198.51.100.7"
    to = NameAddr.parse(response.headers.get("To") or "", "To")
    assert to.tag  # §8.2.6.2
    assert response.headers.get_all("Via") == _request(INVITE).headers.get_all("Via")
    # no answer: to a response, to an ACK, or without the Via and CSeq a client matches on
    assert make_error_response(_error(_replace(RINGING, b"CSeq: 1 INVITE", b"CSeq: x"))) is None
    ack = _replace(_replace(COMPACT, b"BYE sip:", b"ACK sip:"), b"CSeq: 2 BYE", b"CSeq: 2 INVITE")
    assert make_error_response(_error(ack)) is None
    assert make_error_response(_error(_replace(INVITE, b"CSeq:", b"X-CSeq:"))) is None
    assert make_error_response(_error(_replace(INVITE, b"Via:", b"X-Via:"))) is None
    # a missing Call-ID is still answered (RFC 4475 §3.3.1), echoing what there is
    missing = make_error_response(_error(_replace(INVITE, b"Call-ID:", b"X-Call-ID:")))
    assert missing is not None and missing.status == 400
    assert missing.headers.get("Call-ID") is None
    assert missing.headers.get("CSeq") == "1 INVITE"


# ---------------------------------------------------------------------------- performance


def test_parse_speed_budget() -> None:
    """Generous ceiling (CI machines vary): the target is < 30 µs per typical INVITE."""
    runs = 2000
    best = min(timeit.repeat(lambda: parse_message(INVITE), number=runs, repeat=5)) / runs
    assert best < 150e-6, f"parse_message took {best * 1e6:.1f} µs"
