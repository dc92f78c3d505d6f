"""TableStore: versions, activations, rollback, audit, integrity.

Every store test runs on a temporary SQLite file and, if the PostgreSQL server binaries are
installed (Debian ``postgresql``), on a throw-away PostgreSQL cluster on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from municipality_map import Service, TableError, load_snapshot
from municipality_map.store import (
    Activation,
    StoredVersion,
    TableStore,
    active_at,
    content_sha256,
    next_after,
    snapshot_from_stored,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "tables" / "examples" / "2024-renumbering"
BROKEN = REPO / "configs" / "tables" / "examples" / "broken"
T0 = datetime(2027, 1, 7, 7, 0, tzinfo=UTC)


PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = sorted(PG_BIN.glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, itertools.count[int]]]:
    """A PostgreSQL cluster on 127.0.0.1 for this test session; skipped if not installed."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = Path(tempfile.mkdtemp(prefix="nodrute-pg-"))
    if as_postgres:
        shutil.chown(base, "postgres")
    data = base / "data"
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "nodrute",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    pg_ctl = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [
            *pg_ctl,
            "-o",
            f"-h 127.0.0.1 -p {port} -k {base} -F",
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+asyncpg://nodrute@127.0.0.1:{port}", itertools.count(1)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'var' / 'n.db'}"
        return
    server, counter = request.getfixturevalue("postgres_server")
    name = f"t{next(counter)}"
    admin = create_async_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f"CREATE DATABASE {name}"))
    await admin.dispose()
    yield f"{server}/{name}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[TableStore]:
    opened = await TableStore.open(store_url)
    yield opened
    await opened.close()


