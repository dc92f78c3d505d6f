"""Call records through the writer into SQLite: calls from the sans-IO harness, a database
that goes down and comes back, a full queue, a stop with records still queued."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    Harness,
    caller_cancel,
    caller_invite,
    dest_of,
    in_dialog_request,
    make_harness,
    response_to,
)

from municipality_map import RoutingSnapshot
from router.call_record import CallRecord
from router.records import CallRecordWriter, RowStore, chain_hooks
from router.records_store import CallRecordStore
from sip.message import Request, Response

EPOCH = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
OFFSET = EPOCH - 1000.0  # the harness clock starts at 1000.0
OSLO, INNLANDET = 5110, 5106


def wall(loop_time: float) -> datetime:
    return datetime.fromtimestamp(loop_time + OFFSET, UTC)


class FlakyStore:
    """A real store with a switch: ``down`` makes every call fail like a lost connection;
    ``lose_acks`` stores a batch, then fails as if the commit's answer never came back."""

    def __init__(self, inner: CallRecordStore) -> None:
        self.inner = inner
        self.down = False
        self.lose_acks = 0

    async def insert(self, rows: list[dict[str, Any]]) -> int:
        if self.down:
            raise ConnectionError("database unreachable")
        stored = await self.inner.insert(rows)
        if self.lose_acks:
            self.lose_acks -= 1
            raise ConnectionError("connection lost after commit")
        return stored

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("database unreachable")
        await self.inner.ping()

    async def close(self) -> None:
        """The test closes the inner store itself."""


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.as_posix()}"


def opener(store: RowStore) -> Callable[[], Awaitable[RowStore]]:
    async def open_store() -> RowStore:
        return store
    return open_store


def harness_with(snapshot: RoutingSnapshot, writer: CallRecordWriter) -> Harness:
    h = make_harness(snapshot)
    h.b2bua._on_call_ended = chain_hooks(h.records.append, writer.submit)
    return h


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the writer's tasks run until ``condition`` holds (a generous bound, not a timing)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


# --- calls through the harness -------------------------------------------------------------------


def answered_call(h: Harness, n: int, kommune: str | None = "0301") -> None:
    """Rings 1 s, answered 2 s later, the caller hangs up after 60 s."""
    h.feed(caller_invite(n, kommune=kommune))
    h.take_one(100, CARRIER)
    invite = h.take_one("INVITE").message
    assert isinstance(invite, Request)
    dest = dest_of(invite.uri)
    h.advance(1.0)
    h.feed(response_to(invite, 180), source=dest)
    h.advance(2.0)
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=dest)
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    h.feed(in_dialog_request("ACK", ok, n, 1))
    h.advance(60.0)
    h.feed(in_dialog_request("BYE", ok, n, 2))
    bye = h.take_one("BYE", dest).message
    assert isinstance(bye, Request)
    h.feed(response_to(bye, 200), source=dest)
    h.take()


def failed_over_call(h: Harness, n: int) -> None:
    """AMK-OSLO busy (486); the backup AMK-INNLANDET answers at once."""
    h.feed(caller_invite(n, kommune="0301"))
    h.take_one(100, CARRIER)
    first = h.take_one("INVITE", dest_of(f"sip:x@127.0.0.1:{OSLO}")).message
    assert isinstance(first, Request)
    h.advance(0.5)
    h.feed(response_to(first, 486), source=dest_of(first.uri))
    second = h.take_one("INVITE", dest_of(f"sip:x@127.0.0.1:{INNLANDET}")).message
    assert isinstance(second, Request)
    h.advance(0.5)
    h.feed(response_to(second, 200, body=SDP_ANSWER), source=dest_of(second.uri))
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    h.feed(in_dialog_request("ACK", ok, n, 1))
    h.advance(10.0)
    h.feed(in_dialog_request("BYE", ok, n, 2))
    bye = h.take_one("BYE", dest_of(second.uri)).message
    assert isinstance(bye, Request)
    h.feed(response_to(bye, 200), source=dest_of(second.uri))
    h.take()


