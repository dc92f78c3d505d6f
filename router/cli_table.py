"""``nodrute table …``: validate, import, compare, schedule, activate and roll back tables.

Every command but ``validate`` works on the database named in the config file's
``[database] url``; after a change that puts a version in force, nodes are told at once over
MQTT if ``[mqtt] url`` is set (they also poll the database, so a missing broker only delays).
Times are shown in UTC and Norwegian time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from pydantic import ValidationError

from municipality_map.diff import diff_snapshots
from municipality_map.loader import TableError, TableIssue, read_table
from municipality_map.snapshot import RoutingSnapshot, load_snapshot
from municipality_map.store import (
    Activation,
    StoredVersion,
    TableStore,
    active_at,
    default_actor,
    next_after,
    snapshot_from_stored,
)
from municipality_map.validate import validate_table

from .config import DEFAULT_CONFIG_PATH, NodruteSettings, load_settings
from .secrets import mask_secrets, mask_url

log = logging.getLogger("nodrute.cli.table")

table_app = typer.Typer(
    help="Routing table versions: validate, import, diff, schedule, activate, rollback.",
    no_args_is_help=True,
)

T = TypeVar("T")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", help="Router TOML config (database and MQTT).", exists=True, dir_okay=False
    ),
]
ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Name for the audit log (default: login name).")
]
TableDir = Annotated[
    Path, typer.Argument(help="Table directory.", exists=True, file_okay=False, dir_okay=True)
]


# --- helpers ------------------------------------------------------------------------------------


def _settings(config: Path) -> NodruteSettings:
    try:
        return load_settings(config)
    except ValidationError as err:
        typer.echo(f"{config}: invalid configuration:\n{err}", err=True)
        raise typer.Exit(2) from None


def _with_store(config: Path, work: Callable[[TableStore, NodruteSettings], Awaitable[T]]) -> T:
    settings = _settings(config)

    async def run() -> T:
        store = await TableStore.open(settings.database.url)
        try:
            return await work(store, settings)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except TableError as err:
        _print_issues("error", err.issues)
        typer.echo(f"rejected: {len(err.issues)} error(s); nothing was changed", err=True)
        raise typer.Exit(1) from None
    except (KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def _when(value: datetime) -> str:
    """``2027-01-07 08:00:00+01:00 (07:00:00Z)``."""
    utc = value.astimezone(UTC)
    try:
        local = value.astimezone(ZoneInfo("Europe/Oslo"))
    except ZoneInfoNotFoundError:
        return f"{utc:%Y-%m-%d %H:%M:%S}Z"
    return f"{local.isoformat(sep=' ', timespec='seconds')} ({utc:%H:%M:%S}Z)"


def _parse_instant(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 instant like 2027-01-07T08:00+01:00"
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise typer.BadParameter(f"{value!r} has no UTC offset; add one, e.g. +01:00 for Norway")
    return when


def _print_issues(kind: str, issues: tuple[TableIssue, ...]) -> None:
    for issue in issues:
        typer.echo(f"{kind}: {issue}", err=kind == "error")


def _version_line(version: StoredVersion, marker: str = " ") -> str:
    return (
        f"{marker} {version.version_id:>4}  {version.label:<24} {version.sha256[:12]}  "
        f"imported {version.imported_at:%Y-%m-%d %H:%M}Z by {version.imported_by}"
    )


def _activation_line(activation: Activation) -> str:
    return (
        f"activation {activation.activation_id}: version {activation.version_id} "
        f"({activation.kind}) effective {_when(activation.effective_at)}, by {activation.actor}"
    )


async def _announce(
    settings: NodruteSettings, activation: Activation, version: StoredVersion
) -> None:
    """Tell the other nodes over MQTT (retained), if a broker is configured.

    A broker that cannot be reached is only a warning: every node also polls the database.
    """
    if not settings.mqtt.url:
        return
    try:
        from municipality_map.sync import publish_activation

        await publish_activation(settings.mqtt.url, settings.mqtt.topic_prefix, activation, version)
    except Exception as err:  # the DB write stands; nodes will see it when they poll
        typer.echo(
            f"warning: could not announce on MQTT ({mask_url(settings.mqtt.url)}): "
            f"{mask_secrets(str(err))}; nodes will "
            f"pick the change up from the database within [tables] poll_interval_s",
            err=True,
        )
        return
    typer.echo(f"announced on MQTT ({mask_url(settings.mqtt.url)})")


async def _snapshot_of(store: TableStore, ref: str) -> RoutingSnapshot:
    """A directory on disk, or a stored version by id / label / sha256 prefix."""
    path = Path(ref)
    if path.is_dir():
        return load_snapshot(path)
    return snapshot_from_stored(await store.find_version(ref))


# --- commands -----------------------------------------------------------------------------------


@table_app.command()
def validate(
    table_dir: TableDir,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    against_active: Annotated[
        bool,
        typer.Option(
            "--against-active",
            help="Also compare with the version in force (database from --config): warns "
            "about centres whose coverage grows 3x or more.",
        ),
    ] = False,
) -> None:
    """Check a table directory (no database unless --against-active). Exit 1 on errors."""
    table = read_table(table_dir)
    previous: RoutingSnapshot | None = None
    if against_active:

        async def work(store: TableStore, _settings: NodruteSettings) -> RoutingSnapshot | None:
            active = await store.active_version(datetime.now(UTC))
            return None if active is None else snapshot_from_stored(active)

        previous = _with_store(config, work)
        if previous is None:
            typer.echo("note: no version is in force; nothing to compare with")
    report = validate_table(table, previous)
    errors = (*table.issues, *report.errors)
    _print_issues("error", errors)
    _print_issues("warning", report.warnings)
    if errors:
        typer.echo(
            f"{table_dir}: REJECTED, {len(errors)} error(s), {len(report.warnings)} warning(s)",
            err=True,
        )
        raise typer.Exit(1)
    label = table.version.label if table.version else "?"
    typer.echo(
        f"{table_dir}: OK ({label}: {len(table.municipalities)} municipalities, "
        f"{len(table.centres)} centres, {len(table.old_codes)} old-number rows; "
        f"{len(report.warnings)} warning(s))"
    )


@table_app.command("import")
def import_(
    table_dir: TableDir,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    activate_now: Annotated[bool, typer.Option("--activate", help="Put it in force now.")] = False,
    schedule_at: Annotated[
        str | None, typer.Option("--schedule", help="Put it in force at this instant (ISO 8601).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Label instead of version.toml's.")] = None,
    actor: ActorOption = None,
) -> None:
    """Validate a table directory and store it as a new (immutable) version."""
    if activate_now and schedule_at:
        raise typer.BadParameter("give --activate or --schedule, not both")
    when = _parse_instant(schedule_at) if schedule_at else None
    who = actor or default_actor()

    async def work(store: TableStore, settings: NodruteSettings) -> None:
        before = {v.version_id for v in await store.list_versions()}
        version, report = await store.import_version(table_dir, actor=who, label=label)
        _print_issues("warning", report.warnings)
        state = "already stored as" if version.version_id in before else "imported as"
        typer.echo(
            f"{table_dir}: {state} version {version.version_id} ({version.label}), "
            f"sha256 {version.sha256}"
        )
        activation: Activation | None = None
        if activate_now:
            activation = await store.activate(version.version_id, actor=who, now=datetime.now(UTC))
        elif when is not None:
            activation = await store.schedule(version.version_id, when, actor=who)
        if activation is not None:
            typer.echo(_activation_line(activation))
            await _announce(settings, activation, version)

    _with_store(config, work)


@table_app.command()
def diff(
    old: Annotated[str, typer.Argument(help="Version (id, label, sha256 prefix) or directory.")],
    new: Annotated[
        str | None,
        typer.Argument(
            help="Version or directory; default: compare OLD to the "
            "version in force, OLD being the new one."
        ),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
) -> None:
    """Which municipalities change centre, and which centres change, between two tables."""

    async def work(store: TableStore, _settings: NodruteSettings) -> str:
        if new is None:
            active = await store.active_version(datetime.now(UTC))
            if active is None:
                raise ValueError("no version is in force; give two tables to compare")
            before, after = snapshot_from_stored(active), await _snapshot_of(store, old)
        else:
            before, after = await _snapshot_of(store, old), await _snapshot_of(store, new)
        return diff_snapshots(before, after).to_text()

    typer.echo(_with_store(config, work))


@table_app.command()
def schedule(
    ref: Annotated[str, typer.Argument(help="Version: id, label or sha256 prefix.")],
    at: Annotated[str, typer.Option("--at", help="Instant, e.g. 2027-01-07T08:00+01:00.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    actor: ActorOption = None,
) -> None:
    """Put a stored version in force at an exact instant (every node switches then)."""
    when = _parse_instant(at)

    async def work(store: TableStore, settings: NodruteSettings) -> None:
        version = await store.find_version(ref)
        snapshot_from_stored(version)  # still valid with today's reference data?
        activation = await store.schedule(version.version_id, when, actor=actor or default_actor())
        typer.echo(_activation_line(activation))
        if when <= datetime.now(UTC):
            typer.echo("note: that instant has passed, so the version is in force now")
        await _announce(settings, activation, version)

    _with_store(config, work)


@table_app.command()
def activate(
    ref: Annotated[str, typer.Argument(help="Version: id, label or sha256 prefix.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    actor: ActorOption = None,
) -> None:
    """Put a stored version in force now."""

    async def work(store: TableStore, settings: NodruteSettings) -> None:
        version = await store.find_version(ref)
        snapshot_from_stored(version)
        activation = await store.activate(
            version.version_id, actor=actor or default_actor(), now=datetime.now(UTC)
        )
        typer.echo(_activation_line(activation))
        await _announce(settings, activation, version)

    _with_store(config, work)


@table_app.command()
def rollback(
    to: Annotated[
        str | None, typer.Option("--to", help="Version to go back to (default: the previous).")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    actor: ActorOption = None,
) -> None:
    """Put an earlier version back in force now (default: the one before the current)."""

    async def work(store: TableStore, settings: NodruteSettings) -> None:
        target = None if to is None else (await store.find_version(to)).version_id
        now = datetime.now(UTC)
        activation = await store.rollback(
            actor=actor or default_actor(), now=now, to_version_id=target
        )
        version = await store.get_version(activation.version_id)
        snapshot_from_stored(version)
        typer.echo(f"rolled back to version {version.version_id} ({version.label})")
        typer.echo(_activation_line(activation))
        upcoming = next_after(await store.activations(), now)
        if upcoming is not None:
            typer.echo(
                f"note: still scheduled: {_activation_line(upcoming)} "
                f"(cancel it with: nodrute table cancel {upcoming.activation_id})"
            )
        await _announce(settings, activation, version)

    _with_store(config, work)


@table_app.command()
def cancel(
    activation_id: Annotated[int, typer.Argument(help="Activation id (see `table list`).")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    actor: ActorOption = None,
) -> None:
    """Cancel a scheduled activation that has not taken effect yet."""

    async def work(store: TableStore, _settings: NodruteSettings) -> None:
        await store.cancel(activation_id, actor=actor or default_actor())
        typer.echo(f"activation {activation_id} cancelled")

    _with_store(config, work)


@table_app.command("list")
def list_(config: ConfigOption = DEFAULT_CONFIG_PATH) -> None:
    """Stored versions (* = in force now) and upcoming activations."""

    async def work(store: TableStore, _settings: NodruteSettings) -> str:
        now = datetime.now(UTC)
        activations = await store.activations()
        current = active_at(activations, now)
        lines = ["versions (* = in force now):"]
        for version in await store.list_versions():
            in_force = current is not None and current.version_id == version.version_id
            lines.append(_version_line(version, "*" if in_force else " "))
        if len(lines) == 1:
            lines.append("  (none; import one with: nodrute table import DIR)")
        if current is not None:
            lines.append(
                f"in force since {_when(current.effective_at)} "
                f"(activation {current.activation_id}, {current.kind})"
            )
        upcoming = [a for a in activations if a.effective_at > now]
        lines.append("upcoming activations:" if upcoming else "upcoming activations: none")
        lines.extend(f"  {_activation_line(a)}" for a in upcoming)
        return "\n".join(lines)

    typer.echo(_with_store(config, work))


@table_app.command()
def show(
    ref: Annotated[str, typer.Argument(help="Version: id, label or sha256 prefix.")],
    config: ConfigOption = DEFAULT_CONFIG_PATH,
) -> None:
    """One version: where it came from, what it holds, when it was in force."""

    async def work(store: TableStore, _settings: NodruteSettings) -> str:
        version = await store.find_version(ref)
        snapshot = snapshot_from_stored(version)
        files = ", ".join(f"{n} ({len(b)} bytes)" for n, b in sorted(version.files.items()))
        lines = [
            f"version {version.version_id}: {version.label}",
            f"  sha256       {version.sha256} (verified)",
            f"  author       {version.author}",
            f"  comment      {version.comment}",
            f"  effective_at {_when(version.effective_at) if version.effective_at else '-'}"
            " (from version.toml; activations decide)",
            f"  imported     {_when(version.imported_at)} by {version.imported_by}",
            f"  files        {files}",
            f"  contents     {snapshot.municipality_count} municipalities, "
            f"{len(snapshot.centres)} centres, {len(snapshot.old_codes)} old-number rows",
        ]
        mine = [a for a in await store.activations() if a.version_id == version.version_id]
        lines.append("  activations" + ("" if mine else "  none"))
        lines.extend(f"    {_activation_line(a)}" for a in mine)
        if snapshot.warnings:
            lines.append("  warnings")
            lines.extend(f"    {w}" for w in snapshot.warnings)
        return "\n".join(lines)

    typer.echo(_with_store(config, work))


@table_app.command("log")
def log_(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    limit: Annotated[int, typer.Option(help="How many entries (latest).")] = 50,
) -> None:
    """The audit log: imports, schedules, activations, rollbacks, cancellations."""

    async def work(store: TableStore, _settings: NodruteSettings) -> str:
        entries = await store.audit_log(limit)
        if not entries:
            return "audit log is empty"
        return "\n".join(
            f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.actor:<12} {e.action:<9} "
            f"{'v' + str(e.version_id) if e.version_id is not None else '-':<5} {e.detail}"
            for e in entries
        )

    typer.echo(_with_store(config, work))
