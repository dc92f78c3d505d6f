"""Destination plans across versions: what `table diff` says, and what the store keeps."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from municipality_map import RoutingSnapshot, Service, TableError, load_snapshot
from municipality_map.diff import diff_snapshots
from municipality_map.store import TableStore, snapshot_from_stored

Editor = Callable[[str], Any]
Rows = Callable[[Path], list[dict[str, str]]]


def replace_in_version(table_dir: Path, old: str, new: str) -> None:
    path = table_dir / "version.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path.write_text(text.replace(old, new), encoding="utf-8")


def section(text: str, service: Service) -> list[str]:
    """The lines of ``text`` under the heading of ``service``."""
    lines = text.splitlines()
    start = lines.index(f"{service.value} ({service.name}):")
    rest = lines[start + 1 :]
    end = next((i for i, line in enumerate(rest) if not line.startswith(" ")), len(rest))
    return rest[:end]


def test_overflow_change_is_listed_for_its_service_only(
    table_copy: Path, snapshot: RoutingSnapshot
):
    replace_in_version(table_copy, '113 = "AMK-OSLO"', '113 = "AMK-BERGEN"')
    diff = diff_snapshots(snapshot, load_snapshot(table_copy))
    amk, lvs = diff.service(Service.AMK), diff.service(Service.LEGEVAKT)
    assert (amk.overflow_before, amk.overflow_after, amk.overflow_changed) == (
        "AMK-OSLO", "AMK-BERGEN", True
    )
    assert not lvs.overflow_changed and lvs.empty
    assert not diff.empty
    # Backup chains do not include the overflow: a new overflow is one line, not 16.
    assert amk.chains == ()
    assert section(diff.to_text(), Service.AMK) == [
        "  ~ overflow centre: AMK-OSLO \u2192 AMK-BERGEN"
    ]
    assert section(diff.to_text(), Service.LEGEVAKT) == ["  no changes"]


def test_overflow_removed(table_copy: Path, snapshot: RoutingSnapshot):
    replace_in_version(table_copy, '116117 = "LVS-0301"\n', "")
    diff = diff_snapshots(snapshot, load_snapshot(table_copy))
    lines = section(diff.to_text(), Service.LEGEVAKT)
    assert "  ~ overflow centre: LVS-0301 \u2192 (none)" in lines
    assert diff.service(Service.AMK).empty


def _chain(rows: dict[str, dict[str, str]], centre_id: str) -> tuple[str, ...]:
    chain: list[str] = []
    backup = rows[centre_id]["backup_centre_id"]
    while backup:
        chain.append(backup)
        backup = rows[backup]["backup_centre_id"]
    return tuple(chain)


def test_backup_change_lists_every_chain_it_changes(
    table_copy: Path, edit: Editor, snapshot: RoutingSnapshot, sample_dir: Path, read_rows: Rows
):
    centres = edit("centres.csv")
    centres.set_field("AMK-FORDE", "backup_centre_id", "")
    centres.save()
    diff = diff_snapshots(snapshot, load_snapshot(table_copy))
    amk = diff.service(Service.AMK)
    assert [(e.centre_id, e.backup_changed) for e in amk.changed] == [("AMK-FORDE", True)]
    before = {r["centre_id"]: r for r in read_rows(sample_dir / "centres.csv")}
    after = {r["centre_id"]: r for r in read_rows(table_copy / "centres.csv")}
    expected = [
        (cid, _chain(before, cid), _chain(after, cid))
        for cid in sorted(before)
        if _chain(before, cid) != _chain(after, cid)
    ]
    # AMK-FORDE itself and every centre whose chain passed through it.
    assert {cid for cid, _, _ in expected} == {"AMK-FORDE", "AMK-BERGEN", "AMK-FONNA"}
    assert [(c.centre_id, c.old, c.new) for c in amk.chains] == expected
    lines = section(diff.to_text(), Service.AMK)
    assert "  ~ centre AMK-FORDE backup: AMK-STAVANGER \u2192 (none)" in lines
    assert "  3 backup chains change:" in lines
    assert "    AMK-FORDE: AMK-STAVANGER \u2192 (none)" in lines
    fonna = "    AMK-FONNA: AMK-BERGEN, AMK-FORDE, AMK-STAVANGER \u2192 AMK-BERGEN, AMK-FORDE"
    assert fonna in lines
    assert diff.service(Service.LEGEVAKT).chains == ()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[TableStore]:
    opened = await TableStore.open(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'n.db'}")
    yield opened
    await opened.close()


async def test_overflow_survives_the_store_and_is_part_of_the_sha256(
    sqlite_store: TableStore, sample_dir: Path, tmp_path: Path
):
    stored, report = await sqlite_store.import_version(sample_dir, actor="a")
    assert report.ok
    from_disk = load_snapshot(sample_dir)
    from_db = snapshot_from_stored(await sqlite_store.get_version(stored.version_id))
    assert from_db.version.overflow == from_disk.version.overflow != ()
    assert dict(from_db.plans) == dict(from_disk.plans)
    lookup = from_db.lookup("3002", Service.AMK)
    assert lookup is not None and lookup.plan == from_disk.plan_for(lookup.centre.centre_id)

    # Only the overflow differs: a new version with its own sha256 and other plans.
    other = tmp_path / "other"
    shutil.copytree(sample_dir, other)
    replace_in_version(other, '113 = "AMK-OSLO"', '113 = "AMK-BERGEN"')
    changed, _ = await sqlite_store.import_version(other, actor="a")
    assert changed.version_id != stored.version_id and changed.sha256 != stored.sha256
    changed_snapshot = snapshot_from_stored(changed)
    assert changed_snapshot.version.overflow_centre_id(Service.AMK) == "AMK-BERGEN"
    stavanger = changed_snapshot.plan_for("AMK-STAVANGER")
    assert stavanger is not None and stavanger.centre_ids == ("AMK-STAVANGER", "AMK-BERGEN")

    # Editing the stored overflow without a new version is caught by the sha256.
    files = dict(stored.files)
    files["version.toml"] = files["version.toml"].replace(b'"AMK-OSLO"', b'"AMK-BERGEN"')
    with pytest.raises(TableError, match="stored files were changed"):
        snapshot_from_stored(dataclasses.replace(stored, files=files))
