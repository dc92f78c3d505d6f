"""RoutingSnapshot: one validated routing table, ready for the call path.

All the work happens when the snapshot is built: every number the router accepts (today's
municipality numbers, the special codes 2100/2211 if the table has them, and every number valid
2017-2023) is resolved up front to a ready-made :class:`RouteLookup`. At call time
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
from municipality_map.loader import TableError, TableIssue, read_table
from municipality_map.model import Centre, MunicipalityRow, RouteLookup, Service, TableVersion
from municipality_map.validate import validate_table


class RoutingSnapshot:
    """An immutable routing table: municipality number + service -> centre."""

    __slots__ = ("_centres", "_municipalities", "_routes", "_version", "_warnings")

    _centres: Mapping[str, Centre]
    _municipalities: Mapping[str, MunicipalityRow]
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
    ) -> None:
        """Build the lookup index. The rows must already be valid (see ``load_snapshot``).

        Raises ValueError if a row names a centre that is missing or of the wrong service,
        since that would route calls nowhere or to the wrong kind of centre.
        """
        by_id = {centre.centre_id: centre for centre in centres}
        rows = {row.kommunenummer: row for row in municipalities}
        routes: dict[tuple[Service, str], RouteLookup] = {}
        for service in Service:
            direct = _direct_routes(rows.values(), by_id, service)
            routes.update(((service, code), lookup) for code, lookup in direct.items())
            for code, lookup in _old_code_routes(direct, crosswalk).items():
                routes[(service, code)] = lookup
        # object.__setattr__: our own __setattr__ refuses every assignment.
        object.__setattr__(self, "_version", version)
        object.__setattr__(self, "_centres", MappingProxyType(by_id))
        object.__setattr__(self, "_municipalities", MappingProxyType(rows))
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

    @property
    def centres(self) -> Mapping[str, Centre]:
        """All centres by id (read-only)."""
        return self._centres

    @property
    def municipalities(self) -> Mapping[str, MunicipalityRow]:
        """The table's municipality rows by today's number (read-only)."""
        return self._municipalities

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


def _direct_routes(
    rows: Iterable[MunicipalityRow], centres: Mapping[str, Centre], service: Service
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
        routes[entry.old_code] = RouteLookup(
            centre=preferred.centre,
            kommunenummer=preferred.kommunenummer,
            requested=entry.old_code,
            via_crosswalk=True,
            ambiguous=not unanimous,
        )
    return routes


def load_snapshot(table_dir: Path, crosswalk: Crosswalk | None = None) -> RoutingSnapshot:
    """Load, validate and build the table in ``table_dir``.

    Raises :class:`TableError` listing every problem of form and every validation error.
    ``crosswalk`` defaults to the bundled 2017-2023 -> 2024 crosswalk.
    """
    table = read_table(table_dir)
    report = validate_table(table)
    problems = (*table.issues, *report.errors)
    if problems or table.version is None:
        raise TableError(problems, str(table_dir))
    return RoutingSnapshot(
        version=table.version,
        centres=(located.item for located in table.centres),
        municipalities=(located.item for located in table.municipalities),
        crosswalk=crosswalk if crosswalk is not None else Crosswalk.bundled(),
        warnings=report.warnings,
    )


def default_table_dir() -> Path:
    """The SAMPLE demo table ``configs/tables/sample-2024`` of a source checkout.

    Not authoritative routing data; a deployment configures its own table directory.
    """
    return Path(__file__).resolve().parents[1] / "configs" / "tables" / "sample-2024"
