"""Caller location from the INVITE: Geolocation header, multipart body, PIDF-LO shapes.

Examples follow RFC 5491 §5.2 (shapes), RFC 5139 (civic) and RFC 6442 (Geolocation, cid).
Expected centroids are worked out by hand in the comments, not by the code under test.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest

import router.location as location_module
from router.location import (
    MAX_PROBLEMS,
    NO_LOCATION,
    LocationEvidence,
    LocationLimits,
    Shape,
    parse_geolocation,
    parse_location,
)
from router.pidf_lo import parse_pidf
from sip.message import Headers, Request
from sip.parser import parse_message

NS = (
    'xmlns="urn:ietf:params:xml:ns:pidf" '
    'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
    'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
    'xmlns:gml="http://www.opengis.net/gml" '
    'xmlns:gs="http://www.opengis.net/pidflo/1.0" '
    'xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"'
)
WGS84_2D = "urn:ogc:def:crs:EPSG::4326"
WGS84_3D = "urn:ogc:def:crs:EPSG::4979"
METRE = 'uom="urn:ogc:def:uom:EPSG::9001"'
DEGREE = 'uom="urn:ogc:def:uom:EPSG::9102"'


def pidf(*location: str, prolog: str = '<?xml version="1.0" encoding="UTF-8"?>') -> bytes:
    """A PIDF-LO document (RFC 5491 layout: device / geopriv / location-info)."""
    return (
        f'{prolog}\n<presence {NS} entity="pres:caller@example.com">\n'
        f' <dm:device id="handset"><gp:geopriv>\n'
        f'  <gp:location-info>{"".join(location)}</gp:location-info>\n'
        f'  <gp:usage-rules/><gp:method>GPS</gp:method>\n'
        f' </gp:geopriv><dm:timestamp>2024-06-01T12:00:00Z</dm:timestamp></dm:device>\n'
        f'</presence>\n'
    ).encode()


def point(lat_lon: str, srs: str = WGS84_2D) -> str:
    return f'<gml:Point srsName="{srs}"><gml:pos>{lat_lon}</gml:pos></gml:Point>'


def circle(lat_lon: str, radius: str, uom: str = METRE, srs: str = WGS84_2D) -> str:
    return (f'<gs:Circle srsName="{srs}"><gml:pos>{lat_lon}</gml:pos>'
            f'<gs:radius {uom}>{radius}</gs:radius></gs:Circle>')


def civic(**fields: str) -> str:
    inner = "".join(f"<ca:{name}>{value}</ca:{name}>" for name, value in fields.items())
    return f"<ca:civicAddress xml:lang=\"no\">{inner}</ca:civicAddress>"


def only_points(document: bytes) -> LocationEvidence:
    """A bare application/pidf+xml body without Geolocation header."""
    return parse_location(geolocation=(), routing=None, content_type="application/pidf+xml",
                          content_id=None, body=document)


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "b0undary",
              newline: str = "\r\n", close: bool = True) -> bytes:
    """RFC 2046 §5.1.1 body: (content type, content id, data) per part."""
    out = [f"preamble, ignored{newline}".encode()]
    for content_type, content_id, data in parts:
        head = f"--{boundary}{newline}Content-Type: {content_type}{newline}"
        if content_id is not None:
            head += f"Content-ID: <{content_id}>{newline}"
        out.append(head.encode() + newline.encode() + data + newline.encode())
    if close:
        out.append(f"--{boundary}--{newline}epilogue, ignored{newline}".encode())
    return b"".join(out)


SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
      b"m=audio 4000 RTP/AVP 8\r\n"


def invite(body: bytes, content_type: str, *geolocation: str, **headers: str) -> Request:
    h = Headers()
    for value in geolocation:
        h.add("Geolocation", value)
    for name, value in headers.items():
        h.add(name.replace("_", "-"), value)
    h.add("Content-Type", content_type)
    return Request("INVITE", "sip:116117@127.0.0.1", h, body)


# --- RFC 5491 shapes ---------------------------------------------------------------------------

def test_rfc5491_point_keeps_gml_lat_lon_order() -> None:
    # Oslo city hall: 59.91 N, 10.73 E. Read as lon/lat it would be at 10.7 N in the Atlantic.
    found = only_points(pidf(point("59.9117 10.7336")))
    assert found.problems == ()
    assert found.point is not None
    assert (found.point.lat, found.point.lon) == (59.9117, 10.7336)
    assert found.point.radius_m is None
    assert found.point.shape is Shape.POINT
    assert found.point.altitude_m is None


def test_rfc5491_point_southern_hemisphere_example() -> None:
    found = only_points(pidf(point("-34.407 150.883")))
    assert found.point is not None
    assert (found.point.lat, found.point.lon) == (-34.407, 150.883)


def test_3d_point_in_epsg_4979_has_altitude() -> None:
    found = only_points(pidf(point("-34.407 150.883 24.8", WGS84_3D)))
    assert found.point is not None
    assert (found.point.lat, found.point.lon, found.point.altitude_m) == (-34.407, 150.883, 24.8)


@pytest.mark.parametrize(
    ("srs", "pos"),
    [(WGS84_2D, "59.9 10.7 24.8"), (WGS84_3D, "59.9 10.7")],
)
def test_coordinate_count_must_match_crs_dimensions(srs: str, pos: str) -> None:
    found = only_points(pidf(point(pos, srs)))
    assert found.points == ()
    assert any("positions" in p for p in found.problems)


def test_rfc5491_circle_radius_in_metres() -> None:
    found = only_points(pidf(circle("42.5463 -73.2512", "850.24")))
    assert found.point is not None
    assert (found.point.lat, found.point.lon) == (42.5463, -73.2512)
    assert found.point.radius_m == 850.24
    assert found.point.shape is Shape.CIRCLE


def test_versioned_epsg_urn_and_ogc_http_uri_are_wgs84() -> None:
    found = only_points(pidf(point("59.9 10.7", "urn:ogc:def:crs:EPSG:6.6:4326"),
                             point("60.4 5.3", "http://www.opengis.net/def/crs/EPSG/0/4326")))
    assert [(p.lat, p.lon) for p in found.points] == [(59.9, 10.7), (60.4, 5.3)]


@pytest.mark.parametrize("uom", ['uom="urn:ogc:def:uom:EPSG::9002"', ""])
def test_circle_radius_not_in_metres_is_ignored(uom: str) -> None:
    found = only_points(pidf(circle("59.9 10.7", "850", uom=uom)))
    assert found.points == ()
    assert any("not in metres" in p for p in found.problems)


RFC5491_HEXAGON = [  # A F E D C B A, the RFC 5491 §5.2 polygon example
    "43.311 -73.422", "43.111 -73.322", "43.111 -73.222", "43.311 -73.122",
    "43.411 -73.222", "43.411 -73.322", "43.311 -73.422",
]
# Centroid by hand: the ring is two trapezoids split at lat 43.311. Lower: parallel sides 0.1
# (lat 43.111) and 0.3 (43.311) degrees of longitude, height 0.2, area 0.04, centroid at
# 43.111 + 0.2·(0.1 + 2·0.3)/(3·0.4) = 43.227667. Upper: sides 0.3 and 0.1, height 0.1, area
# 0.02, centroid at 43.311 + 0.1·(0.3 + 2·0.1)/(3·0.4) = 43.352667. Together: 43.269333.
# Longitude: symmetric about -73.272. (A centroid is invariant under the affine lat/lon scaling.)
HEXAGON_CENTROID = (43.269333, -73.272)


def polygon_pos(positions: list[str], srs: str = WGS84_2D) -> str:
    inner = "".join(f"<gml:pos>{p}</gml:pos>" for p in positions)
    return (f'<gml:Polygon srsName="{srs}"><gml:exterior><gml:LinearRing>{inner}'
            f"</gml:LinearRing></gml:exterior></gml:Polygon>")


def polygon_pos_list(positions: list[str], srs: str = WGS84_2D, dim: str = "") -> str:
    attr = f' srsDimension="{dim}"' if dim else ""
    return (f'<gml:Polygon srsName="{srs}"><gml:exterior><gml:LinearRing>'
            f'<gml:posList{attr}>{" ".join(positions)}</gml:posList>'
            f"</gml:LinearRing></gml:exterior></gml:Polygon>")


@pytest.mark.parametrize("build", [polygon_pos, polygon_pos_list])
def test_rfc5491_polygon_reduced_to_its_centroid(build: object) -> None:
    assert callable(build)
    found = only_points(pidf(build(RFC5491_HEXAGON)))
    assert found.problems == ()
    assert found.point is not None
    assert found.point.shape is Shape.POLYGON
    assert found.point.lat == pytest.approx(HEXAGON_CENTROID[0], abs=1e-5)
    assert found.point.lon == pytest.approx(HEXAGON_CENTROID[1], abs=1e-5)
    # farthest vertices: E and F, 0.158333° of latitude south and 0.05° of longitude aside
    # (A and D are only 0.041667° and 0.15° away: about 13 km against 18 km)
    assert found.point.radius_m is not None
    east_west = math.radians(0.05) * 6_371_008.8 * math.cos(math.radians(43.2))
    north_south = math.radians(0.158333) * 6_371_008.8
    assert found.point.radius_m == pytest.approx(math.hypot(east_west, north_south), rel=0.01)


def test_polygon_with_fewer_than_three_corners_is_ignored() -> None:
    found = only_points(pidf(polygon_pos_list(["59.9 10.7", "59.8 10.6", "59.9 10.7"])))
    assert found.points == ()
    assert any("fewer than 3" in p for p in found.problems)


def test_polygon_srs_dimension_mismatch_is_ignored() -> None:
    found = only_points(pidf(polygon_pos_list(RFC5491_HEXAGON, dim="3")))
    assert found.points == ()


def test_rfc5491_ellipse_by_centre_with_semi_major_axis() -> None:
    found = only_points(pidf(
        f'<gs:Ellipse srsName="{WGS84_2D}"><gml:pos>42.5463 -73.2512</gml:pos>'
        f"<gs:semiMajorAxis {METRE}>1275</gs:semiMajorAxis>"
        f"<gs:semiMinorAxis {METRE}>670</gs:semiMinorAxis>"
        f"<gs:orientation {DEGREE}>43.2</gs:orientation></gs:Ellipse>"))
    assert found.point is not None
    assert (found.point.lat, found.point.lon, found.point.radius_m) == (42.5463, -73.2512, 1275)
    assert found.point.shape is Shape.ELLIPSE


def test_rfc5491_sphere_and_ellipsoid_are_3d() -> None:
    found = only_points(pidf(
        f'<gs:Sphere srsName="{WGS84_3D}"><gml:pos>42.5463 -73.2512 26.3</gml:pos>'
        f"<gs:radius {METRE}>850.24</gs:radius></gs:Sphere>",
        f'<gs:Ellipsoid srsName="{WGS84_3D}"><gml:pos>42.5 -73.2 26.3</gml:pos>'
        f"<gs:semiMajorAxis {METRE}>7.7156</gs:semiMajorAxis>"
        f"<gs:semiMinorAxis {METRE}>3.31</gs:semiMinorAxis>"
        f"<gs:verticalAxis {METRE}>28.7</gs:verticalAxis>"
        f"<gs:orientation {DEGREE}>90</gs:orientation></gs:Ellipsoid>"))
    sphere, ellipsoid = found.points
    assert (sphere.shape, sphere.radius_m, sphere.altitude_m) == (Shape.SPHERE, 850.24, 26.3)
    assert (ellipsoid.shape, ellipsoid.lat, ellipsoid.radius_m) == (Shape.ELLIPSOID, 42.5, 7.7156)


def test_rfc5491_prism_by_centroid_of_its_base() -> None:
    # the RFC 5491 §5.2 prism example: a 0.1° x 0.1° square base at 36.6 m;
    # its centre is 42.606844 -73.298157
    base = ("42.556844 -73.248157 36.6 42.656844 -73.248157 36.6 "
            "42.656844 -73.348157 36.6 42.556844 -73.348157 36.6 "
            "42.556844 -73.248157 36.6")
    found = only_points(pidf(
        f'<gs:Prism srsName="{WGS84_3D}"><gs:base><gml:Polygon><gml:exterior><gml:LinearRing>'
        f"<gml:posList>{base}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"
        f"</gs:base><gs:height {METRE}>2.4</gs:height></gs:Prism>"))
    assert found.problems == ()
    assert found.point is not None
    assert found.point.shape is Shape.PRISM
    assert found.point.lat == pytest.approx(42.606844, abs=1e-6)
    assert found.point.lon == pytest.approx(-73.298157, abs=1e-6)
    assert found.point.altitude_m == pytest.approx(36.6)


def arc_band(inner: str, outer: str, start: str, opening: str) -> str:
    return (f'<gs:ArcBand srsName="{WGS84_2D}"><gml:pos>60.0 10.0</gml:pos>'
            f"<gs:innerRadius {METRE}>{inner}</gs:innerRadius>"
            f"<gs:outerRadius {METRE}>{outer}</gs:outerRadius>"
            f"<gs:startAngle {DEGREE}>{start}</gs:startAngle>"
            f"<gs:openingAngle {DEGREE}>{opening}</gs:openingAngle></gs:ArcBand>")


def test_arc_band_thin_sector_centroid_lies_on_the_arc_along_the_bisector() -> None:
    # 2° wide, 2 m thick band 3 km from the mast, bisector due east (clockwise from north).
    found = only_points(pidf(arc_band("2999", "3001", "89", "2")))
    assert found.point is not None
    assert found.point.shape is Shape.ARC_BAND
    assert found.point.lat == pytest.approx(60.0, abs=1e-5)
    east_m = math.radians(found.point.lon - 10.0) * 6_371_008.8 * math.cos(math.radians(60.0))
    assert east_m == pytest.approx(3000, abs=2)
    # the band's ends are 3000·sin(1°) ≈ 52 m either side of the centroid
    assert found.point.radius_m == pytest.approx(52.4, abs=2)


def test_arc_band_full_circle_centroid_is_the_centre() -> None:
    found = only_points(pidf(arc_band("1000", "2000", "0", "360")))
    assert found.point is not None
    assert found.point.lat == pytest.approx(60.0, abs=1e-9)
    assert found.point.lon == pytest.approx(10.0, abs=1e-9)
    assert found.point.radius_m == pytest.approx(2000, rel=1e-6)


def test_arc_band_with_inner_radius_beyond_outer_is_ignored() -> None:
    found = only_points(pidf(arc_band("2000", "1000", "0", "90")))
    assert found.points == ()
    assert any("ArcBand" in p for p in found.problems)


def test_rfc4119_gml_location_wrapper_is_unwrapped() -> None:
    found = only_points(pidf(f"<gml:location>{point('59.9 10.7')}</gml:location>"))
    assert found.point is not None
    assert (found.point.lat, found.point.lon) == (59.9, 10.7)


# --- civic addresses (RFC 5139) ---------------------------------------------------------------

def test_civic_address_postcode_city_country() -> None:
    found = only_points(pidf(civic(country="no", A1="Oslo", A3="Oslo", RD="Karl Johans gate",
                                   HNO="22", PC=" 0159 ")))
    assert found.points == ()
    assert len(found.civic) == 1
    address = found.civic[0]
    assert (address.postcode, address.city, address.country) == ("0159", "Oslo", "NO")
    assert found.postcode == "0159"
    assert found.has_location


def test_civic_address_without_usable_fields_is_a_problem() -> None:
    found = only_points(pidf(civic(RD="Storgata", HNO="1")))
    assert found.civic == ()
    assert any("civic address" in p for p in found.problems)


def test_point_and_civic_in_one_document() -> None:
    found = only_points(pidf(point("63.43 10.39"), civic(PC="7011", A3="Trondheim")))
    assert found.point is not None and found.point.lat == 63.43
    assert found.postcode == "7011"


# --- Geolocation header and multipart bodies (RFC 6442, RFC 2046) -----------------------------

def sipp_like_invite(cid_in_header: str, content_id: str, location: str) -> Request:
    """An INVITE on the wire the way loadtests/scenarios/uac_pidf_lo.xml sends it."""
    body = multipart(("application/sdp", None, SDP),
                     ("application/pidf+xml", content_id, pidf(location)),
                     boundary="nodrute-pidf-boundary")
    head = (
        "INVITE sip:113@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
        "From: <sip:4790000001@127.0.0.1>;tag=1\r\nTo: <sip:113@127.0.0.1>\r\n"
        "Call-ID: loc-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Geolocation: <cid:{cid_in_header}>\r\nGeolocation-Routing: yes\r\n"
        "Content-Type: multipart/mixed;boundary=nodrute-pidf-boundary\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    message = parse_message(head.encode() + body)
    assert isinstance(message, Request)
    return message


def test_multipart_body_part_found_by_cid() -> None:
    request = sipp_like_invite("loc-1@127.0.0.1", "loc-1@127.0.0.1", point("59.9117 10.7336"))
    found = parse_geolocation(request)
    assert found.problems == ()
    assert found.point is not None
    assert (found.point.lat, found.point.lon) == (59.9117, 10.7336)
    assert found.routing_allowed is True
    assert found.references == ()


def test_cid_that_matches_no_part_yields_no_location() -> None:
    request = sipp_like_invite("other@127.0.0.1", "loc-1@127.0.0.1", point("59.9117 10.7336"))
    found = parse_geolocation(request)
    assert found.points == ()
    assert any("matches no PIDF-LO body part" in p for p in found.problems)
    assert any("not referenced" in p for p in found.problems)


def test_cid_picks_the_referenced_part_among_several() -> None:
    body = multipart(("application/pidf+xml", "a@x", pidf(point("58.0 7.0"))),
                     ("application/sdp", None, SDP),
                     ("application/pidf+xml", "b@x", pidf(point("69.6 18.9"))))
    found = parse_geolocation(invite(body, "multipart/mixed; boundary=b0undary", "<cid:b@x>"))
    assert [(p.lat, p.lon) for p in found.points] == [(69.6, 18.9)]


def test_cid_is_percent_decoded_and_compared_case_insensitively() -> None:
    body = multipart(("application/pidf+xml", "Loc 1@Host.example", pidf(point("59.9 10.7"))))
    found = parse_geolocation(invite(body, 'multipart/mixed;boundary="b0undary"',
                                     "<cid:loc%201@host.example>"))
    assert found.point is not None


def test_several_geolocation_values_in_one_header_and_by_reference() -> None:
    body = multipart(("application/pidf+xml", "loc@x", pidf(point("59.9 10.7"))))
    request = invite(body, "multipart/mixed;boundary=b0undary",
                     "<https://lis.example.net/loc/42?a=1,2>;purpose=emergency, <cid:loc@x>",
                     "<sip:loc-42@lis.example.net>")
    found = parse_geolocation(request)
    assert found.point is not None
    assert found.references == ("https://lis.example.net/loc/42?a=1,2",
                                "sip:loc-42@lis.example.net")


def test_location_by_reference_only_is_recorded_not_fetched() -> None:
    request = invite(SDP, "application/sdp", "<https://lis.example.net/loc/42>")
    found = parse_geolocation(request)
    assert found.references == ("https://lis.example.net/loc/42",)
    assert not found.has_location
    assert found.problems == ()


@pytest.mark.parametrize(("value", "allowed"), [("yes", True), ("No", False), ("maybe", None)])
def test_geolocation_routing_header(value: str, allowed: bool | None) -> None:
    found = parse_geolocation(invite(SDP, "application/sdp", "<sip:l@lis.example>",
                                     Geolocation_Routing=value))
    assert found.routing_allowed is allowed
    assert bool(found.problems) is (allowed is None)


def test_plain_sdp_invite_has_no_location() -> None:
    assert parse_geolocation(invite(SDP, "application/sdp")) is NO_LOCATION
    assert parse_geolocation(invite(SDP, "application/sdp")).point is None


def test_bare_pidf_body_is_accepted_with_or_without_matching_content_id() -> None:
    document = pidf(point("59.9 10.7"))
    assert parse_geolocation(invite(document, "application/pidf+xml")).point is not None
    matching = invite(document, "application/pidf+xml", "<cid:l@x>", Content_ID="<l@x>")
    assert parse_geolocation(matching).point is not None
    other = invite(document, "application/pidf+xml", "<cid:l@x>", Content_ID="<m@x>")
    assert parse_geolocation(other).point is None


def test_unreferenced_pidf_can_be_refused_by_configuration() -> None:
    strict = LocationLimits(accept_unreferenced_pidf=False)
    found = parse_geolocation(invite(pidf(point("59.9 10.7")), "application/pidf+xml"), strict)
    assert found.points == ()
    assert any("without Geolocation cid" in p for p in found.problems)


def test_multipart_with_lf_line_ends_and_no_close_delimiter() -> None:
    body = multipart(("application/pidf+xml", "l@x", pidf(point("59.9 10.7"))),
                     newline="\n", close=False)
    found = parse_geolocation(invite(body, "multipart/mixed;boundary=b0undary", "<cid:l@x>"))
    assert found.point is not None


def test_nested_multipart_is_searched_up_to_the_depth_limit() -> None:
    inner = multipart(("application/pidf+xml", "l@x", pidf(point("59.9 10.7"))),
                      boundary="inner")
    body = multipart(("application/sdp", None, SDP),
                     ("multipart/related; boundary=inner", None, inner))
    request = invite(body, "multipart/mixed;boundary=b0undary", "<cid:l@x>")
    assert parse_geolocation(request).point is not None
    shallow = parse_geolocation(request, LocationLimits(max_multipart_depth=1))
    assert shallow.point is None
    assert any("nested too deep" in p for p in shallow.problems)


def test_part_count_is_capped() -> None:
    body = multipart(*[("text/plain", None, b"x")] * 8,
                     ("application/pidf+xml", "l@x", pidf(point("59.9 10.7"))))
    found = parse_geolocation(invite(body, "multipart/mixed;boundary=b0undary", "<cid:l@x>"))
    assert found.point is None
    assert any("more than 8 body parts" in p for p in found.problems)


def test_encoded_part_is_ignored() -> None:
    body = (b"--b0undary\r\nContent-Type: application/pidf+xml\r\nContent-ID: <l@x>\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nPD94bWw+\r\n--b0undary--\r\n")
    found = parse_geolocation(invite(body, "multipart/mixed;boundary=b0undary", "<cid:l@x>"))
    assert found.point is None
    assert any("Content-Transfer-Encoding" in p for p in found.problems)


@pytest.mark.parametrize("content_type", ["multipart/mixed", "multipart/mixed;boundary=a\x01b"])
def test_multipart_without_a_valid_boundary(content_type: str) -> None:
    found = parse_geolocation(invite(b"--x\r\n\r\n", content_type, "<cid:l@x>"))
    assert found.points == ()
    assert any("boundary" in p for p in found.problems)


def test_problems_are_bounded() -> None:
    values = ", ".join(f"<junk{i}>" for i in range(7))
    found = parse_geolocation(invite(pidf(*[point("99 10")] * 16), "application/pidf+xml",
                                     values, Geolocation_Routing="perhaps"))
    assert len(found.problems) == MAX_PROBLEMS
    assert found.problems[-1].endswith("more")


# --- hostile and broken input -----------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf">&lol9;</presence>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf">&xxe;</presence>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE presence SYSTEM "http://127.0.0.1:9/evil.dtd">
<presence xmlns="urn:ietf:params:xml:ns:pidf"/>
"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD],
                         ids=["billion-laughs", "external-entity", "external-dtd"])
def test_dtds_and_entities_are_rejected(document: bytes) -> None:
    found = only_points(document)
    assert found.points == () and found.civic == ()
    assert len(found.problems) == 1
    assert "rejected" in found.problems[0]


def test_internal_dtd_in_an_otherwise_valid_pidf_is_rejected() -> None:
    document = pidf(point("59.9 10.7"), prolog='<?xml version="1.0"?><!DOCTYPE presence []>')
    found = only_points(document)
    assert found.points == ()
    assert "DTDForbidden" in found.problems[0]


def test_document_over_the_size_cap_is_not_parsed() -> None:
    padding = "<!--" + "x" * 17_000 + "-->"
    found = only_points(pidf(point("59.9 10.7"), padding))
    assert found.points == ()
    assert any("exceeds the 16384-byte cap" in p for p in found.problems)
    small_cap = LocationLimits(max_xml_bytes=512)
    document = pidf(point("59.9 10.7"))
    assert len(document) > 512
    found = parse_location(geolocation=(), routing=None, content_type="application/pidf+xml",
                           content_id=None, body=document, limits=small_cap)
    assert found.points == ()


@pytest.mark.parametrize(
    "document",
    [b"<presence", b"\xff\xfe\x00garbage", b"", b'<?xml version="1.0" encoding="x-nope"?><a/>',
     b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><unclosed></presence>"],
    ids=["truncated", "binary", "empty", "unknown-encoding", "mismatched-tag"],
)
def test_malformed_xml_is_a_problem_not_an_exception(document: bytes) -> None:
    found = parse_pidf(document)
    assert found.points == ()
    assert len(found.problems) == 1


def test_other_root_element_is_not_pidf() -> None:
    found = parse_pidf(b'<feed xmlns="http://www.w3.org/2005/Atom"/>')
    assert found.points == ()
    assert "not a PIDF document" in found.problems[0]


@pytest.mark.parametrize(
    ("srs", "reason"),
    [("EPSG:4326", "unsupported CRS"),  # traditionally lon/lat: refused, not guessed
     ("http://www.opengis.net/gml/srs/epsg.xml#4326", "unsupported CRS"),
     ("urn:ogc:def:crs:EPSG::25833", "unsupported CRS"),  # UTM 33N metres
     ("urn:ogc:def:crs:OGC:1.3:CRS84", "unsupported CRS"),
     ("", "without srsName")],
)
def test_wrong_or_missing_crs_is_ignored(srs: str, reason: str) -> None:
    found = only_points(pidf(point("59.9 10.7", srs)))
    assert found.points == ()
    assert any(reason in p for p in found.problems)


@pytest.mark.parametrize(
    "pos",
    ["91 10", "-90.5 10", "59.9 180.1", "59.9 -200", "NaN 10.7", "59.9 INF", "59,9 10,7",
     "1_0 10", "59.9", "", "59.9 10.7 extra", "1e999 10", "\u0665\u0669 10"],
)
def test_bad_coordinates_are_ignored(pos: str) -> None:
    found = only_points(pidf(point(pos), point("60.0 11.0")))
    assert [(p.lat, p.lon) for p in found.points] == [(60.0, 11.0)]
    assert len(found.problems) == 1


@pytest.mark.parametrize("radius", ["-1", "NaN", "2e7x", "1e9"])
def test_bad_circle_radius_is_ignored(radius: str) -> None:
    found = only_points(pidf(circle("59.9 10.7", radius)))
    assert found.points == ()
    assert len(found.problems) == 1


def test_unknown_location_element_is_named() -> None:
    found = only_points(pidf("<gml:LineString/>", point("59.9 10.7")))
    assert found.point is not None
    assert any("LineString" in p for p in found.problems)


def test_problem_text_from_the_peer_is_one_bounded_line() -> None:
    found = only_points(pidf(point("59.9 10.7", "urn:evil\nInjected: " + "x" * 500)))
    (problem,) = found.problems
    assert "\n" not in problem
    assert len(problem) < 120


def test_parser_bug_costs_the_location_not_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes, **limits: int) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(location_module, "parse_pidf", broken)
    found = parse_geolocation(invite(pidf(point("59.9 10.7")), "application/pidf+xml"))
    assert found.points == ()
    assert found.problems == ("location parser failed: RuntimeError",)


def test_location_elements_per_document_are_capped() -> None:
    found = only_points(pidf(*[point(f"{60 + i / 100} 10") for i in range(12)]))
    assert [p.lat for p in found.points] == [60 + i / 100 for i in range(8)]
    assert any("more than 8 locations" in p for p in found.problems)


def test_element_and_attribute_counts_are_capped_before_parsing() -> None:
    many_tags = pidf(point("59.9 10.7"), "<b/>" * 600)
    assert len(many_tags) < 16 * 1024
    found = only_points(many_tags)
    assert found.points == ()
    assert any("more than 512 tags" in p for p in found.problems)
    many_attributes = pidf(point("59.9 10.7"), "<b " + " ".join(f'a{i}="1"' for i in range(300))
                           + "/>")
    assert only_points(many_attributes).points == ()
    relaxed = LocationLimits(max_xml_tags=1000, max_xml_attributes=1000)
    found = parse_location(geolocation=(), routing=None, content_type="application/pidf+xml",
                           content_id=None, body=many_tags, limits=relaxed)
    assert found.point is not None


def test_polygon_with_too_many_positions_is_ignored() -> None:
    ring = [f"{60 + math.sin(i / 5):.5f} {10 + math.cos(i / 5):.5f}" for i in range(30)]
    found = only_points(pidf(polygon_pos_list([*ring, ring[0]])))
    assert found.points == ()
    assert any("more than 24 positions" in p for p in found.problems)


def test_location_info_is_looked_for_only_where_pidf_puts_it() -> None:
    # RFC 4119: presence/tuple/status/geopriv/location-info; deeper is not a location
    document = pidf(point("59.9 10.7"))
    nested = document.replace(b"<gp:geopriv>", b"<x>" * 10 + b"<gp:geopriv>").replace(
        b"</gp:geopriv>", b"</gp:geopriv>" + b"</x>" * 10)
    assert only_points(document).point is not None
    found = only_points(nested)
    assert found.points == ()
    assert found.problems == ("PIDF-LO without location-info",)


# --- the SIPp scenarios send what this parser reads -------------------------------------------

LOADTESTS = Path(__file__).resolve().parents[2] / "loadtests"


def injection_rows(name: str) -> list[list[str]]:
    lines = (LOADTESTS / "data" / name).read_text(encoding="utf-8").splitlines()
    return [line.split(";") for line in lines[1:] if line and not line.startswith("#")]


def render_invite(scenario: str, fields: list[str]) -> Request:
    """The scenario's INVITE as SIPp 3.6 sends it: lines trimmed, CRLF, keywords filled in, a
    line that expands to nothing dropped, [len] the body's length in bytes."""
    root = ElementTree.parse(LOADTESTS / "scenarios" / scenario).getroot()
    send = root.find("send")
    assert send is not None and send.text
    values = {f"field{i}": value for i, value in enumerate(fields)}
    values.update({"local_ip": "127.0.0.1", "remote_ip": "127.0.0.1", "local_port": "5070",
                   "remote_port": "5060", "transport": "UDP", "pid": "42", "call_number": "7",
                   "call_id": "7-42@127.0.0.1", "media_ip": "127.0.0.1", "media_port": "6000",
                   "local_ip_type": "4", "media_ip_type": "4",
                   "$kommune_header": f"X-Kommunenummer: {fields[1]}" if fields[1] else ""})
    lines: list[str] = []
    for raw in send.text.strip().splitlines():
        line = raw.strip()
        expanded = re.sub(r"\[([$\w]+)\]", lambda m: values.get(m[1], m[0]), line)
        if line and not expanded:
            continue
        lines.append(expanded)
    head, _, body = "\r\n".join(lines).partition("\r\n\r\n")
    data = body.encode()
    message = parse_message(head.replace("[len]", str(len(data))).encode() + b"\r\n\r\n" + data)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize("fields", injection_rows("calls_pidf_circle.csv"), ids=lambda f: f[2])
