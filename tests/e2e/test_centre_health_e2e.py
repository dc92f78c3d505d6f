"""Centre health end to end: a SIPp centre answering OPTIONS is stopped and started again, and
an operator drains it with ``nodrute centre drain``; the router's ``nodrute_destination_up``
follows within the configured times.

Every other centre of the table is pointed at a closed TCP port (connection refused at once:
a transport-error miss, no UDP retransmissions), so one-second probing of 112 URIs stays light.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from bench_processes import copy_table_with_uris
from router_process import TABLE_DIR, RunningRouter, running_router
from sipp_harness import REPO, SippFleet, free_port
from typer.testing import CliRunner

from router.cli import app
from router.cli_centre import read_node_view

pytestmark = pytest.mark.e2e

SCENARIO = REPO / "loadtests" / "scenarios" / "uas_options.xml"
CENTRE = "AMK-OSLO"
INTERVAL_S = 1.0
TIMEOUT_S = 0.5
DOWN_AFTER = 2
UP_AFTER = 2
OVERRIDE_POLL_S = 0.5
T2_S = 4.0
"""RFC 3261 T2 (the router's default): the longest gap between two retransmissions of the
OPTIONS still pending when the centre comes back; its answer is the first success."""
SLACK_S = 1.0
"""Scrape polling (0.1 s), the event loop and SIPp start-up on a shared 2-core machine."""


def health_table(dst: Path, centre_port: int, closed_port: int) -> Path:
    return copy_table_with_uris(TABLE_DIR, dst, lambda cid, _: (
        f"sip:{cid.lower()}@127.0.0.1:{centre_port}" if cid == CENTRE
        else f"sip:{cid.lower()}@127.0.0.1:{closed_port};transport=tcp"))


def gauge(metrics_port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
        text = r.read().decode()
    match = re.search(rf'^{name}{{centre="{CENTRE}",uri="[^"]*"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def state(metrics_port: int, uri: str) -> str:
    """The centre URI's effective state as the node's metrics say (what `centre status` reads)."""
    views, problem = read_node_view(f"http://127.0.0.1:{metrics_port}/metrics")
    assert problem is None, problem
    return views[uri].state


def wait_for(metrics_port: int, uri: str, wanted: str, within_s: float,
             router: RunningRouter) -> float:
    """Seconds until the URI's state is ``wanted``; fails after ``within_s``."""
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if state(metrics_port, uri) == wanted:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{uri} not {wanted} within {within_s:.1f} s (now "
                         f"{state(metrics_port, uri)})\n{router.failure_report()}")


def centre_cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["centre", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_centre_stopped_goes_down_restarted_comes_back_and_drain_round_trip(
        sipp: SippFleet, tmp_path: Path) -> None:
    centre_port, closed_port, metrics_port = free_port(), free_port(), free_port()
    table = health_table(tmp_path / "table", centre_port, closed_port)
    extra = (
        f"[health]\ninterval_s = {INTERVAL_S}\ntimeout_s = {TIMEOUT_S}\n"
        f"down_after = {DOWN_AFTER}\nup_after = {UP_AFTER}\n"
        f"override_poll_interval_s = {OVERRIDE_POLL_S}\n"
        f'[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = {metrics_port}\n'
    )
    uri = f"sip:{CENTRE.lower()}@127.0.0.1:{centre_port}"
    uas = sipp.start_uas(SCENARIO, CENTRE, centre_port)
    with running_router(tmp_path / "router", table, extra_config=extra) as router:
        wait_for(metrics_port, uri, "up", INTERVAL_S * (UP_AFTER + 1) + SLACK_S, router)
        assert gauge(metrics_port, "nodrute_destination_up") == 1.0
        latency = gauge(metrics_port, "nodrute_destination_probe_latency_seconds")
        # Loopback answers in well under 1 ms, and uvloop's clock ticks in milliseconds.
        assert latency is not None and 0 <= latency < TIMEOUT_S

        # Centre stopped: down within interval * down_after + timeout.
        uas.stop()
        down_limit = INTERVAL_S * DOWN_AFTER + TIMEOUT_S
        took_down = wait_for(metrics_port, uri, "down", down_limit + SLACK_S, router)
        assert gauge(metrics_port, "nodrute_destination_up") == 0.0
        assert gauge(metrics_port, "nodrute_destination_reachable") == 0.0

        # Restarted on the same port: up after up_after answered probes.
        sipp.start_uas(SCENARIO, CENTRE, centre_port)
        up_limit = T2_S + INTERVAL_S * (UP_AFTER - 1)
        took_up = wait_for(metrics_port, uri, "up", up_limit + SLACK_S, router)
        assert gauge(metrics_port, "nodrute_destination_up") == 1.0

        # Operator drain from the CLI: reaches the node through the database.
        config = str(router.config_path)
        centre_cli("drain", CENTRE, "--reason", "e2e maintenance", "--config", config,
                   "--actor", "e2e")
        took_drain = wait_for(metrics_port, uri, "drained", OVERRIDE_POLL_S + SLACK_S, router)
        assert gauge(metrics_port, "nodrute_destination_up") == 0.0
        assert gauge(metrics_port, "nodrute_destination_reachable") == 1.0, "still probed, up"
        status = centre_cli("status", "--config", config)
        line = next(x for x in status.splitlines() if x.startswith(f"{CENTRE} "))
        assert "drained" in line and "drain by e2e" in line and "e2e maintenance" in line

        centre_cli("up", CENTRE, "--config", config, "--actor", "e2e")
        wait_for(metrics_port, uri, "up", OVERRIDE_POLL_S + SLACK_S, router)
        assert gauge(metrics_port, "nodrute_destination_up") == 1.0
    print(f"centre health e2e: down after {took_down:.2f} s (limit {down_limit:.1f} s), "
          f"up after {took_up:.2f} s (limit {up_limit:.1f} s), "
          f"drain applied after {took_drain:.2f} s")
