"""Issue 7 "done when": a call carrying only coordinates reaches the AMK (113) and the
legevaktsentral (116117) of the municipality it is in — for every one of the 357 municipalities.

Each position is a representative point computed here from the municipality's own polygon in the
bundled Kartverket boundaries (shapely ``representative_point``: always inside). The expected
centre comes from the routing table by municipality number (``snapshot.lookup``), which knows
nothing of geometry. Every call goes through the real sans-IO B2BUA (transaction layer,
dispatcher, PIDF-LO parser, locator) and is cancelled afterwards so the next one starts clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from b2bua_harness import CARRIER, SDP_OFFER, Harness, dest_of, make_harness, response_to
from shapely.geometry import shape
from test_location_pidf import multipart, pidf, point

from municipality_map import RoutingSnapshot, Service
from municipality_map.geo import MunicipalityLocator
from municipality_map.postcodes import PostcodeIndex
from municipality_map.reference import municipality_list
from router.call_record import CallRecord
from router.caller_location import Locators
from sip.message import Request

GEOJSON = (
    Path(__file__).resolve().parents[2] / "municipality_map" / "data" / "kommuner_2024_S.geojson"
)
SERVICES = {"113": Service.AMK, "116117": Service.LEGEVAKT}


@pytest.fixture(scope="module")
def inside_points() -> dict[str, tuple[float, float]]:
    """(lat, lon) of a point inside each municipality, from its polygon."""
    features = json.loads(GEOJSON.read_bytes())["features"]
    found: dict[str, tuple[float, float]] = {}
    for feature in features:
        spot = shape(feature["geometry"]).representative_point()
        found[feature["properties"]["kommunenummer"]] = (spot.y, spot.x)
    return found


@pytest.fixture(scope="module")
def located_harness(snapshot: RoutingSnapshot) -> Harness:
    """One harness for the whole module; every call is retired before the next."""
    h = make_harness(snapshot)
    h.b2bua.locators = Locators(MunicipalityLocator.bundled(), PostcodeIndex.load())
    return h


def invite_and_cancel(n: int, service: str, lat: float, lon: float) -> tuple[bytes, bytes]:
    """An INVITE whose only location is a PIDF-LO point (no X-Kommunenummer), and its CANCEL."""
    ruri = f"sip:{service}@127.0.0.1"
    common = [
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bKall{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:4790000{n:04d}@carrier.example>;tag=t{n}",
        f"To: <{ruri}>",
        f"Call-ID: all{n}@carrier.example",
    ]
    body = multipart(("application/sdp", None, SDP_OFFER),
                     ("application/pidf+xml", f"loc{n}@carrier.example",
                      pidf(point(f"{lat!r} {lon!r}"))))
    invite = [
        f"INVITE {ruri} SIP/2.0", *common, "CSeq: 1 INVITE",
        f"Contact: <sip:4790000{n:04d}@{CARRIER[0]}:{CARRIER[1]}>",
        f"Geolocation: <cid:loc{n}@carrier.example>",
        "Content-Type: multipart/mixed;boundary=b0undary",
        f"Content-Length: {len(body)}",
    ]
    cancel = [f"CANCEL {ruri} SIP/2.0", *common, "CSeq: 1 CANCEL", "Content-Length: 0"]
    return (("\r\n".join(invite) + "\r\n\r\n").encode() + body,
            ("\r\n".join(cancel) + "\r\n\r\n").encode())


def place_call(h: Harness, n: int, service: str, lat: float, lon: float) -> tuple[str, CallRecord]:
    """The Request-URI the router sent the call to, and the call's record once it is cancelled."""
    invite, cancel = invite_and_cancel(n, service, lat, lon)
    before = len(h.records)
    h.feed(invite)
    [onward] = [s.message for s in h.take()
                if isinstance(s.message, Request) and s.message.method == "INVITE"]
    h.feed(cancel)
    h.take()
    h.feed(response_to(onward, 487), source=dest_of(onward.uri))
    h.take()
    [record] = h.records[before:]
    return onward.uri, record


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_coordinates_alone_route_every_municipality_to_its_centre(
        located_harness: Harness, snapshot: RoutingSnapshot,
        inside_points: dict[str, tuple[float, float]], service: str) -> None:
    assert sorted(inside_points) == sorted(municipality_list("2024"))  # all 357, no more
    wrong: list[str] = []
    for n, (kommune, (lat, lon)) in enumerate(sorted(inside_points.items())):
        expected = snapshot.lookup(kommune, SERVICES[service])
        assert expected is not None, kommune
        uri, record = place_call(located_harness, n + 1000 * len(service), service, lat, lon)
        got = (uri, record.location_source, record.municipality)
        if got != (expected.centre.uris[0], "geo", kommune):
            wrong.append(f"{kommune} at {lat:.5f},{lon:.5f}: {got} {record.location_evidence}")
    assert len(inside_points) == 357
    assert wrong == []
