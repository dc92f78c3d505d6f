"""Old municipality numbers (valid 2017-2023) -> today's (2024) numbers.

Carriers may keep sending a municipality's old number for a while after a reform, so the
router accepts every number valid since 2017. Most old numbers map to exactly one of today's
municipalities; a few areas were divided between several ("ambiguous splits": 1507 Ålesund
became 1508 Ålesund and 1580 Haram in 2024). For those the crosswalk names a *preferred*
target: the one the data choose (``preferred_target``), or otherwise a deterministic guess
(see :meth:`Crosswalk.preferred`). Exact resolution of a split needs the caller's address or
coordinates, which this module does not know.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from municipality_map.loader import CsvRecord, TableError, TableIssue, parse_csv
from municipality_map.reference import read_bundled_csv

CROSSWALK_FILE = "kommune_crosswalk_2017_2023_to_2024.csv"
_COLUMNS = (
    "source_kommunenummer",
    "source_kommunenavn",
    "kommunenummer_2024",
    "kommunenavn_2024",
    "ambiguous_split",
    "preferred_target",
)


@dataclass(frozen=True, slots=True)
class CrosswalkEntry:
    """Where one old municipality number went."""

    old_code: str
    """The number as valid some time in 2017-2023."""
    old_name: str
    """Its name then."""
    targets: tuple[str, ...]
    """Today's number(s) covering the old area, in file order."""
    ambiguous_split: bool
    """True if the old area is divided between several of today's municipalities."""
    preferred: str
    """The target to use when only one can be: the only one, or the preferred part."""
    preferred_from_data: bool
    """False if ``preferred`` is our deterministic guess for a split the data leave open."""


class Crosswalk:
    """Lookup of old municipality numbers; immutable once built."""

    __slots__ = ("_current", "_entries")

    def __init__(self, entries: Iterable[CrosswalkEntry]) -> None:
        by_code = {entry.old_code: entry for entry in entries}
        self._entries: Mapping[str, CrosswalkEntry] = MappingProxyType(by_code)
        self._current: frozenset[str] = frozenset(
            target for entry in by_code.values() for target in entry.targets
        )

    @staticmethod
    def bundled() -> Crosswalk:
        """The crosswalk shipped in ``municipality_map/data`` (read once, then shared)."""
        return _bundled()

    @classmethod
    def from_csv(cls, path: Path) -> Crosswalk:
        """Read a crosswalk file in the bundled file's format."""
        issues: list[TableIssue] = []
        records = parse_csv(path.read_bytes(), path.name, _COLUMNS, (), issues)
        if issues:
            raise TableError(issues, str(path))
        return cls(_entries_from_records(records, path.name))

    def __contains__(self, code: object) -> bool:
        return code in self._entries or code in self._current

    def __iter__(self) -> Iterator[CrosswalkEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def current(self) -> frozenset[str]:
        """Every number valid today that the crosswalk leads to."""
        return self._current

    def entry(self, old_code: str) -> CrosswalkEntry | None:
        """The row for ``old_code``, or None if it is not a 2017-2023 number."""
        return self._entries.get(old_code)

    def current_codes(self, old_code: str) -> tuple[str, ...]:
        """Today's number(s) for ``old_code``; ``()`` if the number was never valid.

        A number valid today maps to itself, whether or not it existed before 2024.
        """
        entry = self._entries.get(old_code)
        if entry is not None:
            return entry.targets
        return (old_code,) if old_code in self._current else ()

    def is_ambiguous_split(self, old_code: str) -> bool:
        """True if ``old_code``'s area is now divided between several municipalities."""
        entry = self._entries.get(old_code)
        return entry is not None and entry.ambiguous_split

    def preferred(self, old_code: str) -> str | None:
        """The one number to use for ``old_code``; None if it was never valid.

        For a split, the data's ``preferred_target`` where given (the pre-2020 parts of
        Ålesund). For a genuine split the data leave open (1507, 1613, 1850, 5012) we take the
        part that kept the old name, else the lowest number: a guess, but a stable one, and in
        these cases the part with the old administrative centre.
        """
        entry = self._entries.get(old_code)
        if entry is not None:
            return entry.preferred
        return old_code if old_code in self._current else None


@functools.cache
def _bundled() -> Crosswalk:
    records = read_bundled_csv(CROSSWALK_FILE, _COLUMNS)
    return Crosswalk(_entries_from_records(records, CROSSWALK_FILE))


def _flag(record: CsvRecord, column: str, file: str, issues: list[TableIssue]) -> bool | None:
    value = record.values[column].lower()
    if value in ("true", "false"):
        return value == "true"
    if value:
        issues.append(TableIssue(file, record.line, column, f"{value!r} is not true/false"))
    return None


def _entries_from_records(records: Iterable[CsvRecord], file: str) -> list[CrosswalkEntry]:
    """Group the file's rows (one per old -> new pair) into one entry per old number."""
    issues: list[TableIssue] = []
    grouped: dict[str, list[CsvRecord]] = {}
    for record in records:
        grouped.setdefault(record.values["source_kommunenummer"], []).append(record)

    entries: list[CrosswalkEntry] = []
    for old_code, rows in grouped.items():
        first = rows[0]
        targets = tuple(r.values["kommunenummer_2024"] for r in rows)
        ambiguous = any(_flag(r, "ambiguous_split", file, issues) for r in rows)
        chosen = [
            t
            for r, t in zip(rows, targets, strict=True)
            if _flag(r, "preferred_target", file, issues)
        ]
        if len(targets) > 1 and not ambiguous:
            message = f"{old_code} has several targets but is not marked as a split"
            issues.append(TableIssue(file, first.line, "ambiguous_split", message))
        if len(chosen) > 1 and len(targets) > 1:
            message = f"{old_code} has {len(chosen)} preferred targets"
            issues.append(TableIssue(file, first.line, "preferred_target", message))
        if len(targets) == 1:
            preferred, from_data = targets[0], True
        elif len(chosen) == 1:
            preferred, from_data = chosen[0], True
        else:
            preferred, from_data = _guess_preferred(first, rows), False
        entries.append(
            CrosswalkEntry(
                old_code=old_code,
                old_name=first.values["source_kommunenavn"],
                targets=targets,
                ambiguous_split=ambiguous,
                preferred=preferred,
                preferred_from_data=from_data,
            )
        )
    if issues:
        raise TableError(issues, file)
    return entries


def _guess_preferred(first: CsvRecord, rows: list[CsvRecord]) -> str:
    # Same name first (1507 Ålesund -> 1508 Ålesund), else the lowest number. Both rules are
    # stable across reloads, which matters more here than being clever.
    old_name = first.values["source_kommunenavn"]
    same_name = [
        r.values["kommunenummer_2024"] for r in rows if r.values["kommunenavn_2024"] == old_name
    ]
    return min(same_name) if same_name else min(r.values["kommunenummer_2024"] for r in rows)
