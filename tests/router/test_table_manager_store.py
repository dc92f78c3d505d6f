"""TableManager and the drop folder on the real SQLite table store (no network)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from b2bua_harness import caller_invite, make_harness

from municipality_map import RoutingSnapshot, default_table_dir
from municipality_map.store import StoredVersion, TableStore, snapshot_from_stored
from router.dropfolder import DropFolderWatcher, result_path
from router.metrics import NodeMetrics
from router.tables import TableManager, TableStoreLike, VersionLike
from sip.message import Request

BROKEN = Path(__file__).resolve().parents[2] / "configs" / "tables" / "examples" / "broken"


def table_copy(dst: Path, label: str, *, oslo_amk: str = "AMK-OSLO",
               effective_at: str | None = None) -> Path:
    shutil.copytree(default_table_dir(), dst)
    version = (dst / "version.toml").read_text(encoding="utf-8")
    version = re.sub(r'^label = ".*"$', f'label = "{label}"', version, count=1, flags=re.M)
    if effective_at is not None:
        version = re.sub(r'^effective_at = ".*"$', f'effective_at = "{effective_at}"', version,
                         count=1, flags=re.M)
    (dst / "version.toml").write_text(version, encoding="utf-8")
    rows = (dst / "municipalities.csv").read_text(encoding="utf-8")
    (dst / "municipalities.csv").write_text(
        rows.replace("0301,Oslo,AMK-OSLO,", f"0301,Oslo,{oslo_amk},"), encoding="utf-8")
    return dst


def build(version: VersionLike) -> RoutingSnapshot:
    return snapshot_from_stored(cast(StoredVersion, version))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[str, TableStore]]:
    """A database URL and an operator's handle on it (as the CLI would have)."""
    url = f"sqlite+aiosqlite:///{(tmp_path / 'tables.db').as_posix()}"
    store = await TableStore.open(url)
    yield url, store
    await store.close()


def manager_on(url: str, metrics: NodeMetrics | None = None) -> TableManager:
    async def open_store() -> TableStoreLike:
        return await TableStore.open(url)

    return TableManager(open_store, build, metrics=metrics, actor="test-node")


async def test_fresh_database_gets_the_configured_table_and_keeps_it_across_restart(
    db: tuple[str, TableStore], tmp_path: Path,
) -> None:
    url, store = db
    first = manager_on(url)
    snapshot = await first.start(default_table_dir())
    assert snapshot.version.label == "sample-2024"
    await first.close()
    moved = table_copy(tmp_path / "moved", "moved-0301", oslo_amk="AMK-INNLANDET")
    version, _ = await store.import_version(moved, actor="ops")
    await store.activate(version.version_id, actor="ops", now=datetime.now(UTC))

    restarted = manager_on(url)  # a restart: the active version comes from the database
    snapshot = await restarted.start(default_table_dir())
    assert snapshot.version.label == "moved-0301"
    assert [v.label for v in await store.list_versions()] == ["sample-2024", "moved-0301"]
    await restarted.close()


async def test_damaged_database_keeps_routing_on_the_last_table_and_recovers(
    db: tuple[str, TableStore], tmp_path: Path,
) -> None:
    url, store = db
    metrics = NodeMetrics()
    manager = manager_on(url, metrics)
    h = make_harness(await manager.start(default_table_dir()))
    manager.attach(h.b2bua)
    moved = table_copy(tmp_path / "moved", "moved-0301", oslo_amk="AMK-INNLANDET")
    version, _ = await store.import_version(moved, actor="ops")
    await store.activate(version.version_id, actor="ops", now=datetime.now(UTC))
    await store.close()

    # The database goes away: its file is replaced by something SQLite cannot open, and the
    # node's open connections are lost (as when a database server restarts).
    db_file = tmp_path / "tables.db"
    aside = tmp_path / "aside"
    aside.mkdir()
    for part in tmp_path.glob("tables.db*"):
        part.rename(aside / part.name)
    db_file.mkdir()
    assert manager.store is not None
    await manager.store.close()
    try:
        assert not await manager.refresh()
        assert not await manager.refresh()
        failures = metrics.registry.get_sample_value("nodrute_routing_table_reload_failures_total")
        assert failures == 2
        assert h.b2bua.snapshot.version.label == "sample-2024"
        h.feed(caller_invite(1, kommune="0301"))  # routing goes on with the last good table
        invite = h.take_one("INVITE").message
        assert isinstance(invite, Request) and "amk-oslo" in invite.uri
    finally:
        db_file.rmdir()
        for part in aside.iterdir():
            part.rename(tmp_path / part.name)
    assert await manager.refresh()
    assert h.b2bua.snapshot.version.label == "moved-0301"
    await manager.close()


async def test_database_missing_at_start_routes_from_disk(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    url = f"sqlite+aiosqlite:///{(tmp_path / 'not-a-folder' / 'tables.db').as_posix()}"
    metrics = NodeMetrics()
    manager = manager_on(url, metrics)
    snapshot = await manager.start(default_table_dir())
    assert snapshot.version.label == "sample-2024"
    assert manager.active is not None and manager.active.version_id is None
    assert metrics.registry.get_sample_value(
        "nodrute_routing_table_reload_failures_total") == 1
    await manager.close()


async def test_drop_folder_imports_activates_schedules_and_rejects_once(
    db: tuple[str, TableStore], tmp_path: Path,
) -> None:
    url, store = db
    manager = manager_on(url)
    await manager.start(default_table_dir())
    drop = tmp_path / "drop"
    drop.mkdir()
    changes: list[int] = []

    async def store_of() -> TableStoreLike:
        return store

    watcher = DropFolderWatcher(drop, store_of, clock=lambda: datetime.now(UTC), actor="drop",
                                on_change=lambda: changes.append(1))
    now_table = table_copy(drop / "moved", "dropped-now", oslo_amk="AMK-INNLANDET")
    later = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    table_copy(drop / "later", "dropped-later", oslo_amk="AMK-BERGEN",
               effective_at=later.isoformat())
    shutil.copytree(BROKEN, drop / "broken")

    assert await watcher.poll() == []  # first sight: wait until the copy has settled
    handled = await watcher.poll()
    assert sorted(p.name for p in handled) == ["broken", "later", "moved"]
    assert await watcher.poll() == []  # never taken twice

    assert result_path(now_table).read_text().splitlines()[-1].startswith("ACTIVATED")
    assert f"SCHEDULED for {later.isoformat()}" in result_path(drop / "later").read_text()
    rejected = result_path(drop / "broken").read_text()
    assert rejected.startswith("REJECTED broken")
    assert re.search(r"municipalities\.csv:3: column amk_id: unknown centre", rejected)
    assert len(changes) == 2
    assert sorted(v.label for v in await store.list_versions()) == [
        "dropped-later", "dropped-now", "sample-2024"]

    await manager.refresh()
    assert manager.snapshot is not None and manager.snapshot.version.label == "dropped-now"
    assert manager.next_switch_at == later
    await manager.close()
