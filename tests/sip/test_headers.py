"""sip.headers views and the sip.message Headers multimap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip.errors import SipParseError
from sip.headers import (
    NameAddr,
    Via,
    format_params,
    parse_cseq,
    parse_max_forwards,
    split_params,
)
from sip.message import Headers, Request, canonical_name, make_response

# --------------------------------------------------------------------------------- Headers


def test_headers_multimap() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a"), ("To", "<sip:b@x>"), ("VIA", "SIP/2.0/UDP c")])
    assert list(headers) == [("Via", "SIP/2.0/UDP a"), ("To", "<sip:b@x>"),
                             ("Via", "SIP/2.0/UDP c")]
    assert headers.get("via") == "SIP/2.0/UDP a" and headers.get("X") is None
    assert headers.get_all("V") == ["SIP/2.0/UDP a", "SIP/2.0/UDP c"]
    headers.prepend("Via", "SIP/2.0/UDP top")
    assert headers.get_all("Via")[0] == "SIP/2.0/UDP top"
    assert headers.pop_first("Via") == "SIP/2.0/UDP top"
    copy = headers.copy()
    headers.set("Via", "only")
    assert headers.get_all("Via") == ["only"] and next(iter(headers)) == ("Via", "only")
    assert copy.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP c"]
    headers.remove("t")
    assert "To" not in headers and "Via" in headers and 3 not in headers  # type: ignore[operator]
    assert len(headers) == 1 and headers == Headers([("Via", "only")])
    assert headers.pop_first("To") is None


def test_canonical_names() -> None:
    assert canonical_name("call-id") == "Call-ID" and canonical_name("i") == "Call-ID"
    assert canonical_name("CSEQ") == "CSeq" and canonical_name("X-Foo") == "X-Foo"
    assert canonical_name("l") == "Content-Length"


def test_content_length_is_written_in_place_from_the_body() -> None:
    headers = Headers([("To", "<sip:a@b>"), ("Content-Length", "99"), ("From", "<sip:c@d>")])
    wire = Request("MESSAGE", "sip:a@b", headers, b"hello").to_bytes()
    assert wire.split(b"\r\n")[1:4] == [b"To: <sip:a@b>", b"Content-Length: 5",
                                        b"From: <sip:c@d>"]
    assert Request("OPTIONS", "sip:a@b").to_bytes().endswith(b"Content-Length: 0\r\n\r\n")


def test_make_response_copies_and_tags() -> None:
    request = Request("INVITE", "sip:a@b", Headers([
        ("Via", "SIP/2.0/UDP p;branch=z9hG4bK1"), ("Via", "SIP/2.0/UDP c;branch=z9hG4bK2"),
        ("From", "<sip:c@d>;tag=1"), ("To", "<sip:a@b>"), ("Call-ID", "x"),
        ("CSeq", "1 INVITE"), ("Record-Route", "<sip:p;lr>"), ("Contact", "<sip:c@h>"),
    ]))
    response = make_response(request, 486, to_tag="t9", extra=[("Retry-After", "5")])
    assert response.reason == "Busy Here"
    assert [name for name, _ in response.headers] == [
        "Via", "Via", "From", "To", "Call-ID", "CSeq", "Retry-After"]
    assert NameAddr.parse(response.headers.get("To") or "", "To").tag == "t9"
    trying = make_response(request, 100)
    assert NameAddr.parse(trying.headers.get("To") or "", "To").tag is None


# ------------------------------------------------------------------------------------- Via


@pytest.mark.parametrize(("text", "expected"), [
    ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
     ("UDP", "192.0.2.1", 5060, {"branch": "z9hG4bK1", "rport": None})),
    ("SIP/2.0/tcp host.example.no", ("TCP", "host.example.no", None, {})),
    ("SIP / 2.0 / TLS  h.example.no : 5061 ; branch = z9hG4bK2",
     ("TLS", "h.example.no", 5061, {"branch": "z9hG4bK2"})),
    ("SIP/2.0/UDP\th;received=10.0.0.1", ("UDP", "h", None, {"received": "10.0.0.1"})),
    ("SIP/2.0/UDP [2001:db8::9]:5070;received=[2001:db8::9:255]",
     ("UDP", "[2001:db8::9]", 5070, {"received": "[2001:db8::9:255]"})),
    ('SIP/2.0/UDP h;x="a;b"', ("UDP", "h", None, {"x": "a;b"})),
])
def test_via_parse(text: str, expected: tuple[object, ...]) -> None:
    via = Via.parse(text)
    assert (via.transport, via.host, via.port, via.params) == expected
    assert Via.parse(via.to_str()) == via


@pytest.mark.parametrize("text", [
    "", "SIP/2.0/UDP", "SIP/2.0 UDP h", "HTTP/1.1/TCP h", "SIP/2.0/UDP h:0x50",
    "SIP/2.0/UDP h:70000", "SIP/2.0/UDP h;=x", "SIP/2.0/UDP [zz::1]", "SIP/2.0/UDP [::1",
    "SIP/2.0/UDP <h>", 'SIP/2.0/UDP h;x="open', "SIP/2.0/U<P h",
])
def test_via_rejects(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(text)
    assert info.value.status == 400


def test_via_branch() -> None:
    assert Via.parse("SIP/2.0/UDP h;branch=z9hG4bKabc").branch == "z9hG4bKabc"
    assert Via.parse("SIP/2.0/UDP h").branch is None


# -------------------------------------------------------------------------------- NameAddr


@pytest.mark.parametrize(("text", "uri", "display", "params"), [
    ('"Ola Nordmann" <sip:ola@example.no>;tag=1', "sip:ola@example.no", "Ola Nordmann",
     {"tag": "1"}),
    ('"Nordmann, Ola" <sip:ola@x>', "sip:ola@x", "Nordmann, Ola", {}),
    ('"a \\"b\\" \\\\ c"<sip:x@y>', "sip:x@y", 'a "b" \\ c', {}),
    ("Ola  Nordmann <sip:ola@x> ; tag = 2", "sip:ola@x", "Ola Nordmann", {"tag": "2"}),
    ("<sip:x@y;lr>", "sip:x@y;lr", None, {}),
    ("sip:x@y;tag=3;expires=60", "sip:x@y", None, {"tag": "3", "expires": "60"}),
    ("tel:+47113", "tel:+47113", None, {}),
    # not tokens, but unambiguous: accepted (robustness for emergency calls)
    ("Ola (mobil) <sip:ola@x>", "sip:ola@x", "Ola (mobil)", {}),
    ("\u00d8rjan \u00c5s <sip:o@x>", "sip:o@x", "\u00d8rjan \u00c5s", {}),
])
def test_name_addr_parse(text: str, uri: str, display: str | None,
                         params: dict[str, str | None]) -> None:
    value = NameAddr.parse(text)
    assert (value.uri, value.display, value.params) == (uri, display, params)
    assert NameAddr.parse(value.to_str()) == value


@pytest.mark.parametrize(("text", "reason"), [
    ('"Mr. J. User <sip:j.user@example.com>', "Unterminated quoted string in To"),
    ('"Watson, Thomas" < sip:t.watson@example.org >', "Bad URI in To header"),
    ("Watson, Thomas <sip:t.watson@example.org>", "Bad display name in To header"),
    ('Wat"son <sip:t.watson@example.org>', "Bad display name in To header"),
    ("sip:user@example.com?Route=%3Csip:sip.example.com%3E", "Bad To header"),
    ("<sip:a@b> junk", "Bad To header"),
    ("<sip:a@b", "Bad To header"),
    ('"x" sip:a@b', "Bad To header"),
    ("<>", "Bad URI in To header"),
    ("nocolon", "Bad URI in To header"),
    ("", "Bad URI in To header"),
])
def test_name_addr_rejects(text: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        NameAddr.parse(text, "To")
    assert info.value.reason == reason


# ------------------------------------------------------------------------- params, scalars


def test_split_params() -> None:
    assert split_params(";a=1;B;c = x ; ;d=\"q;\\\"z\"", "X") == {
        "a": "1", "b": None, "c": "x", "d": 'q;"z'}
    assert split_params("", "X") == {}
    for bad in (";=1", ";a b=1", ';a="open', ';a="q"junk'):
        with pytest.raises(SipParseError):
            split_params(bad, "X")


@given(st.dictionaries(st.text("abcdefghij-.!%*_+`'~", min_size=1, max_size=8),
                       st.none() | st.text(max_size=10), max_size=4))
def test_params_round_trip(params: dict[str, str | None]) -> None:
    params = {name.lower(): value for name, value in params.items()}
    assert split_params(format_params(params), "X") == params


@pytest.mark.parametrize(("text", "expected"), [
    ("1 INVITE", (1, "INVITE")), ("0009\tINVITE", (9, "INVITE")),
    ("  4294967295   BYE ", (4294967295, "BYE")),
])
def test_parse_cseq(text: str, expected: tuple[int, str]) -> None:
    assert parse_cseq(text) == expected


@pytest.mark.parametrize("text", [
    "", "1", "INVITE", "-1 INVITE", "4294967296 INVITE", "1 IN VITE", "\u00b2 INVITE",
    "36893488147419103232 REGISTER", "1 INV<TE", "0x1 INVITE",
])
def test_parse_cseq_rejects(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_cseq(text)
    assert info.value.reason == "Bad CSeq header"


def test_parse_max_forwards() -> None:
    assert parse_max_forwards("70") == 70
    assert parse_max_forwards(" 0068 ") == 68
    assert parse_max_forwards("300") == 255
    assert parse_max_forwards("0") == 0
    for bad in ("", "-1", "7 0", "\u0663", "99999999999"):
        with pytest.raises(SipParseError):
            parse_max_forwards(bad)
