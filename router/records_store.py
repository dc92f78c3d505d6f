"""The call-record tables: idempotent batch inserts and the queries ``nodrute stats`` needs.

The schema is migration 0003 in ``municipality_map/migrations`` (the same database and Alembic
history as the table store: SQLite by default, PostgreSQL by URL). Rows come in as the plain,
JSON-able dicts of :func:`router.records.record_row` (times as fixed-width ISO 8601 UTC text,
stored as they are), so a row read back from the spill file is stored exactly like one
straight from a call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from municipality_map.store import MIGRATIONS_DIR

_INSTANT = sa.String(32)
"""An instant as fixed-width ISO 8601 UTC text (``2027-01-15T08:00:00.000000+00:00``): text
order is time order, in SQLite and PostgreSQL alike, and rows go in without a conversion per
value (a DateTime column cost a Python call per value and parameter on the writer's loop)."""

_metadata = sa.MetaData()
call_records = sa.Table(
    "call_records",
    _metadata,
    sa.Column("record_id", sa.String(36), primary_key=True),
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("service", sa.String(16), nullable=False),
    sa.Column("trunk", sa.String(100), nullable=False),
    sa.Column("caller", sa.Text, nullable=False),
    sa.Column("requested_municipality", sa.String(16)),
    sa.Column("municipality", sa.String(16)),
    sa.Column("location_source", sa.String(16), nullable=False),
    sa.Column("location_evidence", sa.Text, nullable=False),
    sa.Column("location_ambiguous", sa.Boolean, nullable=False),
    sa.Column("location_disagreement", sa.Boolean, nullable=False),
    sa.Column("table_version", sa.String(200), nullable=False),
    sa.Column("centre_id", sa.String(100)),
    sa.Column("centre_uri", sa.Text),
    sa.Column("final_status", sa.Integer),
    sa.Column("centre_status", sa.Integer),
    sa.Column("end_reason", sa.String(32)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("hunt_exhausted", sa.Boolean, nullable=False),
    sa.Column("attempt_count", sa.Integer, nullable=False),
    sa.Column("started_at", _INSTANT, nullable=False),
    sa.Column("hunt_started_at", _INSTANT),
    sa.Column("first_provisional_at", _INSTANT),
    sa.Column("ringing_at", _INSTANT),
    sa.Column("answered_at", _INSTANT),
    sa.Column("ended_at", _INSTANT),
    sa.Column("ivr_s", sa.Float),
    sa.Column("ring_s", sa.Float),
    sa.Column("answer_s", sa.Float),
    sa.Column("talk_s", sa.Float),
    sa.Column("duration_s", sa.Float),
    sa.Column("notes", sa.Text, nullable=False),
)
call_attempts = sa.Table(
    "call_attempts",
    _metadata,
    sa.Column("record_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("centre_id", sa.String(100), nullable=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("pass_number", sa.Integer, nullable=False),
    sa.Column("skipped_down", sa.Boolean, nullable=False),
    sa.Column("started_at", _INSTANT, nullable=False),
    sa.Column("provisional_at", _INSTANT),
    sa.Column("ended_at", _INSTANT),
    sa.Column("end", sa.String(32)),
    sa.Column("status", sa.Integer),
)

_RECORD_TIMES = ("started_at", "hunt_started_at", "first_provisional_at", "ringing_at",
                 "answered_at", "ended_at")
_ATTEMPT_TIMES = ("started_at", "provisional_at", "ended_at")
_JSON_COLUMNS = ("location_evidence", "notes")


@dataclass(frozen=True, slots=True)
class StatsCall:
    """What ``nodrute stats`` needs of one call record."""

    service: str
    centre_id: str | None
    outcome: str
    """answered, abandoned or failed (router.call_record.Outcome)."""
    attempt_count: int
    answer_s: float | None
    """Answer time at the centre, IVR time excluded (None: not answered)."""


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # routers write while the CLI reads
    cursor.close()


_RECORD_COLUMNS = tuple(column.name for column in call_records.columns)
_ATTEMPT_COLUMNS = tuple(column.name for column in call_attempts.columns)


def instant(value: datetime) -> str:
    """``value`` as stored: fixed-width ISO 8601 in UTC (ValueError without a time zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _read_times(row: dict[str, Any], times: tuple[str, ...]) -> None:
    for name in times:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])


class CallRecordStore:
    """The ``call_records`` and ``call_attempts`` tables of one database."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use :meth:`open`, which also brings the schema up to date."""
        self._engine = engine

    @classmethod
    async def open(cls, url: str) -> CallRecordStore:
        """Connect to ``url`` and migrate to head (an SQLite file's folder is created)."""
        parsed = sa.engine.make_url(url)
        connect_args: dict[str, Any] = {}
        is_sqlite = parsed.get_backend_name() == "sqlite"
        if is_sqlite and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
            connect_args["timeout"] = 10
        engine = create_async_engine(parsed, connect_args=connect_args)
        if is_sqlite:
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def insert(self, rows: list[dict[str, Any]]) -> int:
        """Store ``rows`` (with their attempts) in one transaction; rows whose record id is
        stored already are skipped. Returns how many were new."""
        if not rows:
            return 0
        ids = [row["record_id"] for row in rows]
        async with self._engine.begin() as conn:
            query = sa.select(call_records.c.record_id).where(call_records.c.record_id.in_(ids))
            known = set((await conn.execute(query)).scalars())
            new: dict[str, dict[str, Any]] = {}
            for row in rows:
                if row["record_id"] not in known:
                    new.setdefault(row["record_id"], row)  # a batch may hold a row twice
            if not new:
                return 0
            records = []
            attempts = []
            for row in new.values():
                record = {name: row.get(name) for name in _RECORD_COLUMNS}
                for name in _JSON_COLUMNS:
                    record[name] = json.dumps(row.get(name) or [], ensure_ascii=False)
                records.append(record)
                for attempt in row.get("attempts") or []:
                    values = {name: attempt.get(name) for name in _ATTEMPT_COLUMNS}
                    values["record_id"] = row["record_id"]
                    attempts.append(values)
            await conn.execute(sa.insert(call_records), records)
            if attempts:
                await conn.execute(sa.insert(call_attempts), attempts)
        return len(new)

    async def records(self) -> list[dict[str, Any]]:
        """Every record with its attempts (``attempts``, by seq), oldest first: for tests and
        exports; datetimes as timezone-aware UTC, JSON columns decoded."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(call_records).order_by(call_records.c.started_at))).mappings().all()
            tries = (await conn.execute(sa.select(call_attempts).order_by(
                call_attempts.c.record_id, call_attempts.c.seq))).mappings().all()
        by_record: dict[str, list[dict[str, Any]]] = {}
        for attempt in tries:
            values = dict(attempt)
            _read_times(values, _ATTEMPT_TIMES)
            by_record.setdefault(attempt["record_id"], []).append(values)
        out = []
        for row in rows:
            record = dict(row)
            _read_times(record, _RECORD_TIMES)
            for name in _JSON_COLUMNS:
                record[name] = json.loads(record[name])
            record["attempts"] = by_record.get(record["record_id"], [])
            out.append(record)
        return out

    async def stats_calls(self, *, since: datetime | None = None, until: datetime | None = None,
                          service: str | None = None,
                          centre_id: str | None = None) -> list[StatsCall]:
        """The calls that started in [since, until), optionally of one service or centre."""
        c = call_records.c
        query = sa.select(c.service, c.centre_id, c.outcome, c.attempt_count, c.answer_s)
        if since is not None:
            query = query.where(c.started_at >= instant(since))
        if until is not None:
            query = query.where(c.started_at < instant(until))
        if service is not None:
            query = query.where(c.service == service)
        if centre_id is not None:
            query = query.where(c.centre_id == centre_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [StatsCall(r.service, r.centre_id, r.outcome, r.attempt_count, r.answer_s)
                for r in rows]
