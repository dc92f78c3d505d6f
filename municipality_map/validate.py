"""Whole-table checks: does a parsed table route every municipality somewhere sensible?

Errors make a table unusable (:func:`municipality_map.load_snapshot` refuses it); warnings are
worth a look but do not stop a table. The checks are deliberately the minimum that keeps a
call from being routed nowhere or to the wrong kind of centre.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from municipality_map.loader import (
    CENTRES_FILE,
    MUNICIPALITIES_FILE,
    OLD_CODES_FILE,
    VERSION_FILE,
    LoadedTable,
    Located,
    TableIssue,
)
from municipality_map.model import Centre, MunicipalityRow, OldCodeOverride, Service
from municipality_map.plan import MAX_BACKUP_HOPS, backup_chain, build_plans
from municipality_map.reference import (
    KNOWN_LISTS,
    UNKNOWN_KOMMUNENUMMER,
    municipality_list,
    read_bundled_csv,
    routable_special_codes,
)

if TYPE_CHECKING:
    from municipality_map.snapshot import RoutingSnapshot

# The crosswalk translates old numbers to the 2024 list, so that is the only list a routing
# table can be built on today.
ROUTABLE_LISTS = ("2024",)

_COLUMN = {Service.AMK: "amk_id", Service.LEGEVAKT: "lvs_id"}

GROWTH_WARNING_FACTOR = 3
"""A centre covering this many times more municipalities than in the active table is worth a
second look (a wrong id copied down a spreadsheet column looks exactly like that)."""

_LOW_CONFIDENCE = re.compile(r"low[- ]confidence|uncertain|unverified|assumption", re.IGNORECASE)
_SIP_URI = re.compile(
    r"(?i:sips?):(?:[^@\s;?]+@)?(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?(?:;[^\s]*)?"
)


@dataclass(frozen=True, slots=True)
class OldNumber:
    """What the bundled crosswalk says about a number valid some time in 2017-2023."""

    first_year: str
    last_year: str
    targets: tuple[str, ...]


@functools.cache
def old_numbers() -> Mapping[str, OldNumber]:
    """Old municipality numbers (not valid today) -> years of validity and today's numbers."""
    columns = (
        "source_kommunenummer",
        "source_first_year_seen",
        "source_last_year_valid",
        "kommunenummer_2024",
    )
    found: dict[str, OldNumber] = {}
    for record in read_bundled_csv("kommune_crosswalk_2017_2023_to_2024.csv", columns):
        v = record.values
        code = v["source_kommunenummer"]
        known = found.get(code)
        targets = (*known.targets, v["kommunenummer_2024"]) if known else (v["kommunenummer_2024"],)
        found[code] = OldNumber(v["source_first_year_seen"], v["source_last_year_valid"], targets)
    today = municipality_list("2024")
    return MappingProxyType({c: n for c, n in found.items() if c not in today})


def old_number_hint(code: str) -> str | None:
    """"0104 is a 2017-2019 number; today's is 3103 Moss", or None for a number never used."""
    old = old_numbers().get(code)
    if old is None:
        return None
    years = old.first_year if old.first_year == old.last_year else (
        f"{old.first_year}\u2013{old.last_year}"
    )
    today = municipality_list("2024")
    named = [f"{t} {today.get(t, '')}".strip() for t in old.targets]
    if len(named) == 1:
        return f"{code} is a {years} number; today's is {named[0]}"
    return f"{code} is a {years} number, now split between {' and '.join(named)}"


