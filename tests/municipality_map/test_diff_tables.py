"""diff_snapshots on real tables: the sample and the 2024-renumbering example, and edits."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from municipality_map import RoutingSnapshot, Service, load_snapshot
from municipality_map.diff import diff_snapshots

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "tables" / "examples" / "2024-renumbering"
COLUMN = {Service.AMK: "amk_id", Service.LEGEVAKT: "lvs_id"}
Editor = Callable[[str], Any]


def rows(path: Path, key: str) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return {r[key]: r for r in csv.DictReader(fh)}


def test_sample_to_example_lists_every_change(sample_dir: Path, snapshot: RoutingSnapshot):
    diff = diff_snapshots(snapshot, load_snapshot(EXAMPLE))
    old_rows = rows(sample_dir / "municipalities.csv", "kommunenummer")
    new_rows = rows(EXAMPLE / "municipalities.csv", "kommunenummer")
    for service, column in COLUMN.items():
        expected = sorted(
            (code, old_rows[code][column], new_rows[code][column])
            for code in new_rows
            if old_rows[code][column] != new_rows[code][column]
        )
        part = diff.service(service)
        assert [(c.kommunenummer, c.old, c.new) for c in part.municipalities] == expected
    assert [c.kommunenummer for c in diff.service(Service.AMK).municipalities] == ["3234", "3236"]
    assert diff.service(Service.LEGEVAKT).municipalities == ()
    old_centres = rows(sample_dir / "centres.csv", "centre_id")
    new_centres = rows(EXAMPLE / "centres.csv", "centre_id")
    changed_uris = [i for i in new_centres if new_centres[i]["uris"] != old_centres[i]["uris"]]
    assert [e.centre_id for e in diff.service(Service.AMK).changed if e.uris_changed] == (
        changed_uris
    )
    overrides = rows(EXAMPLE / "old_codes.csv", "old_kommunenummer")
    assert [c.kommunenummer for c in diff.service(Service.AMK).old_codes] == [
        code for code, r in overrides.items() if r["amk_id"]
    ]
    text = diff.to_text()
    assert "3234 Lunner: AMK-INNLANDET \u2192 AMK-OSLO" in text
    assert "~ centre AMK-OSLO URIs: sip:amk-oslo@127.0.0.1:5110 \u2192 " in text
    assert "1850: (none) \u2192 AMK-NORDLAND" in text


def test_same_table_has_no_changes(snapshot: RoutingSnapshot, sample_dir: Path):
    diff = diff_snapshots(snapshot, load_snapshot(sample_dir))
    assert diff.empty
    assert "no routing changes" in diff.to_text()


def test_centres_added_removed_and_backup_changed(
    table_copy: Path, edit: Editor, snapshot: RoutingSnapshot
):
    centres = edit("centres.csv")
    centres.lines.append("AMK-NEW,AMK Ny,113,sip:amk-new@127.0.0.1:5199,")
    spare = centres.line_of("LVS-2100")
    removed_line = centres.lines[spare - 1]
    centres.set_field("AMK-OSLO", "backup_centre_id", "AMK-VESTREVIKEN")
    del centres.lines[spare - 1]
    centres.save()
    table = edit("municipalities.csv")
    table.set_field("2100", "lvs_id", "LVS-5536")
    table.save()
    diff = diff_snapshots(snapshot, load_snapshot(table_copy))
    amk, lvs = diff.service(Service.AMK), diff.service(Service.LEGEVAKT)
    assert [c.centre_id for c in amk.added] == ["AMK-NEW"]
    assert [c.centre_id for c in lvs.removed] == [removed_line.split(",")[0]]
    assert [(e.centre_id, e.backup_changed, e.uris_changed) for e in amk.changed] == [
        ("AMK-OSLO", True, False)
    ]
    assert [(c.kommunenummer, c.old, c.new) for c in lvs.municipalities] == [
        ("2100", "LVS-2100", "LVS-5536")
    ]
    text = diff.to_text()
    assert "+ centre AMK-NEW (AMK Ny): sip:amk-new@127.0.0.1:5199" in text
    assert "- centre LVS-2100" in text
    assert "~ centre AMK-OSLO backup: AMK-INNLANDET \u2192 AMK-VESTREVIKEN" in text
