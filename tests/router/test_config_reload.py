"""SIGHUP config reload (router/reload.py): what applies at once, what waits for a restart,
and a bad file that changes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from b2bua_harness import CARRIER, Harness, caller_invite, make_harness

from municipality_map import RoutingSnapshot
from router.config import NodruteSettings, load_settings
from router.metrics import NodeMetrics
from router.reload import merge_reloaded, reload_config
from sip.message import Request


def settings_from(path: Path, text: str) -> NodruteSettings:
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


BASE = """
[sip]
port = 5060
[routing]
default_centre_113 = "AMK-OSLO"
[database]
url = "sqlite+aiosqlite:////tmp/a.db"
"""


def test_runtime_values_apply_and_restart_only_values_stay(tmp_path: Path) -> None:
    running = settings_from(tmp_path / "a.toml", BASE)
    loaded = settings_from(tmp_path / "b.toml", """
[sip]
port = 5070
user_agent = "nodrute/test"
drain_retry_after_s = 90
[routing]
default_centre_113 = "AMK-BERGEN"
[failover]
first_response_s = 1.5
[log]
level = "DEBUG"
[database]
url = "sqlite+aiosqlite:////tmp/b.db"
[media]
address = "127.0.0.2"
[health]
enabled = false
interval_s = 9.0
[[trunks]]
name = "telenor"
sources = ["10.0.0.0/8"]
""")
    merged, ignored = merge_reloaded(running, loaded)
    assert sorted(ignored) == ["database.url", "health.enabled", "media.address", "sip.port"]
    assert merged.sip.port == 5060
    assert merged.database == running.database
    assert merged.media == running.media
    assert merged.health.enabled is True
    assert merged.health.interval_s == 9.0
    assert merged.sip.user_agent == "nodrute/test"
    assert merged.sip.drain_retry_after_s == 90
    assert merged.routing.default_centre_113 == "AMK-BERGEN"
    assert merged.failover.first_response_s == 1.5
    assert merged.log.level == "DEBUG"
    assert [t.name for t in merged.trunks] == ["telenor"]


def test_nothing_changed_is_nothing_ignored(tmp_path: Path) -> None:
    running = settings_from(tmp_path / "a.toml", BASE)
    merged, ignored = merge_reloaded(running, settings_from(tmp_path / "b.toml", BASE))
    assert (merged, ignored) == (running, [])


def centre_invite_uri(h: Harness, n: int) -> str:
    h.feed(caller_invite(n, kommune=None))  # no location: the default centre
    invite = h.take_one("INVITE").message
    assert isinstance(invite, Request)
    h.take()
    return invite.uri


def test_reconfigure_routes_new_calls_by_the_new_default(
    snapshot: RoutingSnapshot, centre_uris: dict[str, str], tmp_path: Path
) -> None:
    h = make_harness(snapshot)
    assert centre_invite_uri(h, 1) == centre_uris["AMK-OSLO"]
    settings = settings_from(tmp_path / "b.toml", '[routing]\ndefault_centre_113 = "AMK-BERGEN"\n')
    h.b2bua.reconfigure(settings, h.now)
    assert centre_invite_uri(h, 2) == centre_uris["AMK-BERGEN"]
    assert h.b2bua.active_calls == 2, "the first call is untouched"


def test_reconfigure_applies_new_trunk_sources_to_a_known_source(
    snapshot: RoutingSnapshot, tmp_path: Path
) -> None:
    h = make_harness(snapshot)
    centre_invite_uri(h, 1)  # the carrier's address is now cached as the default trunk
    settings = settings_from(tmp_path / "b.toml", """
[[trunks]]
name = "elsewhere"
sources = ["10.0.0.0/8"]
""")
    h.b2bua.reconfigure(settings, h.now)
    h.feed(caller_invite(2))
    assert h.take_one(403, CARRIER)


@dataclass
class FakeEndpoint:
    clock: float = 1000.0

    def now(self) -> float:
        return self.clock

    def pump(self, now: float) -> None:
        pass


@dataclass
class FakeRouter:
    """What reload_config uses of router.app.RunningRouter."""

    b2bua: object
    endpoint: FakeEndpoint
    metrics: NodeMetrics


@pytest.fixture
def node(snapshot: RoutingSnapshot) -> FakeRouter:
    return FakeRouter(make_harness(snapshot).b2bua, FakeEndpoint(), NodeMetrics())


def failures(node: FakeRouter) -> float:
    value = node.metrics.registry.get_sample_value("nodrute_config_reload_failures_total")
    return value or 0.0


async def test_reload_applies_a_valid_file(node: FakeRouter, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nodrute.toml"
    path.write_text('[sip]\nport = 5999\n[routing]\ndefault_centre_113 = "AMK-BERGEN"\n',
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="nodrute.reload"):
        assert await reload_config(node, path) is True  # type: ignore[arg-type]
    settings = node.b2bua.settings  # type: ignore[attr-defined]
    assert settings.routing.default_centre_113 == "AMK-BERGEN"
    assert settings.sip.port == 5060
    assert "sip.port changed" in caplog.text and "needs a restart" in caplog.text
    assert failures(node) == 0


@pytest.mark.parametrize("text", [
    "[routing\ndefault_centre_113 = 1\n",  # not TOML
    '[routing]\nring_timeout_113_s = -1\n',  # fails validation
    '[sip]\nno_such_field = 1\n',  # extra field
    '[routing]\ndefault_centre_113 = "AMK-NOWHERE"\n',  # not in the table in force
])
async def test_a_bad_file_keeps_the_running_config_and_counts(
    node: FakeRouter, tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = node.b2bua.settings  # type: ignore[attr-defined]
    path = tmp_path / "nodrute.toml"
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="nodrute.reload"):
        assert await reload_config(node, path) is False  # type: ignore[arg-type]
    assert node.b2bua.settings is before  # type: ignore[attr-defined]
    assert failures(node) == 1
    assert "refused" in caplog.text


async def test_a_missing_file_is_refused(node: FakeRouter, tmp_path: Path) -> None:
    assert await reload_config(node, tmp_path / "gone.toml") is False  # type: ignore[arg-type]
    assert failures(node) == 1
