"""TableManager with a fake wall clock and an in-memory store: which table is in force when."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from b2bua_harness import CARRIER, caller_invite, dest_of, make_harness, response_to

from municipality_map import RoutingSnapshot, default_table_dir, load_snapshot
from municipality_map.crosswalk import Crosswalk
from router.metrics import NodeMetrics
from router.tables import TableManager, VersionLike
from sip.message import Request

T0 = datetime(2020, 1, 7, 8, 0, tzinfo=UTC)


def moved_snapshot(base: RoutingSnapshot, label: str, code: str, amk: str) -> RoutingSnapshot:
    """``base`` with municipality ``code`` answered by AMK centre ``amk``."""
    rows = [dataclasses.replace(row, amk_id=amk) if row.kommunenummer == code else row
            for row in base.municipalities.values()]
    return RoutingSnapshot(dataclasses.replace(base.version, label=label),
                           base.centres.values(), rows, Crosswalk.bundled())


@pytest.fixture(scope="module")
def tables() -> dict[int, RoutingSnapshot]:
    old = load_snapshot(default_table_dir())
    return {
        1: moved_snapshot(old, "v1-oslo", "0301", "AMK-OSLO"),
        2: moved_snapshot(old, "v2-innlandet", "0301", "AMK-INNLANDET"),
        3: moved_snapshot(old, "v3-bergen", "0301", "AMK-BERGEN"),
    }


@dataclass(frozen=True)
class FakeVersion:
    version_id: int
    label: str
    sha256: str


@dataclass(frozen=True)
class FakeActivation:
    activation_id: int
    version_id: int
    effective_at: datetime


@dataclass
class FakeStore:
    """The store's contract in memory; ``down`` makes every call fail like a lost database."""

    versions: dict[int, FakeVersion] = field(default_factory=dict)
    acts: list[FakeActivation] = field(default_factory=list)
    down: bool = False
    imported: list[Path] = field(default_factory=list)

    def _check(self) -> None:
        if self.down:
            raise OSError("unable to open database file")

    async def list_versions(self) -> list[FakeVersion]:
        self._check()
        return list(self.versions.values())

    async def import_version(self, table_dir: Path, *, actor: str,
                             label: str | None = None) -> tuple[FakeVersion, Any]:
        self._check()
        self.imported.append(table_dir)
        version = FakeVersion(len(self.versions) + 1, label or table_dir.name, "f" * 64)
        self.versions[version.version_id] = version
        return version, None

    async def get_version(self, version_id: int) -> FakeVersion:
        self._check()
        return self.versions[version_id]

    async def schedule(self, version_id: int, effective_at: datetime, *,
                       actor: str) -> FakeActivation:
        self._check()
        act = FakeActivation(len(self.acts) + 1, version_id, effective_at)
        self.acts.append(act)
        return act

    async def activate(self, version_id: int, *, actor: str, now: datetime) -> FakeActivation:
        return await self.schedule(version_id, now, actor=actor)

    async def activations(self) -> list[FakeActivation]:
        self._check()
        return list(self.acts)

    async def close(self) -> None:
        pass


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Holder:
    snapshot: RoutingSnapshot


def store_with(tables: dict[int, RoutingSnapshot], *acts: tuple[int, datetime]) -> FakeStore:
    store = FakeStore()
    for vid, snap in tables.items():
        store.versions[vid] = FakeVersion(vid, snap.version.label, f"{vid}" * 64)
    for vid, at in acts:
        store.acts.append(FakeActivation(len(store.acts) + 1, vid, at))
    return store


def manager_for(store: FakeStore, tables: dict[int, RoutingSnapshot], clock: FakeClock,
                metrics: NodeMetrics | None = None,
                build: Callable[[VersionLike], RoutingSnapshot] | None = None) -> TableManager:
    async def open_store() -> FakeStore:
        store._check()
        return store

    return TableManager(open_store, build or (lambda v: tables[v.version_id]), clock=clock,
                        metrics=metrics)


def info_series(metrics: NodeMetrics) -> list[dict[str, str]]:
    return [s.labels for m in metrics.registry.collect() if m.name == "nodrute_routing_table_info"
            for s in m.samples if s.value == 1]


def failures(metrics: NodeMetrics) -> float:
    value = metrics.registry.get_sample_value("nodrute_routing_table_reload_failures_total")
    return value or 0.0


