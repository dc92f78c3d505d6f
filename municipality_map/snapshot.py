"""RoutingSnapshot: one validated routing table, ready for the call path.

All the work happens when the snapshot is built: every number the router accepts (today's
municipality numbers, the special codes 2100/2211 if the table has them, and every number valid
2017-2023) is resolved up front to a ready-made :class:`RouteLookup`, and every centre's
:class:`DestinationPlan` (its URIs, its backups', the service's overflow centre's) is built
once and shared by every lookup answered by that centre.

An old number whose area is now split between municipalities served by different centres
(1507 Ålesund -> 1508 Ålesund + 1580 Haram) has no single right answer: unless the table's
``old_codes.csv`` names its centre, or the reference data name a preferred part (the pre-2020
Ålesund numbers), :meth:`RoutingSnapshot.lookup` returns None for it and the call goes to
the default centre of the service. At call time
:meth:`RoutingSnapshot.lookup` is a single dict access that allocates nothing. A snapshot never
changes; a new table means a new snapshot, swapped in whole, and a call keeps the snapshot it
started with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from municipality_map.crosswalk import Crosswalk
from municipality_map.loader import LoadedTable, TableError, TableIssue, read_table
from municipality_map.model import (
    Centre,
    DestinationPlan,
    MunicipalityRow,
    OldCodeOverride,
    RouteLookup,
    Service,
    TableVersion,
)
from municipality_map.plan import MAX_BACKUP_HOPS, build_plans
from municipality_map.validate import validate_table


class RoutingSnapshot:
    """An immutable routing table: municipality number + service -> centre."""

    __slots__ = (
        "_centres",
        "_municipalities",
        "_old_codes",
        "_plans",
        "_routes",
        "_version",
        "_warnings",
    )

    _centres: Mapping[str, Centre]
    _municipalities: Mapping[str, MunicipalityRow]
    _old_codes: Mapping[str, OldCodeOverride]
    _plans: Mapping[str, DestinationPlan]
    _routes: Mapping[tuple[Service, str], RouteLookup]
    _version: TableVersion
    _warnings: tuple[TableIssue, ...]

    def __init__(
        self,
        version: TableVersion,
        centres: Iterable[Centre],
        municipalities: Iterable[MunicipalityRow],
        crosswalk: Crosswalk,
        warnings: Iterable[TableIssue] = (),
        old_codes: Iterable[OldCodeOverride] = (),
    ) -> None:
        """Build the lookup index. The rows must already be valid (see ``load_snapshot``).

        Raises ValueError if a row, a backup or the overflow names a centre that is missing or
        of the wrong service, since that would route calls nowhere or to the wrong kind of
        centre.
        """
        by_id = {centre.centre_id: centre for centre in centres}
        rows = {row.kommunenummer: row for row in municipalities}
        overrides = {row.old_kommunenummer: row for row in old_codes}
        _check_plan_references(by_id, version)
        plans = build_plans(by_id, version.overflow, MAX_BACKUP_HOPS)
        routes: dict[tuple[Service, str], RouteLookup] = {}
        for service in Service:
            direct = _direct_routes(rows.values(), by_id, plans, service)
            routes.update(((service, code), lookup) for code, lookup in direct.items())
            for code, lookup in _old_code_routes(direct, crosswalk).items():
                routes[(service, code)] = lookup
            overridden = _override_routes(overrides, direct, by_id, plans, crosswalk, service)
            for code, lookup in overridden:
                routes[(service, code)] = lookup
        # object.__setattr__: our own __setattr__ refuses every assignment.
        object.__setattr__(self, "_version", version)
        object.__setattr__(self, "_centres", MappingProxyType(by_id))
        object.__setattr__(self, "_municipalities", MappingProxyType(rows))
        object.__setattr__(self, "_old_codes", MappingProxyType(overrides))
        object.__setattr__(self, "_plans", MappingProxyType(plans))
        object.__setattr__(self, "_routes", MappingProxyType(routes))
        object.__setattr__(self, "_warnings", tuple(warnings))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"RoutingSnapshot is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"RoutingSnapshot is immutable (cannot delete {name!r})")

    def __repr__(self) -> str:
        return (
            f"RoutingSnapshot(label={self._version.label!r}, "
            f"municipalities={len(self._municipalities)}, centres={len(self._centres)})"
        )

    def lookup(self, kommunenummer: str, service: Service) -> RouteLookup | None:
        """The centre for a caller in ``kommunenummer`` calling ``service``, or None.

        ``kommunenummer`` is 4 digits with the leading zero, today's or any valid 2017-2023;
        anything else (``9999``, ``0301 ``, ``301``) is None: normalise before asking.
        """
        return self._routes.get((service, kommunenummer))

    def centre(self, centre_id: str) -> Centre | None:
        """The centre with ``centre_id``, or None."""
        return self._centres.get(centre_id)

    def plan_for(self, centre_id: str) -> DestinationPlan | None:
        """The destination plan of the centre ``centre_id`` (e.g. a default centre), or None.

        The same object as ``lookup(…).plan`` of every lookup that centre answers.
        """
        return self._plans.get(centre_id)

    def overflow_centre(self, service: Service) -> Centre | None:
        """The national overflow centre of ``service`` (``[overflow]``), or None."""
        centre_id = self._version.overflow_centre_id(service)
        return None if centre_id is None else self._centres.get(centre_id)

    @property
    def plans(self) -> Mapping[str, DestinationPlan]:
        """Every centre's destination plan by centre id (read-only)."""
        return self._plans

    @property
    def centres(self) -> Mapping[str, Centre]:
        """All centres by id (read-only)."""
        return self._centres

    @property
    def municipalities(self) -> Mapping[str, MunicipalityRow]:
        """The table's municipality rows by today's number (read-only)."""
        return self._municipalities

    @property
    def old_codes(self) -> Mapping[str, OldCodeOverride]:
        """The table's ``old_codes.csv`` rows by old number (read-only; often empty)."""
        return self._old_codes

    @property
    def version(self) -> TableVersion:
        """Which table this is and when it takes effect."""
        return self._version

    @property
    def municipality_count(self) -> int:
        """Number of municipality rows in the table (special codes included)."""
        return len(self._municipalities)

    @property
    def warnings(self) -> tuple[TableIssue, ...]:
        """Validation warnings the table was accepted with."""
        return self._warnings