def _close_ids(wanted: str, known: Mapping[str, Centre], service: Service | None) -> str:
    """" (did you mean 'AMK-OSLO'?)" for a mistyped centre id, or ""."""
    candidates = [c for c, centre in known.items() if service is None or centre.service is service]
    close = difflib.get_close_matches(wanted, candidates, n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(wanted.upper(), candidates, n=3, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean {' or '.join(repr(c) for c in close)}?"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Result of :func:`validate_table`."""

    errors: tuple[TableIssue, ...]
    """Problems that make the table unusable."""
    warnings: tuple[TableIssue, ...]
    """Oddities that do not stop the table."""

    @property
    def ok(self) -> bool:
        """True if there are no errors."""
        return not self.errors


def validate_table(
    table: LoadedTable, previous: RoutingSnapshot | None = None
) -> ValidationReport:
    """Check ``table`` as a whole. Problems of form are in ``table.issues``, not repeated.

    ``previous`` is the table in force, if any: centres whose coverage grows a lot compared
    with it are warned about.
    """
    errors: list[TableIssue] = []
    warnings: list[TableIssue] = []
    label = _routable_list(table, errors)
    official = municipality_list(label) if label is not None else None
    centres = _check_centres(table.centres, errors, warnings)
    seen: dict[str, int] = {}
    for located in table.municipalities:
        code, line = located.item.kommunenummer, located.line
        if code in seen:
            message = f"{code} has a row already, on line {seen[code]}; keep one"
            errors.append(TableIssue(MUNICIPALITIES_FILE, line, "kommunenummer", message))
            continue
        seen[code] = line
        if _check_code(located, label, errors, warnings):
            _check_references(located, official, centres, errors)
    if label is not None and official is not None:
        missing = [f"{code} {name}" for code, name in official.items() if code not in seen]
        if missing:
            message = (
                f"no row for {len(missing)} municipalit{'y' if len(missing) == 1 else 'ies'} "
                f"of the {label} list (each needs a 113 and a 116117 centre): "
                + ", ".join(missing)
            )
            errors.append(TableIssue(MUNICIPALITIES_FILE, None, "kommunenummer", message))
    _check_old_codes(table.old_codes, centres, errors, warnings)
    overflow = _check_overflow(table, centres, errors)
    _check_plans(centres, overflow, warnings)
    _check_unused(table, centres, warnings)
    _check_notes(table, warnings)
    if previous is not None:
        _check_growth(table, previous, warnings)
    return ValidationReport(tuple(errors), tuple(warnings))


def _routable_list(table: LoadedTable, errors: list[TableIssue]) -> str | None:
    """The municipality list the table names, or None if it cannot be checked against one."""
    if table.version is None:
        return None
    label = table.version.municipality_list
    if label not in ROUTABLE_LISTS:
        known = f" (bundled lists: {', '.join(KNOWN_LISTS)})" if label not in KNOWN_LISTS else ""
        errors.append(
            TableIssue(
                VERSION_FILE,
                None,
                "municipality_list",
                f"{label!r} cannot be routed on{known}; use one of {', '.join(ROUTABLE_LISTS)} "
                "(old numbers are translated automatically)",
            )
        )
        return None
    return label


def _check_centres(
    rows: tuple[Located[Centre], ...], errors: list[TableIssue], warnings: list[TableIssue]
) -> Mapping[str, Centre]:
    """Check each centre's URIs and its backup; return the centres by id (first row wins)."""
    centres: dict[str, Centre] = {}
    first_line: dict[str, int] = {}
    for located in rows:
        centre, line = located.item, located.line
        if centre.centre_id in centres:
            message = (
                f"{centre.centre_id!r} is already defined on line {first_line[centre.centre_id]}"
            )
            errors.append(TableIssue(CENTRES_FILE, line, "centre_id", message))
            continue
        centres[centre.centre_id] = centre
        first_line[centre.centre_id] = line
        _check_uris(centre, line, errors, warnings)
    reported_cycles: set[frozenset[str]] = set()
    for centre_id, centre in centres.items():
        problem = _backup_problem(centre, centres)
        if problem is None:
            cycle = _backup_cycle(centre_id, centres)
            if cycle is not None and frozenset(cycle) not in reported_cycles:
                reported_cycles.add(frozenset(cycle))
                chain = " \u2192 ".join([*cycle, cycle[0]])
                problem = (
                    f"backups go round in a circle ({chain}); when all of them fail a call "
                    "would be passed round forever. End the chain: leave backup_centre_id "
                    f"empty for one of {', '.join(sorted(cycle))}"
                )
        if problem is not None:
            line = first_line[centre_id]
            errors.append(TableIssue(CENTRES_FILE, line, "backup_centre_id", problem))
    return centres


def _backup_cycle(start: str, centres: Mapping[str, Centre]) -> list[str] | None:
    """The cycle of backups ``start`` is on (in order, starting at ``start``), or None."""
    path: list[str] = []
    current: str | None = start
    while current is not None and current in centres:
        if current in path:
            cycle = path[path.index(current) :]
            return cycle if cycle[0] == start else None  # reported from a centre on it
        path.append(current)
        current = centres[current].backup_centre_id
    return None


def _check_uris(
    centre: Centre, line: int, errors: list[TableIssue], warnings: list[TableIssue]
) -> None:
    if not centre.uris:
        errors.append(TableIssue(CENTRES_FILE, line, "uris", "no URI: a centre needs at least one"))
    for uri in centre.uris:
        scheme, _, rest = uri.partition(":")
        # RFC 3261 §19.1.1: the scheme is case-insensitive.
        if scheme.lower() not in ("sip", "sips") or not rest:
            message = (
                f"{uri!r} is not a SIP URI (it must start with 'sip:' or 'sips:', like "
                "'sip:amk-oslo@10.0.0.1:5060'; separate several URIs with spaces)"
            )
            errors.append(TableIssue(CENTRES_FILE, line, "uris", message))
        elif not _SIP_URI.fullmatch(uri) or not _port_ok(uri):
            message = (
                f"{uri!r} is not a usable SIP URI: expected sip:[user@]host[:port][;params] "
                "with a host name or IP address and a port from 1 to 65535, like "
                "'sip:amk-oslo@10.0.0.1:5060'"
            )
            errors.append(TableIssue(CENTRES_FILE, line, "uris", message))
    if len(set(centre.uris)) != len(centre.uris):
        warnings.append(TableIssue(CENTRES_FILE, line, "uris", "lists the same URI twice"))


def _port_ok(uri: str) -> bool:
    hostport = uri.split(";", 1)[0].rsplit("@", 1)[-1]
    if hostport.startswith("["):
        hostport = hostport.rsplit("]", 1)[-1]
    _, colon, port = hostport.rpartition(":")
    return not colon or 0 < int(port) < 65536


def _backup_problem(centre: Centre, centres: Mapping[str, Centre]) -> str | None:
    backup_id = centre.backup_centre_id
    if backup_id is None:
        return None
    if backup_id == centre.centre_id:
        return "a centre cannot be its own backup"
    backup = centres.get(backup_id)
    if backup is None:
        hint = _close_ids(backup_id, centres, centre.service)
        return f"unknown centre {backup_id!r} (not a centre_id in {CENTRES_FILE}){hint}"
    if backup.service is not centre.service:
        # An AMK cannot take over for a legevaktsentral, nor the reverse: other service.
        return (
            f"{backup_id!r} answers {backup.service.value}, but this centre answers "
            f"{centre.service.value}; a backup must answer the same service"
        )
    return None


def _check_code(
    located: Located[MunicipalityRow],
    label: str | None,
    errors: list[TableIssue],
    warnings: list[TableIssue],
) -> bool:
    """Check the row's number against the list; False if the row is not worth checking on."""
    row, line = located.item, located.line
    code = row.kommunenummer
    if code == UNKNOWN_KOMMUNENUMMER:
        message = f"{code} means 'municipality unknown' and cannot be routed; remove the row"
        errors.append(TableIssue(MUNICIPALITIES_FILE, line, "kommunenummer", message))
        return False
    specials = routable_special_codes()
    official_name = municipality_list(label).get(code) if label is not None else None
    if label is not None and official_name is None and code not in specials:
        hint = old_number_hint(code)
        if hint is not None:
            message = (
                f"{hint}. Old numbers are translated automatically and need no row: "
                f"remove it (or, to route the old number differently, put it in {OLD_CODES_FILE})"
            )
        else:
            message = (
                f"{code} is not a municipality in the {label} list nor a number used since "
                "2017; check the number against municipality_map/data/kommuner_2024.csv"
            )
        errors.append(TableIssue(MUNICIPALITIES_FILE, line, "kommunenummer", message))
    expected_name = official_name or specials.get(code)
    if expected_name is not None and row.kommunenavn != expected_name:
        # Names are only for people, but a wrong name often means a mistyped number.
        message = f"{row.kommunenavn!r}, but {code} is {expected_name!r}; is the number right?"
        warnings.append(TableIssue(MUNICIPALITIES_FILE, line, "kommunenavn", message))
    return True


def _check_references(
    located: Located[MunicipalityRow],
    official: Mapping[str, str] | None,
    centres: Mapping[str, Centre],
    errors: list[TableIssue],
) -> None:
    """The row's centres exist and answer the right service; listed municipalities need both."""
    row, line = located.item, located.line
    for service, column in _COLUMN.items():
        centre_id = row.centre_id(service)
        if centre_id is None:
            if official is not None and row.kommunenummer in official:
                message = (
                    f"is empty: {row.kommunenummer} {row.kommunenavn} needs a "
                    f"{service.value} centre"
                )
                errors.append(TableIssue(MUNICIPALITIES_FILE, line, column, message))
            continue
        issue = _centre_reference_issue(
            centre_id, service, centres, MUNICIPALITIES_FILE, line, column)
        if issue is not None:
            errors.append(issue)


def _centre_reference_issue(
    centre_id: str, service: Service, centres: Mapping[str, Centre], file: str, line: int | None,
    column: str,
) -> TableIssue | None:
    """The error for a row naming ``centre_id`` for ``service``: unknown id or wrong service."""
    centre = centres.get(centre_id)
    if centre is None:
        hint = _close_ids(centre_id, centres, service)
        message = f"unknown centre {centre_id!r} (not a centre_id in {CENTRES_FILE}){hint}"
        return TableIssue(file, line, column, message)
    if centre.service is not service:
        message = (
            f"{centre_id!r} answers {centre.service.value}; {column} needs a centre "
            f"answering {service.value}"
        )
        return TableIssue(file, line, column, message)
    return None


def _check_unused(
    table: LoadedTable, centres: Mapping[str, Centre], warnings: list[TableIssue]
) -> None:
    used = {
        centre_id
        for located in table.municipalities
        for service in Service
        if (centre_id := located.item.centre_id(service)) is not None
    }
    used |= {c.backup_centre_id for c in centres.values() if c.backup_centre_id is not None}
    if table.version is not None:
        used |= {centre_id for _, centre_id in table.version.overflow}
    for centre_id in centres:
        if centre_id not in used:
            message = (
                f"{centre_id!r} serves no municipality, backs up no centre and is no "
                "overflow centre"
            )
            warnings.append(TableIssue(CENTRES_FILE, None, "centre_id", message))


def _check_overflow(
    table: LoadedTable, centres: Mapping[str, Centre], errors: list[TableIssue]
) -> dict[Service, str]:
    """``[overflow]`` in version.toml names centres of the right service; return the usable
    entries (none for a table without ``[overflow]``)."""
    if table.version is None:
        return {}
    lines = dict(table.overflow_lines)
    usable: dict[Service, str] = {}
    for service, centre_id in table.version.overflow:
        column = f"overflow.{service.value}"
        issue = _centre_reference_issue(
            centre_id, service, centres, VERSION_FILE, lines.get(service), column)
        if issue is None:
            usable[service] = centre_id
        else:
            errors.append(issue)
    return usable


def _check_plans(
    centres: Mapping[str, Centre], overflow: Mapping[Service, str], warnings: list[TableIssue]
) -> None:
    """Warn about centres whose calls have nowhere else to go, and chains cut short."""
    plans = build_plans(centres, overflow)
    alone = sorted(cid for cid, plan in plans.items() if len(plan) == 1)
    if alone:
        message = (
            f"{len(alone)} centre{'s have' if len(alone) > 1 else ' has'} a single destination "
            "(one URI, no backup_centre_id, no other overflow centre in version.toml), so a "
            f"call is lost if it does not answer: {', '.join(alone)}"
        )
        warnings.append(TableIssue(CENTRES_FILE, None, "backup_centre_id", message))
    long_chains = sorted(
        cid for cid in centres if backup_chain(cid, centres, MAX_BACKUP_HOPS).truncated
    )
    if long_chains:
        message = (
            f"backup chain longer than {MAX_BACKUP_HOPS} centres; calls try only the first "
            f"{MAX_BACKUP_HOPS} backups (then the overflow centre) for: {', '.join(long_chains)}"
        )
        warnings.append(TableIssue(CENTRES_FILE, None, "backup_centre_id", message))


def _check_old_codes(
    rows: tuple[Located[OldCodeOverride], ...],
    centres: Mapping[str, Centre],
    errors: list[TableIssue],
    warnings: list[TableIssue],
) -> None:
    """``old_codes.csv``: old numbers only, once each, naming centres of the right service."""
    seen: dict[str, int] = {}
    today = municipality_list("2024")
    for located in rows:
        row, line = located.item, located.line
        code = row.old_kommunenummer
        if code in seen:
            message = f"{code} has a row already, on line {seen[code]}; keep one"
            errors.append(TableIssue(OLD_CODES_FILE, line, "old_kommunenummer", message))
            continue
        seen[code] = line
        old = old_numbers().get(code)
        if old is None:
            if code in today:
                message = (
                    f"{code} {today[code]} is a number valid today; route it in "
                    f"{MUNICIPALITIES_FILE}, not here"
                )
            else:
                message = f"{code} is not a municipality number used 2017\u20132023"
            errors.append(TableIssue(OLD_CODES_FILE, line, "old_kommunenummer", message))
            continue
        if len(old.targets) == 1:
            message = (
                f"{old_number_hint(code)}; this row routes it away from its successor's centre"
            )
            warnings.append(TableIssue(OLD_CODES_FILE, line, "old_kommunenummer", message))
        for service, column in _COLUMN.items():
            centre_id = row.centre_id(service)
            if centre_id is None:
                continue
            issue = _centre_reference_issue(
                centre_id, service, centres, OLD_CODES_FILE, line, column)
            if issue is not None:
                errors.append(issue)


def _check_notes(table: LoadedTable, warnings: list[TableIssue]) -> None:
    for located in table.municipalities:
        note = located.item.note
        if _LOW_CONFIDENCE.search(note):
            message = f"the note says this assignment is not certain; confirm it: {note}"
            warnings.append(TableIssue(MUNICIPALITIES_FILE, located.line, "note", message))


def coverage(rows: Mapping[str, MunicipalityRow] | list[MunicipalityRow]) -> Counter[str]:
    """How many municipality rows name each centre (either service)."""
    values = rows.values() if isinstance(rows, Mapping) else rows
    counts: Counter[str] = Counter()
    for row in values:
        for service in Service:
            centre_id = row.centre_id(service)
            if centre_id is not None:
                counts[centre_id] += 1
    return counts


def _check_growth(
    table: LoadedTable, previous: RoutingSnapshot, warnings: list[TableIssue]
) -> None:
    before = coverage(previous.municipalities)
    after = coverage([located.item for located in table.municipalities])
    for centre_id, count in sorted(after.items()):
        old = before.get(centre_id, 0)
        if old and count >= GROWTH_WARNING_FACTOR * old:
            message = (
                f"{centre_id!r} would cover {count} municipalities, {count / old:.1f}\u00d7 the "
                f"{old} it covers in the active table ({previous.version.label}); is that intended?"
            )
            warnings.append(TableIssue(MUNICIPALITIES_FILE, None, "amk_id/lvs_id", message))
