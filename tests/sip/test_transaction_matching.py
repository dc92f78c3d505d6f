"""The matching helpers: fast parameter reads agree with sip.headers, keys, Via stamping."""

from __future__ import annotations

import pytest

from sip.errors import SipParseError
from sip.headers import NameAddr, Via
from sip.transaction_base import (
    client_key,
    has_magic_cookie,
    response_destination,
    server_key,
    stamp_via,
    tag_of,
    top_branch,
)

VIAS = [
    "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds",
    "SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK776asdhds;received=10.0.0.1",
    "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK-1.2_3!%*+`'~",
    "SIP/2.0/UDP host.example;branch=z9hG4bKa ;ttl=1",
    "SIP/2.0/UDP host.example ; branch = z9hG4bKspaced",
    "SIP/2.0/UDP host.example;Branch=z9hG4bKupper",
    'SIP/2.0/UDP host.example;x="a;branch=fake";branch=z9hG4bKquoted',
    "SIP/2.0/UDP host.example;xbranch=nope",
    "SIP/2.0/UDP host.example",
    "SIP / 2.0 / UDP host.example;branch=1234",
]


@pytest.mark.parametrize("value", VIAS)
def test_top_branch_agrees_with_via_parse(value: str) -> None:
    assert top_branch(value) == Via.parse(value).branch


def test_top_branch_raises_like_via_parse_when_it_cannot_read() -> None:
    with pytest.raises(SipParseError):
        top_branch("garbage")


TOS = [
    "<sip:113@nodrute.example>",
    "<sip:113@nodrute.example>;tag=abc123",
    '"Legevakt" <sip:116117@nodrute.example;transport=tcp>;tag=a.b-c',
    "sip:113@nodrute.example;tag=plain",
    "<sip:113@nodrute.example> ; tag = spaced",
    "<sip:113@nodrute.example>;TAG=upper",
    '"a>b" <sip:x@y>;tag=t1',
    '<sip:x@y>;foo="bar;tag=no";tag=yes',
    "<sip:x@y;tag=inside-uri>",
    "<sip:x@y>;vtag=no",
]


@pytest.mark.parametrize("value", TOS)
def test_tag_of_agrees_with_name_addr(value: str) -> None:
    assert tag_of(value) == (NameAddr.parse(value, "To").tag or "")


def test_tag_of_missing_or_broken() -> None:
    assert tag_of(None) == ""
    assert tag_of("<sip:x@y;tag=z") == ""  # unterminated, not guessed


def test_keys() -> None:
    via = Via.parse("SIP/2.0/UDP Host.Example:5070;branch=z9hG4bKk")
    assert server_key("z9hG4bKk", via, "INVITE") != server_key("z9hG4bKk", via, "CANCEL")
    assert server_key("z9hG4bKk", via, "INVITE").startswith("s|")
    assert "host.example:5070" in server_key("z9hG4bKk", via, "INVITE")  # host is caseless
    assert client_key("z9hG4bKk", "INVITE") != client_key("z9hG4bKk", "CANCEL")
    assert (
        has_magic_cookie("z9hG4bKk") and not has_magic_cookie("1234") and not has_magic_cookie(None)
    )


def test_stamp_via_keeps_a_received_already_right() -> None:
    via = Via.parse("SIP/2.0/UDP host.example;received=192.0.2.10;branch=z9hG4bKr")
    assert not stamp_via(via, ("192.0.2.10", 5060))


def test_stamp_via_with_rport_value_already_set_is_left_alone() -> None:
    via = Via.parse("SIP/2.0/UDP 192.0.2.10;rport=7000;branch=z9hG4bKr")
    assert not stamp_via(via, ("192.0.2.10", 7000))
    assert response_destination(via, ("192.0.2.10", 7000), "UDP") == ("192.0.2.10", 7000)
