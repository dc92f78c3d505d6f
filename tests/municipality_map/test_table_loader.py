"""Reading table files: form errors and validation errors, located by file, line and column."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from municipality_map import Service, TableError, load_snapshot
from municipality_map.loader import TableIssue, load_table, read_table

Editor = Callable[[str], Any]


def issues_of(table_dir: Path) -> tuple[TableIssue, ...]:
    with pytest.raises(TableError) as caught:
        load_snapshot(table_dir)
    return caught.value.issues


def find(
    issues: tuple[TableIssue, ...], file: str, line: int | None, column: str | None
) -> TableIssue:
    matching = [i for i in issues if (i.file, i.line, i.column) == (file, line, column)]
    assert matching, f"no issue at {file}:{line} column {column}; got:\n" + "\n".join(
        map(str, issues)
    )
    return matching[0]


def test_sample_table_loads(sample_dir: Path, read_rows: Callable[[Path], list[dict[str, str]]]):
    table = load_table(sample_dir)
    assert table.issues == ()
    municipality_rows = read_rows(sample_dir / "municipalities.csv")
    centre_rows = read_rows(sample_dir / "centres.csv")
    assert [m.item.kommunenummer for m in table.municipalities] == [
        r["kommunenummer"] for r in municipality_rows
    ]
    assert [c.item.centre_id for c in table.centres] == [r["centre_id"] for r in centre_rows]
    # Line numbers point at the rows in the file (header is line 1).
    assert [m.line for m in table.municipalities] == list(range(2, len(municipality_rows) + 2))
    assert table.version is not None
    assert table.version.label == sample_dir.name
    assert table.version.effective_at == datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert table.version.municipality_list == "2024"


def test_short_code_names_the_fix(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    line = municipalities.set_field("0301", "kommunenummer", "301")
    municipalities.save()
    issue = find(issues_of(table_copy), "municipalities.csv", line, "kommunenummer")
    assert "'0301'" in issue.message
    assert str(issue).startswith(f"municipalities.csv:{line}: column kommunenummer: '301' ")


@pytest.mark.parametrize("bad", ["abcd", "03011", "", "0x01"])
def test_malformed_code(table_copy: Path, edit: Editor, bad: str):
    municipalities = edit("municipalities.csv")
    line = municipalities.set_field("1101", "kommunenummer", bad)
    municipalities.save()
    find(issues_of(table_copy), "municipalities.csv", line, "kommunenummer")


def test_duplicate_municipality_row(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    first = municipalities.line_of("1101")
    municipalities.lines.append(municipalities.lines[first - 1])
    municipalities.save()
    issue = find(
        issues_of(table_copy), "municipalities.csv", len(municipalities.lines), "kommunenummer"
    )
    assert f"line {first}" in issue.message


def test_unknown_centre_id(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    line = municipalities.set_field("1101", "lvs_id", "LVS-NOWHERE")
    municipalities.save()
    issue = find(issues_of(table_copy), "municipalities.csv", line, "lvs_id")
    assert "LVS-NOWHERE" in issue.message


def test_centre_without_uri(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    line = centres.set_field("AMK-OSLO", "uris", "")
    centres.save()
    find(issues_of(table_copy), "centres.csv", line, "uris")


def test_uri_must_be_sip(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    line = centres.set_field("AMK-OSLO", "uris", "sip:amk@127.0.0.1 http://example.org")
    centres.save()
    issue = find(issues_of(table_copy), "centres.csv", line, "uris")
    assert "http://example.org" in issue.message


def test_amk_column_pointing_at_legevaktsentral(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    lvs_id = municipalities.field("0301", "lvs_id")
    line = municipalities.set_field("0301", "amk_id", lvs_id)
    municipalities.save()
    issue = find(issues_of(table_copy), "municipalities.csv", line, "amk_id")
    assert Service.LEGEVAKT.value in issue.message


def test_self_backup(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    line = centres.set_field("AMK-OSLO", "backup_centre_id", "AMK-OSLO")
    centres.save()
    find(issues_of(table_copy), "centres.csv", line, "backup_centre_id")


def test_amk_cannot_back_up_legevaktsentral(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    line = centres.set_field("LVS-0301", "backup_centre_id", "AMK-OSLO")
    centres.save()
    find(issues_of(table_copy), "centres.csv", line, "backup_centre_id")


def test_unknown_service(table_copy: Path, edit: Editor):
    centres = edit("centres.csv")
    line = centres.set_field("AMK-OSLO", "service", "112")
    centres.save()
    find(issues_of(table_copy), "centres.csv", line, "service")


def test_missing_municipality_is_reported(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    del municipalities.lines[municipalities.line_of("1101") - 1]
    municipalities.save()
    issue = find(issues_of(table_copy), "municipalities.csv", None, "kommunenummer")
    assert "1101" in issue.message


@pytest.mark.parametrize("code", ["1507", "9999"])
def test_row_for_a_number_that_is_not_routable(table_copy: Path, edit: Editor, code: str):
    municipalities = edit("municipalities.csv")
    municipalities.lines.append(f"{code},Somewhere,AMK-OSLO,LVS-0301,")
    municipalities.save()
    find(issues_of(table_copy), "municipalities.csv", len(municipalities.lines), "kommunenummer")


def test_all_problems_are_reported_at_once(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    code_line = municipalities.set_field("0301", "kommunenummer", "301")
    centre_line = municipalities.set_field("1101", "amk_id", "AMK-NOWHERE")
    municipalities.save()
    centres = edit("centres.csv")
    uri_line = centres.set_field("AMK-BERGEN", "uris", "")
    backup_line = centres.set_field("AMK-FINNMARK", "backup_centre_id", "AMK-FINNMARK")
    centres.save()
    (table_copy / "version.toml").write_text('label = "x"\n', encoding="utf-8")
    issues = issues_of(table_copy)
    find(issues, "municipalities.csv", code_line, "kommunenummer")
    find(issues, "municipalities.csv", centre_line, "amk_id")
    find(issues, "centres.csv", uri_line, "uris")
    find(issues, "centres.csv", backup_line, "backup_centre_id")
    find(issues, "version.toml", None, "effective_at")
    find(issues, "version.toml", None, "municipality_list")


def rewrite(path: Path, *, delimiter: str = ",", bom: bool = False, newline: str = "\n") -> None:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator=newline).writerows(rows)


@pytest.mark.parametrize(
    "form",
    [
        {"delimiter": ";"},
        {"bom": True},
        {"bom": True, "delimiter": ";", "newline": "\r\n"},
    ],
    ids=["semicolon", "bom", "excel-style"],
)
def test_spreadsheet_exports_load_the_same(
    table_copy: Path, sample_dir: Path, form: dict[str, Any]
):
    for name in ("municipalities.csv", "centres.csv"):
        rewrite(table_copy / name, **form)
    assert (table_copy / "centres.csv").read_bytes() != (sample_dir / "centres.csv").read_bytes()
    original = load_table(sample_dir)
    rewritten = load_table(table_copy)
    assert rewritten.municipalities == original.municipalities
    assert rewritten.centres == original.centres


def test_not_utf8(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    line = municipalities.line_of("1101")
    data = (table_copy / "municipalities.csv").read_bytes().split(b"\n")
    data[line - 1] = data[line - 1].replace(b"Eigersund", "Eigersünd".encode("cp1252"))
    (table_copy / "municipalities.csv").write_bytes(b"\n".join(data))
    issue = find(read_table(table_copy).issues, "municipalities.csv", line, None)
    assert "UTF-8" in issue.message


def test_wrong_number_of_values(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    line = municipalities.line_of("1101")
    municipalities.lines[line - 1] += ",extra"
    municipalities.save()
    find(issues_of(table_copy), "municipalities.csv", line, None)


def test_missing_column(table_copy: Path, edit: Editor):
    municipalities = edit("municipalities.csv")
    municipalities.lines[0] = municipalities.lines[0].replace("lvs_id", "lvs")
    municipalities.save()
    find(issues_of(table_copy), "municipalities.csv", 1, "lvs_id")


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ('"2024-01-01T00:00:00+01:00"', True),
        ("2024-01-01T00:00:00+01:00", True),
        ("2024-01-01T00:00:00Z", True),
        ('"2024-01-01T00:00:00"', False),
        ("2024-01-01T00:00:00", False),
        ("2024-01-01", False),
        ('"1 January 2024"', False),
    ],
)
def test_effective_at_needs_an_offset(table_copy: Path, value: str, accepted: bool):
    path = table_copy / "version.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("effective_at"))
    lines[line - 1] = f"effective_at = {value}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = read_table(table_copy)
    if accepted:
        assert table.issues == ()
        assert table.version is not None
        assert table.version.effective_at.utcoffset() is not None
    else:
        find(table.issues, "version.toml", line, "effective_at")


def test_unknown_municipality_list(table_copy: Path):
    path = table_copy / "version.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            'municipality_list = "2024"', 'municipality_list = "2031"'
        ),
        encoding="utf-8",
    )
    find(issues_of(table_copy), "version.toml", None, "municipality_list")


def test_missing_file(table_copy: Path):
    (table_copy / "centres.csv").unlink()
    find(issues_of(table_copy), "centres.csv", None, None)
