"""PIDF-LO documents (RFC 4119, RFC 5491) -> caller positions and civic addresses.

Pure and side-effect free: bytes in, frozen dataclasses out. Knows XML and GML, nothing of SIP
(the SIP side, headers and MIME parts, is :mod:`router.location`).

What is read:

* every ``gp:location-info`` element of a ``presence`` document (in a tuple, a ``dm:device`` or a
  ``dm:person``; RFC 4119, RFC 4479), in document order;
* its GML shapes (RFC 5491 §5.2) in WGS 84 only — ``urn:ogc:def:crs:EPSG::4326`` (2D, *lat lon*)
  and ``urn:ogc:def:crs:EPSG::4979`` (3D, *lat lon alt*) — each reduced to one :class:`GeoPoint`:
  Point and Circle/Sphere as given, Ellipse/Ellipsoid by their centre, Polygon/Prism by the
  centroid of the exterior ring, ArcBand by the centroid of the band;
* civic addresses (RFC 5139 ``civicAddress``, and RFC 4119's older ``civicLoc`` namespace): the
  postcode (``PC``), the city (``A3``) and the ``country``.

Hostile input never raises: the document is parsed by :mod:`defusedxml` with DTDs, entities and
external references forbidden, the caller caps its size, and anything unusable — wrong CRS, a
``srsName`` whose axis order is ambiguous (``EPSG:4326``), coordinates out of range, NaN, garbage
numbers, lengths in unknown units — is skipped and named in ``problems``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from router.geoshape import arc_band_centroid, polygon_centroid

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
GEOPRIV_NS = "urn:ietf:params:xml:ns:pidf:geopriv10"
GML_NS = "http://www.opengis.net/gml"
GEOSHAPE_NS = "http://www.opengis.net/pidflo/1.0"
CIVIC_NS = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"  # RFC 5139
CIVIC_LOC_NS = "urn:ietf:params:xml:ns:pidf:geopriv10:civicLoc"  # RFC 4119 (superseded)

MAX_LENGTH_M = 20_000_000.0
"""A radius or axis longer than half the Earth's circumference is garbage, not uncertainty."""

MAX_SHAPES = 8
"""Location elements (shapes, civic addresses, unusable ones too) read from one document; any
further ones are skipped."""


class Shape(enum.StrEnum):
    """The RFC 5491 §5.2 shape a :class:`GeoPoint` was reduced from."""

    POINT = "point"
    CIRCLE = "circle"
    ELLIPSE = "ellipse"
    ARC_BAND = "arc_band"
    POLYGON = "polygon"
    SPHERE = "sphere"
    ELLIPSOID = "ellipsoid"
    PRISM = "prism"


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """One position in WGS 84, reduced from a GML shape."""

    lat: float
    """Latitude, decimal degrees, -90..90."""
    lon: float
    """Longitude, decimal degrees, -180..180."""
    radius_m: float | None
    """Horizontal uncertainty in metres: the circle's radius, an ellipse's semi-major axis, the
    distance from a polygon's or arc band's centroid to its farthest vertex. ``None`` for a
    Point, which states no uncertainty (which is not the same as a precise one)."""
    shape: Shape
    """The shape the point came from."""
    altitude_m: float | None = None
    """Height above the WGS 84 ellipsoid for 3D shapes (EPSG::4979), else ``None``."""


@dataclass(frozen=True, slots=True)
class CivicAddress:
    """The parts of an RFC 5139 civic address that routing can use."""

    postcode: str | None
    """``PC``, whitespace removed (a Norwegian postcode is four digits: ``0150``)."""
    city: str | None
    """``A3``: city, township or municipality name."""
    country: str | None
    """``country``: ISO 3166 alpha-2 code, upper case (``NO``)."""


@dataclass(frozen=True, slots=True)
class PidfLocation:
    """What one PIDF-LO document says, and what of it was ignored."""

    points: tuple[GeoPoint, ...] = ()
    civic: tuple[CivicAddress, ...] = ()
    problems: tuple[str, ...] = ()


class _Ignored(Exception):
    """One shape or value is unusable; the message is the short reason recorded."""


def clip(text: str, limit: int = 40) -> str:
    """Peer-supplied text for a problem message: one line, bounded, quoted."""
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


MAX_XML_TAGS = 512
"""``<`` in a document (tags, comments…): a real PIDF-LO has well under a hundred."""
MAX_XML_ATTRIBUTES = 256
"""``=`` in a document (attributes, namespace declarations)."""


