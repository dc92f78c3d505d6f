"""Centre overrides: the store, the node's poller, and ``nodrute centre …`` round trips."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from municipality_map import Centre, Service
from municipality_map.store import StoredOverride, TableStore
from router.cli import app
from router.cli_centre import parse_node_view
from router.health import (
    Availability,
    HealthMonitor,
    HealthSettings,
    OverrideState,
    ProbeOutcome,
)
from router.health_overrides import OverridePoller
from router.metrics import NodeMetrics

OSLO_URI = "sip:amk-oslo@127.0.0.1:5110"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> TableStore:
    return await TableStore.open(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")


async def test_store_keeps_one_override_per_centre_and_audits_each_change(
        store: TableStore) -> None:
    try:
        drained = await store.set_centre_override("AMK-OSLO", "drain", actor="ops",
                                                  reason="planned work", now=NOW)
        assert drained == StoredOverride("AMK-OSLO", "drain", "planned work", "ops", NOW)
        await store.set_centre_override("AMK-BERGEN", "down", actor="ops", reason="", now=NOW)
        await store.set_centre_override("AMK-OSLO", "down", actor="ops2", reason="fire", now=NOW)
        assert [(o.centre_id, o.state, o.actor) for o in await store.centre_overrides()] == [
            ("AMK-BERGEN", "down", "ops"), ("AMK-OSLO", "down", "ops2")]
        assert await store.set_centre_override("AMK-OSLO", "up", actor="ops", reason="done",
                                               now=NOW) is None
        assert [o.centre_id for o in await store.centre_overrides()] == ["AMK-BERGEN"]
        audit = [(e.action, e.detail) for e in await store.audit_log()]
        assert audit == [
            ("centre_drain", "AMK-OSLO drain: planned work"), ("centre_down", "AMK-BERGEN down"),
            ("centre_down", "AMK-OSLO down: fire"), ("centre_up", "AMK-OSLO up: done"),
        ]
    finally:
        await store.close()


def oslo_monitor() -> HealthMonitor:
    monitor = HealthMonitor(HealthSettings(enabled=False))
    monitor.start([Centre(centre_id="AMK-OSLO", name="AMK Oslo", service=Service.AMK,
                          uris=(OSLO_URI,), backup_centre_id=None)], 0.0)
    return monitor


async def test_poller_applies_the_database_and_keeps_the_last_when_it_fails(
        store: TableStore) -> None:
    monitor = oslo_monitor()
    healthy = True

    async def open_store() -> TableStore:
        if not healthy:
            raise OSError("database gone")
        return store

    poller = OverridePoller(open_store, monitor, interval_s=5.0)
    try:
        await store.set_centre_override("AMK-OSLO", "drain", actor="ops", reason="", now=NOW)
        assert await poller.refresh()
        assert monitor.availability(OSLO_URI) is Availability.DRAINED
        override = monitor.centre_override("AMK-OSLO")
        assert override is not None and override.state is OverrideState.DRAIN
        healthy = False
        assert not await poller.refresh()
        assert monitor.availability(OSLO_URI) is Availability.DRAINED, "last known kept"
        healthy = True
        await store.set_centre_override("AMK-OSLO", "up", actor="ops", reason="", now=NOW)
        assert await poller.refresh()
        assert monitor.is_up(OSLO_URI)
        assert poller.failures == 1
    finally:
        await store.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "nodrute.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "n.db"}"\n')
    return path


@pytest.fixture
def node_metrics() -> Iterator[tuple[NodeMetrics, str]]:
    metrics = NodeMetrics()
    port = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, f"http://127.0.0.1:{port}/metrics"
    finally:
        metrics.close()


def centre(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["centre", *args])
    return result.exit_code, result.output


def oslo_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("AMK-OSLO "))


def test_cli_drain_status_up_round_trip(config: Path,
                                        node_metrics: tuple[NodeMetrics, str]) -> None:
    metrics, url = node_metrics
    metrics.destination_changed("AMK-OSLO", OSLO_URI, Availability.DRAINED, True)
    metrics.probe_finished("AMK-OSLO", OSLO_URI, ProbeOutcome.OK, 0.0123)

    code, output = centre("drain", "AMK-OSLO", "--reason", "planned work", "--config",
                          str(config), "--actor", "tester")
    assert code == 0, output
    assert "AMK-OSLO drained" in output
    code, output = centre("status", "--config", str(config), "--metrics-url", url)
    assert code == 0, output
    line = oslo_line(output)
    assert OSLO_URI in line and "drained" in line and "12.3ms" in line
    assert "drain by tester" in line and "planned work" in line
    assert "AMK-BERGEN" in output and "not available" not in output

    code, output = centre("up", "AMK-OSLO", "--config", str(config), "--actor", "tester")
    assert code == 0, output
    code, output = centre("status", "--config", str(config), "--metrics-url", url)
    assert oslo_line(output).rstrip().endswith("-"), "no override any more"


def test_cli_refuses_an_unknown_centre_and_says_when_the_node_is_not_reachable(
        config: Path) -> None:
    code, output = centre("down", "AMK-NOWHERE", "--config", str(config))
    assert code == 1 and "no centre 'AMK-NOWHERE'" in output
    code, output = centre("status", "--config", str(config), "--metrics-url",
                          "http://127.0.0.1:1/metrics")
    assert code == 0 and "not available" in output
    assert oslo_line(output).split()[2] == "?"


def test_node_view_reads_state_latency_and_since() -> None:
    metrics = NodeMetrics()
    metrics.destination_changed("AMK-OSLO", OSLO_URI, Availability.UP, True)
    metrics.destination_changed("AMK-OSLO", OSLO_URI, Availability.DOWN, False)
    metrics.probe_finished("AMK-OSLO", OSLO_URI, ProbeOutcome.OK, 0.5)
    from prometheus_client import generate_latest

    view = parse_node_view(generate_latest(metrics.registry).decode())[OSLO_URI]
    assert view.state == "down" and view.latency_s == 0.5
    assert view.since is not None and abs((datetime.now(UTC) - view.since).total_seconds()) < 60
