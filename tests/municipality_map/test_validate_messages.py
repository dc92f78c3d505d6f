"""Validation messages a person can act on: file, line, column, what is wrong, what is right."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from municipality_map import TableError, load_snapshot
from municipality_map.loader import TableIssue, read_table
from municipality_map.snapshot import RoutingSnapshot
from municipality_map.validate import ValidationReport, validate_table

Editor = Callable[[str], Any]
REPO = Path(__file__).resolve().parents[2]
BROKEN = REPO / "configs" / "tables" / "examples" / "broken"


def rejected(table_dir: Path) -> tuple[TableIssue, ...]:
    with pytest.raises(TableError) as caught:
        load_snapshot(table_dir)
    return caught.value.issues


def report_of(table_dir: Path, previous: RoutingSnapshot | None = None) -> ValidationReport:
    table = read_table(table_dir)
    assert table.issues == ()
    return validate_table(table, previous)


def at(issues: tuple[TableIssue, ...], file: str, line: int | None, column: str) -> str:
    found = [i.message for i in issues if (i.file, i.line, i.column) == (file, line, column)]
    assert found, f"nothing at {file}:{line} {column}:\n" + "\n".join(map(str, issues))
    return found[0]


def line_starting(path: Path, prefix: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, start=1) if text.startswith(prefix))


# --- municipality numbers -------------------------------------------------------------------


def test_lost_leading_zero_suggests_the_number_and_its_name(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    line = rows.set_field("0301", "kommunenummer", "301")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", line, "kommunenummer")
    assert "did you mean '0301' (Oslo)?" in message


def test_old_number_names_its_years_and_todays_number(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    rows.lines.append("0104,Moss,AMK-OSLO,LVS-3112,")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", len(rows.lines), "kommunenummer")
    assert message.startswith("0104 is a 2017\u20132019 number; today's is 3103 Moss")


def test_old_number_of_a_split_names_every_part(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    rows.lines.append("1507,Ålesund,AMK-MORE-ROMSDAL,LVS-1506,")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", len(rows.lines), "kommunenummer")
    assert "1507 is a 2020\u20132023 number, now split between 1508 Ålesund and 1580 Haram" in (
        message
    )


def test_number_never_used_says_so(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    rows.lines.append("0999,Nowhere,AMK-OSLO,LVS-0301,")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", len(rows.lines), "kommunenummer")
    assert "not a municipality in the 2024 list nor a number used since 2017" in message


def test_missing_municipalities_are_listed_by_number_and_name(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    for code in ("1101", "3201"):
        del rows.lines[rows.line_of(code) - 1]
    rows.save()
    issues = rejected(table_copy)
    message = at(issues, "municipalities.csv", None, "kommunenummer")
    assert "no row for 2 municipalities of the 2024 list" in message
    assert message.endswith("1101 Eigersund, 3201 Bærum")
    assert len([i for i in issues if "no row for" in i.message]) == 1


def test_municipality_without_one_service_is_named(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    line = rows.set_field("0301", "lvs_id", "")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", line, "lvs_id")
    assert "0301 Oslo needs a 116117 centre" in message


def test_duplicate_row_gives_both_lines(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    first = rows.line_of("1106")
    rows.lines.append(rows.lines[first - 1])
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", len(rows.lines), "kommunenummer")
    assert message == f"1106 has a row already, on line {first}; keep one"


# --- centres --------------------------------------------------------------------------------


def test_unknown_centre_id_suggests_close_ids_of_the_service(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    line = rows.set_field("1101", "amk_id", "AMK-STAVANGR")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", line, "amk_id")
    assert message.startswith("unknown centre 'AMK-STAVANGR'")
    assert message.endswith("did you mean 'AMK-STAVANGER'?")


def test_unknown_centre_without_anything_close(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    line = rows.set_field("1101", "amk_id", "XYZZY")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", line, "amk_id")
    assert "did you mean" not in message


def test_service_mismatch(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    line = rows.set_field("1103", "lvs_id", "AMK-STAVANGER")
    rows.save()
    message = at(rejected(table_copy), "municipalities.csv", line, "lvs_id")
    assert message == "'AMK-STAVANGER' answers 113; lvs_id needs a centre answering 116117"


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        ("", "no URI: a centre needs at least one"),
        ("amk-fonna@127.0.0.1:5103", "is not a SIP URI (it must start with 'sip:'"),
        ("sip:amk@127.0.0.1:70000", "port from 1 to 65535"),
        ("sip:amk@bad host", "is not a SIP URI"),  # space: two URIs, the second no SIP URI
        ("sip:@", "is not a usable SIP URI"),
    ],
)
def test_bad_uris(table_copy: Path, edit: Editor, uris: str, expected: str):
    centres = edit("centres.csv")
    line = centres.set_field("AMK-FONNA", "uris", uris)
    centres.save()
    assert expected in at(rejected(table_copy), "centres.csv", line, "uris")


@pytest.mark.parametrize(
    "uris", ["sip:amk@127.0.0.1", "sips:amk@amk.example.no:5061;transport=tcp", "SIP:[::1]:5060"]
)
def test_good_uris(table_copy: Path, edit: Editor, uris: str):
    centres = edit("centres.csv")
    centres.set_field("AMK-FONNA", "uris", uris)
    centres.save()
    load_snapshot(table_copy)


def _backups(edit: Editor, chain: dict[str, str]) -> dict[str, int]:
    centres = edit("centres.csv")
    lines = {cid: centres.set_field(cid, "backup_centre_id", b) for cid, b in chain.items()}
    centres.save()
    return lines


def test_backup_cycle_of_two(table_copy: Path, edit: Editor):
    lines = _backups(edit, {"AMK-OSLO": "AMK-INNLANDET", "AMK-INNLANDET": "AMK-OSLO"})
    issues = rejected(table_copy)
    cycle = [i for i in issues if "circle" in i.message]
    assert len(cycle) == 1  # one error per cycle, at its first centre in the file
    assert (cycle[0].line, cycle[0].column) == (min(lines.values()), "backup_centre_id")
    assert "AMK-INNLANDET \u2192 AMK-OSLO \u2192 AMK-INNLANDET" in cycle[0].message


def test_backup_cycle_of_three(table_copy: Path, edit: Editor):
    _backups(
        edit,
        {"AMK-STAVANGER": "AMK-FONNA", "AMK-FONNA": "AMK-BERGEN", "AMK-BERGEN": "AMK-STAVANGER"},
    )
    message = next(i.message for i in rejected(table_copy) if "circle" in i.message)
    assert "AMK-BERGEN \u2192 AMK-STAVANGER \u2192 AMK-FONNA \u2192 AMK-BERGEN" in message
    assert "leave backup_centre_id empty for one of AMK-BERGEN, AMK-FONNA, AMK-STAVANGER" in message


def test_chain_into_a_cycle_reports_only_the_cycle(table_copy: Path, edit: Editor):
    _backups(
        edit,
        {"AMK-SORLANDET": "AMK-OSLO", "AMK-OSLO": "AMK-INNLANDET", "AMK-INNLANDET": "AMK-OSLO"},
    )
    cycles = [i for i in rejected(table_copy) if "circle" in i.message]
    assert len(cycles) == 1
    assert "AMK-SORLANDET" not in cycles[0].message


def test_backup_of_the_wrong_service(table_copy: Path, edit: Editor):
    line = _backups(edit, {"LVS-0301": "AMK-OSLO"})["LVS-0301"]
    message = at(rejected(table_copy), "centres.csv", line, "backup_centre_id")
    assert "a backup must answer the same service" in message


def test_unknown_backup_suggests_close_ids(table_copy: Path, edit: Editor):
    line = _backups(edit, {"AMK-OSLO": "AMK-INLANDET"})["AMK-OSLO"]
    message = at(rejected(table_copy), "centres.csv", line, "backup_centre_id")
    assert "did you mean 'AMK-INNLANDET'" in message


# --- the broken example ---------------------------------------------------------------------


def test_broken_example_is_rejected_with_every_error_located(tmp_path: Path):
    table = tmp_path / "broken"
    shutil.copytree(BROKEN, table)
    issues = rejected(table)
    municipalities, centres = BROKEN / "municipalities.csv", BROKEN / "centres.csv"
    expected = {
        ("municipalities.csv", line_starting(municipalities, "301,"), "kommunenummer"),
        ("municipalities.csv", line_starting(municipalities, "0104,"), "kommunenummer"),
        ("municipalities.csv", line_starting(municipalities, "1101,"), "amk_id"),
        ("municipalities.csv", line_starting(municipalities, "1103,"), "lvs_id"),
        ("municipalities.csv", None, "kommunenummer"),
        ("centres.csv", line_starting(centres, "AMK-BERGEN,"), "uris"),
        ("centres.csv", line_starting(centres, "AMK-FONNA,"), "uris"),
        ("centres.csv", line_starting(centres, "AMK-FORDE,"), "uris"),
        ("centres.csv", line_starting(centres, "AMK-BERGEN,"), "backup_centre_id"),
        ("centres.csv", line_starting(centres, "LVS-0301,"), "backup_centre_id"),
    }
    found = {(i.file, i.line, i.column) for i in issues}
    assert expected <= found, "\n".join(map(str, issues))
    duplicate = [i for i in issues if "has a row already" in i.message]
    assert len(duplicate) == 1


# --- warnings do not block ------------------------------------------------------------------


def _smallest_and_largest_amk(snapshot: RoutingSnapshot) -> tuple[str, int, list[str]]:
    """The AMK covering fewest municipalities, its count, and the largest one's municipalities."""
    by_centre: dict[str, list[str]] = {}
    for code, row in snapshot.municipalities.items():
        if row.amk_id is not None:
            by_centre.setdefault(row.amk_id, []).append(code)
    ranked = sorted(by_centre, key=lambda c: len(by_centre[c]))
    return ranked[0], len(by_centre[ranked[0]]), by_centre[ranked[-1]]