async def test_start_picks_the_latest_past_activation(tables: dict[int, RoutingSnapshot]) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=7)), (2, T0 - timedelta(hours=1)),
                       (3, T0 + timedelta(hours=1)))
    clock = FakeClock()
    metrics = NodeMetrics()
    manager = manager_for(store, tables, clock, metrics)
    snapshot = await manager.start(default_table_dir())
    assert snapshot is tables[2]
    assert manager.active is not None and manager.active.version_id == 2
    assert manager.next_switch_at == T0 + timedelta(hours=1)
    assert info_series(metrics) == [{"version": "v2-innlandet", "sha256": "2" * 64}]
    await manager.close()


async def test_scheduled_switch_happens_at_the_instant_not_before(
    tables: dict[int, RoutingSnapshot],
) -> None:
    instant = T0 + timedelta(seconds=10)
    store = store_with(tables, (1, T0 - timedelta(days=1)), (2, instant))
    clock = FakeClock()
    manager = manager_for(store, tables, clock)
    holder = Holder(await manager.start(default_table_dir()))
    manager.attach(holder)
    assert holder.snapshot is tables[1]
    assert manager.next_switch_at == instant

    clock.now = instant - timedelta(milliseconds=1)
    manager.on_timer()  # the loop's timer came a little early: no switch, re-armed
    assert holder.snapshot is tables[1]
    assert manager.next_switch_at == instant

    clock.now = instant
    manager.on_timer()
    assert holder.snapshot is tables[2]
    assert manager.next_switch_at is None
    await manager.close()


async def test_a_version_scheduled_later_is_armed_by_the_poll(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=1)))
    clock = FakeClock()
    manager = manager_for(store, tables, clock)
    holder = Holder(await manager.start(default_table_dir()))
    manager.attach(holder)
    assert manager.next_switch_at is None
    instant = T0 + timedelta(minutes=5)
    await store.schedule(3, instant, actor="ops")
    assert await manager.refresh()
    assert manager.next_switch_at == instant
    assert holder.snapshot is tables[1]
    clock.now = instant + timedelta(seconds=1)  # a poll after the instant also switches
    assert await manager.refresh()
    assert holder.snapshot is tables[3]
    await manager.close()


async def test_rollback_is_an_activation_of_the_earlier_version(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=1)), (2, T0 - timedelta(minutes=1)))
    clock = FakeClock()
    manager = manager_for(store, tables, clock)
    holder = Holder(await manager.start(default_table_dir()))
    manager.attach(holder)
    assert holder.snapshot is tables[2]
    await store.activate(1, actor="ops", now=clock.now)  # same instant as "now": later id wins
    await manager.refresh()
    assert holder.snapshot is tables[1]
    assert manager.active is not None and manager.active.version_id == 1
    await manager.close()


async def test_database_outage_keeps_the_last_table_and_counts(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=1)))
    clock = FakeClock()
    metrics = NodeMetrics()
    manager = manager_for(store, tables, clock, metrics)
    holder = Holder(await manager.start(default_table_dir()))
    manager.attach(holder)
    await store.activate(2, actor="ops", now=clock.now)
    store.down = True
    assert not await manager.refresh()
    assert not await manager.refresh()
    assert holder.snapshot is tables[1]
    assert failures(metrics) == 2
    store.down = False  # back: the pending activation is picked up
    assert await manager.refresh()
    assert holder.snapshot is tables[2]
    assert failures(metrics) == 2
    await manager.close()


async def test_a_failed_refresh_is_retried_soon_not_after_a_whole_poll_interval(
    tables: dict[int, RoutingSnapshot], monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=1)))
    clock = FakeClock()
    manager = manager_for(store, tables, clock)
    manager.poll_interval_s = 3600.0  # only the retry can pick the activation up
    monkeypatch.setattr(TableManager, "RETRY_FIRST_S", 0.01)
    holder = Holder(await manager.start(default_table_dir()))
    manager.attach(holder)
    runner = asyncio.create_task(manager.run())
    try:
        await store.activate(2, actor="ops", now=clock.now)
        store.down = True
        manager.notify()  # the notice arrives while the database is busy
        for _ in range(100):
            await asyncio.sleep(0.005)
            if manager.failures >= 2:
                break
        assert manager.failures >= 2 and holder.snapshot is tables[1]
        store.down = False
        for _ in range(200):
            await asyncio.sleep(0.005)
            if holder.snapshot is tables[2]:
                break
        assert holder.snapshot is tables[2]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await manager.close()


