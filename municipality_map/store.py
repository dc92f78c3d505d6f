"""TableStore: routing table versions, their activations and an audit log, in a database.

SQLAlchemy 2 async: an SQLite file by default (``sqlite+aiosqlite:///…``), PostgreSQL by URL
(``postgresql+asyncpg://…``, the ``postgres`` extra). The schema is kept by Alembic
(``municipality_map/migrations``); :meth:`TableStore.open` upgrades it to head.

A stored version is the exact bytes of a table directory's files, named by the sha256 of their
canonical form (:func:`content_sha256`), and never changes: there is no update path here, and
the migration makes the database refuse UPDATE and DELETE on versions. Which version routes
when is a list of *activations* (version + instant); the version in force at ``t`` is the
latest activation at or before ``t`` (:func:`active_at`). Rolling back adds an activation; a
future activation can be cancelled. Every change is written to the audit log with who and when.

Nothing here runs on the call path: the router builds a :class:`RoutingSnapshot` from a
stored version (:func:`snapshot_from_stored`) and swaps it in.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from municipality_map.loader import (
    OPTIONAL_FILES,
    REQUIRED_FILES,
    TableError,
    TableIssue,
    parse_table,
    read_table_files,
)
from municipality_map.schedule import active_at, next_after
from municipality_map.snapshot import RoutingSnapshot, snapshot_from_table
from municipality_map.validate import ValidationReport, validate_table

ActivationKind = Literal["schedule", "activate", "rollback"]
AuditAction = Literal[
    "import", "schedule", "activate", "rollback", "cancel",
    "centre_drain", "centre_down", "centre_up",
]
OverrideKind = Literal["drain", "down", "up"]
"""An operator's word on a centre: ``up`` clears the override (probes decide again)."""

REPO_ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def default_database_url() -> str:
    """``sqlite+aiosqlite:///<repo>/var/nodrute.db``: the database of a source checkout."""
    return f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'nodrute.db'}"


def default_actor() -> str:
    """Who is running this: the login name, for the audit log."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


# --- value objects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredVersion:
    """One imported table version: its files, exactly as imported, and where they came from."""

    version_id: int
    """Database id, 1, 2, …, in import order."""
    label: str
    """``label`` from version.toml, or the one given at import."""
    sha256: str
    """Hex digest of the canonical content of ``files`` (:func:`content_sha256`)."""
    effective_at: datetime | None
    """``effective_at`` from version.toml (UTC; informational: activations decide)."""
    author: str
    """``author`` from version.toml."""
    comment: str
    """``comment`` from version.toml."""
    imported_by: str
    """Who imported it."""
    imported_at: datetime
    """When (UTC)."""
    files: Mapping[str, bytes]
    """File name -> exact bytes: version.toml, municipalities.csv, centres.csv (old_codes.csv)."""


@dataclass(frozen=True)
class Activation:
    """A version put in force at an instant."""

    activation_id: int
    """Database id; among activations at the same instant the highest wins."""
    version_id: int
    """The version put in force."""
    effective_at: datetime
    """When it takes over (UTC)."""
    kind: ActivationKind
    """``schedule`` (planned), ``activate`` (now) or ``rollback`` (now, to an earlier one)."""
    created_at: datetime
    """When the activation was recorded (UTC)."""
    actor: str
    """Who recorded it."""
    cancelled: bool
    """True once cancelled (only before it took effect); cancelled ones never count."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    entry_id: int
    at: datetime
    """When (UTC)."""
    actor: str
    """Who."""
    action: AuditAction
    """What."""
    version_id: int | None
    """The version concerned, if any."""
    detail: str
    """Human-readable detail (activation id, instants, sha256, warnings)."""


@dataclass(frozen=True)
class StoredOverride:
    """A centre's operator override in force (``nodrute centre drain|down``)."""

    centre_id: str
    state: Literal["drain", "down"]
    reason: str
    actor: str
    since: datetime
    """When it was set (UTC)."""


# --- pure helpers ------------------------------------------------------------------------------


