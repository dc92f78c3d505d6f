"""Stopping and reloading a real ``nodrute serve`` under SIPp traffic.

SIGTERM mid-load: every call the node took (it got 100 Trying) completes with BYE through the
router, every call after the signal gets 503 + Retry-After, the node exits 0 once the last call
ended. SIGHUP: a changed default centre reaches new calls; a broken file changes nothing and is
counted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from expected_routing import load_centres
from router_process import (
    TABLE_DIR,
    RunningRouter,
    _wait_until_ready,
    router_command,
    send_options,
    write_router_config,
)
from sipp_harness import (
    LOOPBACK,
    REPO,
    SippFleet,
    TracedMessage,
    UacResult,
    first_requests,
    free_port,
    write_injection_file,
)
from test_healthcheck_e2e import run_health_check

pytestmark = pytest.mark.e2e

DATA = REPO / "loadtests" / "data"
RATE_PER_S = 50
CALLS = 150  # 3 s of new calls at 50/s
HOLD_MS = 2500
SIGNAL_AFTER_S = 1.2
RETRY_AFTER_S = 17


@contextmanager
def router_process(workdir: Path, extra_config: str,
                   env_extra: dict[str, str] | None = None) -> Iterator[RunningRouter]:
    """A ``nodrute serve`` the test stops itself (running_router() treats an exit as death)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_router_config(workdir / "nodrute.toml", port, TABLE_DIR, extra=extra_config)
    log_path = workdir / "router.stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODRUTE__")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_extra or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(router_command(config), cwd=REPO, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    router = RunningRouter(port, config, process, log_path)
    try:
        _wait_until_ready(router)
        yield router
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def metrics_config(port: int) -> str:
    return f'\n[metrics]\nenabled = true\nhost = "{LOOPBACK}"\nport = {port}\n'


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def invite_outcomes(messages: list[TracedMessage]) -> dict[str, list[TracedMessage]]:
    """Call-ID -> the responses the caller received, in order."""
    calls: dict[str, list[TracedMessage]] = {}
    for message in messages:
        if message.direction == "sent" and message.method == "INVITE" and message.call_id:
            calls.setdefault(message.call_id, [])
        elif message.direction == "received" and message.status is not None and message.call_id:
            calls.setdefault(message.call_id, []).append(message)
    return calls


def test_sigterm_under_load_drops_no_call_and_refuses_new_ones(
    sipp: SippFleet, tmp_path: Path
) -> None:
    oslo = load_centres()["AMK-OSLO"]
    centre = sipp.start_uas("uas_centre.xml", oslo.centre_id, oslo.port)
    metrics_port = free_port()
    env = {"NODRUTE__SIP__DRAIN_RETRY_AFTER_S": str(RETRY_AFTER_S)}  # [sip] is the harness's
    with router_process(tmp_path / "router", metrics_config(metrics_port), env) as router:
        result: dict[str, UacResult] = {}

        def load() -> None:
            result["uac"] = sipp.run_uac(
                "uac_drain.xml", router.port, injection_file=DATA / "calls_one.csv",
                calls=CALLS, rate_per_s=RATE_PER_S, max_concurrent=400, timeout_s=40,
                extra_args=["-d", str(HOLD_MS)],
            )  # fmt: skip

        caller = threading.Thread(target=load)
        caller.start()
        time.sleep(SIGNAL_AFTER_S)
        router.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        assert router.process.poll() is None, "the node must stay up while calls are held"
        assert metric(metrics_port, "nodrute_draining") == 1.0
        options = send_options(router.port, timeout_s=2) or ""
        assert options.startswith("SIP/2.0 503"), options
        assert run_health_check(router.port) == 0, "draining is alive for the HEALTHCHECK"
        caller.join(timeout=60)
        exit_code = router.process.wait(timeout=15)
        drained_after_s = time.monotonic() - signalled

    uac = result["uac"]
    assert exit_code == 0, router.failure_report()
    assert (uac.returncode, uac.failed_calls) == (0, 0), uac.summary()
    taken: list[str] = []
    refused: list[str] = []
    for call_id, responses in invite_outcomes(uac.messages()).items():
        statuses = [m.status for m in responses]
        if 100 in statuses:
            # taken before the signal: answered, and the BYE's 200 came back through us
            assert statuses.count(200) >= 2 and 503 not in statuses, (call_id, statuses)
            taken.append(call_id)
        else:
            assert statuses and set(statuses) == {503}, (call_id, statuses)
            retry_after = {m.header("retry-after") for m in responses}
            assert retry_after == {str(RETRY_AFTER_S)}, (call_id, retry_after)
            reason = responses[0].header("reason") or ""
            assert reason.startswith("SIP;cause=503"), reason
            refused.append(call_id)
    assert len(taken) + len(refused) == CALLS
    assert len(taken) >= 20 and len(refused) >= 20, (len(taken), len(refused))
    # the centre saw a BYE for every call it answered, and nothing was left for the node
    assert len(first_requests(centre.messages(), "BYE")) == len(taken)
    log = router.stderr_text()
    assert f"{len(taken)} calls were in progress, 0 released by the node" in log, log[-2000:]
    assert "node_shutdown" not in log  # no "call ended" with reason node_shutdown (any format)
    assert drained_after_s < HOLD_MS / 1000 + 10


def test_sighup_reloads_the_default_centre_and_survives_a_broken_file(
    sipp: SippFleet, tmp_path: Path
) -> None:
    centres = load_centres()
    uas = {centre_id: sipp.start_uas("uas_centre.xml", centre_id, centres[centre_id].port)
           for centre_id in ("AMK-OSLO", "AMK-BERGEN")}
    no_location = write_injection_file(tmp_path / "no_location.csv",
                                       [("113", "", "+4791000099")])
    metrics_port = free_port()
    with router_process(tmp_path / "router", metrics_config(metrics_port)) as router:

        def centre_of_one_call() -> str:
            before = {cid: len(u.received_invites()) for cid, u in uas.items()}
            uac = sipp.run_uac("uac_emergency.xml", router.port, injection_file=no_location,
                               calls=1, timeout_s=20)
            assert (uac.returncode, uac.successful_calls) == (0, 1), uac.summary()
            deadline = time.monotonic() + 5  # the centre's trace file is read while it runs
            while True:
                reached = [cid for cid, u in uas.items() if len(u.received_invites()) > before[cid]]
                if reached or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert len(reached) == 1, reached
            return reached[0]

        assert centre_of_one_call() == "AMK-OSLO"
        text = router.config_path.read_text(encoding="utf-8")
        router.config_path.write_text(
            text.replace('default_centre_113 = "AMK-OSLO"', 'default_centre_113 = "AMK-BERGEN"'),
            encoding="utf-8")
        router.process.send_signal(signal.SIGHUP)
        wait_for_log(router, "config reloaded")
        assert centre_of_one_call() == "AMK-BERGEN"

        router.config_path.write_text("[routing\nthis is not TOML", encoding="utf-8")
        router.process.send_signal(signal.SIGHUP)
        wait_for_log(router, "refused, the running config stays")
        assert router.process.poll() is None
        assert metric(metrics_port, "nodrute_config_reload_failures_total") == 1.0
        assert (send_options(router.port, timeout_s=2) or "").startswith("SIP/2.0 200")
        assert centre_of_one_call() == "AMK-BERGEN"

        router.process.send_signal(signal.SIGTERM)
        assert router.process.wait(timeout=15) == 0, router.failure_report()


def wait_for_log(router: RunningRouter, text: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in router.stderr_text():
        assert time.monotonic() < deadline, f"no {text!r} in the log\n{router.failure_report()}"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["drain_timeout", "second_sigterm"])
def test_calls_still_up_are_released_with_bye_on_both_legs(
    sipp: SippFleet, tmp_path: Path, how: str
) -> None:
    oslo = load_centres()["AMK-OSLO"]
    centre = sipp.start_uas("uas_centre.xml", oslo.centre_id, oslo.port)
    env = {"NODRUTE__SIP__DRAIN_TIMEOUT_S": "1"} if how == "drain_timeout" else {}
    calls = 10
    with router_process(tmp_path / "router", "", env) as router:
        result: dict[str, UacResult] = {}

        def hold() -> None:  # callers that stay on the line until the far end hangs up
            result["uac"] = sipp.run_uac(
                "uac_wait_bye.xml", router.port, injection_file=DATA / "calls_one.csv",
                calls=calls, rate_per_s=20, timeout_s=40,
            )  # fmt: skip

        caller = threading.Thread(target=hold)
        caller.start()
        deadline = time.monotonic() + 20
        while len(first_requests(centre.messages(), "ACK")) < calls:  # all answered and held
            assert time.monotonic() < deadline, router.failure_report()
            time.sleep(0.05)
        router.process.send_signal(signal.SIGTERM)
        if how == "second_sigterm":
            time.sleep(0.3)
            assert router.process.poll() is None
            router.process.send_signal(signal.SIGTERM)
        exit_code = router.process.wait(timeout=15)
        caller.join(timeout=60)

    uac = result["uac"]
    assert exit_code == 0, router.failure_report()
    assert (uac.returncode, uac.successful_calls) == (0, calls), uac.summary()
    byes = first_requests(uac.messages(), "BYE")
    assert len(byes) == calls
    assert all((bye.header("reason") or "").startswith("SIP;cause=503") for bye in byes)
    assert len(first_requests(centre.messages(), "BYE")) == calls
    assert f"{calls} calls were in progress, {calls} released by the node" in router.stderr_text()
