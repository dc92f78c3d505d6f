"""Where the caller is, as the INVITE itself says: Geolocation header and PIDF-LO body.

RFC 6442 conveys a location in SIP in two ways, and a request may carry several:

* **by value** — ``Geolocation: <cid:loc1@host>`` points at a body part whose ``Content-ID`` is
  ``<loc1@host>`` (RFC 2392), an ``application/pidf+xml`` part of a ``multipart/mixed`` body
  (RFC 2046 §5.1, RFC 5621) next to the SDP; a bare ``application/pidf+xml`` body is accepted
  too;
* **by reference** — ``Geolocation: <https://lis.example/loc/42>`` (or ``sip:``, ``pres:``…):
  the URI is recorded and *never* dereferenced here (no I/O on the call path).

:func:`parse_geolocation` is pure and side-effect free, bounded by :class:`LocationLimits`, and
never raises: whatever it could not use is named in :attr:`LocationEvidence.problems`. Choosing
between this evidence and the carrier's municipality hints is the caller's business (see
:mod:`router.resolve`); the PIDF-LO document itself is read by :mod:`router.pidf_lo`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from router.pidf_lo import (
    MAX_XML_ATTRIBUTES,
    MAX_XML_TAGS,
    CivicAddress,
    GeoPoint,
    Shape,
    clip,
    parse_pidf,
)
from sip.errors import SipParseError
from sip.message import Request
from sip.multipart import (
    MULTIPART_TYPES,
    media_type,
    part_headers,
    split_multipart,
    valid_boundary,
)
from sip.parser import split_list

__all__ = [
    "CivicAddress",
    "GeoPoint",
    "LocationEvidence",
    "LocationLimits",
    "Shape",
    "parse_geolocation",
    "parse_location",
]

PIDF_MEDIA_TYPE = "application/pidf+xml"

_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
MAX_PROBLEMS = 12


@dataclass(frozen=True, slots=True)
class LocationLimits:
    """Bounds on the work one request may cause (all parse time is linear in these)."""

    max_xml_bytes: int = 16 * 1024
    """A PIDF-LO document larger than this is not parsed."""
    max_xml_tags: int = MAX_XML_TAGS
    """A PIDF-LO document with more ``<`` than this is not parsed (elements cost the most)."""
    max_xml_attributes: int = MAX_XML_ATTRIBUTES
    """A PIDF-LO document with more ``=`` than this is not parsed."""
    max_body_parts: int = 8
    """MIME parts looked at, nested ones included; further parts are ignored."""
    max_pidf_documents: int = 2
    """PIDF-LO documents parsed per request (one is usual); further ones are ignored."""
    max_multipart_depth: int = 2
    """Nesting of multipart bodies (RFC 5621 allows nesting; two levels is plenty)."""
    max_location_values: int = 8
    """``Geolocation`` locationValues read (RFC 6442 §4.1 allows a list)."""
    max_uri_chars: int = 256
    """A longer location URI is ignored (it would only bloat the call record)."""
    accept_unreferenced_pidf: bool = True
    """Use a PIDF-LO part no ``Geolocation: <cid:…>`` points at, when that part has no
    Content-ID at all (senders predating RFC 6442). A part whose Content-ID differs from every
    cid given is never used: the header says the location is elsewhere."""


DEFAULT_LIMITS = LocationLimits()


@dataclass(frozen=True, slots=True)
class LocationEvidence:
    """Everything a request says about where the caller is (possibly nothing)."""

    points: tuple[GeoPoint, ...] = ()
    """Positions by value, in the order of the Geolocation header's cids, then document order."""
    civic: tuple[CivicAddress, ...] = ()
    """Civic addresses by value, same order."""
    references: tuple[str, ...] = ()
    """Location URIs by reference (``sip:``, ``https:``…): recorded, never fetched."""
    routing_allowed: bool | None = None
    """``Geolocation-Routing`` (RFC 6442 §4.2): ``yes`` → True, ``no`` → False, absent or
    unrecognised → None. Whether an emergency call honours ``no`` is policy, not parsing."""
    problems: tuple[str, ...] = ()
    """Short reasons why something was ignored, for logs and the call record."""

    @property
    def point(self) -> GeoPoint | None:
        """The first usable position (RFC 6442 lists the preferred location first)."""
        return self.points[0] if self.points else None

    @property
    def postcode(self) -> str | None:
        """The first civic address's postcode, if any."""
        return next((c.postcode for c in self.civic if c.postcode), None)

    @property
    def has_location(self) -> bool:
        """True when there is a position or a civic address to route by."""
        return bool(self.points or self.civic)