async def refused(url: str, statement: str) -> bool:
    """True if the database refuses ``statement``."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement))
    except DBAPIError:
        return True
    finally:
        await engine.dispose()
    return False


# --- pure helpers -----------------------------------------------------------------------------


def act(
    activation_id: int, version_id: int, minutes: int, *, cancelled: bool = False
) -> Activation:
    at = T0 + timedelta(minutes=minutes)
    return Activation(activation_id, version_id, at, "schedule", T0, "t", cancelled)


def test_active_at_takes_the_latest_effective_not_the_latest_created():
    history = [act(1, 1, 0), act(3, 3, 20), act(2, 2, 10)]
    assert active_at(history, T0 - timedelta(seconds=1)) is None
    assert active_at(history, T0) == history[0]  # effective_at <= t: at the instant itself
    assert active_at(history, T0 + timedelta(minutes=15)) == history[2]
    assert active_at(history, T0 + timedelta(minutes=20)) == history[1]


def test_ties_go_to_the_highest_activation_id():
    history = [act(5, 2, 10), act(4, 1, 10)]
    assert active_at(history, T0 + timedelta(minutes=10)).activation_id == 5
    assert next_after(history, T0).activation_id == 5


def test_cancelled_activations_never_count():
    history = [act(1, 1, 0), act(2, 2, 10, cancelled=True)]
    assert active_at(history, T0 + timedelta(hours=1)) == history[0]
    assert next_after(history, T0) is None


def test_next_after_is_strictly_later():
    history = [act(1, 1, 0), act(2, 2, 10), act(3, 3, 30)]
    assert next_after(history, T0) == history[1]
    assert next_after(history, T0 + timedelta(minutes=10)) == history[2]
    assert next_after(history, T0 + timedelta(minutes=30)) is None


def test_rollback_is_an_activation_like_any_other():
    # v1 at 0, v2 at 10, rollback to v1 at 20 (id 3): v1 in force again from 20.
    history = [act(1, 1, 0), act(2, 2, 10), act(3, 1, 20)]
    assert active_at(history, T0 + timedelta(minutes=25)).version_id == 1
    assert active_at(history, T0 + timedelta(minutes=15)).version_id == 2


def test_content_sha256_depends_on_names_and_bytes_not_order():
    a = {"x.csv": b"1", "y.csv": b"2"}
    assert content_sha256(a) == content_sha256(dict(reversed(a.items())))
    assert content_sha256(a) != content_sha256({"x.csv": b"12", "y.csv": b""})
    assert content_sha256(a) != content_sha256({"z.csv": b"1", "y.csv": b"2"})


# --- import -----------------------------------------------------------------------------------


async def test_round_trip_equals_loading_from_disk(store: TableStore, sample_dir: Path):
    version, report = await store.import_version(sample_dir, actor="alice")
    assert report.ok
    fetched = await store.get_version(version.version_id)
    assert fetched == version
    assert set(fetched.files) == {"version.toml", "municipalities.csv", "centres.csv"}
    for name, data in fetched.files.items():
        assert data == (sample_dir / name).read_bytes()
    assert fetched.sha256 == content_sha256(
        {n: (sample_dir / n).read_bytes() for n in fetched.files}
    )
    assert (fetched.label, fetched.imported_by) == ("sample-2024", "alice")
    assert fetched.effective_at == datetime(2023, 12, 31, 23, 0, tzinfo=UTC)
    from_db, from_disk = snapshot_from_stored(fetched), load_snapshot(sample_dir)
    assert from_db.centres == from_disk.centres
    assert from_db.municipalities == from_disk.municipalities
    for code in ("0301", "3002", "0104", "1507", "1850", "2100"):
        for service in Service:
            assert from_db.lookup(code, service) == from_disk.lookup(code, service)


async def test_old_codes_file_is_stored_too(store: TableStore):
    version, _ = await store.import_version(EXAMPLE, actor="a")
    assert version.files["old_codes.csv"] == (EXAMPLE / "old_codes.csv").read_bytes()
    found = snapshot_from_stored(version).lookup("1850", Service.AMK)
    assert found is not None and found.centre.centre_id == "AMK-NORDLAND"


async def test_tampered_bytes_are_refused(store: TableStore, sample_dir: Path, store_url: str):
    version, _ = await store.import_version(sample_dir, actor="a")
    files = dict(version.files)
    files["municipalities.csv"] = files["municipalities.csv"].replace(b"AMK-OSLO", b"AMK-UNN", 1)
    tampered = dataclasses.replace(version, files=files)
    with pytest.raises(TableError, match="stored files were changed"):
        snapshot_from_stored(tampered)
    # The database itself refuses to change or delete a stored version.
    assert await refused(store_url, "UPDATE table_files SET name = 'x'")
    assert await refused(store_url, "UPDATE table_versions SET label = 'x'")
    assert await refused(store_url, "DELETE FROM table_versions")
    assert await store.get_version(version.version_id) == version
    # ...while activations, which can be cancelled, are an ordinary table.
    assert not await refused(store_url, "UPDATE activations SET cancelled = cancelled")


async def test_import_is_idempotent(store: TableStore, sample_dir: Path, tmp_path: Path):
    first, _ = await store.import_version(sample_dir, actor="a")
    copy = tmp_path / "elsewhere"
    shutil.copytree(sample_dir, copy)
    (copy / "README.txt").write_text("not part of the table")
    again, _ = await store.import_version(copy, actor="b", label="other-label")
    assert again == first
    assert [v.version_id for v in await store.list_versions()] == [first.version_id]
    log = await store.audit_log()
    assert [(e.action, e.actor, e.version_id) for e in log] == [
        ("import", "a", first.version_id),
        ("import", "b", first.version_id),
    ]
    assert "unchanged" in log[1].detail


async def test_rejected_import_stores_nothing_and_keeps_the_active_one(
    store: TableStore, sample_dir: Path
):
    good, _ = await store.import_version(sample_dir, actor="a")
    await store.activate(good.version_id, actor="a", now=datetime.now(UTC))
    audit_before = await store.audit_log()
    with pytest.raises(TableError) as caught:
        await store.import_version(BROKEN, actor="a")
    assert any(i.file == "centres.csv" for i in caught.value.issues)
    assert [v.version_id for v in await store.list_versions()] == [good.version_id]
    assert (await store.active_version(datetime.now(UTC))) == good
    assert await store.audit_log() == audit_before


async def test_import_warns_about_growth_against_the_version_in_force(
    store: TableStore, sample_dir: Path, tmp_path: Path
):
    good, _ = await store.import_version(sample_dir, actor="a")
    await store.activate(good.version_id, actor="a", now=datetime.now(UTC))
    table = tmp_path / "grown"
    shutil.copytree(sample_dir, table)
    path = table / "municipalities.csv"
    text = path.read_text(encoding="utf-8").replace(",AMK-BERGEN,", ",AMK-FONNA,")
    path.write_text(text.replace(",AMK-FORDE,", ",AMK-FONNA,"), encoding="utf-8")
    _, report = await store.import_version(table, actor="a")
    assert any("'AMK-FONNA' would cover" in w.message for w in report.warnings)


# --- finding versions -------------------------------------------------------------------------


async def test_find_by_id_label_and_sha_prefix(store: TableStore, sample_dir: Path):
    sample, _ = await store.import_version(sample_dir, actor="a")
    example, _ = await store.import_version(EXAMPLE, actor="a")
    assert await store.find_version(str(example.version_id)) == example
    assert await store.find_version("sample-2024") == sample
    assert await store.find_version(example.sha256[:8]) == example
    with pytest.raises(KeyError):
        await store.find_version("no-such-label")
    with pytest.raises(KeyError):
        await store.get_version(99)


# --- activations ------------------------------------------------------------------------------


async def two_versions(store: TableStore, sample_dir: Path) -> tuple[StoredVersion, StoredVersion]:
    a, _ = await store.import_version(sample_dir, actor="a")
    b, _ = await store.import_version(EXAMPLE, actor="a")
    return a, b


async def test_schedule_and_switch_at_the_instant(store: TableStore, sample_dir: Path):
    a, b = await two_versions(store, sample_dir)
    await store.activate(a.version_id, actor="ops", now=T0)
    oslo = timezone(timedelta(hours=1))
    planned = await store.schedule(
        b.version_id, datetime(2027, 1, 7, 9, 0, tzinfo=oslo), actor="ops"
    )
    assert planned.effective_at == datetime(2027, 1, 7, 8, 0, tzinfo=UTC)
    activations = await store.activations()
    assert (
        active_at(activations, planned.effective_at - timedelta(microseconds=1)).version_id
        == a.version_id
    )
    assert active_at(activations, planned.effective_at).version_id == b.version_id
    assert next_after(activations, T0) == planned


async def test_schedule_needs_a_time_zone(store: TableStore, sample_dir: Path):
    a, _ = await two_versions(store, sample_dir)
    with pytest.raises(ValueError, match="no time zone"):
        await store.schedule(a.version_id, datetime(2027, 1, 7, 8, 0), actor="ops")
    with pytest.raises(KeyError):
        await store.schedule(42, T0, actor="ops")


async def test_rollback_defaults_to_the_previous_version(store: TableStore, sample_dir: Path):
    a, b = await two_versions(store, sample_dir)
    await store.activate(a.version_id, actor="ops", now=T0)
    await store.activate(b.version_id, actor="ops", now=T0 + timedelta(minutes=1))
    back = await store.rollback(actor="ops", now=T0 + timedelta(minutes=2))
    assert (back.version_id, back.kind) == (a.version_id, "rollback")
    assert active_at(await store.activations(), T0 + timedelta(minutes=2)) == back
    # Rolling back again goes back to what was in force before the rollback.
    again = await store.rollback(actor="ops", now=T0 + timedelta(minutes=3))
    assert again.version_id == b.version_id


async def test_rollback_to_a_named_version(store: TableStore, sample_dir: Path):
    a, b = await two_versions(store, sample_dir)
    await store.activate(b.version_id, actor="ops", now=T0)
    back = await store.rollback(actor="ops", now=T0, to_version_id=a.version_id)
    assert active_at(await store.activations(), T0) == back  # same instant: higher id wins
    assert back.version_id == a.version_id


async def test_rollback_needs_something_to_go_back_to(store: TableStore, sample_dir: Path):
    a, _ = await two_versions(store, sample_dir)
    with pytest.raises(ValueError, match="nothing to roll back"):
        await store.rollback(actor="ops", now=T0)
    await store.activate(a.version_id, actor="ops", now=T0)
    with pytest.raises(ValueError, match="only one ever in force"):
        await store.rollback(actor="ops", now=T0 + timedelta(minutes=1))


async def test_cancel_only_future_activations(store: TableStore, sample_dir: Path):
    a, b = await two_versions(store, sample_dir)
    now = datetime.now(UTC)
    past = await store.activate(a.version_id, actor="ops", now=now - timedelta(minutes=1))
    future = await store.schedule(b.version_id, now + timedelta(days=1), actor="ops")
    with pytest.raises(ValueError, match="roll back instead"):
        await store.cancel(past.activation_id, actor="ops")
    await store.cancel(future.activation_id, actor="ops")
    assert [x.activation_id for x in await store.activations()] == [past.activation_id]
    with pytest.raises(ValueError, match="cancelled already"):
        await store.cancel(future.activation_id, actor="ops")
    with pytest.raises(KeyError):
        await store.cancel(999, actor="ops")


async def test_audit_log_records_who_did_what(store: TableStore, sample_dir: Path):
    a, b = await two_versions(store, sample_dir)
    now = datetime.now(UTC)
    await store.activate(a.version_id, actor="kari", now=now - timedelta(seconds=2))
    planned = await store.schedule(b.version_id, now + timedelta(hours=1), actor="ola")
    await store.cancel(planned.activation_id, actor="per")
    await store.activate(b.version_id, actor="kari", now=now - timedelta(seconds=1))
    await store.rollback(actor="ola", now=now)
    log = await store.audit_log()
    assert [(e.action, e.actor, e.version_id) for e in log] == [
        ("import", "a", a.version_id),
        ("import", "a", b.version_id),
        ("activate", "kari", a.version_id),
        ("schedule", "ola", b.version_id),
        ("cancel", "per", b.version_id),
        ("activate", "kari", b.version_id),
        ("rollback", "ola", a.version_id),
    ]
    assert all(e.at.tzinfo is not None for e in log)
    assert f"activation {planned.activation_id}" in log[4].detail
    assert [e.action for e in await store.audit_log(limit=2)] == ["activate", "rollback"]


async def test_state_survives_reopening(store_url: str, sample_dir: Path):
    url = store_url
    first = await TableStore.open(url)
    version, _ = await first.import_version(sample_dir, actor="a")
    await first.activate(version.version_id, actor="a", now=T0)
    await first.close()
    second = await TableStore.open(url)  # migrations already at head: a no-op
    try:
        assert await second.active_version(T0 + timedelta(days=1)) == version
    finally:
        await second.close()