def _check_plan_references(centres: Mapping[str, Centre], version: TableVersion) -> None:
    """ValueError if a backup or an overflow centre is unknown or answers another service."""
    for centre in centres.values():
        backup_id = centre.backup_centre_id
        if backup_id is None:
            continue
        backup = centres.get(backup_id)
        if backup is None or backup.service is not centre.service or backup is centre:
            raise ValueError(
                f"{centre.centre_id}: backup {backup_id!r} is not another "
                f"{centre.service.value} centre in the table"
            )
    for service, centre_id in version.overflow:
        overflow = centres.get(centre_id)
        if overflow is None or overflow.service is not service:
            raise ValueError(
                f"overflow {service.value}: {centre_id!r} is not a {service.value} centre "
                "in the table"
            )


def _direct_routes(
    rows: Iterable[MunicipalityRow],
    centres: Mapping[str, Centre],
    plans: Mapping[str, DestinationPlan],
    service: Service,
) -> dict[str, RouteLookup]:
    """Lookups for the numbers the table names itself."""
    routes: dict[str, RouteLookup] = {}
    for row in rows:
        centre_id = row.centre_id(service)
        if centre_id is None:
            continue
        centre = centres.get(centre_id)
        if centre is None or centre.service is not service:
            raise ValueError(
                f"{row.kommunenummer}: {centre_id!r} is not a {service.value} centre in the table"
            )
        routes[row.kommunenummer] = RouteLookup(
            centre=centre,
            kommunenummer=row.kommunenummer,
            requested=row.kommunenummer,
            via_crosswalk=False,
            ambiguous=False,
            plan=plans[centre_id],
        )
    return routes


