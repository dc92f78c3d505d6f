"""The ``nodrute`` command line (typer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from municipality_map import TableError

from .cli_centre import centre_app
from .cli_prompts import prompts_app
from .cli_stats import stats
from .cli_table import table_app
from .config import DEFAULT_CONFIG_PATH, load_settings
from .secrets import install_log_masking, mask_secrets

app = typer.Typer(help="nodrute: call router for the emergency numbers 113 and 116117.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(table_app, name="table")
app.add_typer(prompts_app, name="prompts")
app.add_typer(centre_app, name="centre")
app.command()(stats)


@app.callback()
def _main() -> None:
    """nodrute: call router for the emergency numbers 113 and 116117."""


@app.command()
def serve(
    config: Annotated[Path, typer.Option(help="TOML config file.", exists=True,
                                         dir_okay=False)] = DEFAULT_CONFIG_PATH,
) -> None:
    """Run the router in the foreground: SIGTERM/SIGINT drain and stop, SIGHUP reloads."""
    from .app import run

    try:
        settings = load_settings(config)
    except ValidationError as err:
        typer.echo(f"{config}: invalid configuration:\n{mask_secrets(str(err))}", err=True)
        raise typer.Exit(2) from None
    from .logs import configure_logging

    configure_logging(settings.log, sys.stderr)
    install_log_masking()  # no database or MQTT password in any log line
    try:
        run(settings, config)
    except TableError as err:
        typer.echo(f"routing table rejected:\n{err}", err=True)
        raise typer.Exit(2) from None