def content_sha256(files: Mapping[str, bytes]) -> str:
    """The sha256 of a table's files: for each file in name order, its UTF-8 name, a NUL byte,
    its length as 8 bytes big-endian, then its bytes. Unambiguous, and independent of file
    order or where the directory lives."""
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def snapshot_from_stored(
    version: StoredVersion, previous: RoutingSnapshot | None = None
) -> RoutingSnapshot:
    """Build the routing snapshot of a stored version from its bytes (nothing touches disk).

    Raises :class:`TableError` if the bytes do not match the version's sha256 (damaged or
    tampered with) or the table does not validate (e.g. the bundled reference data changed).
    """
    actual = content_sha256(version.files)
    source = f"stored version {version.version_id} ({version.label})"
    if actual != version.sha256:
        issue = TableIssue(
            "(database)",
            None,
            None,
            f"content sha256 is {actual}, but the version was imported as {version.sha256}: "
            "the stored files were changed; do not route on them",
        )
        raise TableError([issue], source)
    table = parse_table(version.files, Path(f"version-{version.version_id}"))
    return snapshot_from_table(table, previous=previous, source=source)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone; give an offset, e.g. +01:00")
    return value.astimezone(UTC)


# --- schema ------------------------------------------------------------------------------------


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Time-zone-aware datetimes, stored as UTC (SQLite keeps no offset: naive means UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_metadata = sa.MetaData()
_versions = sa.Table(
    "table_versions",
    _metadata,
    sa.Column("version_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("effective_at", UtcDateTime, nullable=True),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("imported_by", sa.String(200), nullable=False),
    sa.Column("imported_at", UtcDateTime, nullable=False),
)
_files = sa.Table(
    "table_files",
    _metadata,
    sa.Column("version_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("content", sa.LargeBinary, nullable=False),
)
_activations = sa.Table(
    "activations",
    _metadata,
    sa.Column("activation_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version_id", sa.Integer, nullable=False),
    sa.Column("effective_at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False),
)
_audit = sa.Table(
    "audit_log",
    _metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("version_id", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
)
_overrides = sa.Table(
    "centre_overrides",
    _metadata,
    sa.Column("centre_id", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("since", UtcDateTime, nullable=False),
)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_path(url: sa.engine.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


# --- the store ---------------------------------------------------------------------------------


class TableStore:
    """Versions, activations and the audit log in one database; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        """Use :meth:`open`, which also brings the schema up to date."""
        self._engine = engine

    @classmethod
    async def open(cls, url: str | None = None) -> TableStore:
        """Connect to ``url`` (default :func:`default_database_url`) and migrate to head.

        An SQLite file and its directory are created if missing.
        """
        parsed = sa.engine.make_url(url or default_database_url())
        connect_args: dict[str, Any] = {}
        path = _sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Several routers and the CLI may share the file: wait for a writer, don't fail.
            connect_args["timeout"] = 30
        engine = create_async_engine(parsed, connect_args=connect_args)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        for attempt in range(3):
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(_upgrade)
                break
            except DBAPIError:
                # Another process migrating the same fresh database at the same moment.
                if attempt == 2:
                    await engine.dispose()
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return cls(engine)

    async def close(self) -> None:
        """Close every connection."""
        await self._engine.dispose()

    # --- versions ----------------------------------------------------------------------------

    async def import_version(
        self, table_dir: Path, *, actor: str, label: str | None = None
    ) -> tuple[StoredVersion, ValidationReport]:
        """Validate the table in ``table_dir`` and store it.

        Raises :class:`TableError` (nothing stored) if the table has errors. If a version with
        the same content is stored already, that one is returned and nothing new is stored. The
        report's warnings include those against the version in force now (coverage growth).
        """
        issues: list[TableIssue] = []
        files = read_table_files(table_dir, issues)
        table = parse_table(files, table_dir, issues)
        previous = await self._snapshot_in_force(datetime.now(UTC))
        report = validate_table(table, previous)
        problems = (*table.issues, *report.errors)
        if problems or table.version is None:
            raise TableError(problems, str(table_dir))
        digest = content_sha256(files)
        now = datetime.now(UTC)
        source = str(table_dir)
        existing = await self._version_by_sha(digest)
        if existing is not None:
            await self._audit(
                actor, "import", existing.version_id, f"{source}: unchanged, already stored"
            )
            return existing, report
        version = table.version
        row = {
            "label": label or version.label,
            "sha256": digest,
            "effective_at": version.effective_at,
            "author": version.author,
            "comment": version.comment,
            "imported_by": actor,
            "imported_at": now,
        }
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(sa.insert(_versions).values(**row))
                version_id = _new_id(result)
                await conn.execute(
                    sa.insert(_files),
                    [
                        {"version_id": version_id, "name": name, "content": data}
                        for name, data in sorted(files.items())
                    ],
                )
                detail = (
                    f"{row['label']} sha256 {digest[:12]} from {source}"
                    f" ({len(report.warnings)} warning{'s' if len(report.warnings) != 1 else ''})"
                )
                await self._audit_in(conn, now, actor, "import", version_id, detail)
        except IntegrityError:
            # The same content imported by someone else a moment ago.
            existing = await self._version_by_sha(digest)
            if existing is None:
                raise
            return existing, report
        return await self.get_version(version_id), report

    async def get_version(self, version_id: int) -> StoredVersion:
        """The stored version ``version_id``; KeyError if there is none."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(_versions).where(_versions.c.version_id == version_id))
            ).one_or_none()
            if row is None:
                raise KeyError(f"no table version {version_id}")
            return await self._with_files(conn, row)

    async def find_version(self, ref: str) -> StoredVersion:
        """A version by id (``"3"``), label (the newest with it) or sha256 prefix (≥ 6 hex).

        KeyError if none matches, or if a sha256 prefix matches several.
        """
        ref = ref.strip()
        if ref.isdigit():
            try:
                return await self.get_version(int(ref))
            except KeyError:
                pass
        async with self._engine.connect() as conn:
            query = (
                sa.select(_versions)
                .where(_versions.c.label == ref)
                .order_by(_versions.c.version_id.desc())
                .limit(1)
            )
            row = (await conn.execute(query)).one_or_none()
            if row is None and len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref):
                query = sa.select(_versions).where(_versions.c.sha256.startswith(ref)).limit(2)
                rows = (await conn.execute(query)).all()
                if len(rows) > 1:
                    raise KeyError(f"sha256 prefix {ref!r} matches several versions; give more")
                row = rows[0] if rows else None
            if row is None:
                raise KeyError(f"no table version {ref!r} (give an id, a label or a sha256 prefix)")
            return await self._with_files(conn, row)

    async def list_versions(self) -> list[StoredVersion]:
        """Every stored version, oldest first."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(_versions).order_by(_versions.c.version_id))).all()
            files = (await conn.execute(sa.select(_files))).all()
        by_version: dict[int, dict[str, bytes]] = {}
        for f in files:
            by_version.setdefault(f.version_id, {})[f.name] = f.content
        return [_stored(row, by_version.get(row.version_id, {})) for row in rows]

    # --- activations -------------------------------------------------------------------------

    async def schedule(self, version_id: int, effective_at: datetime, *, actor: str) -> Activation:
        """Put ``version_id`` in force from ``effective_at`` (tz-aware; ValueError otherwise)."""
        when = _utc(effective_at)
        return await self._add_activation(
            version_id,
            when,
            "schedule",
            actor,
            datetime.now(UTC),
            f"effective {when:%Y-%m-%dT%H:%M:%SZ}",
        )

    async def activate(self, version_id: int, *, actor: str, now: datetime) -> Activation:
        """Put ``version_id`` in force from ``now``."""
        when = _utc(now)
        return await self._add_activation(version_id, when, "activate", actor, when, "now")

    async def rollback(
        self, *, actor: str, now: datetime, to_version_id: int | None = None
    ) -> Activation:
        """Put an earlier version back in force from ``now``.

        Default: the version that was in force before the current one (rolling back twice
        therefore toggles). ValueError if nothing is in force or there is nothing earlier.
        Scheduled future activations stay as they are (cancel them separately).
        """
        when = _utc(now)
        history = sorted(
            (a for a in await self.activations() if a.effective_at <= when),
            key=lambda a: (a.effective_at, a.activation_id),
        )
        if not history:
            raise ValueError("no version is in force, so there is nothing to roll back")
        current = history[-1]
        if to_version_id is None:
            earlier = [a for a in history if a.version_id != current.version_id]
            if not earlier:
                raise ValueError(
                    f"version {current.version_id} is the only one ever in force; "
                    "nothing to roll back to"
                )
            to_version_id = earlier[-1].version_id
        detail = f"from version {current.version_id}"
        return await self._add_activation(to_version_id, when, "rollback", actor, when, detail)

    async def cancel(self, activation_id: int, *, actor: str) -> None:
        """Cancel a scheduled activation that has not taken effect yet.

        KeyError if there is no such activation; ValueError if it is cancelled already or in
        force (use :meth:`rollback` then).
        """
        now = datetime.now(UTC)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    sa.select(_activations).where(_activations.c.activation_id == activation_id)
                )
            ).one_or_none()
            if row is None:
                raise KeyError(f"no activation {activation_id}")
            activation = _activation(row)
            if activation.cancelled:
                raise ValueError(f"activation {activation_id} is cancelled already")
            if activation.effective_at <= now:
                raise ValueError(
                    f"activation {activation_id} took effect at "
                    f"{activation.effective_at:%Y-%m-%dT%H:%M:%SZ}; roll back instead"
                )
            await conn.execute(
                sa.update(_activations)
                .where(_activations.c.activation_id == activation_id)
                .values(cancelled=True)
            )
            detail = (
                f"activation {activation_id} "
                f"(was effective {activation.effective_at:%Y-%m-%dT%H:%M:%SZ})"
            )
            await self._audit_in(conn, now, actor, "cancel", activation.version_id, detail)

    async def activations(self) -> list[Activation]:
        """Activations not cancelled, by (effective_at, activation_id)."""
        async with self._engine.connect() as conn:
            query = (
                sa.select(_activations)
                .where(_activations.c.cancelled == sa.false())
                .order_by(_activations.c.effective_at, _activations.c.activation_id)
            )
            return [_activation(row) for row in (await conn.execute(query)).all()]

    async def active_version(self, now: datetime) -> StoredVersion | None:
        """The version in force at ``now``, or None."""
        current = active_at(await self.activations(), _utc(now))
        return None if current is None else await self.get_version(current.version_id)

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The latest ``limit`` audit entries, oldest first."""
        async with self._engine.connect() as conn:
            query = sa.select(_audit).order_by(_audit.c.entry_id.desc()).limit(limit)
            rows = (await conn.execute(query)).all()
        return [
            AuditEntry(r.entry_id, r.at, r.actor, r.action, r.version_id, r.detail)
            for r in reversed(rows)
        ]

    # --- centre overrides (read by router/health_overrides.py on every node) -------------------

    async def set_centre_override(
        self, centre_id: str, state: OverrideKind, *, actor: str, reason: str, now: datetime
    ) -> StoredOverride | None:
        """Drain, force down, or (``up``) clear the override of ``centre_id``; audited.

        Returns the override now in force, None after ``up``. Knows nothing of the table:
        the caller checks that the centre exists.
        """
        when = _utc(now)
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(_overrides).where(_overrides.c.centre_id == centre_id))
            if state != "up":
                await conn.execute(sa.insert(_overrides).values(
                    centre_id=centre_id, state=state, reason=reason, actor=actor, since=when))
            detail = f"{centre_id} {state}" + (f": {reason}" if reason else "")
            action = cast(AuditAction, f"centre_{state}")
            await self._audit_in(conn, when, actor, action, None, detail)
        if state == "up":
            return None
        return StoredOverride(centre_id, state, reason, actor, when)

    async def centre_overrides(self) -> list[StoredOverride]:
        """Every override in force, by centre id."""
        async with self._engine.connect() as conn:
            query = sa.select(_overrides).order_by(_overrides.c.centre_id)
            rows = (await conn.execute(query)).all()
        return [StoredOverride(r.centre_id, r.state, r.reason, r.actor, r.since) for r in rows]

    # --- internals ---------------------------------------------------------------------------

    async def _snapshot_in_force(self, now: datetime) -> RoutingSnapshot | None:
        version = await self.active_version(now)
        if version is None:
            return None
        try:
            return snapshot_from_stored(version)
        except (TableError, ValueError):
            return None  # only used for warnings; the runtime reports a broken version

    async def _version_by_sha(self, digest: str) -> StoredVersion | None:
        async with self._engine.connect() as conn:
            query = sa.select(_versions).where(_versions.c.sha256 == digest)
            row = (await conn.execute(query)).one_or_none()
            return None if row is None else await self._with_files(conn, row)

    async def _with_files(self, conn: AsyncConnection, row: sa.Row[Any]) -> StoredVersion:
        query = sa.select(_files).where(_files.c.version_id == row.version_id)
        files = {f.name: f.content for f in (await conn.execute(query)).all()}
        return _stored(row, files)

    async def _add_activation(
        self,
        version_id: int,
        effective_at: datetime,
        kind: ActivationKind,
        actor: str,
        created_at: datetime,
        detail: str,
    ) -> Activation:
        async with self._engine.begin() as conn:
            exists = await conn.execute(
                sa.select(_versions.c.version_id).where(_versions.c.version_id == version_id)
            )
            if exists.one_or_none() is None:
                raise KeyError(f"no table version {version_id}")
            result = await conn.execute(
                sa.insert(_activations).values(
                    version_id=version_id,
                    effective_at=effective_at,
                    kind=kind,
                    created_at=created_at,
                    actor=actor,
                    cancelled=False,
                )
            )
            activation_id = _new_id(result)
            await self._audit_in(
                conn, created_at, actor, kind, version_id, f"activation {activation_id}: {detail}"
            )
        return Activation(
            activation_id, version_id, effective_at, kind, created_at, actor, cancelled=False
        )

    async def _audit(
        self, actor: str, action: AuditAction, version_id: int | None, detail: str
    ) -> None:
        async with self._engine.begin() as conn:
            await self._audit_in(conn, datetime.now(UTC), actor, action, version_id, detail)

    @staticmethod
    async def _audit_in(
        conn: AsyncConnection,
        at: datetime,
        actor: str,
        action: AuditAction,
        version_id: int | None,
        detail: str,
    ) -> None:
        await conn.execute(
            sa.insert(_audit).values(
                at=at, actor=actor, action=action, version_id=version_id, detail=detail
            )
        )


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new row")
    return int(key[0])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (routers) never wait for the CLI
    cursor.close()


def _stored(row: sa.Row[Any], files: Mapping[str, bytes]) -> StoredVersion:
    return StoredVersion(
        version_id=row.version_id,
        label=row.label,
        sha256=row.sha256,
        effective_at=row.effective_at,
        author=row.author,
        comment=row.comment,
        imported_by=row.imported_by,
        imported_at=row.imported_at,
        files=MappingProxyType(dict(files)),
    )


def _activation(row: sa.Row[Any]) -> Activation:
    return Activation(
        activation_id=row.activation_id,
        version_id=row.version_id,
        effective_at=row.effective_at,
        kind=cast(ActivationKind, row.kind),
        created_at=row.created_at,
        actor=row.actor,
        cancelled=bool(row.cancelled),
    )


__all__ = [
    "OPTIONAL_FILES",
    "REQUIRED_FILES",
    "Activation",
    "AuditEntry",
    "StoredOverride",
    "StoredVersion",
    "TableStore",
    "active_at",
    "content_sha256",
    "default_actor",
    "default_database_url",
    "next_after",
    "snapshot_from_stored",
]
