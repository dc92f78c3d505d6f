"""A call record as a stored row: wall-clock times, derived durations, attempts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.call_record import CallRecord, TerminatedReason
from router.hunt import Attempt, AttemptEnd
from router.record_rows import read_rows, record_row
from router.records import chain_hooks

# Loop clock 1000.0 is 2027-01-15T08:00:00Z.
EPOCH = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
OFFSET = EPOCH - 1000.0


def at(seconds_after: float) -> str:
    return datetime.fromtimestamp(EPOCH + seconds_after, UTC).isoformat(timespec="microseconds")


def ivr_then_failover() -> CallRecord:
    """116117: 30 s greeting, the first centre rejects, the second rings 5 s and answers."""
    record = CallRecord("abc@carrier", "116117", "telia", "sip:4790000001@carrier.example",
                        started_at=1000.0, requested_municipality="0301", municipality="0301",
                        location_source="header", location_evidence=["header=0301"],
                        table_version="sample-2024", centre_id="LVS-0301")
    record.hunt_started_at = 1030.0
    record.first_provisional_at = 1000.2            # the router's own 183 for the greeting
    first = Attempt("LVS-0301", "sip:lvs@127.0.0.1:5201", "primary", 1030.0, 1,
                    provisional_at=1030.1, ended_at=1030.5, end=AttemptEnd.REJECTED, status=486)
    second = Attempt("LVS-3301", "sip:lvs@127.0.0.1:5202", "backup", 1030.5, 1,
                     skipped_down=True, provisional_at=1030.6, ended_at=1036.5,
                     end=AttemptEnd.ANSWERED, status=200)
    record.attempts = [first, second]
    record.ringing_at = 1031.5
    record.answered_at = 1036.5
    record.ended_at = 1096.5
    record.final_status = 200
    record.end_reason = TerminatedReason.CALLER_BYE
    record.notes.append("ivr greeting")
    return record


def test_times_are_wall_clock_utc_and_durations_exclude_the_ivr() -> None:
    row = record_row(ivr_then_failover(), OFFSET, record_id="r-1")
    assert row["record_id"] == "r-1"
    assert row["started_at"] == at(0) == "2027-01-15T08:00:00.000000+00:00"  # fixed width
    assert row["hunt_started_at"] == at(30)
    assert row["ringing_at"] == at(31.5)
    assert row["answered_at"] == at(36.5)
    assert row["ended_at"] == at(96.5)
    assert row["ivr_s"] == pytest.approx(30.0)
    assert row["answer_s"] == pytest.approx(6.5)    # from the first centre INVITE, not arrival
    assert row["ring_s"] == pytest.approx(5.0)
    assert row["talk_s"] == pytest.approx(60.0)
    assert row["duration_s"] == pytest.approx(96.5)
    assert (row["outcome"], row["end_reason"], row["attempt_count"]) == \
        ("answered", "caller_bye", 2)
    assert row["caller"] == "sip:4790000001@carrier.example"
    assert row["attempts"][0] == {
        "seq": 1, "centre_id": "LVS-0301", "uri": "sip:lvs@127.0.0.1:5201", "role": "primary",
        "pass_number": 1, "skipped_down": False, "started_at": at(30),
        "provisional_at": at(30.1), "ended_at": at(30.5), "end": "rejected", "status": 486,
    }
    assert row["attempts"][1]["skipped_down"] is True
    assert row["attempts"][1]["end"] == "answered"
    assert json.loads(json.dumps(row)) == row       # plain JSON: what the spill file keeps


def test_an_unrouted_call_has_no_answer_or_ivr_time() -> None:
    record = CallRecord("x@c", "113", "default", "sip:anonymous@anonymous.invalid", 1000.0)
    record.ended_at = 1000.001
    record.final_status = 500
    record.end_reason = TerminatedReason.ERROR
    row = record_row(record, OFFSET)
    assert row["outcome"] == "failed"
    assert row["ivr_s"] is row["answer_s"] is row["ring_s"] is row["talk_s"] is None
    assert row["attempts"] == [] and row["attempt_count"] == 0
    assert len(row["record_id"]) == 36               # a fresh UUID
    assert record_row(record, OFFSET)["record_id"] != row["record_id"]


def test_without_an_ivr_the_answer_time_runs_from_arrival() -> None:
    record = ivr_then_failover()
    record.hunt_started_at = 1000.0
    row = record_row(record, OFFSET)
    assert row["ivr_s"] == 0.0
    assert row["answer_s"] == pytest.approx(36.5)


def test_spill_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    good = record_row(ivr_then_failover(), OFFSET, record_id="r-2")
    path.write_text(json.dumps(good) + "\n" + '{"record_id": "r-3", "cal', encoding="utf-8")
    assert read_rows(path) == [good]


def test_chained_hooks_call_each_in_order() -> None:
    seen: list[str] = []
    assert chain_hooks(None, None) is None
    hook = chain_hooks(lambda r: seen.append("metrics"), None, lambda r: seen.append("records"))
    assert hook is not None
    hook(ivr_then_failover())
    assert seen == ["metrics", "records"]


def test_the_spill_file_sits_beside_its_sqlite_database() -> None:
    from router.records import default_spill_path

    assert default_spill_path("sqlite+aiosqlite:////srv/nodrute/db/nodrute.db") == \
        Path("/srv/nodrute/db/records-spill.jsonl")
    elsewhere = default_spill_path("postgresql+asyncpg://nodrute@db.example/nodrute")
    assert elsewhere.name == "records-spill.jsonl" and elsewhere.parent.name == "var"
