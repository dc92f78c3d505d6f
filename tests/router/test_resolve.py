"""Which service a Request-URI dials and which municipality hint wins."""

from __future__ import annotations

import pytest

from municipality_map import Service
from router.resolve import (
    DialledService,
    LocationSource,
    choose_municipality,
    dialled_service,
    municipality_hints,
    normalise_digits,
)
from sip.errors import SipParseError
from sip.message import Headers, Request

ALL_SOURCES = [LocationSource.HEADER, LocationSource.URI_PARAM, LocationSource.PREFIX]


def invite(uri: str, **headers: str) -> Request:
    h = Headers()
    for name, value in headers.items():
        h.add(name.replace("_", "-"), value)
    return Request("INVITE", uri, h)


@pytest.mark.parametrize(
    ("uri", "service", "prefix"),
    [
        ("sip:113@10.0.0.1", Service.AMK, None),
        ("sip:116117@10.0.0.1", Service.LEGEVAKT, None),
        ("sip:+47113@nodrute.example;user=phone", Service.AMK, None),
        ("sip:0047116117@10.0.0.1", Service.LEGEVAKT, None),
        ("sips:113@10.0.0.1", Service.AMK, None),
        ("tel:+47113", Service.AMK, None),
        ("tel:116-117;phone-context=+47", Service.LEGEVAKT, None),
        ("urn:service:sos", Service.AMK, None),
        ("urn:service:sos.ambulance", Service.AMK, None),
        ("sip:1130301@10.0.0.1", Service.AMK, "0301"),
        ("sip:1161173103@10.0.0.1", Service.LEGEVAKT, "3103"),
        ("sip:+471130301@10.0.0.1", Service.AMK, "0301"),
        ("sip:113;kommune=0301@10.0.0.1", Service.AMK, None),
    ],
)
def test_emergency_numbers_are_recognised(uri: str, service: Service, prefix: str | None) -> None:
    assert dialled_service(invite(uri)) == DialledService(service, prefix)


@pytest.mark.parametrize(
    "uri",
    [
        "sip:112@10.0.0.1",  # police: not ours
        "sip:110@10.0.0.1",
        "sip:11311@10.0.0.1",  # 113 + two digits is no municipality prefix
        "sip:22334455@10.0.0.1",
        "sip:+46113@10.0.0.1",  # Swedish 113 is not Norwegian 113
        "sip:10.0.0.1",
        "sip:alice@10.0.0.1",
        "urn:service:sos.police",
        "tel:+4722334455",
    ],
)
def test_other_numbers_are_not_ours(uri: str) -> None:
    assert dialled_service(invite(uri)) is None


def test_unsupported_scheme_is_416() -> None:
    with pytest.raises(SipParseError) as err:
        dialled_service(invite("http://example.com/113"))
    assert err.value.status == 416


def test_normalise_keeps_bare_47_prefix() -> None:
    # 47xxxxxx are ordinary mobile numbers; only +47/0047 is the country code
    assert normalise_digits("47113000") == "47113000"
    assert normalise_digits("+47 113") == "113"
    assert normalise_digits("+46113") is None


def test_hints_follow_trunk_order() -> None:
    request = invite("sip:1131103@10.0.0.1;kommune=4601", X_Kommunenummer="0301")
    dialled = dialled_service(request)
    assert dialled is not None
    assert municipality_hints(request, dialled, ALL_SOURCES, "X-Kommunenummer") == [
        (LocationSource.HEADER, "0301"),
        (LocationSource.URI_PARAM, "4601"),
        (LocationSource.PREFIX, "1103"),
    ]
    reverse = list(reversed(ALL_SOURCES))
    assert municipality_hints(request, dialled, reverse, "X-Kommunenummer")[0] == (
        LocationSource.PREFIX, "1103")


def test_user_param_kommune_is_a_uri_param_hint() -> None:
    request = invite("sip:113;kommune=0301@10.0.0.1")
    dialled = dialled_service(request)
    assert dialled is not None
    assert municipality_hints(request, dialled, ALL_SOURCES, "X-Kommunenummer") == [
        (LocationSource.URI_PARAM, "0301")]


def test_configured_header_name_is_used() -> None:
    request = invite("sip:113@10.0.0.1", P_Kommune="0301", X_Kommunenummer="1103")
    dialled = dialled_service(request)
    assert dialled is not None
    hints = municipality_hints(request, dialled, [LocationSource.HEADER], "P-Kommune")
    assert hints == [(LocationSource.HEADER, "0301")]


def test_first_known_hint_wins_and_unknown_falls_back_to_default() -> None:
    known = {"1103": "stavanger"}
    hints = [(LocationSource.HEADER, "9999"), (LocationSource.PREFIX, "1103")]
    choice = choose_municipality(hints, known.get)  # type: ignore[arg-type]
    assert (choice.source, choice.requested, choice.lookup) == (
        LocationSource.PREFIX, "1103", "stavanger")
    none_known = choose_municipality([(LocationSource.HEADER, "9999")], known.get)  # type: ignore[arg-type]
    assert (none_known.source, none_known.requested, none_known.lookup) == (
        LocationSource.DEFAULT, "9999", None)
    missing = choose_municipality([], known.get)  # type: ignore[arg-type]
    assert (missing.source, missing.requested) == (LocationSource.DEFAULT, None)
