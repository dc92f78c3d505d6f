"""``nodrute table …`` through typer's CliRunner against a temporary SQLite database."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from municipality_map.store import TableStore, active_at
from router.cli import app

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "configs" / "tables" / "sample-2024"
EXAMPLE = REPO / "configs" / "tables" / "examples" / "2024-renumbering"
BROKEN = REPO / "configs" / "tables" / "examples" / "broken"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "nodrute.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "n.db"}"\n')
    return path


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["table", *map(str, args)])
    return result.exit_code, result.output


WRITES = {"import", "schedule", "activate", "rollback", "cancel"}


def table(config: Path, *args: str | Path) -> str:
    actor = ("--actor", "tester") if args[0] in WRITES else ()
    code, output = run(*args, "--config", config, *actor)
    assert code == 0, output
    return output


def in_force(config: Path) -> int | None:
    async def read() -> int | None:
        url = re.search(r'url = "(.*)"', config.read_text())
        assert url is not None
        store = await TableStore.open(url.group(1))
        try:
            current = active_at(await store.activations(), datetime.now(UTC))
            return None if current is None else current.version_id
        finally:
            await store.close()

    return asyncio.run(read())


def test_validate_needs_no_database(tmp_path: Path):
    code, output = run("validate", SAMPLE)
    assert code == 0
    assert "OK (sample-2024: 359 municipalities" in output


def test_validate_prints_located_errors_and_fails():
    code, output = run("validate", BROKEN)
    assert code == 1
    assert "error: municipalities.csv:2: column kommunenummer: '301'" in output
    assert "did you mean '0301' (Oslo)?" in output
    assert "0104 is a 2017\u20132019 number; today's is 3103 Moss" in output
    assert "REJECTED" in output


def test_validate_against_the_active_version_warns_about_growth(config: Path, tmp_path: Path):
    table(config, "import", SAMPLE, "--activate")
    grown = tmp_path / "grown"
    shutil.copytree(SAMPLE, grown)
    path = grown / "municipalities.csv"
    text = path.read_text(encoding="utf-8")
    for other in ("AMK-BERGEN", "AMK-FONNA"):  # Helse Vest's AMKs into Stavanger's
        text = text.replace(f",{other},", ",AMK-STAVANGER,")
    path.write_text(text, encoding="utf-8")
    code, output = run("validate", grown, "--against-active", "--config", config)
    assert code == 0, output
    assert "'AMK-STAVANGER' would cover" in output
    code, output = run("validate", grown)
    assert code == 0 and "would cover" not in output


def test_import_activate_list_show(config: Path):
    output = table(config, "import", SAMPLE, "--activate")
    assert "imported as version 1 (sample-2024)" in output
    assert "activation 1: version 1 (activate)" in output
    assert in_force(config) == 1
    assert "already stored as version 1" in table(config, "import", SAMPLE)
    listing = table(config, "list")
    assert re.search(r"^\*\s+1\s+sample-2024", listing, re.MULTILINE)
    shown = table(config, "show", "sample-2024")
    assert "(verified)" in shown and "359 municipalities" in shown


def test_rejected_import_changes_nothing(config: Path):
    table(config, "import", SAMPLE, "--activate")
    code, output = run("import", BROKEN, "--activate", "--config", config)
    assert code == 1
    assert "nothing was changed" in output
    assert "centres.csv:" in output
    assert in_force(config) == 1
    assert "broken" not in table(config, "list")


def test_diff_two_versions_and_a_directory_against_the_active(config: Path):
    table(config, "import", SAMPLE, "--activate")
    table(config, "import", EXAMPLE)
    between = table(config, "diff", "1", "2024-renumbering")
    assert "3234 Lunner: AMK-INNLANDET \u2192 AMK-OSLO" in between
    against_active = table(config, "diff", str(EXAMPLE))
    assert against_active == between


def test_schedule_cancel_and_the_walkthrough(config: Path):
    table(config, "import", SAMPLE, "--activate")
    table(config, "import", EXAMPLE)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = table(config, "schedule", "2", "--at", later)
    activation = re.search(r"activation (\d+): version 2 \(schedule\)", scheduled)
    assert activation is not None
    listing = table(config, "list")
    assert "upcoming activations:" in listing and f"activation {activation.group(1)}" in listing
    assert in_force(config) == 1
    table(config, "cancel", activation.group(1))
    assert "upcoming activations: none" in table(config, "list")
    table(config, "activate", "2024-renumbering")
    assert in_force(config) == 2
    assert "rolled back to version 1" in table(config, "rollback")
    assert in_force(config) == 1
    table(config, "rollback", "--to", "2")
    assert in_force(config) == 2
    log = table(config, "log")
    actions = [line.split()[3] for line in log.splitlines()]
    assert actions == ["import", "activate", "import", "schedule", "cancel", "activate",
                       "rollback", "rollback"]
    assert all(line.split()[2] == "tester" for line in log.splitlines())


def test_schedule_refuses_a_local_time_without_offset(config: Path):
    table(config, "import", SAMPLE)
    code, output = run("schedule", "1", "--at", "2027-01-07T08:00", "--config", config)
    assert code != 0
    assert "no UTC offset" in output


def test_errors_name_the_problem(config: Path):
    table(config, "import", SAMPLE)
    code, output = run("activate", "no-such-version", "--config", config)
    assert code == 1 and "no table version 'no-such-version'" in output
    code, output = run("rollback", "--config", config)
    assert code == 1 and "nothing to roll back" in output