async def test_database_unreachable_at_start_routes_from_disk_then_follows_it(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = store_with(tables, (3, T0 - timedelta(days=1)))
    store.down = True
    clock = FakeClock()
    metrics = NodeMetrics()
    manager = manager_for(store, tables, clock, metrics)
    snapshot = await manager.start(default_table_dir())
    assert snapshot.version.label == "sample-2024"
    assert manager.active is not None and manager.active.version_id is None
    assert failures(metrics) >= 1
    store.down = False
    assert await manager.refresh()
    assert manager.snapshot is tables[3]
    await manager.close()


async def test_empty_database_imports_and_activates_the_configured_table(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = FakeStore()
    clock = FakeClock()
    built: list[int] = []

    def build(v: VersionLike) -> RoutingSnapshot:
        built.append(v.version_id)
        return tables[1]

    manager = manager_for(store, tables, clock, build=build)
    table_dir = default_table_dir()
    snapshot = await manager.start(table_dir)
    assert store.imported == [table_dir]
    assert [(a.version_id, a.effective_at) for a in store.acts] == [(1, T0)]
    assert snapshot is tables[1] and built == [1]
    await manager.close()


async def test_a_version_that_fails_to_build_is_refused_and_counted(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=1)))
    clock = FakeClock()
    metrics = NodeMetrics()

    def build(v: VersionLike) -> RoutingSnapshot:
        if v.version_id == 2:
            raise ValueError("sha256 mismatch")
        return tables[v.version_id]

    manager = manager_for(store, tables, clock, metrics, build=build)
    holder = Holder(await manager.start(default_table_dir()))
    manager.attach(holder)
    await store.activate(2, actor="ops", now=clock.now)
    assert not await manager.refresh()
    assert holder.snapshot is tables[1]
    assert failures(metrics) == 1
    await manager.close()


async def test_a_call_in_progress_keeps_its_table_new_calls_take_the_new_one(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = store_with(tables, (1, T0 - timedelta(days=1)), (2, T0 + timedelta(seconds=1)))
    clock = FakeClock()
    manager = manager_for(store, tables, clock)
    h = make_harness(await manager.start(default_table_dir()))
    manager.attach(h.b2bua)

    h.feed(caller_invite(1, kommune="0301"))
    first = h.take_one("INVITE").message
    assert isinstance(first, Request)
    assert first.uri == tables[1].centres["AMK-OSLO"].uris[0]

    clock.now = T0 + timedelta(seconds=1)
    manager.on_timer()
    assert h.b2bua.snapshot is tables[2]

    h.feed(caller_invite(2, kommune="0301"))
    second = h.take_one("INVITE").message
    assert isinstance(second, Request)
    assert second.uri == tables[2].centres["AMK-INNLANDET"].uris[0]

    # The first call finishes on the table it started with: its failover too.
    oslo = ("127.0.0.1", 5110)
    h.feed(response_to(first, 486), source=oslo)
    plan = tables[1].plan_for("AMK-OSLO")
    assert plan is not None and len(plan) > 1
    backup = h.take_one("INVITE").message
    assert isinstance(backup, Request) and backup.uri == plan.destinations[1].uri
    h.feed(response_to(backup, 603), source=dest_of(backup.uri))
    while (more := [s.message for s in h.outbox if isinstance(s.message, Request)
                    and s.message.method == "INVITE"]):
        h.take()
        h.feed(response_to(more[0], 603), source=dest_of(more[0].uri))
    assert h.take_one(603, CARRIER)
    [record] = h.records
    assert record.call_id == "call1@carrier.example"
    assert record.table_version == "v1-oslo"
    assert record.attempts[0].centre_id == "AMK-OSLO"
    assert all(attempt.centre_id in tables[1].centres for attempt in record.attempts)
    await manager.close()


async def test_database_back_but_empty_gets_the_configured_table(
    tables: dict[int, RoutingSnapshot],
) -> None:
    store = FakeStore()
    store.down = True
    clock = FakeClock()
    manager = manager_for(store, tables, clock, build=lambda v: tables[1])
    await manager.start(default_table_dir())
    assert manager.active is not None and manager.active.version_id is None
    store.down = False
    assert await manager.refresh()
    assert store.imported == [default_table_dir()]
    assert manager.active is not None and manager.active.version_id == 1
    await manager.close()