NO_LOCATION = LocationEvidence()
"""The evidence of a request without Geolocation header or location body (the common case)."""


def parse_geolocation(request: Request,
                      limits: LocationLimits = DEFAULT_LIMITS) -> LocationEvidence:
    """The location evidence in ``request``'s Geolocation headers and body. Never raises."""
    headers = request.headers
    return parse_location(
        geolocation=headers.get_all("Geolocation"),
        routing=headers.get("Geolocation-Routing"),
        content_type=headers.get("Content-Type"),
        content_id=headers.get("Content-ID"),
        body=request.body,
        limits=limits,
    )


def parse_location(*, geolocation: Sequence[str], routing: str | None,
                   content_type: str | None, content_id: str | None, body: bytes,
                   limits: LocationLimits = DEFAULT_LIMITS) -> LocationEvidence:
    """:func:`parse_geolocation` on the raw header values and body. Never raises."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if not geolocation and routing is None and media != PIDF_MEDIA_TYPE \
            and media not in MULTIPART_TYPES:
        return NO_LOCATION  # fast path: an ordinary INVITE with an SDP body
    try:
        return _parse(geolocation, routing, content_type, content_id, body, limits)
    except Exception as exc:  # a bug here must cost the location, never the emergency call
        return LocationEvidence(problems=(f"location parser failed: {type(exc).__name__}",))


@dataclass(slots=True)
class _BodyPart:
    content_id: str | None
    """Content-ID without ``<>``, case-folded for comparison (RFC 2392)."""
    data: bytes
    used: bool = False


def _parse(geolocation: Sequence[str], routing: str | None, content_type: str | None,
           content_id: str | None, body: bytes, limits: LocationLimits) -> LocationEvidence:
    problems: list[str] = []
    cids, references = _location_values(geolocation, limits, problems)
    parts = _pidf_parts(content_type, content_id, body, limits, problems)

    chosen: list[_BodyPart] = []
    for cid in cids:
        part = _match_cid(cid, parts)
        if part is None:
            problems.append(f"Geolocation cid:{clip(cid)} matches no PIDF-LO body part")
        elif not part.used:
            part.used = True
            chosen.append(part)
    for part in parts:
        if part.used:
            continue
        if cids and part.content_id is not None:
            problems.append("PIDF-LO part not referenced by Geolocation: ignored")
        elif limits.accept_unreferenced_pidf:
            chosen.append(part)
        else:
            problems.append("PIDF-LO body without Geolocation cid reference: ignored")

    points: list[GeoPoint] = []
    civic: list[CivicAddress] = []
    if len(chosen) > limits.max_pidf_documents:
        problems.append(f"more than {limits.max_pidf_documents} PIDF-LO documents: rest ignored")
        del chosen[limits.max_pidf_documents:]
    for part in chosen:
        if len(part.data) > limits.max_xml_bytes:
            problems.append(f"PIDF-LO of {len(part.data)} bytes exceeds the "
                            f"{limits.max_xml_bytes}-byte cap: not parsed")
            continue
        found = parse_pidf(part.data, max_tags=limits.max_xml_tags,
                           max_attributes=limits.max_xml_attributes)
        points.extend(found.points)
        civic.extend(found.civic)
        problems.extend(found.problems)

    return LocationEvidence(tuple(points), tuple(civic), tuple(references),
                            _routing_allowed(routing, problems), _bounded(problems))


def _bounded(problems: list[str]) -> tuple[str, ...]:
    if len(problems) <= MAX_PROBLEMS:
        return tuple(problems)
    extra = len(problems) - (MAX_PROBLEMS - 1)
    return (*problems[:MAX_PROBLEMS - 1], f"… and {extra} more")


def _routing_allowed(value: str | None, problems: list[str]) -> bool | None:
    # RFC 6442 §4.2: Geolocation-Routing = "yes" / "no" / generic-value
    if value is None:
        return None
    word = value.strip().lower()
    if word in ("yes", "no"):
        return word == "yes"
    problems.append(f"unknown Geolocation-Routing value {clip(value)}")
    return None


# --- Geolocation header (RFC 6442 §4.1) -------------------------------------------------------

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _location_values(values: Iterable[str], limits: LocationLimits,
                     problems: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """cid URL bodies (by value) and other URIs (by reference) from the Geolocation headers.

    ``Geolocation = locationValue *(COMMA locationValue)``,
    ``locationValue = LAQUOT locationURI RAQUOT *(SEMI geoloc-param)``.
    """
    cids: list[str] = []
    references: list[str] = []
    count = 0
    for value in values:
        try:
            elements = split_list(value, "Geolocation")
        except SipParseError:
            problems.append(f"malformed Geolocation header {clip(value)}")
            continue
        for element in elements:
            count += 1
            if count > limits.max_location_values:
                problems.append(f"more than {limits.max_location_values} Geolocation values")
                return cids, tuple(references)
            uri = _location_uri(element)
            if not uri or len(uri) > limits.max_uri_chars or not _SCHEME.match(uri):
                problems.append(f"unusable Geolocation value {clip(element)}")
            elif uri[:4].lower() == "cid:":
                cids.append(uri[4:])
            elif uri not in references:
                references.append(uri)
    return cids, tuple(references)


def _location_uri(element: str) -> str:
    if element.startswith("<"):
        end = element.find(">")
        return element[1:end].strip() if end > 0 else ""
    return element.partition(";")[0].strip()  # lenient: a bare URI without <>


def _content_id_key(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip().casefold()


def _match_cid(cid: str, parts: Sequence[_BodyPart]) -> _BodyPart | None:
    # RFC 2392 §2: drop "cid:", undo %-encoding; the Content-ID is that addr-spec inside <>.
    key = unquote(cid).strip().casefold()
    for part in parts:
        if part.content_id == key:
            return part
    return None


# --- bodies (RFC 2046 §5.1, RFC 5621) ---------------------------------------------------------

def _pidf_parts(content_type: str | None, content_id: str | None, body: bytes,
                limits: LocationLimits, problems: list[str]) -> list[_BodyPart]:
    """The ``application/pidf+xml`` parts of the body, with their Content-IDs."""
    parts: list[_BodyPart] = []
    if body:
        budget = [limits.max_body_parts]
        _collect(content_type, content_id, body, 0, limits, budget, parts, problems)
    return parts


def _collect(content_type: str | None, content_id: str | None, body: bytes, depth: int,
             limits: LocationLimits, budget: list[int], out: list[_BodyPart],
             problems: list[str]) -> None:
    media, params = _media_type(content_type, problems)
    if media == PIDF_MEDIA_TYPE:
        out.append(_BodyPart(_content_id_key(content_id) if content_id else None, body))
        return
    if media not in MULTIPART_TYPES:
        return
    if depth >= limits.max_multipart_depth:
        problems.append("multipart body nested too deep: inner parts ignored")
        return
    boundary = params.get("boundary")
    if not boundary or not valid_boundary(boundary):
        problems.append(f"multipart body with a missing or bad boundary {clip(boundary or '')}")
        return
    for raw in split_multipart(body, boundary.encode("ascii"), budget[0] + 1):
        if budget[0] <= 0:
            problems.append(f"more than {limits.max_body_parts} body parts: rest ignored")
            return
        budget[0] -= 1
        headers, data = part_headers(raw)
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        if encoding not in _IDENTITY_ENCODINGS:
            problems.append(f"body part with Content-Transfer-Encoding {clip(encoding)} ignored")
            continue
        # RFC 2046 §5.1: a part without Content-Type is text/plain
        _collect(headers.get("content-type", "text/plain"), headers.get("content-id"), data,
                 depth + 1, limits, budget, out, problems)


def _media_type(value: str | None, problems: list[str]) -> tuple[str, dict[str, str | None]]:
    try:
        return media_type(value)
    except SipParseError:
        problems.append(f"bad Content-Type parameters {clip(value or '')}")
        return (value or "").partition(";")[0].strip().lower(), {}