def _move(edit: Editor, codes: list[str], centre_id: str) -> None:
    rows = edit("municipalities.csv")
    for code in codes:
        rows.set_field(code, "amk_id", centre_id)
    rows.save()


def test_coverage_growth_against_the_active_table_warns(
    table_copy: Path, edit: Editor, snapshot: RoutingSnapshot
):
    small, before, donor = _smallest_and_largest_amk(snapshot)
    assert len(donor) >= 2 * before
    _move(edit, donor[: 2 * before], small)  # now 3 times as many
    report = report_of(table_copy, previous=snapshot)
    assert report.ok
    growth = [w for w in report.warnings if repr(small) in w.message]
    assert len(growth) == 1
    assert f"would cover {3 * before} municipalities" in growth[0].message
    assert f"the {before} it covers in the active table" in growth[0].message
    # Without the active table to compare with there is nothing to warn about.
    assert not [w for w in report_of(table_copy).warnings if repr(small) in w.message]
    load_snapshot(table_copy)


def test_growth_below_three_times_is_quiet(
    table_copy: Path, edit: Editor, snapshot: RoutingSnapshot
):
    small, before, donor = _smallest_and_largest_amk(snapshot)
    _move(edit, donor[: 2 * before - 1], small)
    assert not [w for w in report_of(table_copy, snapshot).warnings if repr(small) in w.message]


def test_centre_serving_nothing_warns_but_loads(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    centres.lines.append("AMK-SPARE,AMK Spare,113,sip:amk-spare@127.0.0.1:5199,")
    centres.save()
    report = report_of(table_copy)
    assert report.ok
    assert any("'AMK-SPARE' serves no municipality" in w.message for w in report.warnings)
    assert load_snapshot(table_copy).centre("AMK-SPARE") is not None


def test_low_confidence_note_warns_at_its_line(table_copy: Path, edit: Editor):
    rows = edit("municipalities.csv")
    line = rows.set_field("0301", "note", "centre is an unverified assumption")
    rows.save()
    report = report_of(table_copy)
    assert report.ok
    assert any((w.line, w.column) == (line, "note") for w in report.warnings)
