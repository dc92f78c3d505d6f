"""Failover end to end: a centre fails in each way issue 6 names, under load, and every call
still reaches its backup and completes, within the configured time.

The table is the sample one with AMK-OSLO's plan (AMK-OSLO -> AMK-INNLANDET -> AMK-VESTREVIKEN)
on free ports: the primary is a SIPp centre failing one way (or no process at all), the backup a
SIPp centre that answers; every other centre URI points at a closed TCP port, so a call that
went further than the backup would end at once with a failure the caller sees. 113 calls for
Oslo (0301) go to AMK-OSLO first.

Timing: the caller's "answer" response time (SIPp ``rtd``: INVITE sent -> 200 received) of
every call is checked against the knob that should decide it — ``first_response_s`` for a
silent centre, ``attempt_ring_113_s`` for one that rings, nothing for a refusal or a transport
error — plus :data:`MARGIN_S`. The lower bound is checked too where there is one (a ringing
centre is really given its ring time). ``nodrute_failover_total`` tells why each call moved on.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from failover_bench import failover_table
from prometheus_client.parser import text_string_to_metric_families
from router_process import RunningRouter, running_router
from sipp_harness import (
    SippFleet,
    SippProcess,
    TracedMessage,
    UacResult,
    free_port,
    header_params,
    percentile,
    write_injection_file,
)

from router.cli_centre import parse_node_view

pytestmark = pytest.mark.e2e

PRIMARY, BACKUP = "AMK-OSLO", "AMK-INNLANDET"
FIRST_RESPONSE_S = 1.0
"""Not shorter: when the router's loop is starved (two such test runs at once on 2 cores), the
backup's 100 Trying can sit unread in its socket past a 0.5 s first_response_s while the timer
fires first, and the call moves on from a backup that did answer."""
ATTEMPT_RING_S = 1.5
MARGIN_S = 1.0
"""Allowed on top of the configured time: the router's timer tick and event loop, SIPp's own
scheduling (it sends and reads in 1 ms+ ticks) and a shared 2-core CI machine running both
SIPps, the router and pytest. A broken timer (2 s default, Timer B's 32 s, a missing CANCEL)
is still far outside it; so is a failover that waited for Timer A (0.5 s) retransmissions."""
CALLS = 100
RATE_PER_S = 100
"""Issue 6 asks for >= 50 calls/s; 100 calls at 100/s keeps each case about a second long."""


# --- the table, the router, the calls ----------------------------------------------------------


def centre_uri(centre_id: str, port: int, transport: str = "udp") -> str:
    suffix = ";transport=tcp" if transport == "tcp" else ""
    return f"sip:{centre_id.lower()}@127.0.0.1:{port}{suffix}"


@dataclass
class Setup:
    """One router with the failover table, and where its pieces are."""

    router: RunningRouter
    metrics_port: int
    primary_port: int
    backup_port: int

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            text: str = response.read().decode()
        return text

    def failovers(self) -> Counter[tuple[str, str, str]]:
        """(from_centre, to_centre, reason) -> count, from ``nodrute_failover_total``."""
        return Counter({
            (s.labels["from_centre"], s.labels["to_centre"], s.labels["reason"]): int(s.value)
            for family in text_string_to_metric_families(self.scrape())
            for s in family.samples if s.name == "nodrute_failover_total"
        })  # fmt: skip

    def counter(self, name: str) -> float:
        return sum(s.value for family in text_string_to_metric_families(self.scrape())
                   for s in family.samples if s.name == name)

    def state(self, uri: str) -> str:
        """The URI's effective health state (what ``nodrute centre status`` shows)."""
        view = parse_node_view(self.scrape()).get(uri)
        return view.state if view is not None else "?"

    def failure_report(self) -> str:
        return self.router.failure_report()


def start_setup(stack: ExitStack, workdir: Path, *, primary_transport: str = "udp",
                health: str = "", failover: str = "") -> Setup:
    """The failover table on fresh ports and a router for it (stopped when ``stack`` closes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    primary_port, backup_port, closed_port, metrics_port = (free_port() for _ in range(4))
    table = failover_table(
        workdir / "table", centre_uri(PRIMARY, primary_port, primary_transport),
        centre_uri(BACKUP, backup_port), closed_port)
    failover = failover or (
        f"first_response_s = {FIRST_RESPONSE_S}\nattempt_ring_113_s = {ATTEMPT_RING_S}")
    extra = (
        f"[failover]\n{failover}\n"
        f'[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = {metrics_port}\n'
        + (f"[health]\n{health}\n" if health else "")
    )
    router = stack.enter_context(running_router(workdir / "router", table, extra_config=extra))
    return Setup(router, metrics_port, primary_port, backup_port)


@pytest.fixture(scope="module")
def udp_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One router for the cases with the primary on UDP (a router start is ~1.2 s; each case
    tells its calls apart by caller number, see :func:`batch_of`). Its stop takes ~4 s: the
    drain lingers for the INVITEs still pending towards the silent and the killed primary."""
    with ExitStack() as stack:
        yield start_setup(stack, tmp_path_factory.mktemp("failover-udp"))


@pytest.fixture
def tcp_setup(tmp_path: Path) -> Iterator[Setup]:
    """A router whose table has the primary on TCP."""
    with ExitStack() as stack:
        yield start_setup(stack, tmp_path, primary_transport="tcp")


def place_calls(sipp: SippFleet, setup: Setup, tmp_path: Path, *, calls: int = CALLS,
                rate_per_s: float = RATE_PER_S, batch: int = 0) -> UacResult:
    """``calls`` 113 calls for Oslo at ``rate_per_s``; caller numbers +47<batch><n:06d>."""
    rows = [("113", "0301", caller_number(batch, n)) for n in range(calls)]
    inf = write_injection_file(tmp_path / f"calls-{batch}.csv", rows)
    return sipp.run_uac("uac_emergency.xml", setup.router.port, injection_file=inf,
                        calls=calls, rate_per_s=rate_per_s, max_concurrent=400, timeout_s=40)


def caller_number(batch: int, n: int) -> str:
    return f"+47{batch}{n:06d}"


def batch_of(message: TracedMessage) -> int | None:
    """Which :func:`place_calls` batch an INVITE at a centre belongs to (its From user)."""
    user = message.from_user or ""
    return int(user[3]) if user.startswith("+47") and len(user) == 10 else None


def answer_times_s(result: UacResult) -> list[float]:
    return [ms / 1000 for ms in result.response_times_ms.get("answer", [])]


def assert_all_completed(result: UacResult, calls: int) -> None:
    assert (result.returncode, result.successful_calls, result.failed_calls) == (0, calls, 0), \
        result.summary()
    assert len(answer_times_s(result)) == calls, result.summary()


def assert_reached_backup(backup: SippProcess, batch: int, calls: int) -> None:
    """Every call of ``batch`` reached the backup as the plan's second attempt."""
    invites = [i for i in backup.received_invites() if batch_of(i) == batch]
    assert len(invites) == calls, f"{len(invites)} INVITEs at the backup, wanted {calls}"
    notes = [header_params(i.header("x-nodrute-route") or "") for i in invites]
    assert {(n.get("centre"), n.get("role"), n.get("attempt")) for n in notes} == {
        (BACKUP, "backup", "2")}


def timing_line(name: str, times: list[float]) -> str:
    return (f"{name}: n={len(times)} answer p50={percentile(times, 0.5):.3f} s "
            f"p99={percentile(times, 0.99):.3f} s max={max(times):.3f} s")


# --- each way a centre fails ------------------------------------------------------------------


@dataclass(frozen=True)
class FailureCase:
    name: str
    batch: int
    """Caller-number digit of this case's calls (the UDP cases share one router and port)."""
    primary_scenario: str | None
    """SIPp UAS on the primary's port; None: nothing listens there."""
    primary_transport: str
    reasons: frozenset[str]
    """Allowed ``reason`` labels of the AMK-OSLO -> AMK-INNLANDET failovers."""
    min_s: float
    """No call may be answered sooner (the primary was given its time)."""
    max_s: float


CASES = [
    FailureCase("503", 1, "uas_unavailable.xml", "udp", frozenset({"rejected"}), 0.0, MARGIN_S),
    FailureCase("486", 2, "uas_busy.xml", "udp", frozenset({"rejected"}), 0.0, MARGIN_S),
    FailureCase("ring_no_answer", 3, "uas_ring_long.xml", "udp", frozenset({"ring_timeout"}),
                ATTEMPT_RING_S, ATTEMPT_RING_S + MARGIN_S),
    FailureCase("no_response", 4, "uas_no_response.xml", "udp", frozenset({"no_response"}),
                FIRST_RESPONSE_S, FIRST_RESPONSE_S + MARGIN_S),
    # TCP connect refused: a transport error, no waiting at all.
    FailureCase("port_closed_tcp", 5, None, "tcp", frozenset({"transport_error"}), 0.0,
                MARGIN_S),
    # UDP to a closed port: the kernel's ICMP port unreachable is not reported on the router's
    # unconnected UDP socket today, so the attempt ends by first_response_s; a transport that
    # learns to read ICMP would make it a transport_error, sooner. Either is in time.
    FailureCase("port_closed_udp", 6, None, "udp",
                frozenset({"no_response", "transport_error"}), 0.0, FIRST_RESPONSE_S + MARGIN_S),
]
KILLED_BATCH = 7


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_call_reaches_the_backup_in_time(
        sipp: SippFleet, request: pytest.FixtureRequest, tmp_path: Path,
        case: FailureCase) -> None:
    setup: Setup = request.getfixturevalue(f"{case.primary_transport}_setup")
    primary = (sipp.start_uas(case.primary_scenario, PRIMARY, setup.primary_port)
               if case.primary_scenario else None)
    backup = sipp.start_uas("uas_centre.xml", BACKUP, setup.backup_port)
    before = setup.failovers()
    exhausted = setup.counter("nodrute_hunt_exhausted_total")

    result = place_calls(sipp, setup, tmp_path, batch=case.batch)

    assert_all_completed(result, CALLS)
    times = answer_times_s(result)
    print(timing_line(case.name, times))
    assert min(times) >= case.min_s - 0.002, timing_line(case.name, times)  # SIPp's 1 ms tick
    assert max(times) <= case.max_s, timing_line(case.name, times)
    backup.stop()
    assert_reached_backup(backup, case.batch, CALLS)
    steps = setup.failovers() - before
    assert sum(steps.values()) == CALLS, steps  # one step per call, none further
    assert {(f, t) for f, t, _ in steps} == {(PRIMARY, BACKUP)}, steps
    assert {r for _, _, r in steps} <= case.reasons, steps
    assert setup.counter("nodrute_hunt_exhausted_total") == exhausted
    if primary is None:
        return
    primary.stop()
    messages = [m for m in primary.messages() if batch_of(m) == case.batch]
    invites = {m.call_id for m in messages if m.method == "INVITE"}
    assert len(invites) == CALLS, f"{len(invites)} calls reached the primary"
    cancels = [m for m in messages if m.method == "CANCEL"]
    if case.name == "ring_no_answer":
        # Every ringing attempt was CANCELled, saying why (RFC 3326; Q.850 19: no answer),
        # and its 487 ACKed.
        assert {m.call_id for m in cancels} == invites
        assert all("cause=19" in (m.header("reason") or "") for m in cancels)
        acks = {m.call_id for m in messages if m.method == "ACK"}
        assert acks == invites
    elif case.name == "no_response":
        # Nothing came back, so there is nothing to CANCEL yet (RFC 3261 §9.1).
        assert cancels == []
    else:
        # A final response ends the transaction: ACKed (§17.1.1.3), nothing to CANCEL.
        assert cancels == []
        assert {m.call_id for m in messages if m.method == "ACK"} == invites


def test_centre_killed_mid_load(
        sipp: SippFleet, udp_setup: Setup, tmp_path: Path) -> None:
    """The primary answers after a short ring until it is SIGKILLed halfway through the load:
    calls ringing there move on after the ring time, later ones after first_response_s; the
    caller never notices more than that."""
    setup = udp_setup
    calls = 2 * CALLS
    primary = sipp.start_uas("uas_centre.xml", PRIMARY, setup.primary_port,
                             extra_args=["-d", "300"])
    backup = sipp.start_uas("uas_centre.xml", BACKUP, setup.backup_port)
    before = setup.failovers()
    exhausted = setup.counter("nodrute_hunt_exhausted_total")
    outcome: list[UacResult] = []
    caller = threading.Thread(target=lambda: outcome.append(
        place_calls(sipp, setup, tmp_path, calls=calls, batch=KILLED_BATCH)))
    caller.start()
    time.sleep(calls / RATE_PER_S / 2)
    primary.process.kill()
    primary.process.wait()
    caller.join(60)
    [result] = outcome

    assert_all_completed(result, calls)
    times = answer_times_s(result)
    print(timing_line("killed", times))
    assert max(times) <= ATTEMPT_RING_S + MARGIN_S, timing_line("killed", times)
    backup.stop()
    at_primary = {m.call_id for m in primary.messages()
                  if m.method == "INVITE" and batch_of(m) == KILLED_BATCH}
    at_backup = [i for i in backup.received_invites() if batch_of(i) == KILLED_BATCH]
    steps = setup.failovers() - before
    assert {(f, t) for f, t, _ in steps} == {(PRIMARY, BACKUP)}, steps
    assert {r for _, _, r in steps} <= {"ring_timeout", "no_response", "transport_error"}
    # Each call: answered at the primary before the kill, or moved on once to the backup.
    assert sum(steps.values()) == len(at_backup)
    assert 0 < len(at_backup) < calls, "the backup took the calls after the kill, only those"
    assert at_primary, "the primary took calls before it was killed"
    assert setup.counter("nodrute_hunt_exhausted_total") == exhausted


# --- probing: a centre known down is not tried at all -------------------------------------------

PROBE = {"interval_s": 1.0, "timeout_s": 0.5, "down_after": 2, "up_after": 2}
PROBED_CENTRE = "uas_centre_probed.xml"


def wait_state(setup: Setup, uri: str, wanted: str, within_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        if setup.state(uri) == wanted:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{uri} not {wanted} within {within_s:.1f} s "
                         f"(now {setup.state(uri)})\n{setup.failure_report()}")


@pytest.fixture
def probed_setup(tmp_path: Path) -> Iterator[Setup]:
    """A router probing the centres; first_response_s at its default (2 s), so a call that
    tried the stopped primary first would be answered no sooner than that."""
    health = "\n".join(f"{k} = {v}" for k, v in PROBE.items())
    with ExitStack() as stack:
        yield start_setup(stack, tmp_path, health=health, failover="first_response_s = 2.0")


def test_centre_known_down_is_skipped_without_delay_and_used_again_when_back(
        sipp: SippFleet, probed_setup: Setup, tmp_path: Path) -> None:
    """With probing on, a stopped primary is marked down and its calls go straight to the
    backup (no attempt, so no first_response_s wait); restarted, it gets its calls again.
    (The down/up timing itself is tests/e2e/test_centre_health_e2e.py's.)"""
    setup = probed_setup
    primary_uri = centre_uri(PRIMARY, setup.primary_port)
    backup_uri = centre_uri(BACKUP, setup.backup_port)
    primary = sipp.start_uas(PROBED_CENTRE, PRIMARY, setup.primary_port)
    backup = sipp.start_uas(PROBED_CENTRE, BACKUP, setup.backup_port)
    settle_s = PROBE["interval_s"] * (PROBE["up_after"] + 1) + MARGIN_S
    wait_state(setup, primary_uri, "up", settle_s)
    wait_state(setup, backup_uri, "up", settle_s)

    direct = place_calls(sipp, setup, tmp_path, batch=1)
    assert_all_completed(direct, CALLS)
    primary.stop()
    assert len(primary.received_invites()) == CALLS
    down_s = PROBE["interval_s"] * PROBE["down_after"] + PROBE["timeout_s"] + MARGIN_S
    wait_state(setup, primary_uri, "down", down_s)

    before = setup.failovers()
    skipped = place_calls(sipp, setup, tmp_path, batch=2)
    assert_all_completed(skipped, CALLS)
    assert setup.failovers() - before == Counter(), "no attempt at the primary"
    times, base = answer_times_s(skipped), answer_times_s(direct)
    print(timing_line("direct", base))
    print(timing_line("primary down", times))
    # No extra delay: nowhere near first_response_s, the time a try at the primary would cost,
    # and the median as the direct calls'.
    assert max(times) < 1.0, timing_line("primary down", times)
    assert percentile(times, 0.5) <= percentile(base, 0.5) + 0.1, \
        (timing_line("direct", base), timing_line("primary down", times))

    primary = sipp.start_uas(PROBED_CENTRE, PRIMARY, setup.primary_port)
    wait_state(setup, primary_uri, "up", settle_s)
    back = place_calls(sipp, setup, tmp_path, batch=3)
    assert_all_completed(back, CALLS)
    primary.stop()
    assert Counter(batch_of(i) for i in primary.received_invites()) == {3: CALLS}, \
        "the primary has its calls again"
    backup.stop()
    # The backup had exactly the calls of the time the primary was down.
    assert Counter(batch_of(i) for i in backup.received_invites()) == {2: CALLS}