def parse_pidf(data: bytes, *, max_tags: int = MAX_XML_TAGS,
               max_attributes: int = MAX_XML_ATTRIBUTES) -> PidfLocation:
    """Positions and civic addresses in the PIDF-LO document ``data``. Never raises.

    The caller caps ``len(data)``; ``max_tags`` and ``max_attributes`` (counted on the bytes
    before parsing) bound the number of elements and attributes, which is what makes a
    document expensive: defusedxml builds the tree in Python, about a microsecond per node.
    """
    if data.count(b"<") > max_tags or data.count(b"=") > max_attributes:
        return PidfLocation(problems=(f"PIDF-LO with more than {max_tags} tags or "
                                      f"{max_attributes} attributes: not parsed",))
    try:
        # No DTD at all: billion laughs, quadratic blow-up and external entities all need one.
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except DefusedXmlException as exc:
        return PidfLocation(problems=(f"PIDF-LO rejected: {type(exc).__name__}",))
    except (ParseError, ValueError, LookupError) as exc:
        return PidfLocation(problems=(f"PIDF-LO is not well-formed XML: {clip(str(exc), 60)}",))
    if root.tag != f"{{{PIDF_NS}}}presence":
        return PidfLocation(problems=(f"not a PIDF document (root {clip(root.tag)})",))
    points: list[GeoPoint] = []
    civic: list[CivicAddress] = []
    problems: list[str] = []
    for count, element in enumerate(_location_elements(root)):
        if count >= MAX_SHAPES:
            problems.append(f"more than {MAX_SHAPES} locations in one PIDF-LO; rest ignored")
            break
        try:
            if element.tag in (f"{{{CIVIC_NS}}}civicAddress", f"{{{CIVIC_LOC_NS}}}civicAddress"):
                civic.append(_civic_address(element))
            else:
                points.append(_shape(element))
        except _Ignored as exc:
            problems.append(str(exc))
    if not points and not civic and not problems:
        problems.append("PIDF-LO without location-info")
    return PidfLocation(tuple(points), tuple(civic), tuple(problems))


_LOCATION_INFO = f"{{{GEOPRIV_NS}}}location-info"
# presence/tuple/status/gp:geopriv/gp:location-info (RFC 4119) is the deepest place.
_LOCATION_INFO_MAX_DEPTH = 5


def _location_infos(root: Element) -> Iterator[Element]:
    """Every ``gp:location-info`` near the top of the document, in document order.

    An explicit stack and a depth limit instead of ``root.iter()``: a hostile document nested
    thousands deep costs nothing beyond the levels where a location-info can be.
    """
    stack = [(root, 0)]
    while stack:
        element, depth = stack.pop()
        if element.tag == _LOCATION_INFO:
            yield element
        elif depth < _LOCATION_INFO_MAX_DEPTH:
            stack.extend((child, depth + 1) for child in reversed(element))


def _location_elements(root: Element) -> Iterator[Element]:
    """The children of every ``gp:location-info``, in document order (RFC 4119)."""
    for info in _location_infos(root):
        for child in info:
            # RFC 4119's first examples wrap the shape in gml:location; RFC 5491 drops it.
            if child.tag == f"{{{GML_NS}}}location":
                yield from child
            else:
                yield child


# --- numbers and units ------------------------------------------------------------------------

# xs:double's lexical space minus NaN/INF, ASCII only: float() alone also takes "1_0", "nan"
# and non-ASCII digits.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _number(text: str, what: str) -> float:
    if len(text) > 40 or not _DECIMAL.fullmatch(text):
        raise _Ignored(f"{what}: not a number {clip(text)}")
    value = float(text)
    if not math.isfinite(value):
        raise _Ignored(f"{what}: not a finite number {clip(text)}")
    return value


# RFC 5491 §5: EPSG URNs; the version between the colons may be empty (latest) or given.
_CRS = re.compile(r"urn:ogc:def:crs:epsg:[0-9.]*:(4326|4979)|"
                  r"https?://www\.opengis\.net/def/crs/epsg/0/(4326|4979)")
_METRE = re.compile(r"urn:ogc:def:uom:epsg:[0-9.]*:9001")
_DEGREE = re.compile(r"urn:ogc:def:uom:epsg:[0-9.]*:9102")
_RADIAN = re.compile(r"urn:ogc:def:uom:epsg:[0-9.]*:9101")


