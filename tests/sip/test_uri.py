"""sip.uri: SIP/SIPS/tel/urn parsing, escaping, serialisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip.errors import SipParseError
from sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


def _sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


def test_full_sip_uri() -> None:
    uri = _sip("sip:alice:secret@Example.NO:5070;Transport=TCP;lr;maddr=10.0.0.1?Subject=hi&X=1")
    assert (uri.scheme, uri.user, uri.password) == ("sip", "alice", "secret")
    assert (uri.host, uri.port) == ("example.no", 5070)
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "10.0.0.1"}
    assert uri.transport == "tcp" and uri.lr and not uri.secure
    assert uri.headers == {"Subject": "hi", "X": "1"}
    assert uri.host_port() == "example.no:5070"


def test_minimal_and_sips() -> None:
    uri = _sip("SIPS:nodrute.example.no")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", None, "nodrute.example.no", None)
    assert uri.secure and uri.transport is None and not uri.lr
    assert uri.host_port() == "nodrute.example.no"
    assert uri.to_str() == "sips:nodrute.example.no"


def test_user_escapes_are_decoded_and_reapplied() -> None:
    uri = _sip("sip:%61lice@x")
    assert uri.user == "alice" and uri.to_str() == "sip:alice@x"
    spaced = _sip("sip:I%20have%20spaces@example.net")
    assert spaced.user == "I have spaces"
    assert spaced.to_str() == "sip:I%20have%20spaces@example.net"
    at = _sip("sip:sips%3Auser%40example.com@example.net")
    assert at.user == "sips:user@example.com"
    assert _sip(at.to_str()) == at
    latin1 = _sip("sip:%E6%F8@x")  # not UTF-8: kept losslessly
    assert latin1.to_str() == "sip:%E6%F8@x"


def test_user_params_stay_in_user() -> None:
    uri = _sip("sip:113;kommune=0301@nodrute.example.no;user=phone")
    assert uri.user == "113;kommune=0301"
    assert uri.params == {"user": "phone"}
    assert uri.user_params() == ("113", {"kommune": "0301"})
    assert uri.to_str() == "sip:113;kommune=0301@nodrute.example.no;user=phone"
    assert _sip("sip:113@h").user_params() == ("113", {})


def test_escaped_params() -> None:
    uri = _sip("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.lr and uri.params["name"] == "value%41"
    assert _sip(uri.to_str()) == uri


def test_ipv6_hosts() -> None:
    uri = _sip("sip:[2001:DB8::10]:5070")
    assert (uri.host, uri.port) == ("[2001:DB8::10]", 5070)
    assert uri.host_port() == "[2001:DB8::10]:5070"
    assert _sip("sip:user@[2001:db8::10:5070]").port is None


def test_tel_uris() -> None:
    tel = parse_uri("tel:+47113")
    assert isinstance(tel, TelUri) and tel.number == "+47113" and tel.is_global
    local = parse_uri("tel:113;phone-context=+47")
    assert isinstance(local, TelUri)
    assert (local.number, local.params) == ("113", {"phone-context": "+47"})
    assert not local.is_global and local.to_str() == "tel:113;phone-context=+47"
    dashed = parse_uri("TEL:+47-22-11-31-13")
    assert isinstance(dashed, TelUri) and dashed.digits == "+4722113113"


def test_urn() -> None:
    urn = parse_uri("urn:service:sos.ambulance")
    assert urn == AbsoluteUri("urn", "service:sos.ambulance")
    assert urn.to_str() == "urn:service:sos.ambulance"


@pytest.mark.parametrize("text", [
    "nobodyKnowsThisScheme:totallyopaquecontent",
    "soap.beep://192.0.2.103:3002",
    "http://example.no/",
    "mailto:a@b",
])
def test_unsupported_scheme_is_416(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert (info.value.status, info.value.reason) == (416, "Unsupported URI Scheme")


@pytest.mark.parametrize("text", [
    "", "sip", ":x", "<sip:user@example.com>", "sip:", "sip:@host", "sip:user@",
    "sip:user@example.com; lr", "sip:user@example.com;=x", "sip:2001:db8::10",
    "sip:%zz@x", "sip:a%4@x", "sip:a@x:99999", "sip:a@x:", "sip:a@x:5o60", "sip:a@[::1",
    "sip:a@[zz::1]", "sip:a@[::1]x", "sip:a b@x", "sip:a@x?Subject", "sip:a@ho st",
    "tel:", "tel:abc+1", "tel:++47", "tel:;x", "urn:", "urn:a b", "sip:a@x;p=\u00e6",
    "1sip:a@b", "sip:a@x:\u00b2",
])
def test_malformed_is_400(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_sip_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    assert parse_uri(uri.to_str()) == uri


_user = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)


@given(user=_user, host=_token, port=st.none() | st.integers(1, 65535),
       params=st.dictionaries(_token, st.none() | _user, max_size=3))
def test_sip_uri_round_trip(user: str, host: str, port: int | None,
                            params: dict[str, str | None]) -> None:
    uri = SipUri("sip", host, user=user, port=port, params=params)
    assert parse_uri(uri.to_str()) == uri