def _old_code_routes(
    direct: Mapping[str, RouteLookup], crosswalk: Crosswalk
) -> dict[str, RouteLookup]:
    """Lookups for old numbers, each resolved to what its area is routed to today."""
    routes: dict[str, RouteLookup] = {}
    for entry in crosswalk:
        if entry.old_code in direct:
            # A number valid today always means today's municipality (unchanged numbers
            # are in the crosswalk too, mapping to themselves).
            continue
        targets = [direct[t] for t in entry.targets if t in direct]
        if not targets:
            continue  # none of its areas is routed by this table, so neither is it
        preferred = direct.get(entry.preferred, targets[0])
        # A split only matters if its parts go to different centres (or some are unrouted).
        unanimous = len(targets) == len(entry.targets) and all(
            t.centre.centre_id == preferred.centre.centre_id for t in targets
        )
        if not unanimous and not entry.preferred_from_data:
            # A genuine split the data leave open (1507 Ålesund): guessing a part would send
            # some callers to the wrong centre, so the number routes to the default centre
            # (no lookup) unless old_codes.csv says otherwise.
            continue
        routes[entry.old_code] = RouteLookup(
            centre=preferred.centre,
            kommunenummer=preferred.kommunenummer,
            requested=entry.old_code,
            via_crosswalk=True,
            ambiguous=not unanimous,
            plan=preferred.plan,
        )
    return routes


def _override_routes(
    overrides: Mapping[str, OldCodeOverride],
    direct: Mapping[str, RouteLookup],
    centres: Mapping[str, Centre],
    plans: Mapping[str, DestinationPlan],
    crosswalk: Crosswalk,
    service: Service,
) -> Iterable[tuple[str, RouteLookup]]:
    """Lookups the table's ``old_codes.csv`` sets by hand."""
    for code, row in overrides.items():
        centre_id = row.centre_id(service)
        if centre_id is None:
            continue
        centre = centres.get(centre_id)
        if centre is None or centre.service is not service:
            raise ValueError(f"old code {code}: {centre_id!r} is not a {service.value} centre")
        entry = crosswalk.entry(code)
        targets = entry.targets if entry is not None else ()
        # Report the part served by the chosen centre, if one is; else the preferred part.
        served = [t for t in targets if t in direct and direct[t].centre is centre]
        kommunenummer = served[0] if served else (entry.preferred if entry else code)
        split = len({direct[t].centre.centre_id for t in targets if t in direct}) > 1
        yield code, RouteLookup(
            centre=centre,
            kommunenummer=kommunenummer,
            requested=code,
            via_crosswalk=True,
            ambiguous=split,
            plan=plans[centre_id],
        )


def snapshot_from_table(
    table: LoadedTable,
    *,
    previous: RoutingSnapshot | None = None,
    crosswalk: Crosswalk | None = None,
    source: str = "",
) -> RoutingSnapshot:
    """Validate a parsed table and build its snapshot.

    Raises :class:`TableError` listing every problem of form and every validation error.
    ``previous`` (the table in force) only adds warnings; ``crosswalk`` defaults to the bundled
    2017-2023 -> 2024 crosswalk.
    """
    report = validate_table(table, previous)
    problems = (*table.issues, *report.errors)
    if problems or table.version is None:
        raise TableError(problems, source or str(table.directory))
    return RoutingSnapshot(
        version=table.version,
        centres=(located.item for located in table.centres),
        municipalities=(located.item for located in table.municipalities),
        crosswalk=crosswalk if crosswalk is not None else Crosswalk.bundled(),
        warnings=report.warnings,
        old_codes=(located.item for located in table.old_codes),
    )


def load_snapshot(table_dir: Path, crosswalk: Crosswalk | None = None) -> RoutingSnapshot:
    """Load, validate and build the table in ``table_dir``.

    Raises :class:`TableError` listing every problem of form and every validation error.
    ``crosswalk`` defaults to the bundled 2017-2023 -> 2024 crosswalk.
    """
    return snapshot_from_table(read_table(table_dir), crosswalk=crosswalk, source=str(table_dir))


def default_table_dir() -> Path:
    """The SAMPLE demo table ``configs/tables/sample-2024`` of a source checkout.

    Not authoritative routing data; a deployment configures its own table directory.
    """
    return Path(__file__).resolve().parents[1] / "configs" / "tables" / "sample-2024"