def _dimensions(srs_name: str | None, shape: str) -> int:
    """2 for EPSG::4326, 3 for EPSG::4979; anything else is not used.

    ``EPSG:4326`` and ``http://www.opengis.net/gml/srs/epsg.xml#4326`` are refused on purpose:
    software writing them traditionally means *lon lat*, and a swapped pair in Norway lands in
    the Indian Ocean or, worse, in another municipality.
    """
    if not srs_name:
        raise _Ignored(f"{shape} without srsName")
    match = _CRS.fullmatch(srs_name.strip().lower())
    if match is None:
        raise _Ignored(f"{shape}: unsupported CRS {clip(srs_name)}")
    return 3 if "4979" in (match[1], match[2]) else 2


def _length_m(parent: Element, name: str, shape: str) -> float:
    """A length child (``gs:radius``, ``gs:semiMajorAxis`` …) in metres."""
    element = parent.find(f"{{{GEOSHAPE_NS}}}{name}")
    if element is None:
        raise _Ignored(f"{shape} without {name}")
    uom = (element.get("uom") or "").strip().lower()
    if not _METRE.fullmatch(uom):
        raise _Ignored(f"{shape} {name} not in metres (uom {clip(uom)})")
    value = _number((element.text or "").strip(), f"{shape} {name}")
    if not 0.0 <= value <= MAX_LENGTH_M:
        raise _Ignored(f"{shape} {name} out of range: {value:g}")
    return value


def _angle_rad(parent: Element, name: str, shape: str) -> float:
    element = parent.find(f"{{{GEOSHAPE_NS}}}{name}")
    if element is None:
        raise _Ignored(f"{shape} without {name}")
    uom = (element.get("uom") or "").strip().lower()
    value = _number((element.text or "").strip(), f"{shape} {name}")
    if _DEGREE.fullmatch(uom):
        return math.radians(value)
    if _RADIAN.fullmatch(uom):
        return value
    raise _Ignored(f"{shape} {name}: unknown angle unit {clip(uom)}")


# --- positions --------------------------------------------------------------------------------

Position = tuple[float, float, float | None]
"""(lat, lon, altitude or None)."""


MAX_POSITIONS = 24
"""Positions in one polygon. 3GPP TS 23.032 polygons have at most 15 corners; more is not a
handset's or a network's position estimate (and each costs parse time)."""


def _positions(text: str, dimensions: int, shape: str) -> list[Position]:
    """A ``gml:pos``/``gml:posList`` text: lat lon [alt] per position (GML axis order)."""
    words = text.split()
    if len(words) > MAX_POSITIONS * dimensions:
        raise _Ignored(f"{shape} with more than {MAX_POSITIONS} positions")
    if not words or len(words) % dimensions:
        raise _Ignored(f"{shape}: {len(words)} numbers for {dimensions}D positions")
    decimal = _DECIMAL.fullmatch
    for word in words:
        if len(word) > 40 or decimal(word) is None:
            raise _Ignored(f"{shape} coordinate: not a number {clip(word)}")
    numbers = [float(word) for word in words]
    if not all(map(math.isfinite, numbers)):  # 1e999
        raise _Ignored(f"{shape} coordinate: not a finite number")
    out: list[Position] = []
    for i in range(0, len(numbers), dimensions):
        lat, lon = numbers[i], numbers[i + 1]
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise _Ignored(f"{shape}: lat/lon out of range ({lat:g} {lon:g})")
        out.append((lat, lon, numbers[i + 2] if dimensions == 3 else None))
    return out


def _centre(element: Element, dimensions: int, shape: str) -> Position:
    pos = element.find(f"{{{GML_NS}}}pos")
    if pos is None:
        raise _Ignored(f"{shape} without gml:pos")
    found = _positions(pos.text or "", dimensions, shape)
    if len(found) != 1:
        raise _Ignored(f"{shape}: gml:pos holds {len(found)} positions")
    return found[0]


def _ring(polygon: Element, dimensions: int, shape: str) -> list[Position]:
    """The exterior ring of a ``gml:Polygon`` (interiors are not used)."""
    ring = polygon.find(f"{{{GML_NS}}}exterior/{{{GML_NS}}}LinearRing")
    if ring is None:
        raise _Ignored(f"{shape} without exterior LinearRing")
    pos_list = ring.find(f"{{{GML_NS}}}posList")
    if pos_list is not None:
        declared = pos_list.get("srsDimension")
        if declared is not None and declared.strip() != str(dimensions):
            raise _Ignored(f"{shape}: srsDimension {clip(declared)} != {dimensions}")
        points = _positions(pos_list.text or "", dimensions, shape)
    else:
        points = []
        for pos in ring.findall(f"{{{GML_NS}}}pos"):
            points.extend(_positions(pos.text or "", dimensions, shape))
            if len(points) > MAX_POSITIONS:
                raise _Ignored(f"{shape} with more than {MAX_POSITIONS} positions")
    if points and points[0][:2] == points[-1][:2]:
        points.pop()  # the closing position repeats the first (GML LinearRing)
    if len(points) < 3:
        raise _Ignored(f"{shape} with fewer than 3 distinct positions")
    return points


