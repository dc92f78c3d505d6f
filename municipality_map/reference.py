"""The bundled reference data: official municipality lists and special codes.

The files live in ``municipality_map/data/`` (see ``NOTICE.md`` there for origin and licence)
and are read through :mod:`importlib.resources`, so they are found in a wheel as well as in a
source checkout. Each is read once and cached; the returned mappings are read-only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from municipality_map.loader import CsvRecord, TableError, TableIssue, parse_csv

UNKNOWN_KOMMUNENUMMER = "9999"
"""SSB's code for "municipality not stated". Not a place, so never routable."""

# Municipality list label (``municipality_list`` in version.toml) -> file and name column.
_LISTS: Mapping[str, tuple[str, str]] = {
    "2024": ("kommuner_2024.csv", "kommunenavn"),
    "2020": ("kommuner_2020.csv", "kommunenavn_2023"),
}
KNOWN_LISTS: tuple[str, ...] = tuple(_LISTS)
"""Labels of the bundled municipality lists."""


def read_bundled_csv(name: str, required: tuple[str, ...]) -> list[CsvRecord]:
    """Records of a bundled data file; a damaged file raises :class:`TableError`."""
    issues: list[TableIssue] = []
    try:
        data = resources.files(__package__).joinpath("data", name).read_bytes()
    except OSError as exc:
        raise TableError([TableIssue(name, None, None, f"bundled file missing: {exc}")]) from exc
    records = parse_csv(data, name, required, (), issues)
    if issues:
        raise TableError(issues, "bundled reference data")
    return records


@functools.cache
def municipality_list(label: str) -> Mapping[str, str]:
    """Municipality number -> name for the official list ``label`` (``"2024"``, ``"2020"``).

    Raises KeyError for an unknown label (see :data:`KNOWN_LISTS`).
    """
    file, name_column = _LISTS[label]
    records = read_bundled_csv(file, ("kommunenummer", name_column))
    return MappingProxyType({r.values["kommunenummer"]: r.values[name_column] for r in records})


@functools.cache
def special_codes() -> Mapping[str, str]:
    """Codes used for places outside SSB's list, and 9999: code -> name."""
    records = read_bundled_csv("kommune_special_codes.csv", ("code", "name"))
    return MappingProxyType({r.values["code"]: r.values["name"] for r in records})


def routable_special_codes() -> Mapping[str, str]:
    """Special codes that name a place and may have rows in a table (2100, 2211)."""
    return MappingProxyType(
        {code: name for code, name in special_codes().items() if code != UNKNOWN_KOMMUNENUMMER}
    )
