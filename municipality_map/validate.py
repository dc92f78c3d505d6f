"""Whole-table checks: does a parsed table route every municipality somewhere sensible?

Errors make a table unusable (:func:`municipality_map.load_snapshot` refuses it); warnings are
worth a look but do not stop a table. The checks are deliberately the minimum that keeps a
call from being routed nowhere or to the wrong kind of centre.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from municipality_map.loader import (
    CENTRES_FILE,
    MUNICIPALITIES_FILE,
    VERSION_FILE,
    LoadedTable,
    Located,
    TableIssue,
)
from municipality_map.model import Centre, MunicipalityRow, Service
from municipality_map.reference import (
    KNOWN_LISTS,
    UNKNOWN_KOMMUNENUMMER,
    municipality_list,
    routable_special_codes,
)

# The crosswalk translates old numbers to the 2024 list, so that is the only list a routing
# table can be built on today.
ROUTABLE_LISTS = ("2024",)

_COLUMN = {Service.AMK: "amk_id", Service.LEGEVAKT: "lvs_id"}


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


def validate_table(table: LoadedTable) -> ValidationReport:
    """Check ``table`` as a whole. Problems of form are in ``table.issues``, not repeated."""
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
        for code, name in official.items():
            if code not in seen:
                message = (
                    f"no row for {code} {name}: every municipality of the {label} list needs "
                    "a 113 and a 116117 centre"
                )
                errors.append(TableIssue(MUNICIPALITIES_FILE, None, "kommunenummer", message))
    _check_unused(table, centres, warnings)
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
    for centre_id, centre in centres.items():
        problem = _backup_problem(centre, centres)
        if problem is not None:
            line = first_line[centre_id]
            errors.append(TableIssue(CENTRES_FILE, line, "backup_centre_id", problem))
    return centres


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
                f"{uri!r} is not a SIP URI (it must start with 'sip:' or 'sips:'; "
                "separate several URIs with spaces)"
            )
            errors.append(TableIssue(CENTRES_FILE, line, "uris", message))
    if len(set(centre.uris)) != len(centre.uris):
        warnings.append(TableIssue(CENTRES_FILE, line, "uris", "lists the same URI twice"))


def _backup_problem(centre: Centre, centres: Mapping[str, Centre]) -> str | None:
    backup_id = centre.backup_centre_id
    if backup_id is None:
        return None
    if backup_id == centre.centre_id:
        return "a centre cannot be its own backup"
    backup = centres.get(backup_id)
    if backup is None:
        return f"unknown centre {backup_id!r} (not a centre_id in {CENTRES_FILE})"
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
        message = (
            f"{code} is not a municipality in the {label} list "
            "(old numbers are translated automatically and need no row)"
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
        centre = centres.get(centre_id)
        if centre is None:
            message = f"unknown centre {centre_id!r} (not a centre_id in {CENTRES_FILE})"
            errors.append(TableIssue(MUNICIPALITIES_FILE, line, column, message))
        elif centre.service is not service:
            message = (
                f"{centre_id!r} answers {centre.service.value}; {column} needs a centre "
                f"answering {service.value}"
            )
            errors.append(TableIssue(MUNICIPALITIES_FILE, line, column, message))


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
    for centre_id in centres:
        if centre_id not in used:
            message = f"{centre_id!r} serves no municipality and backs up no centre"
            warnings.append(TableIssue(CENTRES_FILE, None, "centre_id", message))