# --- shapes -----------------------------------------------------------------------------------

def _shape(element: Element) -> GeoPoint:
    """One RFC 5491 §5.2 shape reduced to a point with an uncertainty radius."""
    tag = element.tag
    namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    reader = _SHAPES.get((namespace, name))
    if reader is None:
        raise _Ignored(f"unsupported location element {clip(name)}")
    shape, read = reader
    dimensions = _dimensions(element.get("srsName"), shape.value)
    return read(element, dimensions, shape)


def _point(element: Element, dimensions: int, shape: Shape) -> GeoPoint:
    lat, lon, alt = _centre(element, dimensions, shape.value)
    return GeoPoint(lat, lon, None, shape, alt)


def _circle(element: Element, dimensions: int, shape: Shape) -> GeoPoint:
    lat, lon, alt = _centre(element, dimensions, shape.value)
    return GeoPoint(lat, lon, _length_m(element, "radius", shape.value), shape, alt)


def _ellipse(element: Element, dimensions: int, shape: Shape) -> GeoPoint:
    lat, lon, alt = _centre(element, dimensions, shape.value)
    major = _length_m(element, "semiMajorAxis", shape.value)
    minor = _length_m(element, "semiMinorAxis", shape.value)
    return GeoPoint(lat, lon, max(major, minor), shape, alt)


def _polygon(element: Element, dimensions: int, shape: Shape) -> GeoPoint:
    if shape is Shape.PRISM:  # RFC 5491 §5.2: a 3D polygon base; the CRS is the prism's
        base = element.find(f"{{{GEOSHAPE_NS}}}base/{{{GML_NS}}}Polygon")
        if base is None:
            raise _Ignored("Prism without base Polygon")
        _length_m(element, "height", shape.value)
        element = base
    ring = _ring(element, dimensions, shape.value)
    lat, lon, radius = polygon_centroid([(p[0], p[1]) for p in ring])
    altitudes = [p[2] for p in ring if p[2] is not None]
    altitude = sum(altitudes) / len(altitudes) if altitudes else None
    return GeoPoint(lat, lon, radius, shape, altitude)


def _arc_band(element: Element, dimensions: int, shape: Shape) -> GeoPoint:
    lat, lon, alt = _centre(element, dimensions, shape.value)
    inner = _length_m(element, "innerRadius", shape.value)
    outer = _length_m(element, "outerRadius", shape.value)
    start = _angle_rad(element, "startAngle", shape.value)
    opening = _angle_rad(element, "openingAngle", shape.value)
    if inner > outer or not 0.0 < opening <= 2 * math.pi:
        raise _Ignored(f"ArcBand with inconsistent radii or angles ({inner:g}, {outer:g})")
    c_lat, c_lon, radius = arc_band_centroid(lat, lon, inner, outer, start, opening)
    return GeoPoint(c_lat, c_lon, radius, shape, alt)


_SHAPES = {
    (GML_NS, "Point"): (Shape.POINT, _point),
    (GML_NS, "Polygon"): (Shape.POLYGON, _polygon),
    (GEOSHAPE_NS, "Circle"): (Shape.CIRCLE, _circle),
    (GEOSHAPE_NS, "Sphere"): (Shape.SPHERE, _circle),
    (GEOSHAPE_NS, "Ellipse"): (Shape.ELLIPSE, _ellipse),
    (GEOSHAPE_NS, "Ellipsoid"): (Shape.ELLIPSOID, _ellipse),
    (GEOSHAPE_NS, "ArcBand"): (Shape.ARC_BAND, _arc_band),
    (GEOSHAPE_NS, "Prism"): (Shape.PRISM, _polygon),
}


# --- civic addresses --------------------------------------------------------------------------

def _civic_address(element: Element) -> CivicAddress:
    namespace = element.tag[1:].partition("}")[0]

    def text(name: str, limit: int = 80) -> str | None:
        child = element.find(f"{{{namespace}}}{name}")
        value = " ".join((child.text or "").split()) if child is not None else ""
        return value[:limit] or None

    postcode = text("PC", 16)
    postcode = postcode.replace(" ", "") if postcode else None
    country = text("country", 8)
    address = CivicAddress(postcode, text("A3"), country.upper() if country else None)
    if address == CivicAddress(None, None, None):
        raise _Ignored("civic address without PC, A3 or country")
    return address
