"""RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests) against the parser.

Each message is one UDP datagram as-is. "Accepting" means :func:`parse_message` and, for a
request, :func:`validate_request` (the UAS checks before the TU) both pass; "rejecting" means one
of them raises :class:`SipParseError` with a 4xx/5xx status. ``valid-but-odd`` messages each get
an explicit expectation below, so a new manifest row cannot go untested.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from sip.errors import SipParseError
from sip.headers import NameAddr, Via
from sip.message import Request, Response
from sip.parser import (
    check_max_forwards,
    check_require,
    make_error_response,
    parse_message,
    validate_request,
)
from sip.uri import SipUri, parse_uri

DATA = Path(__file__).resolve().parent.parent / "data"
SUITES = {
    "rfc4475": (DATA / "rfc4475" / "manifest.csv", DATA / "rfc4475"),
    "rfc5118": (DATA / "rfc5118" / "manifest_wire.csv", DATA / "rfc5118" / "wire"),
}

# Rejections we deliberately do not make, each with the RFC's own allowance. The test still
# asserts the rejection, marked xfail(strict): if behaviour changes, the mark must go.
DELIBERATELY_ACCEPTED = {
    "baddate.dat": "Date is non-essential and RFC 4475 §3.1.2.12 allows ignoring it; an "
                   "emergency call must not be refused over a bad time zone in Date",
}
EXPECTED_STATUS = {"badvers.dat": 505}


def _rows(suite: str) -> list[tuple[str, dict[str, str], Path]]:
    manifest, folder = SUITES[suite]
    with manifest.open(newline="", encoding="utf-8") as handle:
        return [(suite, row, folder / row["file"]) for row in csv.DictReader(handle)]


ROWS = _rows("rfc4475") + _rows("rfc5118")


def _ids(rows: list[tuple[str, dict[str, str], Path]]) -> list[str]:
    return [f"{suite}/{row['file']}" for suite, row, _ in rows]


def _accept(data: bytes) -> Request | Response:
    message = parse_message(data)
    if isinstance(message, Request):
        validate_request(message)
    return message


def _by_verdict(verdict: str) -> list[tuple[str, dict[str, str], Path]]:
    return [r for r in ROWS if r[1]["expected_verdict"] == verdict]


def test_manifests_match_the_files() -> None:
    assert len(_rows("rfc4475")) == 49 and len(_rows("rfc5118")) == 12
    for _, row, path in ROWS:
        data = path.read_bytes()
        assert len(data) == int(row["bytes"]), row["file"]
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["file"]


VALID = _by_verdict("valid-must-parse")


@pytest.mark.parametrize(("suite", "row", "path"), VALID, ids=_ids(VALID))
def test_valid_must_parse(suite: str, row: dict[str, str], path: Path) -> None:
    message = _accept(path.read_bytes())
    again = parse_message(message.to_bytes())  # and survives our own serialisation
    assert again.headers.get_all("Via") == message.headers.get_all("Via")
    assert again.body == message.body


INVALID = _by_verdict("invalid-must-reject-or-400")


def _invalid_params() -> list[object]:
    params: list[object] = []
    for suite, row, path in INVALID:
        marks = []
        if row["file"] in DELIBERATELY_ACCEPTED:
            marks.append(pytest.mark.xfail(strict=True, reason=DELIBERATELY_ACCEPTED[row["file"]]))
        params.append(pytest.param(suite, row, path, marks=marks, id=f"{suite}/{row['file']}"))
    return params


@pytest.mark.parametrize(("suite", "row", "path"), _invalid_params())
def test_invalid_must_be_rejected(suite: str, row: dict[str, str], path: Path) -> None:
    with pytest.raises(SipParseError) as info:
        _accept(path.read_bytes())
    assert info.value.status == EXPECTED_STATUS.get(row["file"], 400)


# ------------------------------------------------------------------- valid-but-odd, one by one


def _request(name: str, suite: str = "rfc4475") -> Request:
    folder = SUITES[suite][1]
    message = _accept((folder / name).read_bytes())
    assert isinstance(message, Request)
    return message


def _odd_badbranch() -> None:
    # bare magic cookie: parses; the transaction layer falls back to RFC 2543 matching
    assert Via.parse(_request("badbranch.dat").headers.get("Via") or "").branch == "z9hG4bK"


def _odd_unknown_scheme(name: str) -> Callable[[], None]:
    def check() -> None:
        with pytest.raises(SipParseError) as info:
            parse_message((SUITES["rfc4475"][1] / name).read_bytes())
        assert (info.value.status, info.value.reason) == (416, "Unsupported URI Scheme")
        response = make_error_response(info.value)
        assert response is not None and response.status == 416
    return check


def _odd_unksm2() -> None:
    request = _request("unksm2.dat")  # other schemes in To/From/Contact are fine
    assert NameAddr.parse(request.headers.get("To") or "", "To").uri == "isbn:2983792873"


def _odd_bext01() -> None:
    request = _request("bext01.dat")
    with pytest.raises(SipParseError) as info:
        check_require(request, {"100rel", "timer"})
    assert info.value.status == 420
    assert info.value.extra_headers == [("Unsupported", "nothingSupportsThis"),
                                        ("Unsupported", "nothingSupportsThisEither")]
    with pytest.raises(SipParseError) as info:
        check_require(request, {"nothingsupportsthis", "nothingsupportsthiseither"}, proxy=True)
    assert [v for _, v in info.value.extra_headers] == ["noProxiesSupportThis",
                                                        "norDoAnyProxiesSupportThis"]


def _odd_invut() -> None:
    request = _request("invut.dat")  # 415 is the TU's call, with the body untouched
    assert request.headers.get("Content-Type") == "application/unknownformat"
    assert len(request.body) == 40


def _odd_regaut01() -> None:
    request = _request("regaut01.dat")
    assert request.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def _odd_bcast() -> None:
    response = parse_message((SUITES["rfc4475"][1] / "bcast.dat").read_bytes())
    assert isinstance(response, Response)
    vias = [Via.parse(v) for v in response.headers.get_all("Via")]
    assert vias[1].host == "255.255.255.255"  # the transport must refuse to send there


def _odd_zeromf() -> None:
    with pytest.raises(SipParseError) as info:
        check_max_forwards(_request("zeromf.dat"))
    assert info.value.status == 483


def _odd_cparam01() -> None:
    contact = NameAddr.parse(_request("cparam01.dat").headers.get("Contact") or "", "Contact")
    assert contact.uri == "sip:+19725552222@gw1.example.net"
    assert contact.params == {"unknownparam": None}  # a header parameter, not the URI's


def _odd_cparam02() -> None:
    contact = NameAddr.parse(_request("cparam02.dat").headers.get("Contact") or "", "Contact")
    uri = parse_uri(contact.uri)
    assert isinstance(uri, SipUri) and uri.params == {"unknownparam": None}
    assert contact.params == {}


def _odd_regescrt() -> None:
    contact = NameAddr.parse(_request("regescrt.dat").headers.get("Contact") or "", "Contact")
    uri = parse_uri(contact.uri)
    assert isinstance(uri, SipUri) and uri.headers == {"Route": "<sip:sip.example.com>"}


def _odd_sdp01() -> None:
    assert _request("sdp01.dat").headers.get("Accept") == "text/nobodyKnowsThis"  # 406: TU


def _odd_inv2543() -> None:
    request = _request("inv2543.dat")
    assert request.headers.get("Content-Length") is None
    assert request.body.startswith(b"v=0\r\n") and request.body.endswith(b"RTP/AVP 0\r\n")
    assert Via.parse(request.headers.get("Via") or "").branch is None
    assert check_max_forwards(request) is None


def _odd_port_ambiguous() -> None:
    uri = parse_uri(_request("port-ambiguous.dat", "rfc5118").uri)
    assert isinstance(uri, SipUri) and (uri.host, uri.port) == ("[2001:db8::10:5070]", None)


def _odd_received_with_delim() -> None:
    via = Via.parse(_request("via-received-param-with-delim.dat", "rfc5118").headers.get("Via")
                    or "")
    assert via.params["received"] == "[2001:db8::9:255]"


def _odd_three_colons() -> None:
    # RFC 5118 §4.10: tolerated (robustness); the host is kept as written
    uri = parse_uri(_request("ipv6-bug-abnf-3-colons.dat", "rfc5118").uri)
    assert isinstance(uri, SipUri) and uri.host == "[2001:db8:::192.0.2.1]"


ODD_CHECKS: dict[str, Callable[[], None]] = {
    "badbranch.dat": _odd_badbranch,
    "unkscm.dat": _odd_unknown_scheme("unkscm.dat"),
    "novelsc.dat": _odd_unknown_scheme("novelsc.dat"),
    "unksm2.dat": _odd_unksm2,
    "bext01.dat": _odd_bext01,
    "invut.dat": _odd_invut,
    "regaut01.dat": _odd_regaut01,
    "bcast.dat": _odd_bcast,
    "zeromf.dat": _odd_zeromf,
    "cparam01.dat": _odd_cparam01,
    "cparam02.dat": _odd_cparam02,
    "regescrt.dat": _odd_regescrt,
    "sdp01.dat": _odd_sdp01,
    "inv2543.dat": _odd_inv2543,
    "port-ambiguous.dat": _odd_port_ambiguous,
    "via-received-param-with-delim.dat": _odd_received_with_delim,
    "ipv6-bug-abnf-3-colons.dat": _odd_three_colons,
}

ODD = _by_verdict("valid-but-odd")


@pytest.mark.parametrize(("suite", "row", "path"), ODD, ids=_ids(ODD))
def test_valid_but_odd(suite: str, row: dict[str, str], path: Path) -> None:
    assert row["file"] in ODD_CHECKS, "new valid-but-odd message: write its expectation"
    ODD_CHECKS[row["file"]]()


# ------------------------------------------------------- details of some valid messages


def test_wsinv_whitespace_everywhere() -> None:
    request = _request("wsinv.dat")
    assert request.headers.get("Max-Forwards") == "0068"
    assert check_max_forwards(request) == 68
    assert request.headers.get("CSeq") == "0009 INVITE"
    vias = [Via.parse(v) for v in request.headers.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("Subject") == ""
    assert request.headers.get("NewFangledHeader") == \
        "newfangled value continued newfangled value"
    sender = NameAddr.parse(request.headers.get("From") or "")
    assert (sender.display, sender.tag) == ('J Rosenberg \\"', "98asjd8")
    contact = NameAddr.parse(request.headers.get("Contact") or "", "Contact")
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}


def test_escapes_are_decoded_in_uris() -> None:
    uri = parse_uri(_request("esc01.dat").uri)
    assert isinstance(uri, SipUri) and uri.user == "sips:user@example.com"
    contact = NameAddr.parse(_request("esc01.dat").headers.get("Contact") or "", "Contact")
    curi = parse_uri(contact.uri)
    assert isinstance(curi, SipUri)
    assert curi.user == "caller" and curi.lr and curi.params["name"] == "value%41"
    contacts = _request("escnull.dat").headers.get_all("Contact")
    users = [parse_uri(NameAddr.parse(c, "Contact").uri) for c in contacts]
    assert [u.user for u in users if isinstance(u, SipUri)] == ["\x00", "\x00\x00"]


def test_percent_that_is_not_an_escape() -> None:
    request = _request("esc02.dat")
    assert request.method == "RE%47IST%45R"  # not REGISTER
    assert len(request.headers.get_all("Contact")) == 2
    assert request.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_semicolon_in_user_part() -> None:
    uri = parse_uri(_request("semiuri.dat").uri)
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u@example.net", "example.com", {})


def test_trailing_octets_in_datagram_are_ignored() -> None:
    request = _request("dblreq.dat")
    assert request.method == "REGISTER" and request.body == b""


def test_multipart_body_verbatim() -> None:
    request = _request("mpart01.dat")
    assert len(request.body) == 553 and b"\n" in request.body


def test_reason_phrases() -> None:
    folder = SUITES["rfc4475"][1]
    noreason = parse_message((folder / "noreason.dat").read_bytes())
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")
    unreason = parse_message((folder / "unreason.dat").read_bytes())
    assert isinstance(unreason, Response) and "простое" in unreason.reason


def test_transports_and_long_values() -> None:
    transports = [Via.parse(v).transport
                  for v in _request("transports.dat").headers.get_all("Via")]
    assert transports == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    longreq = _request("longreq.dat")
    assert len(longreq.headers.get_all("Via")) == 34


def test_ipv6_references() -> None:
    uri = parse_uri(_request("port-unambiguous.dat", "rfc5118").uri)
    assert isinstance(uri, SipUri) and (uri.host, uri.port) == ("[2001:db8::10]", 5070)
    with pytest.raises(SipParseError) as info:
        parse_message((SUITES["rfc5118"][1] / "ipv6-bad.dat").read_bytes())
    assert info.value.reason == "Bad Request-URI"
    vias = [Via.parse(v) for v in _request("mult-ip-in-header.dat", "rfc5118")
            .headers.get_all("Via")]
    assert [(v.host, v.port) for v in vias] == [
        ("[2001:db8::9:1]", 6050), ("192.0.2.1", None), ("[2001:db8::9:255]", None)]
