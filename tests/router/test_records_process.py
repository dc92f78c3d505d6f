"""Call records through the child process (router/records_process.py) into SQLite: the rows
match what the in-process writer would store, a child killed mid-run is restarted and loses
nothing (spill + replay), close hands everything over."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from router.call_record import CallRecord, TerminatedReason
from router.hunt import Attempt, AttemptEnd
from router.record_rows import read_rows, record_row
from router.records_process import RecordSink, record_from_tuple, record_tuple
from router.records_store import CallRecordStore


def make_record(n: int) -> CallRecord:
    start = 1000.0 + n
    answered = n % 3 != 0
    return CallRecord(
        call_id=f"call-{n}@carrier", service="113" if n % 2 else "116117", trunk="default",
        caller=f"sip:+4791{n:06d}@carrier", started_at=start, requested_municipality="0301",
        municipality="0301", location_source="header", location_evidence=["header=0301"],
        table_version="sample-2024", centre_id="AMK-OSLO", centre_uri="sip:amk@127.0.0.1:5110",
        first_provisional_at=start + 0.01, ringing_at=start + 0.02,
        answered_at=start + 1.5 if answered else None, ended_at=start + 9.0,
        final_status=200 if answered else 487, centre_status=200 if answered else 487,
        end_reason=TerminatedReason.CALLER_BYE if answered else TerminatedReason.CALLER_CANCEL,
        attempts=[
            Attempt("AMK-INNLANDET", "sip:a@127.0.0.1:5106", "primary", start + 0.001, 1,
                    provisional_at=None, ended_at=start + 0.5, end=AttemptEnd.NO_RESPONSE),
            Attempt("AMK-OSLO", "sip:amk@127.0.0.1:5110", "backup", start + 0.5, 1, True,
                    start + 0.51, start + 9.0, AttemptEnd.ANSWERED if answered else
                    AttemptEnd.CALLER_GONE, 200 if answered else None),
        ],
        hunt_started_at=start + 0.001, notes=[f"note {n}"],
    )  # fmt: skip


def sink_for(tmp_path: Path) -> RecordSink:
    config = {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}", "queue_size": 1000,
              "batch_size": 50, "replay_interval_s": 0.2}
    return RecordSink(config, tmp_path / "spill.jsonl", flush_interval_s=0.05)


async def stored(tmp_path: Path) -> list[dict[str, Any]]:
    store = await CallRecordStore.open(f"sqlite+aiosqlite:///{tmp_path / 'records.db'}")
    try:
        return await store.records()
    finally:
        await store.close()


async def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def test_the_compact_tuple_gives_the_record_back() -> None:
    record = make_record(7)
    seq, back = record_from_tuple(record_tuple(42, record))
    assert seq == 42
    assert back == record


async def test_records_reach_sqlite_through_the_child(tmp_path: Path) -> None:
    sink = sink_for(tmp_path)
    sink.start()
    records = [make_record(n) for n in range(30)]
    for record in records:
        sink.submit(record)
    await sink.close()  # at once: close must hand everything over and wait for the child
    assert sink.counts["written"] == 30
    assert not (tmp_path / "spill.jsonl").exists()
    rows = {row["call_id"]: row for row in await stored(tmp_path)}
    assert sorted(rows) == sorted(r.call_id for r in records)
    offset = None
    for record in records:
        row = rows[record.call_id]
        if offset is None:  # the sink's wall-clock offset, read back from one stored row
            offset = row["started_at"].timestamp() - record.started_at
        expected = record_row(record, offset, row["record_id"])
        for key in ("service", "caller", "municipality", "centre_id", "final_status",
                    "end_reason", "outcome", "answer_s", "ring_s", "talk_s", "duration_s",
                    "attempt_count", "hunt_exhausted", "location_evidence", "notes"):
            assert row[key] == expected[key], key
        assert [a["end"] for a in row["attempts"]] == [a["end"] for a in expected["attempts"]]
        assert [a["status"] for a in row["attempts"]] == [a["status"]
                                                          for a in expected["attempts"]]


async def test_a_killed_child_is_restarted_and_no_record_is_lost(tmp_path: Path) -> None:
    sink = sink_for(tmp_path)
    sink.start()
    try:
        await wait_for(lambda: sink._child_up.is_set())
        for n in range(40):
            sink.submit(make_record(n))
        await wait_for(lambda: not sink._pending)  # handed over; maybe not yet stored
        first = sink._proc
        assert first is not None
        first.kill()
        for n in range(40, 80):
            sink.submit(make_record(n))
        await wait_for(lambda: sink.child_failures == 1 and sink._proc is not first
                       and sink._child_up.is_set())
        # the router spilled what the dead child had not acknowledged; the new child replays it
        await wait_for(lambda: sink.counts["replayed"] >= sink.counts["spilled"])
    finally:
        await sink.close()
    rows = await stored(tmp_path)
    spilled = read_rows(tmp_path / "spill.jsonl") if (tmp_path / "spill.jsonl").exists() else []
    ids = [row["call_id"] for row in rows] + [row["call_id"] for row in spilled]
    assert sorted(ids) == sorted(f"call-{n}@carrier" for n in range(80))
    assert len({row["record_id"] for row in rows}) == len(rows)


async def test_without_a_database_the_child_spills_and_close_still_keeps_everything(
        tmp_path: Path) -> None:
    (tmp_path / "records.db").mkdir()  # a folder where the database file should be
    sink = sink_for(tmp_path)
    sink.start()
    for n in range(10):
        sink.submit(make_record(n))
    await sink.close()
    spilled = read_rows(tmp_path / "spill.jsonl")
    assert sorted(row["call_id"] for row in spilled) == sorted(
        f"call-{n}@carrier" for n in range(10))
    assert sink.counts["spilled"] == 10
