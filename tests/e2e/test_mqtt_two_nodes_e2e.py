"""Two router processes, one SQLite table database, one Debian mosquitto on 127.0.0.1:
``nodrute table activate`` with node A's config switches both nodes within about a second.

The nodes poll the database only every minute here, so a switch within ~1 s can only come from
the MQTT notice. Each node's table is read from its own /metrics
(``nodrute_routing_table_info``) and from its retained ``nodes/<id>/active`` status.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest
from router_process import running_router
from sipp_harness import LOOPBACK, SippFleet, free_port, write_injection_file
from table_versions_e2e import make_table, scrape, table_label

pytestmark = pytest.mark.e2e

PREFIX = "nodrute-e2e"
SWITCH_LIMIT_S = 1.5


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)


@contextmanager
def mosquitto(workdir: Path, port: int) -> Iterator[int]:
    """A mosquitto listening on 127.0.0.1:``port`` until the block ends."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto; `make deps`)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n",
                    encoding="utf-8")
    log = (workdir / "mosquitto.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (workdir / "mosquitto.log").read_text()
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A mosquitto on 127.0.0.1:<free port>; yields the port."""
    with mosquitto(tmp_path / "mosquitto", free_port()) as port:
        yield port


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("nodrute")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "router"]
    return subprocess.run([*command, "table", *args], capture_output=True, text=True,
                          timeout=60, check=False)


async def node_status(port: int, expected: int) -> dict[str, dict[str, object]]:
    """The retained ``nodes/<id>/active`` messages (node id -> JSON)."""
    found: dict[str, dict[str, object]] = {}
    async with aiomqtt.Client(LOOPBACK, port, identifier="e2e-observer") as client:
        await client.subscribe(f"{PREFIX}/nodes/+/active", qos=1)
        try:
            async with asyncio.timeout(3):
                async for message in client.messages:
                    node = str(message.topic).split("/")[-2]
                    found[node] = json.loads(str(message.payload.decode()))  # type: ignore[union-attr]
                    if len(found) >= expected:
                        break
        except TimeoutError:
            pass
    return found


def wait_for_label(metrics_port: int, label: str, timeout_s: float) -> float | None:
    """Seconds until the node's /metrics shows ``label`` in force, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if table_label(scrape(metrics_port)) == label:
            return time.monotonic() - start
        time.sleep(0.01)
    return None


async def test_activate_on_one_node_switches_both(broker: int, tmp_path: Path) -> None:
    old = make_table(tmp_path / "old", "e2e-mqtt-old")
    new = make_table(tmp_path / "new", "e2e-mqtt-new", amk={"0301": "AMK-INNLANDET"})
    database = f"sqlite+aiosqlite:///{(tmp_path / 'shared.db').resolve().as_posix()}"
    metrics = {"a": free_port(), "b": free_port()}

    def extra(node: str) -> str:
        return (f'[database]\nurl = "{database}"\n'
                f"[tables]\npoll_interval_s = 60.0\n"
                f'[mqtt]\nurl = "mqtt://{LOOPBACK}:{broker}"\ntopic_prefix = "{PREFIX}"\n'
                f'node_id = "node-{node}"\n'
                f'[metrics]\nhost = "{LOOPBACK}"\nport = {metrics[node]}\n')

    with running_router(tmp_path / "a", old, extra_config=extra("a")) as a, \
            running_router(tmp_path / "b", old, extra_config=extra("b")) as b:
        assert table_label(scrape(metrics["a"])) == "e2e-mqtt-old"
        assert table_label(scrape(metrics["b"])) == "e2e-mqtt-old"
        imported = cli("import", str(new), "--config", str(a.config_path))
        assert imported.returncode == 0, imported.stderr
        assert wait_for_label(metrics["b"], "e2e-mqtt-old", 0.1) is not None  # not yet

        started = time.monotonic()
        done = cli("activate", "e2e-mqtt-new", "--config", str(a.config_path))
        cli_s = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert "announced on MQTT" in done.stdout, done.stdout + done.stderr
        after_cli_b = wait_for_label(metrics["b"], "e2e-mqtt-new", 5.0)
        after_cli_a = wait_for_label(metrics["a"], "e2e-mqtt-new", 5.0)
        assert after_cli_b is not None, b.failure_report()
        assert after_cli_a is not None, a.failure_report()
        print(f"\nMQTT switch: `nodrute table activate` ran {cli_s:.2f} s; node B served the "
              f"new table {after_cli_b:.3f} s after it returned ({cli_s + after_cli_b:.2f} s "
              f"after it was started)")
        assert after_cli_b < SWITCH_LIMIT_S

        status = await node_status(broker, 2)
        new_sha = {s.get("sha256") for s in status.values()}
        assert {n: s.get("state") for n, s in status.items()} == {
            "node-a": "online", "node-b": "online"}
        assert {s.get("label") for s in status.values()} == {"e2e-mqtt-new"}
        assert len(new_sha) == 1 and "" not in new_sha
        info = scrape(metrics["b"])
        assert f'sha256="{next(iter(new_sha))}"' in info

        # Scheduled: both nodes switch back at the instant (±1 s), armed by the notice alone.
        instant = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        done = cli("schedule", "e2e-mqtt-old", "--at", instant.isoformat(),
                   "--config", str(b.config_path))
        assert done.returncode == 0, done.stderr
        seen: dict[str, float] = {}
        deadline = instant.timestamp() + 3
        while len(seen) < 2 and time.time() < deadline:
            for node, port in metrics.items():
                if node not in seen and table_label(scrape(port)) == "e2e-mqtt-old":
                    seen[node] = time.time() - instant.timestamp()
            time.sleep(0.01)
        print(f"scheduled switch seen on /metrics: {seen} s from the instant")
        assert set(seen) == {"a", "b"}, f"{seen}\n{a.failure_report()}\n{b.failure_report()}"
        assert all(-0.01 <= offset <= 1.0 for offset in seen.values()), seen
    # Both stopped cleanly: each said so on its status topic.
    status = await node_status(broker, 2)
    assert {n: s.get("state") for n, s in status.items()} == {
        "node-a": "offline", "node-b": "offline"}


def failures(metrics_port: int) -> float:
    match = re.search(r"^nodrute_routing_table_reload_failures_total ([\d.e+]+)$",
                      scrape(metrics_port), re.M)
    return float(match.group(1)) if match else 0.0


async def test_no_broker_keeps_routing_and_recovers_when_it_comes(
    sipp: SippFleet, tmp_path: Path,
) -> None:
    broker_port, metrics_port, oslo = free_port(), free_port(), free_port()
    ports = {"AMK-OSLO": oslo, "AMK-INNLANDET": free_port()}
    old = make_table(tmp_path / "old", "e2e-nobroker-old", ports=ports)
    new = make_table(tmp_path / "new", "e2e-nobroker-new", amk={"0301": "AMK-INNLANDET"},
                     ports=ports)
    centres = sipp.start_centres("uas_centre.xml", ports.items())
    extra = (f"[tables]\npoll_interval_s = 60.0\n"
             f'[mqtt]\nurl = "mqtt://{LOOPBACK}:{broker_port}"\ntopic_prefix = "{PREFIX}"\n'
             f'node_id = "lonely"\n[metrics]\nhost = "{LOOPBACK}"\nport = {metrics_port}\n')
    calls = 20
    injection = write_injection_file(
        tmp_path / "calls.csv", (("113", "0301", f"4794{n:06d}") for n in range(calls)))
    with running_router(tmp_path / "router", old, extra_config=extra) as router:
        deadline = time.monotonic() + 5
        while failures(metrics_port) < 1:  # the broker's absence is counted…
            assert time.monotonic() < deadline, router.failure_report()
            time.sleep(0.05)
        uac = sipp.run_uac("uac_emergency.xml", router.port, injection_file=injection,
                           calls=calls, rate_per_s=20, timeout_s=20)
        # …and routing goes on.
        assert uac.failed_calls == 0 and uac.successful_calls == calls, uac.summary()
        counted = scrape(metrics_port)
        assert f'nodrute_calls_total{{outcome="answered",service="113"}} {calls}.0' in counted
        assert "nodrute_active_calls 0.0" in counted
        with mosquitto(tmp_path / "mosquitto", broker_port):
            deadline = time.monotonic() + 6  # reconnects every 2 s
            while (await node_status(broker_port, 1)).get("lonely", {}).get("state") != "online":
                assert time.monotonic() < deadline, router.failure_report()
            done = cli("import", str(new), "--activate", "--config", str(router.config_path))
            assert done.returncode == 0, done.stderr
            assert "announced on MQTT" in done.stdout, done.stdout + done.stderr
            assert wait_for_label(metrics_port, "e2e-nobroker-new", SWITCH_LIMIT_S) is not None
    for uas in centres.values():
        uas.stop()
