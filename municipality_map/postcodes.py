"""Norwegian postcodes -> municipality (2024 numbering), from Bring's postnummerregister.

The table is bundled (``municipality_map/data/postnummer_2024.csv``, see ``NOTICE.md``) and
loaded once at start-up into an immutable index; a lookup is a dict access, so it may be used on
the call path (a postcode from a PIDF-LO civic address, RFC 5139 ``PC``).

Every postcode belongs to exactly one municipality, but not every postcode is a *place*: Bring's
category ``P`` postcodes are PO boxes at a post office and ``S`` postcodes belong to large
organisations. A civic address says where someone is, so :meth:`PostcodeIndex.municipality_for`
answers only for address postcodes (``G``, ``B``) unless asked otherwise.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from municipality_map.loader import CsvRecord, TableError, TableIssue
from municipality_map.reference import read_bundled_csv

POSTCODE_FILE = "postnummer_2024.csv"


class PostcodeCategory(enum.StrEnum):
    """Bring's ``kategori`` column."""

    STREET = "G"
    """Street and place addresses only."""
    BOTH = "B"
    """Street addresses and PO boxes."""
    PO_BOX = "P"
    """PO boxes only: where the post office is, not where anyone lives."""
    SERVICE = "S"
    """Service postcode of an organisation: not an address."""

    @property
    def is_address(self) -> bool:
        """True when the postcode is used in street/place addresses (G, B)."""
        return self in (PostcodeCategory.STREET, PostcodeCategory.BOTH)


@dataclass(frozen=True, slots=True)
class PostcodeEntry:
    """One row of the postcode register."""

    postcode: str
    """Four digits, leading zero kept (``0150``)."""
    place: str
    """Bring's ``poststed`` (post town), upper case."""
    kommunenummer: str
    """The municipality, 2024 numbering (``2100`` Svalbard, ``2211`` Jan Mayen included)."""
    category: PostcodeCategory


def normalise_postcode(text: str) -> str | None:
    """``" 0150 "`` → ``"0150"``; ``None`` unless four ASCII digits remain (spaces dropped)."""
    code = "".join(text.split())
    return code if len(code) == 4 and code.isascii() and code.isdigit() else None


class PostcodeIndex:
    """Immutable postcode → :class:`PostcodeEntry` index."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[PostcodeEntry]) -> None:
        table: dict[str, PostcodeEntry] = {}
        for entry in entries:
            if entry.postcode in table:
                raise ValueError(f"postcode {entry.postcode} appears twice")
            table[entry.postcode] = entry
        self._entries: Mapping[str, PostcodeEntry] = MappingProxyType(table)

    @classmethod
    def load(cls) -> PostcodeIndex:
        """The bundled 2024 register (read once per process; the index is shared).

        Raises :class:`TableError` if the bundled file is missing or damaged.
        """
        return _bundled_index()

    @classmethod
    def from_records(cls, records: Iterable[CsvRecord], file: str = POSTCODE_FILE
                     ) -> PostcodeIndex:
        """An index from parsed CSV rows; every bad row is reported in one :class:`TableError`."""
        entries: list[PostcodeEntry] = []
        issues: list[TableIssue] = []
        seen: set[str] = set()
        for record in records:
            values = record.values
            postcode = values["postnummer"]
            kommune = values["kommunenummer"]
            category = values["kategori"]
            if normalise_postcode(postcode) != postcode:
                issues.append(TableIssue(file, record.line, "postnummer",
                                         f"{postcode!r} is not four digits"))
            elif postcode in seen:
                issues.append(TableIssue(file, record.line, "postnummer",
                                         f"{postcode} appears twice"))
            elif not (len(kommune) == 4 and kommune.isascii() and kommune.isdigit()):
                issues.append(TableIssue(file, record.line, "kommunenummer",
                                         f"{kommune!r} is not four digits"))
            elif category not in _CATEGORIES:
                issues.append(TableIssue(file, record.line, "kategori",
                                         f"unknown category {category!r} (G, B, P or S)"))
            else:
                seen.add(postcode)
                entries.append(PostcodeEntry(postcode, values["poststed"], kommune,
                                             PostcodeCategory(category)))
        if issues:
            raise TableError(issues, "postcode register")
        return cls(entries)

    def entry(self, postcode: str) -> PostcodeEntry | None:
        """The register's row for ``postcode`` (spaces tolerated), or ``None``."""
        code = normalise_postcode(postcode)
        return self._entries.get(code) if code else None

    def municipality_for(self, postcode: str, *, addresses_only: bool = True) -> str | None:
        """The kommunenummer (2024 numbering) of ``postcode``, or ``None`` if unknown.

        With ``addresses_only`` (the default), PO box and service postcodes answer ``None``:
        they name a post office or an organisation, not where a caller is.
        """
        found = self.entry(postcode)
        if found is None or (addresses_only and not found.category.is_address):
            return None
        return found.kommunenummer

    def municipalities(self) -> frozenset[str]:
        """Every kommunenummer that has at least one postcode."""
        return frozenset(entry.kommunenummer for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


_CATEGORIES = frozenset(category.value for category in PostcodeCategory)
_COLUMNS = ("postnummer", "poststed", "kommunenummer", "kategori")


@functools.cache
def _bundled_index() -> PostcodeIndex:
    return PostcodeIndex.from_records(read_bundled_csv(POSTCODE_FILE, _COLUMNS))
