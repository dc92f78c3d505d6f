"""A call record as a plain row (what is stored and spilled), and the spill file's format.

Pure conversion (:func:`record_row`) and the two blocking file helpers the writer runs in a
thread (:func:`append_rows`, :func:`read_rows`); the writer itself is ``router/records.py``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .call_record import CallRecord

log = logging.getLogger("nodrute.records")

Row = dict[str, Any]


# --- row conversion (pure) -----------------------------------------------------------------------


def wall_offset_s(loop_time: float) -> float:
    """Seconds to add to the loop's monotonic clock (``loop.time()``) to get Unix time."""
    return time.time() - loop_time


def _iso(monotonic: float | None, offset_s: float) -> str | None:
    if monotonic is None:
        return None
    return datetime.fromtimestamp(monotonic + offset_s, UTC).isoformat(timespec="microseconds")


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 6)


def record_row(record: CallRecord, offset_s: float, record_id: str | None = None) -> Row:
    """The record as a plain JSON-able dict: what is stored and what is spilled.

    Times are fixed-width ISO 8601 UTC text (monotonic + ``offset_s``), as stored. Derived
    durations, in seconds:

    - ``ivr_s``: INVITE arrival to the first centre INVITE (``hunt_started_at``): the caller's
      time in an IVR flow run before the hunt (116117 greeting, menu); without one it is the
      routing decision (well under a millisecond). None if no centre was ever tried.
    - ``ring_s``: the first 180 from a centre to the answer (or the end, unanswered).
    - ``answer_s``: answer time at the centre, IVR time excluded: answered minus the later of
      started and hunt_started. None if not answered. The answer-time targets use this.
    - ``talk_s``: answered to ended; ``duration_s``: INVITE arrival to the end of the call.
    """
    hunt_start = record.hunt_started_at
    answer_from = record.started_at if hunt_start is None else max(record.started_at, hunt_start)
    ring_end = record.answered_at if record.answered_at is not None else record.ended_at
    return {
        "record_id": record_id or str(uuid.uuid4()),
        "call_id": record.call_id,
        "service": record.service,
        "trunk": record.trunk,
        "caller": record.caller,
        "requested_municipality": record.requested_municipality,
        "municipality": record.municipality,
        "location_source": record.location_source,
        "location_evidence": list(record.location_evidence),
        "location_ambiguous": record.location_ambiguous,
        "location_disagreement": record.location_disagreement,
        "table_version": record.table_version,
        "centre_id": record.centre_id,
        "centre_uri": record.centre_uri,
        "final_status": record.final_status,
        "centre_status": record.centre_status,
        "end_reason": None if record.end_reason is None else record.end_reason.value,
        "outcome": record.outcome.value,
        "hunt_exhausted": record.hunt_exhausted,
        "attempt_count": len(record.attempts),
        "started_at": _iso(record.started_at, offset_s),
        "hunt_started_at": _iso(hunt_start, offset_s),
        "first_provisional_at": _iso(record.first_provisional_at, offset_s),
        "ringing_at": _iso(record.ringing_at, offset_s),
        "answered_at": _iso(record.answered_at, offset_s),
        "ended_at": _iso(record.ended_at, offset_s),
        "ivr_s": _span(record.started_at, hunt_start),
        "ring_s": _span(record.ringing_at, ring_end),
        "answer_s": _span(answer_from, record.answered_at),
        "talk_s": _span(record.answered_at, record.ended_at),
        "duration_s": _span(record.started_at, record.ended_at),
        "notes": list(record.notes),
        "attempts": [
            {
                "seq": seq,
                "centre_id": a.centre_id,
                "uri": a.uri,
                "role": a.role,
                "pass_number": a.pass_number,
                "skipped_down": a.skipped_down,
                "started_at": _iso(a.started_at, offset_s),
                "provisional_at": _iso(a.provisional_at, offset_s),
                "ended_at": _iso(a.ended_at, offset_s),
                "end": None if a.end is None else a.end.value,
                "status": a.status,
            }
            for seq, a in enumerate(record.attempts, start=1)
        ],
    }


# --- the spill file ------------------------------------------------------------------------------


def append_rows(path: Path, rows: list[Row]) -> None:
    """Append one JSON line per row and fsync (blocking: run it in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for row in rows)
    with path.open("a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_rows(path: Path) -> list[Row]:
    """The rows of a spill file; a torn or garbled line (a crash mid-write) is logged, skipped."""
    rows: list[Row] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.error("spill file %s line %d is not JSON; skipped: %.200s", path, number, line)
                continue
            if isinstance(row, dict) and "record_id" in row:
                rows.append(row)
            else:
                log.error("spill file %s line %d is not a call record; skipped", path, number)
    return rows
