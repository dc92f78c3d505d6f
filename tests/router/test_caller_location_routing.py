"""Routing by caller location: carrier hints, PIDF-LO positions and civic postcodes, in the
trunk's precedence order; what each said lands in the call record and the metrics."""

from __future__ import annotations

import pytest
from b2bua_harness import SDP_OFFER, Harness, caller_cancel, caller_invite, make_harness
from test_location_pidf import circle, civic, multipart, pidf, point

from municipality_map import RoutingSnapshot, Service
from municipality_map.geo import MunicipalityLocator
from municipality_map.postcodes import PostcodeIndex
from router.caller_location import Locators
from router.config import NodruteSettings, TrunkSettings
from router.metrics import NodeMetrics
from router.resolve import LocationSource
from sip.message import Request

BERGEN_CITY = "60.3913 5.3221"  # Bergen torget, municipality 4601
LYSAKER = "59.9140 10.6420"  # 0301, a few hundred metres from Bærum (3201)


@pytest.fixture(scope="module")
def locators() -> Locators:
    return Locators(MunicipalityLocator.bundled(), PostcodeIndex.load(), 5000.0)


def harness_for(snapshot: RoutingSnapshot, locators: Locators,
                sources: list[LocationSource] | None = None) -> Harness:
    trunk = TrunkSettings(name="mobile") if sources is None else TrunkSettings(
        name="mobile", municipality_sources=sources)
    h = make_harness(snapshot, NodruteSettings(trunks=[trunk]))
    h.b2bua.locators = locators
    return h


def invite_with_location(n: int, location: str, *, kommune: str | None = None,
                         service: str = "113") -> bytes:
    body = multipart(("application/sdp", None, SDP_OFFER),
                     ("application/pidf+xml", f"loc{n}@carrier.example", pidf(location)))
    raw = caller_invite(n, f"sip:{service}@127.0.0.1", kommune=kommune, body=b"")
    head = raw.decode().split("\r\n\r\n")[0].split("\r\n")
    head = [line for line in head if not line.startswith("Content-Length")]
    head += [f"Geolocation: <cid:loc{n}@carrier.example>",
             "Content-Type: multipart/mixed;boundary=b0undary",
             f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def centre_reached(h: Harness) -> str:
    [invite] = [s.message for s in h.outbox
                if isinstance(s.message, Request) and s.message.method == "INVITE"]
    return invite.uri


def uri_of(snapshot: RoutingSnapshot, kommune: str, service: Service = Service.AMK) -> str:
    found = snapshot.lookup(kommune, service)
    assert found is not None
    return found.centre.uris[0]


def test_coordinates_alone_route_to_the_municipality_they_are_in(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    h.feed(invite_with_location(1, point(BERGEN_CITY)))
    assert centre_reached(h) == uri_of(snapshot, "4601")
    call = h.b2bua._by_server_tx[next(iter(h.b2bua._by_server_tx))]
    assert call.record.location_source == "geo"
    assert call.record.municipality == "4601"
    assert "geo=4601 inside point" in call.record.location_evidence


def test_116117_by_coordinates_reaches_the_legevaktsentral(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    h.feed(invite_with_location(2, point(BERGEN_CITY), service="116117"))
    assert centre_reached(h) == uri_of(snapshot, "4601", Service.LEGEVAKT)


def test_carrier_municipality_first_by_default_and_the_disagreement_is_kept(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    metrics = NodeMetrics()
    h.b2bua._on_call_ended = metrics.call_ended
    h.feed(invite_with_location(3, point(BERGEN_CITY), kommune="0301"))
    assert centre_reached(h) == uri_of(snapshot, "0301")
    call = next(iter(h.b2bua._by_server_tx.values()))
    assert call.record.location_source == "header"
    assert call.record.location_disagreement
    assert call.record.location_evidence[:2] == ["header=0301", "geo=4601 inside point"]
    h.feed(caller_cancel(3))
    value = metrics.registry.get_sample_value
    assert value("nodrute_location_disagreements_total", {"service": "113"}) == 1
    assert value("nodrute_location_source_total", {"service": "113", "source": "header"}) == 1


def test_position_first_when_the_trunk_says_so(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators, [LocationSource.GEO, LocationSource.HEADER])
    h.feed(invite_with_location(4, point(BERGEN_CITY), kommune="0301"))
    assert centre_reached(h) == uri_of(snapshot, "4601")


def test_a_vague_position_is_not_used(snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    h.feed(invite_with_location(5, circle(BERGEN_CITY, "20000")))
    default = snapshot.centre(NodruteSettings().routing.default_centre_113)
    assert default is not None and centre_reached(h) == default.uris[0]
    call = next(iter(h.b2bua._by_server_tx.values()))
    assert call.record.location_source == "default"
    assert "geo=unused r=20000m > 5000m" in call.record.location_evidence


def test_a_circle_over_a_border_uses_its_centre_and_is_marked_ambiguous(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    h.feed(invite_with_location(6, circle(LYSAKER, "1000")))
    assert centre_reached(h) == uri_of(snapshot, "0301")
    call = next(iter(h.b2bua._by_server_tx.values()))
    assert call.record.location_ambiguous
    assert call.record.location_source == "geo"
    assert "geo=0301 inside r=1000m ambiguous:0301/3201" in call.record.location_evidence


def test_civic_postcode_when_there_is_no_position(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    h.feed(invite_with_location(7, civic(country="NO", A3="Bergen", PC="5003")))
    assert centre_reached(h) == uri_of(snapshot, "4601")
    call = next(iter(h.b2bua._by_server_tx.values()))
    assert call.record.location_source == "postcode"
    assert "postcode=5003->4601" in call.record.location_evidence


def test_garbage_location_still_routes_to_the_default_centre(
        snapshot: RoutingSnapshot, locators: Locators) -> None:
    h = harness_for(snapshot, locators)
    h.feed(invite_with_location(8, "<gml:Point><gml:pos>not a number</gml:pos></gml:Point>"))
    default = snapshot.centre(NodruteSettings().routing.default_centre_113)
    assert default is not None and centre_reached(h) == default.uris[0]
    call = next(iter(h.b2bua._by_server_tx.values()))
    assert any(e.startswith("ignored: ") for e in call.record.location_evidence)


def test_without_loaded_indexes_positions_are_ignored(snapshot: RoutingSnapshot) -> None:
    h = make_harness(snapshot)  # Locators() : nothing loaded
    h.feed(invite_with_location(9, point(BERGEN_CITY), kommune="0301"))
    assert centre_reached(h) == uri_of(snapshot, "0301")