def cancelled_call(h: Harness, n: int) -> None:
    """Rings 4 s, then the caller gives up."""
    h.feed(caller_invite(n, kommune="4601"))
    h.take_one(100, CARRIER)
    invite = h.take_one("INVITE").message
    assert isinstance(invite, Request)
    h.feed(response_to(invite, 180), source=dest_of(invite.uri))
    h.advance(4.0)
    h.feed(caller_cancel(n))
    h.feed(response_to(invite, 487), source=dest_of(invite.uri))
    h.take()


def by_call(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["call_id"]: row for row in rows}


async def test_records_of_answered_failed_over_cancelled_and_unlocated_calls(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    store = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    writer = CallRecordWriter(opener(store), tmp_path / "spill.jsonl", offset_s=OFFSET)
    writer.start()
    h = harness_with(snapshot, writer)
    t0 = h.now
    answered_call(h, 1)
    t1 = h.now
    failed_over_call(h, 2)
    t2 = h.now
    cancelled_call(h, 3)
    t3 = h.now
    answered_call(h, 4, kommune=None)
    await writer.close()
    rows = by_call(await store.records())
    await store.close()
    assert writer.counts == {"written": 4, "spilled": 0, "replayed": 0, "lost": 0}
    assert not (tmp_path / "spill.jsonl").exists()
    assert len(rows) == 4

    answered = rows["call1@carrier.example"]
    assert answered["service"] == "113" and answered["trunk"] == "default"
    assert answered["caller"] == "sip:4790000001@carrier.example"  # as received
    assert (answered["requested_municipality"], answered["municipality"],
            answered["location_source"]) == ("0301", "0301", "header")
    assert answered["location_evidence"] and answered["table_version"]
    assert (answered["centre_id"], answered["outcome"], answered["end_reason"],
            answered["final_status"]) == ("AMK-OSLO", "answered", "caller_bye", 200)
    assert answered["started_at"] == wall(t0)
    assert answered["ringing_at"] == wall(t0 + 1.0)
    assert answered["answered_at"] == wall(t0 + 3.0)
    assert answered["ended_at"] == wall(t0 + 63.0)
    assert answered["answer_s"] == pytest.approx(3.0)
    assert answered["ring_s"] == pytest.approx(2.0)
    assert answered["duration_s"] == pytest.approx(63.0)
    [attempt] = answered["attempts"]
    assert (attempt["seq"], attempt["centre_id"], attempt["role"], attempt["end"],
            attempt["status"]) == (1, "AMK-OSLO", "primary", "answered", 200)

    failed_over = rows["call2@carrier.example"]
    assert failed_over["centre_id"] == "AMK-INNLANDET" and failed_over["attempt_count"] == 2
    assert failed_over["answer_s"] == pytest.approx(1.0)
    assert [(a["centre_id"], a["end"], a["status"]) for a in failed_over["attempts"]] == [
        ("AMK-OSLO", "rejected", 486), ("AMK-INNLANDET", "answered", 200)]
    assert failed_over["attempts"][1]["started_at"] == wall(t1 + 0.5)

    cancelled = rows["call3@carrier.example"]
    assert (cancelled["outcome"], cancelled["end_reason"], cancelled["final_status"]) == \
        ("abandoned", "caller_cancel", 487)
    assert cancelled["answered_at"] is None and cancelled["answer_s"] is None
    assert cancelled["ring_s"] == pytest.approx(4.0)
    assert cancelled["started_at"] == wall(t2)

    unlocated = rows["call4@carrier.example"]
    assert (unlocated["location_source"], unlocated["municipality"],
            unlocated["requested_municipality"], unlocated["centre_id"]) == \
        ("default", None, None, "AMK-OSLO")
    assert unlocated["started_at"] == wall(t3)


# --- the database goes down ----------------------------------------------------------------------


async def test_database_down_during_calls_then_back_every_record_once(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    inner = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    flaky = FlakyStore(inner)
    spill = tmp_path / "spill.jsonl"
    writer = CallRecordWriter(opener(flaky), spill, offset_s=OFFSET, replay_interval_s=0.02,
                              linger_s=0.0)
    writer.start()
    h = harness_with(snapshot, writer)
    answered_call(h, 1)
    await until(lambda: writer.counts["written"] == 1, "first record written")

    flaky.down = True
    answered_call(h, 2)
    failed_over_call(h, 3)
    # Every call ran to its end synchronously, with the database down: nothing waited on it.
    assert [r.call_id for r in h.records] == [f"call{n}@carrier.example" for n in (1, 2, 3)]
    await until(lambda: writer.counts["spilled"] == 2, "two records spilled")
    assert not writer.database_ok
    spilled = [json.loads(line) for line in spill.read_text().splitlines()]
    assert [row["call_id"] for row in spilled] == ["call2@carrier.example",
                                                   "call3@carrier.example"]
    cancelled_call(h, 4)  # still down: straight to the spill file
    await until(lambda: writer.counts["spilled"] == 3, "third record spilled")

    flaky.down = False
    await until(lambda: writer.counts["replayed"] == 3, "spilled records replayed")
    assert writer.database_ok
    answered_call(h, 5)
    await writer.close()
    rows = await inner.records()
    await inner.close()
    assert sorted(row["call_id"] for row in rows) == [
        f"call{n}@carrier.example" for n in range(1, 6)]
    assert writer.counts == {"written": 2, "spilled": 3, "replayed": 3, "lost": 0}
    assert not spill.exists() and not writer.replaying_path.exists()
    failed_over = by_call(rows)["call3@carrier.example"]
    assert [a["centre_id"] for a in failed_over["attempts"]] == ["AMK-OSLO", "AMK-INNLANDET"]


async def test_a_batch_stored_but_unacknowledged_is_not_stored_twice(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    inner = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    flaky = FlakyStore(inner)
    flaky.lose_acks = 1
    writer = CallRecordWriter(opener(flaky), tmp_path / "spill.jsonl", offset_s=OFFSET,
                              replay_interval_s=0.02, linger_s=0.0)
    writer.start()
    h = harness_with(snapshot, writer)
    answered_call(h, 1)
    await until(lambda: writer.counts["replayed"] == 1, "the spilled copy replayed")
    await writer.close()
    rows = await inner.records()
    await inner.close()
    assert [row["call_id"] for row in rows] == ["call1@carrier.example"]
    assert len(rows[0]["attempts"]) == 1


async def test_sqlite_file_unusable_at_start_then_usable(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    db = tmp_path / "records.db"
    db.mkdir()  # a directory where the database file should be: SQLite cannot open it
    url = sqlite_url(db)

    async def open_store() -> RowStore:
        return await CallRecordStore.open(url)

    writer = CallRecordWriter(open_store, tmp_path / "spill.jsonl", offset_s=OFFSET,
                              replay_interval_s=0.02, linger_s=0.0)
    writer.start()
    h = harness_with(snapshot, writer)
    answered_call(h, 1)
    cancelled_call(h, 2)
    await until(lambda: writer.counts["spilled"] == 2, "records spilled")
    db.rmdir()
    await until(lambda: writer.counts["replayed"] == 2, "records replayed")
    await writer.close()
    store = await CallRecordStore.open(url)
    rows = await store.records()
    await store.close()
    assert sorted(row["call_id"] for row in rows) == ["call1@carrier.example",
                                                      "call2@carrier.example"]


async def test_full_queue_spills_without_losing_a_record(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    store = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    writer = CallRecordWriter(opener(store), tmp_path / "spill.jsonl", offset_s=OFFSET,
                              queue_size=2, replay_interval_s=0.02, linger_s=0.0)
    h = harness_with(snapshot, writer)  # not started: nothing drains the queue yet
    for n in range(1, 6):
        cancelled_call(h, n)
    # 2 queued, 2 in the overflow list, the fifth written to the spill file at once
    assert writer.queue_depth() == 4 and writer.counts["spilled"] == 1
    writer.start()
    await until(lambda: writer.counts["replayed"] == 3, "spilled records replayed")
    await writer.close()
    rows = await store.records()
    await store.close()
    assert sorted(row["call_id"] for row in rows) == [
        f"call{n}@carrier.example" for n in range(1, 6)]
    assert writer.counts == {"written": 2, "spilled": 3, "replayed": 3, "lost": 0}


async def test_stop_with_the_database_down_keeps_the_records_for_the_next_start(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    inner = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    flaky = FlakyStore(inner)
    flaky.down = True
    spill = tmp_path / "spill.jsonl"
    writer = CallRecordWriter(opener(flaky), spill, offset_s=OFFSET, linger_s=0.0)
    writer.start()
    h = harness_with(snapshot, writer)
    answered_call(h, 1)
    cancelled_call(h, 2)
    await writer.close()
    assert len(spill.read_text().splitlines()) == 2
    cancelled_call(h, 3)  # a call ending after close: spilled, not dropped
    assert len(spill.read_text().splitlines()) == 3

    flaky.down = False  # the next start of the node
    restarted = CallRecordWriter(opener(flaky), spill, offset_s=OFFSET, linger_s=0.0)
    restarted.start()
    await until(lambda: restarted.counts["replayed"] == 3, "replayed at the next start")
    await restarted.close()
    rows = await inner.records()
    await inner.close()
    assert sorted(row["call_id"] for row in rows) == [
        "call1@carrier.example", "call2@carrier.example", "call3@carrier.example"]
    assert not spill.exists()


def test_submit_never_raises(tmp_path: Path) -> None:
    async def never() -> RowStore:
        raise AssertionError("not reached")

    writer = CallRecordWriter(never, tmp_path / "spill.jsonl")
    broken = CallRecord("x", "113", "default", "sip:x@y", started_at=float("nan"))
    broken.attempts = [object()]  # type: ignore[list-item]
    writer.submit(broken)
    assert writer.counts["lost"] == 1 and writer.queue_depth() == 0


async def test_records_arriving_one_by_one_share_a_transaction(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    store = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    batches: list[int] = []

    class CountingStore(FlakyStore):
        async def insert(self, rows: list[dict[str, Any]]) -> int:
            batches.append(len(rows))
            return await super().insert(rows)

    writer = CallRecordWriter(opener(CountingStore(store)), tmp_path / "spill.jsonl",
                              offset_s=OFFSET, linger_s=30.0)
    writer.start()
    h = harness_with(snapshot, writer)
    for n in range(1, 21):
        cancelled_call(h, n)
        await asyncio.sleep(0)  # the writer runs between calls, as on a live node
    await writer.close()  # stopping cuts the linger short
    rows = await store.records()
    await store.close()
    assert len(rows) == 20 and sum(batches) == 20
    assert len(batches) == 1, batches


async def test_a_full_batch_is_written_without_waiting_for_the_linger(
        snapshot: RoutingSnapshot, tmp_path: Path) -> None:
    store = await CallRecordStore.open(sqlite_url(tmp_path / "records.db"))
    batches: list[int] = []

    class CountingStore(FlakyStore):
        async def insert(self, rows: list[dict[str, Any]]) -> int:
            batches.append(len(rows))
            return await super().insert(rows)

    writer = CallRecordWriter(opener(CountingStore(store)), tmp_path / "spill.jsonl",
                              offset_s=OFFSET, linger_s=30.0, batch_size=5)
    writer.start()
    h = harness_with(snapshot, writer)
    for n in range(1, 13):
        cancelled_call(h, n)
        await asyncio.sleep(0)
    await until(lambda: writer.counts["written"] == 10, "two full batches written")
    assert writer.queue_depth() == 1  # the 12th waits (the 11th is the batch gathering)
    await writer.close()
    await store.close()
    assert batches == [5, 5, 2]


async def test_a_node_writer_stamps_wall_clock_time(tmp_path: Path) -> None:
    async def never() -> RowStore:
        raise AssertionError("not reached")

    writer = CallRecordWriter(never, tmp_path / "spill.jsonl")  # no offset: the node's clock
    loop_now = asyncio.get_running_loop().time()
    before = datetime.now(UTC)
    writer.submit(CallRecord("c", "113", "default", "sip:x@y", started_at=loop_now))
    row = writer._queue.get_nowait()
    started = datetime.fromisoformat(row["started_at"])
    assert before - timedelta(seconds=1) <= started <= datetime.now(UTC)
