"""``nodrute centre …``: operator overrides of a centre, and what this node thinks of each.

``drain`` (no new calls, calls in progress go on), ``down`` (forced down) and ``up`` (back to
the probes' verdict) write the ``centre_overrides`` table and the audit log in the database of
``[database] url``; every node reads it within ``[health] override_poll_interval_s`` (and at
start). ``status`` prints, per centre URI, the override from the database and the local node's
view from its metrics endpoint (``[metrics]``): effective state, last probe latency, since when.
"""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from prometheus_client.parser import text_string_to_metric_families

from municipality_map.snapshot import RoutingSnapshot, load_snapshot
from municipality_map.store import (
    StoredOverride,
    TableStore,
    default_actor,
    snapshot_from_stored,
)

from .cli_table import ActorOption, ConfigOption, _settings
from .config import DEFAULT_CONFIG_PATH, NodruteSettings

centre_app = typer.Typer(
    help="Centre overrides (drain, down, up) and the node's view of every centre URI.",
    no_args_is_help=True,
)

CentreId = Annotated[str, typer.Argument(help="Centre id from centres.csv, e.g. AMK-OSLO.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]


def _set(config: Path, centre_id: str, state: Literal["drain", "down", "up"], reason: str,
         actor: str | None) -> None:
    settings = _settings(config)

    async def run() -> StoredOverride | None:
        store = await TableStore.open(settings.database.url)
        try:
            snapshot = await _snapshot_in_force(store, settings)
            if snapshot.centre(centre_id) is None:
                known = ", ".join(sorted(snapshot.centres)[:8])
                typer.echo(f"error: no centre {centre_id!r} in table {snapshot.version.label} "
                           f"(e.g. {known}, …)", err=True)
                raise typer.Exit(1)
            return await store.set_centre_override(
                centre_id, state, actor=actor or default_actor(), reason=reason,
                now=datetime.now(UTC))
        finally:
            await store.close()

    asyncio.run(run())
    what = {"drain": "drained: no new calls (calls in progress go on)",
            "down": "forced down: no new calls", "up": "back to automatic (probes decide)"}
    typer.echo(f"{centre_id} {what[state]}; nodes apply it within "
               f"{settings.health.override_poll_interval_s:g} s")


@centre_app.command()
def drain(centre_id: CentreId, reason: ReasonOption = "",
          config: ConfigOption = DEFAULT_CONFIG_PATH, actor: ActorOption = None) -> None:
    """Send no new calls to CENTRE_ID (still probed; calls in progress are kept)."""
    _set(config, centre_id, "drain", reason, actor)


@centre_app.command()
def down(centre_id: CentreId, reason: ReasonOption = "",
         config: ConfigOption = DEFAULT_CONFIG_PATH, actor: ActorOption = None) -> None:
    """Force CENTRE_ID down whatever the probes say."""
    _set(config, centre_id, "down", reason, actor)


@centre_app.command()
def up(centre_id: CentreId, reason: ReasonOption = "",
       config: ConfigOption = DEFAULT_CONFIG_PATH, actor: ActorOption = None) -> None:
    """Clear the override of CENTRE_ID: the probes decide again."""
    _set(config, centre_id, "up", reason, actor)


@centre_app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG_PATH,
    metrics_url: Annotated[str | None, typer.Option(
        "--metrics-url", help="Node metrics (default: http://[metrics] host:port/metrics)."
    )] = None,
) -> None:
    """Per centre URI: this node's state, last probe latency, since when; overrides in force."""
    settings = _settings(config)

    async def run() -> tuple[RoutingSnapshot, list[StoredOverride]]:
        store = await TableStore.open(settings.database.url)
        try:
            return await _snapshot_in_force(store, settings), await store.centre_overrides()
        finally:
            await store.close()

    snapshot, overrides = asyncio.run(run())
    url = metrics_url or f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    views, problem = read_node_view(url)
    by_centre = {o.centre_id: o for o in overrides}
    typer.echo(f"table {snapshot.version.label}; node view from {url}"
               + (f" (not available: {problem})" if problem else ""))
    typer.echo(f"{'CENTRE':<16} {'URI':<34} {'STATE':<12} {'LATENCY':>8}  {'SINCE':<20} "
               "OVERRIDE")
    for centre_id in sorted(snapshot.centres):
        centre = snapshot.centres[centre_id]
        override = by_centre.get(centre_id)
        note = (f"{override.state} by {override.actor} {override.since:%Y-%m-%d %H:%M}Z"
                + (f": {override.reason}" if override.reason else "")) if override else "-"
        for uri in centre.uris:
            view = views.get(uri)
            state = view.state if view else "?"
            latency = f"{view.latency_s * 1000:.1f}ms" if view and view.latency_s is not None \
                else "-"
            since = f"{view.since:%Y-%m-%d %H:%M:%S}Z" if view and view.since else "-"
            typer.echo(f"{centre_id:<16} {uri:<34} {state:<12} {latency:>8}  {since:<20} {note}")
    for centre_id in sorted(by_centre.keys() - snapshot.centres.keys()):
        typer.echo(f"override for {centre_id}, which is not in the table: {by_centre[centre_id]}")


@dataclass
class NodeView:
    """One URI as the node's metrics show it."""

    state: str
    latency_s: float | None = None
    since: datetime | None = None


def read_node_view(url: str, timeout_s: float = 2.0) -> tuple[dict[str, NodeView], str | None]:
    """URI -> state/latency/since from a node's ``/metrics``; ``({}, why)`` if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode("utf-8")
    except (OSError, ValueError) as err:
        return {}, str(err)
    return parse_node_view(text), None


def parse_node_view(text: str) -> dict[str, NodeView]:
    views: dict[str, NodeView] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            uri = sample.labels.get("uri")
            if uri is None:
                continue
            view = views.setdefault(uri, NodeView("?"))
            if sample.name == "nodrute_destination_state_since_timestamp_seconds":
                view.state = sample.labels.get("state", "?")
                view.since = datetime.fromtimestamp(sample.value, UTC)
            elif sample.name == "nodrute_destination_probe_latency_seconds":
                view.latency_s = sample.value
    return views


async def _snapshot_in_force(store: TableStore, settings: NodruteSettings) -> RoutingSnapshot:
    version = await store.active_version(datetime.now(UTC))
    if version is None:
        return await asyncio.to_thread(load_snapshot, settings.routing.table_dir)
    return await asyncio.to_thread(snapshot_from_stored, version)
