"""Every location hint of one call, in the trunk's precedence order (sans-IO, issue 7).

Three kinds of evidence, each turned into a municipality number:

* what the **carrier** signalled (``header``, ``uri_param``, ``prefix``: :mod:`router.resolve`);
* a **position** by value (``geo``): a PIDF-LO point or shape from :mod:`router.location`, put in
  a municipality by :class:`municipality_map.geo.MunicipalityLocator` — used only when its
  uncertainty radius is at most ``[location] max_uncertainty_m``;
* a **civic address** postcode (``postcode``) via :class:`municipality_map.postcodes.PostcodeIndex`.

The trunk's ``municipality_sources`` orders them; the first hint the routing table knows decides
(:func:`router.resolve.choose_municipality`). What every source said is kept for the call record
(``location_evidence``), and a carrier municipality that names another municipality than the
caller's position is flagged (``disagreement``) for the metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from municipality_map import RouteLookup
from municipality_map.geo import MunicipalityLocator
from municipality_map.postcodes import PostcodeIndex
from sip.message import Request

from .location import NO_LOCATION, LocationEvidence, LocationLimits, parse_geolocation
from .resolve import DialledService, LocationSource, municipality_hints

__all__ = ["CallerLocation", "Locators", "gather_location"]

CARRIER_SOURCES = frozenset({LocationSource.HEADER, LocationSource.URI_PARAM,
                             LocationSource.PREFIX})
_LOCATION_TYPES = ("multipart/", "application/pidf+xml")


@dataclass(frozen=True, slots=True)
class Locators:
    """The position and postcode indexes, loaded once per node (None: that source is off)."""

    geo: MunicipalityLocator | None = None
    postcodes: PostcodeIndex | None = None
    max_uncertainty_m: float = 5000.0
    """A position less precise than this (circle radius) is not used for routing."""
    limits: LocationLimits = field(default_factory=LocationLimits)


@dataclass(slots=True)
class CallerLocation:
    """The hints of one call and what each source said."""

    hints: list[tuple[LocationSource, str]]
    """Municipality numbers in precedence order (carrier codes as sent, geo/postcode 2024)."""
    evidence: list[str] = field(default_factory=list)
    """One line per source that said something, e.g. ``geo=0301 inside r=25m``."""
    ambiguous: bool = False
    """The position's uncertainty circle spans more than one municipality."""


def gather_location(
    request: Request,
    dialled: DialledService,
    sources: Sequence[LocationSource],
    header_name: str,
    locators: Locators,
) -> CallerLocation:
    """Every hint the request gives, ordered by ``sources``. Never raises on bad input."""
    carrier = municipality_hints(request, dialled, sources, header_name)
    wants_geo = LocationSource.GEO in sources and locators.geo is not None
    wants_postcode = LocationSource.POSTCODE in sources and locators.postcodes is not None
    if not wants_geo and not wants_postcode:  # carrier codes only (one per source, in order)
        return CallerLocation(carrier, [f"{source.value}={code}" for source, code in carrier])
    evidence = _evidence(request, locators) if wants_geo or wants_postcode else NO_LOCATION
    found = CallerLocation([], [f"{source.value}={code}" for source, code in carrier])
    by_source: dict[LocationSource, str] = dict(carrier)  # one hint per source
    if wants_geo and locators.geo is not None:
        code = _from_position(evidence, locators.geo, locators.max_uncertainty_m, found)
        if code is not None:
            by_source[LocationSource.GEO] = code
    if wants_postcode and locators.postcodes is not None and evidence.postcode:
        code = locators.postcodes.municipality_for(evidence.postcode)
        found.evidence.append(f"postcode={evidence.postcode}->{code or '?'}")
        if code is not None:
            by_source[LocationSource.POSTCODE] = code
    if evidence.references:
        found.evidence.append(f"by_reference={evidence.references[0]} (not fetched)")
    found.evidence.extend(f"ignored: {problem}" for problem in evidence.problems[:3])
    found.hints = [(source, by_source[source]) for source in sources if source in by_source]
    return found


def disagreement(location: CallerLocation,
                 lookup: Callable[[str], RouteLookup | None]) -> bool:
    """Whether the carrier's municipality and the caller's position name different ones.

    Both go through the table (old numbers become today's) before they are compared."""
    carrier = position = None
    for source, code in location.hints:  # a plain loop: this runs for every call
        if source is LocationSource.GEO:
            if position is None:
                position = code
        elif carrier is None and source in CARRIER_SOURCES:
            carrier = code
    if carrier is None or position is None:  # no position (the common call): no lookups
        return False
    said, seen = lookup(carrier), lookup(position)
    if said is None or seen is None:
        return False
    return said.kommunenummer != seen.kommunenummer


def _evidence(request: Request, locators: Locators) -> LocationEvidence:
    """Parse only when the request may carry a location (the common INVITE has plain SDP)."""
    content_type = (request.headers.get("Content-Type") or "").lower()
    if request.headers.get("Geolocation") is None \
            and not content_type.startswith(_LOCATION_TYPES):
        return NO_LOCATION
    return parse_geolocation(request, locators.limits)


def _from_position(evidence: LocationEvidence, locator: MunicipalityLocator,
                   max_uncertainty_m: float, found: CallerLocation) -> str | None:
    point = evidence.point
    if point is None:
        return None
    radius = point.radius_m
    shown = f"r={radius:.0f}m" if radius is not None else "point"
    if radius is not None and radius > max_uncertainty_m:
        found.evidence.append(f"geo=unused {shown} > {max_uncertainty_m:.0f}m")
        return None
    try:
        match = locator.locate(point.lat, point.lon, radius)
    except ValueError as err:
        found.evidence.append(f"geo=unused ({err})")
        return None
    if match is None:
        found.evidence.append(f"geo=none {point.lat:.5f},{point.lon:.5f} {shown}")
        return None
    note = f"geo={match.kommunenummer} {match.method} {shown}"
    if match.ambiguous:
        found.ambiguous = True
        note += f" ambiguous:{'/'.join(match.candidates)}"
    found.evidence.append(note)
    return match.kommunenummer
