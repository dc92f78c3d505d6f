"""Replaying the 2024 renumbering: a table in 2024 numbers, calls carrying older numbers.

The example table ``configs/tables/examples/2024-renumbering`` is in 2024 numbers and settles
two split numbers in ``old_codes.csv``. Expectations are computed from the crosswalk and the
table files with the csv module, independently of the loader and the snapshot.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from municipality_map import Service, TableError, load_snapshot
from municipality_map.loader import TableIssue

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "tables" / "examples" / "2024-renumbering"
CROSSWALK = REPO / "municipality_map" / "data" / "kommune_crosswalk_2017_2023_to_2024.csv"
COLUMN = {Service.AMK: "amk_id", Service.LEGEVAKT: "lvs_id"}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def old_numbers() -> dict[str, list[dict[str, str]]]:
    """Numbers used 2017-2023 that are not 2024 numbers -> their crosswalk rows."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows(CROSSWALK):
        if row["code_unchanged"] != "true":
            grouped.setdefault(row["source_kommunenummer"], []).append(row)
    return grouped


@pytest.mark.parametrize("service", list(Service))
def test_every_old_number_routes_to_its_successors_centre(service: Service):
    snapshot = load_snapshot(EXAMPLE)
    column = COLUMN[service]
    table = {r["kommunenummer"]: r[column] for r in rows(EXAMPLE / "municipalities.csv")}
    overrides = {r["old_kommunenummer"]: r[column] for r in rows(EXAMPLE / "old_codes.csv")}
    checked = {"single": 0, "split-same": 0, "split-default": 0, "override": 0, "preferred": 0}
    for old, targets in old_numbers().items():
        found = snapshot.lookup(old, service)
        centres = {table[t["kommunenummer_2024"]] for t in targets}
        preferred = [t["kommunenummer_2024"] for t in targets if t["preferred_target"] == "true"]
        if overrides.get(old):
            assert found is not None and found.centre.centre_id == overrides[old], old
            checked["override"] += 1
        elif len(targets) == 1 or len(centres) == 1:
            assert found is not None, old
            assert found.centre.centre_id == centres.pop(), old
            assert not found.ambiguous
            checked["single" if len(targets) == 1 else "split-same"] += 1
        elif preferred:
            # The data resolved this old area (pre-2020 Ålesund numbers): their part's centre.
            assert found is not None and found.kommunenummer == preferred[0], old
            assert found.centre.centre_id == table[preferred[0]] and found.ambiguous
            checked["preferred"] += 1
        else:
            # A genuine split between centres: no answer, so the router's default centre.
            assert found is None, old
            checked["split-default"] += 1
        if found is not None:
            assert found.via_crosswalk and found.requested == old
    assert checked["single"] > 200
    assert checked["override"] >= 1
    # The sample's legevakt groupings give both kinds of split for 116117.
    if service is Service.LEGEVAKT:
        assert checked["split-default"] >= 1


def test_2023_numbers_specifically(tmp_path: Path):
    snapshot = load_snapshot(EXAMPLE)
    table = {r["kommunenummer"]: r for r in rows(EXAMPLE / "municipalities.csv")}
    numbers_2023 = [
        (old, t[0]["kommunenummer_2024"])
        for old, t in old_numbers().items()
        if t[0]["source_last_year_valid"] == "2023" and len(t) == 1
    ]
    assert len(numbers_2023) > 50
    for old, new in numbers_2023:
        for service, column in COLUMN.items():
            found = snapshot.lookup(old, service)
            assert found is not None and found.kommunenummer == new
            assert found.centre.centre_id == table[new][column]


def test_split_without_override_goes_to_default_and_override_fixes_it(tmp_path: Path):
    table = tmp_path / "t"
    shutil.copytree(EXAMPLE, table)
    (table / "old_codes.csv").unlink()
    plain = load_snapshot(table)
    assert plain.lookup("1850", Service.AMK) is None  # Narvik's and Hamarøy's AMKs differ
    with_override = load_snapshot(EXAMPLE)
    found = with_override.lookup("1850", Service.AMK)
    assert found is not None
    assert (found.centre.centre_id, found.kommunenummer) == ("AMK-NORDLAND", "1875")
    assert found.ambiguous and found.via_crosswalk
    # An override for one service leaves the other to the rule.
    assert with_override.lookup("5012", Service.AMK) == plain.lookup("5012", Service.AMK)


# --- old_codes.csv validation -----------------------------------------------------------------


def rejected_with(tmp_path: Path, old_codes: str) -> tuple[TableIssue, ...]:
    table = tmp_path / "t"
    shutil.copytree(EXAMPLE, table)
    (table / "old_codes.csv").write_text(old_codes, encoding="utf-8")
    with pytest.raises(TableError) as caught:
        load_snapshot(table)
    return caught.value.issues


HEADER = "old_kommunenummer,amk_id,lvs_id,note\n"


@pytest.mark.parametrize(
    ("row", "column", "expected"),
    [
        ("0301,AMK-OSLO,,", "old_kommunenummer", "0301 Oslo is a number valid today"),
        ("0999,AMK-OSLO,,", "old_kommunenummer", "not a municipality number used 2017"),
        ("185,AMK-OSLO,,", "old_kommunenummer", "not a 4-digit municipality number"),
        ("1850,AMK-NORDLANDD,,", "amk_id", "did you mean 'AMK-NORDLAND'"),
        ("1850,LVS-1875,,", "amk_id", "'LVS-1875' answers 116117"),
        ("1850,,,", "amk_id", "names no centre"),
    ],
)
def test_old_codes_errors(tmp_path: Path, row: str, column: str, expected: str):
    issues = rejected_with(tmp_path, HEADER + row + "\n")
    found = [i for i in issues if (i.file, i.line, i.column) == ("old_codes.csv", 2, column)]
    assert found and expected in found[0].message, issues


def test_old_codes_duplicate(tmp_path: Path):
    issues = rejected_with(tmp_path, HEADER + "1850,AMK-NORDLAND,,\n1850,AMK-UNN,,\n")
    assert [(i.line, i.message) for i in issues] == [
        (3, "1850 has a row already, on line 2; keep one")
    ]


def test_override_of_a_plain_renumbering_only_warns(tmp_path: Path):
    table = tmp_path / "t"
    shutil.copytree(EXAMPLE, table)
    (table / "old_codes.csv").write_text(HEADER + "0104,AMK-VESTREVIKEN,,\n", encoding="utf-8")
    snapshot = load_snapshot(table)
    warning = [w for w in snapshot.warnings if w.file == "old_codes.csv"]
    assert warning and "0104 is a 2017\u20132019 number; today's is 3103 Moss" in warning[0].message
    found = snapshot.lookup("0104", Service.AMK)
    assert found is not None and found.centre.centre_id == "AMK-VESTREVIKEN"
