"""What a caller dialled, and where the carrier says the caller is.

Two questions answered from the inbound INVITE alone, with no I/O:

* :func:`dialled_service` — is the Request-URI one of our emergency numbers (113, 116117, with
  ``+47``/``0047`` prefixes, ``tel:`` URIs, ``urn:service:sos`` …), and did the carrier append a
  municipality routing prefix to the digits (``1130301``)?
* :func:`municipality_hints` — the municipality numbers the carrier signalled, in the trunk's
  order of precedence: an explicit header, a URI parameter, the routing prefix.

Which of the hints is *usable* depends on the routing table, so choosing one is left to the
caller of :func:`choose_municipality`, which gets the table's lookup as a function.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from municipality_map import RouteLookup, Service
from sip.errors import SipParseError
from sip.message import Request
from sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri_shared


class LocationSource(enum.StrEnum):
    """Where the municipality number used for routing came from."""

    HEADER = "header"
    URI_PARAM = "uri_param"
    PREFIX = "prefix"
    GEO = "geo"
    """A PIDF-LO position placed in a municipality (``router.caller_location``)."""
    POSTCODE = "postcode"
    """A PIDF-LO civic address's postcode."""
    DEFAULT = "default"
    """No usable hint: the service's configured default centre."""


@dataclass(frozen=True, slots=True)
class DialledService:
    """The emergency service a Request-URI asks for."""

    service: Service
    prefix_municipality: str | None
    """Municipality number appended to the dialled digits by the carrier, if any."""


# urn:service:sos is the generic emergency URN (RFC 5031); in Norway medical emergencies are 113.
_URN_SERVICES = {
    "urn:service:sos": Service.AMK,
    "urn:service:sos.ambulance": Service.AMK,
}

_VISUAL_SEPARATORS = str.maketrans("", "", "-.() ")


def normalise_digits(number: str) -> str | None:
    """Strip visual separators and the Norwegian country code; ``None`` if not all digits.

    ``+47 113`` → ``113``, ``0047113`` → ``113``. A bare ``47`` prefix is *not* stripped: ``47…``
    is also the start of ordinary eight-digit mobile numbers.
    """
    digits = number.translate(_VISUAL_SEPARATORS)
    if digits.startswith("+"):
        if not digits.startswith("+47"):
            return None
        digits = digits[3:]
    elif digits.startswith("0047"):
        digits = digits[4:]
    return digits if digits.isdigit() else None


def _service_from_digits(digits: str) -> DialledService | None:
    # Longest number first: 116117 must not be read as something else with a prefix.
    for service in (Service.LEGEVAKT, Service.AMK):
        number = service.value
        if digits == number:
            return DialledService(service, None)
        rest = digits[len(number):]
        if digits.startswith(number) and len(rest) == 4:
            return DialledService(service, rest)
    return None


def dialled_service(request: Request) -> DialledService | None:
    """The service the Request-URI dials, or ``None`` if it is not one of ours.

    Raises :class:`SipParseError` (416/400) for a Request-URI that does not parse.
    """
    uri = parse_uri_shared(request.uri)
    if isinstance(uri, AbsoluteUri):
        service = _URN_SERVICES.get(f"{uri.scheme}:{uri.value}".lower())
        return DialledService(service, None) if service else None
    if isinstance(uri, TelUri):
        digits = normalise_digits(uri.number)
    else:
        if not uri.user:
            return None
        # user-params (RFC 3261 §19.1.1, e.g. "113;kommune=0301") are not part of the number
        digits = normalise_digits(uri.user.split(";", 1)[0])
    return _service_from_digits(digits) if digits else None


def _uri_param_municipality(request: Request) -> str | None:
    """``kommune`` as a URI parameter (``sip:113@host;kommune=0301``) or user-param."""
    try:
        uri = parse_uri_shared(request.uri)
    except SipParseError:
        return None
    if isinstance(uri, SipUri):
        value = uri.params.get("kommune")
        if value:
            return value
        if uri.user and ";" in uri.user:
            for part in uri.user.split(";")[1:]:
                name, _, val = part.partition("=")
                if name.strip().lower() == "kommune" and val:
                    return val.strip()
    elif isinstance(uri, TelUri):
        value = uri.params.get("kommune")
        if value:
            return value
    return None


def municipality_hints(
    request: Request,
    dialled: DialledService,
    sources: Sequence[LocationSource],
    header_name: str,
) -> list[tuple[LocationSource, str]]:
    """Every municipality number the carrier signalled, in the trunk's precedence order."""
    hints: list[tuple[LocationSource, str]] = []
    for source in sources:
        value: str | None = None
        if source is LocationSource.HEADER:
            raw = request.headers.get(header_name)
            value = raw.strip() if raw else None
        elif source is LocationSource.URI_PARAM:
            value = _uri_param_municipality(request)
        elif source is LocationSource.PREFIX:
            value = dialled.prefix_municipality
        if value:
            hints.append((source, value))
    return hints


@dataclass(frozen=True, slots=True)
class RoutingChoice:
    """The outcome of location resolution for one call."""

    lookup: RouteLookup | None
    """The table's answer; ``None`` means "use the default centre"."""
    source: LocationSource
    """Which hint decided (``DEFAULT`` when none was usable)."""
    requested: str | None
    """The code as the carrier sent it (first hint when none was usable), for records."""


def choose_municipality(
    hints: Sequence[tuple[LocationSource, str]],
    lookup: Callable[[str], RouteLookup | None],
) -> RoutingChoice:
    """The first hint the routing table knows; otherwise the default centre.

    A later hint is used only when an earlier one is unknown to the table: a carrier that sends
    a stale header *and* a good prefix still gets its call routed by the prefix.
    """
    for source, code in hints:
        found = lookup(code)
        if found is not None:
            return RoutingChoice(found, source, code)
    return RoutingChoice(None, LocationSource.DEFAULT, hints[0][1] if hints else None)
