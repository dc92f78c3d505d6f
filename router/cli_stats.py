"""``nodrute stats``: answer-time figures per service and centre for a period, from the call
records in ``[database] url`` (router/stats.py computes them; definitions there and in the
README, "Call records and stats")."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .cli_table import _parse_instant, _settings
from .config import DEFAULT_CONFIG_PATH
from .records_store import CallRecordStore, StatsCall
from .secrets import mask_secrets, mask_url
from .stats import StatsRow, compute_stats


class StatsFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


class ServiceChoice(StrEnum):
    AMK = "113"
    LEGEVAKT = "116117"


_COLUMNS = ("service", "centre", "calls", "answered", "abandoned", "failed", "failed_over",
            "target_s", "answered_within_target", "share_within_target", "median_answer_s",
            "p90_answer_s")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_table(rows: list[StatsRow]) -> str:
    header = ["service", "centre", "calls", "answered", "abandoned", "failed", "failed over",
              "target s", "within", "share", "median s", "p90 s"]
    body = []
    for row in rows:
        cells = [_cell(getattr(row, name)) for name in _COLUMNS]
        share = row.share_within_target
        cells[9] = "-" if share is None else f"{share * 100:.1f} %"
        body.append(cells)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
             for line in [header, *body]]
    return "\n".join(lines)


def render_csv(rows: list[StatsRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, name) is None else getattr(row, name)
                         for name in _COLUMNS])
    return out.getvalue().rstrip("\n")


def render_json(rows: list[StatsRow], since: datetime | None, until: datetime | None) -> str:
    return json.dumps({
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "rows": [row.as_dict() for row in rows],
    }, indent=2)


def stats(
    since: Annotated[str | None, typer.Option(
        help="Calls that started at or after this ISO 8601 instant (with offset).")] = None,
    until: Annotated[str | None, typer.Option(
        help="Calls that started before this ISO 8601 instant (with offset).")] = None,
    service: Annotated[ServiceChoice | None, typer.Option(help="Only this service.")] = None,
    centre: Annotated[str | None, typer.Option(help="Only this centre id.")] = None,
    output_format: Annotated[StatsFormat, typer.Option(
        "--format", help="table, csv or json.")] = StatsFormat.TABLE,
    config: Annotated[Path, typer.Option(help="Router TOML config (the database URL).",
                                         exists=True, dir_okay=False)] = DEFAULT_CONFIG_PATH,
) -> None:
    """Calls, answered, abandoned, failed, failed over and answer times per service and centre
    (share answered within 10 s for 113, 120 s for 116117, IVR time excluded)."""
    settings = _settings(config)
    start = _parse_instant(since) if since else None
    end = _parse_instant(until) if until else None

    async def read() -> list[StatsCall]:
        store = await CallRecordStore.open(settings.database.url)
        try:
            return await store.stats_calls(since=start, until=end,
                                           service=service.value if service else None,
                                           centre_id=centre)
        finally:
            await store.close()

    try:
        calls = asyncio.run(read())
    except Exception as err:  # unreachable database, bad URL
        typer.echo(f"error: call records not readable from {mask_url(settings.database.url)}: "
                   f"{mask_secrets(str(err))}", err=True)
        raise typer.Exit(1) from None
    rows = compute_stats(calls)
    if output_format is StatsFormat.JSON:
        typer.echo(render_json(rows, start, end))
    elif output_format is StatsFormat.CSV:
        typer.echo(render_csv(rows))
    elif rows:
        typer.echo(render_table(rows))
    else:
        typer.echo("no calls in the period")