def test_uac_pidf_circle_scenario_sends_a_circle(fields: list[str]) -> None:
    found = parse_geolocation(render_invite("uac_pidf_circle.xml", fields))
    assert found.problems == ()
    assert found.point is not None
    assert (found.point.lat, found.point.lon, found.point.radius_m, found.point.shape) == (
        float(fields[3]), float(fields[4]), float(fields[5]), Shape.CIRCLE)


@pytest.mark.parametrize("fields", injection_rows("calls_pidf_civic.csv"), ids=lambda f: f[2])
def test_uac_pidf_civic_scenario_sends_a_postcode_without_coordinates(fields: list[str]) -> None:
    found = parse_geolocation(render_invite("uac_pidf_civic.xml", fields))
    assert found.problems == ()
    assert found.points == ()
    assert [(c.postcode, c.city, c.country) for c in found.civic] == [
        (fields[3], fields[4], "NO")]


@pytest.mark.parametrize("fields", injection_rows("calls_pidf.csv"), ids=lambda f: f[2])
def test_uac_pidf_lo_scenario_sends_a_point(fields: list[str]) -> None:
    found = parse_geolocation(render_invite("uac_pidf_lo.xml", fields))
    assert found.point is not None
    assert (found.point.lat, found.point.lon) == (float(fields[3]), float(fields[4]))


def test_pidf_documents_per_request_are_capped() -> None:
    body = multipart(*[("application/pidf+xml", f"l{i}@x", pidf(point(f"6{i} 10")))
                       for i in range(4)])
    request = invite(body, "multipart/mixed;boundary=b0undary",
                     "<cid:l3@x>, <cid:l1@x>, <cid:l0@x>")
    found = parse_geolocation(request)
    assert [p.lat for p in found.points] == [63, 61]  # the header's order, first two
    assert any("more than 2 PIDF-LO documents" in p for p in found.problems)
