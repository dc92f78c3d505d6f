"""Value objects of the routing data: services, centres, table rows, lookup results and the
destination plans derived from them.

Everything here is a frozen, slotted dataclass: a loaded table and the answers it gives are
shared between concurrent calls and must never change under them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import overload


class Service(enum.StrEnum):
    """The emergency service a call is for; the value is the dialled number."""

    AMK = "113"
    """Medical emergency: the AMK centre (akuttmedisinsk kommunikasjonssentral)."""
    LEGEVAKT = "116117"
    """Out-of-hours doctor: the legevaktsentral."""


@dataclass(frozen=True, slots=True)
class Centre:
    """A call centre that answers one service, with the SIP URIs that reach it."""

    centre_id: str
    """Unique id, referenced from the municipality rows (e.g. ``AMK-OSLO``)."""
    name: str
    """Display name."""
    service: Service
    """The one service this centre answers."""
    uris: tuple[str, ...]
    """SIP/SIPS URIs, in the order they are to be tried."""
    backup_centre_id: str | None
    """Centre of the same service to use when this one does not answer, if any."""


@dataclass(frozen=True, slots=True)
class MunicipalityRow:
    """One row of ``municipalities.csv``: which centres serve a municipality."""

    kommunenummer: str
    """4-digit municipality number, leading zero kept (``0301``)."""
    kommunenavn: str
    """Name, for people; matching is always on the number."""
    amk_id: str | None
    """Centre answering 113, or None if the row leaves it empty."""
    lvs_id: str | None
    """Centre answering 116117, or None if the row leaves it empty."""
    note: str
    """Free text explaining anything special about the row."""

    def centre_id(self, service: Service) -> str | None:
        """The centre id this row names for ``service``."""
        return self.amk_id if service is Service.AMK else self.lvs_id


@dataclass(frozen=True, slots=True)
class OldCodeOverride:
    """One row of the optional ``old_codes.csv``: where an old number routes, set by hand.

    Used for an old municipality number whose area is now split between municipalities served
    by different centres (1507 Ålesund): without a row, such a number routes to the default
    centre of the service.
    """

    old_kommunenummer: str
    """A number valid some time in 2017-2023 but not today."""
    amk_id: str | None
    """Centre answering 113 for callers with this number, or None to keep the rule."""
    lvs_id: str | None
    """Centre answering 116117 for callers with this number, or None to keep the rule."""
    note: str
    """Why."""

    def centre_id(self, service: Service) -> str | None:
        """The centre id this row names for ``service``."""
        return self.amk_id if service is Service.AMK else self.lvs_id


@dataclass(frozen=True, slots=True)
class TableVersion:
    """The contents of ``version.toml``: which table this is and when it takes effect."""

    label: str
    """Name of the version, e.g. ``sample-2024``."""
    effective_at: datetime
    """When the table takes effect; always timezone-aware."""
    author: str
    """Who made the table."""
    comment: str
    """What changed and why."""
    municipality_list: str
    """Label of the municipality list the table is checked against, e.g. ``2024``."""
    overflow: tuple[tuple[Service, str], ...] = ()
    """The ``[overflow]`` table: per service, the centre tried after a centre and all its
    backups failed, in :class:`Service` order; empty for a table without one."""

    def overflow_centre_id(self, service: Service) -> str | None:
        """The national overflow centre named for ``service``, or None."""
        for named, centre_id in self.overflow:
            if named is service:
                return centre_id
        return None


class DestinationRole(enum.StrEnum):
    """Why a destination is in a plan."""

    PRIMARY = "primary"
    """A URI of the centre that serves the caller."""
    BACKUP = "backup"
    """A URI of a centre on the primary's backup chain (its backup, the backup's backup, …)."""
    OVERFLOW = "overflow"
    """A URI of the service's national overflow centre (``[overflow]`` in ``version.toml``)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """One URI to try for a call, and the centre it belongs to."""

    centre_id: str
    """The centre this URI reaches."""
    uri: str
    """The SIP/SIPS URI, exactly as written in ``centres.csv``."""
    role: DestinationRole
    """Primary centre, a centre on its backup chain, or the overflow centre."""
    hop: int
    """Position of the centre in the plan: 0 for the primary, 1 for its backup, 2 for the
    backup's backup, …; the overflow centre comes after the last backup. All URIs of one centre
    share the hop."""


@dataclass(frozen=True, slots=True)
class DestinationPlan(Sequence[Destination]):
    """Where a call for a centre goes, in order: the centre's own URIs, then those of its backup,
    the backup's backup and so on, then those of the service's overflow centre.

    Built once per centre when the snapshot is built (see
    :func:`municipality_map.plan.build_plans`) and shared by every call for that centre. No
    centre appears twice and no URI appears twice. A read-only sequence of its
    :attr:`destinations`: iterating, ``len``, indexing and slicing go over them.
    """

    centre_id: str
    """The primary centre, whose plan this is."""
    service: Service
    """The service every centre in the plan answers."""
    destinations: tuple[Destination, ...]
    """Every URI to try, in order; never empty for a valid table."""

    def __iter__(self) -> Iterator[Destination]:
        return iter(self.destinations)

    def __len__(self) -> int:
        return len(self.destinations)

    @overload
    def __getitem__(self, index: int) -> Destination: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Destination, ...]: ...
    def __getitem__(self, index: int | slice) -> Destination | tuple[Destination, ...]:
        return self.destinations[index]

    @property
    def centre_ids(self) -> tuple[str, ...]:
        """The centres of the plan, each once, in the order they are tried."""
        return tuple(dict.fromkeys(d.centre_id for d in self.destinations))

    @property
    def uris(self) -> tuple[str, ...]:
        """The URIs of the plan, in the order they are tried."""
        return tuple(d.uri for d in self.destinations)


@dataclass(frozen=True, slots=True)
class RouteLookup:
    """The answer to "which centre serves this municipality number for this service?"."""

    centre: Centre
    """The centre to route to."""
    kommunenummer: str
    """Today's municipality number the answer is based on."""
    requested: str
    """The number as given; differs from ``kommunenummer`` for an old number."""
    via_crosswalk: bool
    """True if ``requested`` is a pre-2024 number translated through the crosswalk."""
    ambiguous: bool
    """True if ``requested`` is an old number whose area is now split between municipalities
    served by different centres, so the answer is a choice rather than a fact: the part the
    reference data prefer (pre-2020 Ålesund numbers), or the table's ``old_codes.csv`` row.
    A genuine split without such a choice (1507, 1613, 1850, 5012) gets no lookup at all and
    routes to the default centre."""
    plan: DestinationPlan
    """Where the call goes, in order: ``centre`` first, then its backups, then the service's
    overflow centre. The same object for every lookup answered by ``centre``."""
