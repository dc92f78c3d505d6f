"""Every call of loadtests/data/calls_all.csv lands at the centre the routing table names.

One SIPp caller sends all lines of the committed injection file (every municipality of the
sample table for 113 and 116117, old 2017-2019 and 2020-2023 codes, missing and unknown
codes, +47/0047 and routing-prefix dialling) through the router; one SIPp UAS per centre of
centres.csv answers on the centre's own port. The expected centre of each call is worked
out from the committed CSV files by expected_routing.py, not by the router's code; calls are
matched at the centres by caller number (From user part, unique per line).

The whole exchange runs once per module; the tests below each look at one side of it.
Set NODRUTE_E2E_RATE (calls/s, default 100) to push harder.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from expected_routing import (
    CALLS_ALL,
    DEFAULT_CENTRE,
    PlannedCall,
    RoutingTable,
    load_centres,
    read_injection_file,
)
from router_process import RunningRouter, running_router
from sipp_harness import (
    SIPP_MISSING,
    SippFleet,
    SippProcess,
    TracedMessage,
    UacResult,
    header_params,
    sipp_binary,
    stat_int,
    uri_user,
)

pytestmark = pytest.mark.e2e

RATE_PER_S = float(os.environ.get("NODRUTE_E2E_RATE", "100"))


@dataclass
class RoutingRun:
    calls: list[PlannedCall]
    uac: UacResult
    centres: dict[str, SippProcess]
    """centre_id -> its SIPp UAS (stopped by now)."""
    received: dict[str, list[TracedMessage]]
    """centre_id -> INVITEs it received, one per Call-ID."""
    fleet: SippFleet
    router: RunningRouter

    def failure_report(self) -> str:
        parts = (self.router.failure_report(), self.uac.summary(), self.fleet.failure_report())
        return "\n".join(parts)

    def expected_per_centre(self) -> Counter[str]:
        return Counter(call.expected_centre for call in self.calls)


@pytest.fixture(scope="module")
def routing_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoutingRun]:
    binary = sipp_binary()
    if binary is None:
        pytest.skip(SIPP_MISSING)
    table = RoutingTable()
    calls = [table.expect(*line) for line in read_injection_file(CALLS_ALL)]
    root = tmp_path_factory.mktemp("routing")
    fleet = SippFleet(root / "sipp", binary)
    try:
        # Every centre of the table answers, so a call sent to a wrong one is seen there too.
        centres = fleet.start_centres(
            "uas_centre.xml", ((c.centre_id, c.port) for c in load_centres().values())
        )
        with running_router(root / "router") as router:
            uac = fleet.run_uac(
                "uac_emergency.xml", router.port, injection_file=CALLS_ALL, calls=len(calls),
                rate_per_s=RATE_PER_S, timeout_s=len(calls) / RATE_PER_S + 30,
            )  # fmt: skip
        for uas in centres.values():
            uas.stop()
        received = {cid: uas.received_invites() for cid, uas in centres.items()}
        yield RoutingRun(calls, uac, centres, received, fleet, router)
    finally:
        fleet.stop_all()


def test_call_plan_covers_both_services_old_missing_and_unknown_codes() -> None:
    table = RoutingTable()
    calls = [table.expect(*line) for line in read_injection_file(CALLS_ALL)]
    assert len(calls) >= 500
    assert len({call.caller for call in calls}) == len(calls), "caller numbers must be unique"
    assert len({c.today_code for c in calls if c.today_code}) >= 50
    for service in ("113", "116117"):
        sent = {c.sent_code for c in calls if c.service == service}
        assert {"3005", "0104", "", "9999"} <= sent, f"{service}: edge cases missing"
    assert {"3005": "3301", "0104": "3103"}.items() <= {
        c.sent_code: c.today_code for c in calls
    }.items()
    assert {c.expected_centre for c in calls} >= set(DEFAULT_CENTRE.values())


def test_every_call_completed(routing_run: RoutingRun) -> None:
    uac = routing_run.uac
    print(f"\n{len(routing_run.calls)} calls at {RATE_PER_S:g}/s\n{uac.summary()}")
    assert uac.returncode == 0, uac.summary()
    assert uac.failed_calls == 0, uac.summary()
    assert uac.successful_calls == len(routing_run.calls), uac.summary()


def test_each_centre_received_exactly_its_calls(routing_run: RoutingRun) -> None:
    planned = {call.caller: call for call in routing_run.calls}
    landed: dict[str, set[str]] = {}
    for centre_id, invites in routing_run.received.items():
        for invite in invites:
            landed.setdefault(invite.from_user or "?", set()).add(centre_id)

    misrouted = {
        caller: f"{call.dialled} code={call.sent_code or '-'}: expected "
        f"{call.expected_centre}, landed at {sorted(landed.get(caller, ())) or 'nowhere'}"
        for caller, call in planned.items()
        if landed.get(caller) != {call.expected_centre}
    }
    strangers = sorted(set(landed) - set(planned))
    assert not misrouted, f"{len(misrouted)} misrouted calls, e.g. {list(misrouted.items())[:15]}"
    assert not strangers, f"INVITEs from callers not in the plan: {strangers[:15]}"
    received_per_centre = Counter(
        {cid: len(invites) for cid, invites in routing_run.received.items() if invites}
    )
    assert received_per_centre == routing_run.expected_per_centre()


def test_each_centre_completed_its_calls(routing_run: RoutingRun) -> None:
    expected = routing_run.expected_per_centre()
    outcome = {
        cid: (stat_int(uas.stats(), "SuccessfulCall(C)"), stat_int(uas.stats(), "FailedCall(C)"))
        for cid, uas in routing_run.centres.items()
    }
    wrong = {cid: got for cid, got in outcome.items() if got != (expected.get(cid, 0), 0)}
    assert not wrong, f"(successful, failed) per centre differs from the plan: {wrong}"


def test_centre_leg_names_centre_and_municipality(routing_run: RoutingRun) -> None:
    planned = {call.caller: call for call in routing_run.calls}
    problems: list[str] = []
    for centre_id, invites in routing_run.received.items():
        for invite in invites:
            call = planned.get(invite.from_user or "")
            if call is None:
                continue
            route = header_params(invite.header("x-nodrute-route") or "")
            want = {
                "centre": centre_id,
                "requested": call.requested_code or "-",
            }
            if call.today_code or call.source == "default":
                want["source"] = call.source
            got = {key: route.get(key) for key in want}
            if got != want:
                problems.append(f"{call.caller} X-Nodrute-Route {got} != {want}")
            if call.today_code and invite.header_values("x-kommunenummer") != [call.today_code]:
                problems.append(
                    f"{call.caller} sent {call.requested_code}: X-Kommunenummer "
                    f"{invite.header_values('x-kommunenummer')} != [{call.today_code}]"
                )
    assert not problems, f"{len(problems)} problems, e.g. {problems[:10]}"


def test_centre_leg_is_a_new_dialog_carrying_the_caller(routing_run: RoutingRun) -> None:
    sent = [m for m in routing_run.uac.messages() if m.method == "INVITE"]
    caller_call_ids = {m.call_id for m in sent}
    caller_from = {m.from_user: m.header("from") for m in sent}
    problems: list[str] = []
    for invites in routing_run.received.values():
        for invite in invites:
            caller = invite.from_user or "?"
            if invite.call_id in caller_call_ids:
                problems.append(f"{caller}: Call-ID reused from the caller's leg")
            if invite.header("from") == caller_from.get(caller):
                problems.append(f"{caller}: From tag reused from the caller's leg")
            if uri_user(invite.header("p-asserted-identity") or "") != caller:
                problems.append(f"{caller}: P-Asserted-Identity not copied")
            if invite.header("user-agent") != "SIPp nodrute-loadtest":
                problems.append(f"{caller}: User-Agent not copied")
            if "o=caller" not in invite.body:
                problems.append(f"{caller}: the caller's SDP offer did not reach the centre")
    assert not problems, f"{len(problems)} problems, e.g. {problems[:10]}"
