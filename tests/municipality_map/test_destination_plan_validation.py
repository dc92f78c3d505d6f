"""[overflow] in version.toml and destination-plan checks: errors, warnings, where they point."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from municipality_map import Service, TableError, load_snapshot
from municipality_map.loader import TableIssue, read_table
from municipality_map.plan import MAX_BACKUP_HOPS
from municipality_map.validate import ValidationReport, validate_table

Editor = Callable[[str], Any]
Rows = Callable[[Path], list[dict[str, str]]]


def set_overflow(table_dir: Path, body: str | None) -> int:
    """Replace the [overflow] table of ``table_dir``'s version.toml by ``body`` (None: drop it);
    return the line of the first line of ``body``."""
    path = table_dir / "version.toml"
    text = path.read_text(encoding="utf-8")
    head = text[: text.index("[overflow]")]
    path.write_text(head if body is None else head + body, encoding="utf-8")
    return head.count("\n") + 1


def issues_at(issues: tuple[TableIssue, ...], file: str, line: int | None, column: str) -> str:
    found = [i.message for i in issues if (i.file, i.line, i.column) == (file, line, column)]
    assert found, f"nothing at {file}:{line} {column}:\n" + "\n".join(map(str, issues))
    return found[0]


def rejected(table_dir: Path) -> tuple[TableIssue, ...]:
    with pytest.raises(TableError) as caught:
        load_snapshot(table_dir)
    return caught.value.issues


def report_of(table_dir: Path) -> ValidationReport:
    table = read_table(table_dir)
    assert table.issues == ()
    return validate_table(table)


def single_destination_warning(report: ValidationReport) -> list[str]:
    """The centres the single-destination warning lists ([] if there is no such warning)."""
    found = [w for w in report.warnings if "single destination" in w.message]
    if not found:
        return []
    assert len(found) == 1  # one warning listing them all, not one per centre
    assert (found[0].file, found[0].line, found[0].column) == (
        "centres.csv", None, "backup_centre_id"
    )
    return found[0].message.rsplit(": ", 1)[1].split(", ")


def test_unknown_overflow_centre_is_an_error_at_its_line(table_copy: Path):
    first = set_overflow(table_copy, '[overflow]\n113 = "AMK-OSLOO"\n116117 = "LVS-0301"\n')
    message = issues_at(rejected(table_copy), "version.toml", first + 1, "overflow.113")
    assert "unknown centre 'AMK-OSLOO'" in message
    assert "did you mean 'AMK-OSLO'?" in message


def test_overflow_of_the_wrong_service_is_an_error(table_copy: Path):
    first = set_overflow(table_copy, '[overflow]\n113 = "AMK-OSLO"\n"116117" = "AMK-BERGEN"\n')
    issues = rejected(table_copy)
    message = issues_at(issues, "version.toml", first + 2, "overflow.116117")
    assert message == "'AMK-BERGEN' answers 113; overflow.116117 needs a centre answering 116117"
    assert [i for i in issues if i.column == "overflow.113"] == []


@pytest.mark.parametrize(
    ("body", "column", "fragment"),
    [
        ('[overflow]\n112 = "AMK-OSLO"\n', "overflow.112", "'112' is not a service"),
        ("[overflow]\n113 = 5\n", "overflow.113", "must be a centre_id"),
        ('[overflow]\n113 = "  "\n', "overflow.113", "must be a centre_id"),
    ],
)
def test_malformed_overflow_entries_are_problems_of_form(
    table_copy: Path, body: str, column: str, fragment: str
):
    first = set_overflow(table_copy, body)
    table = read_table(table_copy)
    assert table.version is None  # version.toml is unusable until it is fixed
    assert fragment in issues_at(table.issues, "version.toml", first + 1, column)


def test_overflow_must_be_a_table(table_copy: Path):
    path = table_copy / "version.toml"
    set_overflow(table_copy, None)
    path.write_text('overflow = "AMK-OSLO"\n' + path.read_text(encoding="utf-8"))
    table = read_table(table_copy)
    assert "must be a table" in issues_at(table.issues, "version.toml", None, "overflow")


def test_without_overflow_the_centres_left_alone_are_listed(table_copy: Path, read_rows: Rows):
    set_overflow(table_copy, None)
    report = report_of(table_copy)
    assert report.ok
    rows = read_rows(table_copy / "centres.csv")
    expected = sorted(
        r["centre_id"] for r in rows if not r["backup_centre_id"] and len(r["uris"].split()) == 1
    )
    assert expected  # the sample has centres at the end of a chain
    assert single_destination_warning(report) == expected


def test_sample_with_overflow_leaves_no_centre_alone(sample_dir: Path):
    assert single_destination_warning(report_of(sample_dir)) == []


def test_overflow_centre_without_backup_is_alone(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    centres.set_field("AMK-OSLO", "backup_centre_id", "")
    centres.save()
    assert single_destination_warning(report_of(table_copy)) == ["AMK-OSLO"]
    # A second URI is a second destination.
    centres.set_field("AMK-OSLO", "uris", "sip:a@127.0.0.1:5110 sip:b@127.0.0.1:5110")
    centres.save()
    assert single_destination_warning(report_of(table_copy)) == []


def test_long_backup_chain_warns_and_is_cut(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    # LVS-3412's chain ends at LVS-3452 after 7 backups; continue it into LVS-0301's chain.
    centres.set_field("LVS-3452", "backup_centre_id", "LVS-0301")
    centres.save()
    report = report_of(table_copy)
    assert report.ok
    warning = [w for w in report.warnings if f"longer than {MAX_BACKUP_HOPS}" in w.message]
    assert len(warning) == 1
    listed = warning[0].message.rsplit(": ", 1)[1].split(", ")
    assert "LVS-3412" in listed and "LVS-0301" not in listed
    plan = load_snapshot(table_copy).plan_for("LVS-3412")
    assert plan is not None
    # The 8th backup is LVS-0301 (also the overflow, so not offered twice); its own backup
    # LVS-3224 would be the 9th and is cut.
    assert len(plan.centre_ids) == 1 + MAX_BACKUP_HOPS
    assert (plan[-1].centre_id, plan[-1].role.value, plan[-1].hop) == (
        "LVS-0301", "backup", MAX_BACKUP_HOPS
    )
    assert "LVS-3224" not in plan.centre_ids


def test_backup_cycle_stays_an_error(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    centres.set_field("AMK-STAVANGER", "backup_centre_id", "AMK-FONNA")
    centres.save()
    # Reported once, at the first line of the circle (AMK-BERGEN's).
    line = centres.line_of("AMK-BERGEN")
    message = issues_at(rejected(table_copy), "centres.csv", line, "backup_centre_id")
    assert "go round in a circle" in message and "AMK-STAVANGER" in message


def test_overflow_only_centre_is_in_use(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    centres.lines.append("AMK-NATIONAL,AMK Nasjonal,113,sip:amk-national@127.0.0.1:5199,")
    centres.save()
    set_overflow(table_copy, '[overflow]\n113 = "AMK-NATIONAL"\n116117 = "LVS-0301"\n')
    report = report_of(table_copy)
    assert report.ok
    assert not [w for w in report.warnings if "'AMK-NATIONAL' serves no" in w.message]
    # It has no backup of its own, so calls for it (only as the overflow) have nowhere to go.
    assert single_destination_warning(report) == ["AMK-NATIONAL"]
    snapshot = load_snapshot(table_copy)
    assert snapshot.overflow_centre(Service.AMK) is snapshot.centre("AMK-NATIONAL")
    stavanger = snapshot.plan_for("AMK-STAVANGER")
    assert stavanger is not None and stavanger.centre_ids == ("AMK-STAVANGER", "AMK-NATIONAL")


def test_overflow_key_may_be_quoted_and_one_service_left_out(table_copy: Path):
    set_overflow(table_copy, "# only 116117\n[overflow]\n'116117' = \"LVS-0301\"\n")
    snapshot = load_snapshot(table_copy)
    assert snapshot.version.overflow == ((Service.LEGEVAKT, "LVS-0301"),)
    assert snapshot.version.overflow_centre_id(Service.AMK) is None
    listed = single_destination_warning(validate_table(read_table(table_copy)))
    assert listed and all(re.fullmatch(r"AMK-[A-Z-]+", c) for c in listed)


def test_broken_example_shows_both_overflow_errors():
    broken = Path(__file__).resolve().parents[2] / "configs" / "tables" / "examples" / "broken"
    issues = rejected(broken)
    columns = {i.column for i in issues if i.file == "version.toml" and i.line is not None}
    assert {"overflow.113", "overflow.116117"} <= columns
