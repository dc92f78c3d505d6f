"""The hunt along a centre's destination plan, message by message, on a fake clock.

Sample table: a 113 call for 0301 goes to AMK-OSLO (5110), then its backup AMK-INNLANDET
(5106), then that one's backup AMK-VESTREVIKEN (5116); AMK-OSLO is also the overflow centre,
so it is not repeated.
"""

from __future__ import annotations

import pytest
from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    Harness,
    caller_cancel,
    caller_invite,
    dest_of,
    make_harness,
    response_to,
)

from municipality_map import RoutingSnapshot
from router.call_record import TerminatedReason
from router.config import FailoverSettings, NodruteSettings, RoutingSettings
from router.health import CentreOverride, OverrideState
from router.hunt import AttemptEnd
from router.metrics import NodeMetrics
from sip.message import Request, Response

OSLO, INNLANDET, VESTREVIKEN = 5110, 5106, 5116


@pytest.fixture
def steps() -> list[tuple[str, str, str, str]]:
    return []


@pytest.fixture
def hunt(snapshot: RoutingSnapshot, steps: list[tuple[str, str, str, str]]) -> Harness:
    return failover_harness(snapshot, steps)


def failover_harness(snapshot: RoutingSnapshot, steps: list[tuple[str, str, str, str]],
                     settings: NodruteSettings | None = None) -> Harness:
    h = make_harness(snapshot, settings)
    h.b2bua._on_failover = lambda *step: steps.append(step)
    return h


def invites(h: Harness) -> list[Request]:
    """The INVITEs queued since the last take (retransmissions included), taken."""
    found = [s.message for s in h.outbox
             if isinstance(s.message, Request) and s.message.method == "INVITE"]
    h.outbox = [s for s in h.outbox if s.message not in found]
    return found


def one_invite(h: Harness, port: int) -> Request:
    [invite] = [i for i in invites(h) if dest_of(i.uri)[1] == port]
    return invite


def start(h: Harness, n: int, ruri: str = "sip:113@127.0.0.1") -> Request:
    h.feed(caller_invite(n, ruri, kommune="0301"))
    assert h.take_one(100, CARRIER)
    return one_invite(h, OSLO if ruri.startswith("sip:113") else 5201)


def test_busy_centre_moves_the_call_to_its_backup_at_once(
        hunt: Harness, steps: list[tuple[str, str, str, str]]) -> None:
    h = hunt
    first = start(h, 1)
    h.feed(response_to(first, 486), source=dest_of(first.uri))
    assert h.take_one("ACK", dest_of(first.uri))
    second = one_invite(h, INNLANDET)
    assert second.headers.get("Call-ID") != first.headers.get("Call-ID")
    assert "role=backup;attempt=2" in (second.headers.get("X-Nodrute-Route") or "")
    assert second.headers.get("X-Kommunenummer") == "0301"
    assert steps == [("113", "AMK-OSLO", "AMK-INNLANDET", "rejected")]
    assert [s for s in h.outbox if isinstance(s.message, Response)] == []  # caller: nothing

    h.feed(response_to(second, 180), source=dest_of(second.uri))
    assert h.take_one(180, CARRIER)
    h.feed(response_to(second, 200, body=SDP_ANSWER), source=dest_of(second.uri))
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response) and ok.body == SDP_ANSWER
    assert h.take_one("ACK", dest_of(second.uri))


def test_silent_centre_is_left_after_first_response_s_not_before(hunt: Harness) -> None:
    h = hunt
    first = start(h, 2)
    h.advance(1.9)
    assert all(dest_of(i.uri)[1] == OSLO for i in invites(h))  # Timer A retransmissions only
    h.advance(0.1)
    assert one_invite(h, INNLANDET)
    # The dead centre wakes up and rings: the held CANCEL goes out now (RFC 3261 §9.1).
    h.feed(response_to(first, 180), source=dest_of(first.uri))
    cancel = h.take_one("CANCEL", dest_of(first.uri)).message
    assert isinstance(cancel, Request)
    assert "cause=102" in (cancel.headers.get("Reason") or "")
    assert [s for s in h.outbox if isinstance(s.message, Response) and s.dest == CARRIER] == []


def test_transport_error_moves_on_immediately(hunt: Harness) -> None:
    h = hunt
    first = start(h, 3)
    h.layer.transport_error(dest_of(first.uri), "UDP", h.now)
    h._pump()
    assert one_invite(h, INNLANDET)


def test_ringing_centre_is_cancelled_after_attempt_ring_s(hunt: Harness) -> None:
    h = hunt
    first = start(h, 4)
    h.feed(response_to(first, 180), source=dest_of(first.uri))
    assert h.take_one(180, CARRIER)
    h.advance(19.9)
    assert invites(h) == [] or all(dest_of(i.uri)[1] == OSLO for i in invites(h))
    h.advance(0.2)
    cancel = h.take_one("CANCEL", dest_of(first.uri)).message
    assert isinstance(cancel, Request)
    assert "cause=19" in (cancel.headers.get("Reason") or "")
    second = one_invite(h, INNLANDET)
    # The cancelled centre answers anyway (the CANCEL crossed its 200): completed and released.
    h.feed(response_to(first, 200, body=SDP_ANSWER), source=dest_of(first.uri))
    assert h.take_one("ACK", dest_of(first.uri))
    assert h.take_one("BYE", dest_of(first.uri))
    assert [s for s in h.outbox if s.dest == CARRIER] == []
    h.feed(response_to(second, 200, body=SDP_ANSWER), source=dest_of(second.uri))
    assert h.take_one(200, CARRIER)


def test_every_destination_failing_twice_gives_the_caller_a_clear_final_response(
        hunt: Harness, steps: list[tuple[str, str, str, str]]) -> None:
    h = hunt
    h.feed(caller_invite(5, kommune="0301"))
    h.take_one(100, CARRIER)
    tried = []
    for _ in range(6):  # three destinations, 113 walks the plan twice
        [invite] = invites(h)
        tried.append(dest_of(invite.uri)[1])
        h.feed(response_to(invite, 503), source=dest_of(invite.uri))
    assert tried == [OSLO, INNLANDET, VESTREVIKEN] * 2
    assert invites(h) == []
    final = h.take_one(503, CARRIER).message
    assert isinstance(final, Response)
    assert "No centre answered (6 attempts)" in (final.headers.get("Reason") or "")
    [record] = h.records
    assert record.hunt_exhausted and record.end_reason is TerminatedReason.CENTRE_REJECTED
    assert len(record.attempts) == 6
    assert h.b2bua.counters["hunt_exhausted:113"] == 1
    assert steps[-1] == ("113", "AMK-VESTREVIKEN", "none", "rejected")


def test_116117_walks_its_plan_once(snapshot: RoutingSnapshot) -> None:
    h = make_harness(snapshot)
    plan = snapshot.plan_for("LVS-0301")
    assert plan is not None
    h.feed(caller_invite(6, "sip:116117@127.0.0.1", kommune="0301"))
    h.take_one(100, CARRIER)
    tried = []
    while found := invites(h):
        tried.append(found[0].uri)
        h.feed(response_to(found[0], 480), source=dest_of(found[0].uri))
    assert tried == [d.uri for d in plan]
    assert h.take_one(480, CARRIER)


def test_a_centre_known_down_is_skipped_but_tried_last(snapshot: RoutingSnapshot) -> None:
    h = make_harness(snapshot, NodruteSettings(failover=FailoverSettings(retry_plan_113=False)))
    h.b2bua.health.set_destinations(snapshot.centres.values(), h.now)  # probing not started
    h.b2bua.health.set_overrides([CentreOverride("AMK-OSLO", OverrideState.DOWN)])
    h.feed(caller_invite(7, kommune="0301"))
    h.take_one(100, CARRIER)
    tried = []
    while found := invites(h):
        tried.append(dest_of(found[0].uri)[1])
        h.feed(response_to(found[0], 486), source=dest_of(found[0].uri))
    assert tried == [INNLANDET, VESTREVIKEN, OSLO]
    assert "(was down)" in h.records[0].attempts[-1].summary()
    assert [a.skipped_down for a in h.records[0].attempts] == [False, False, True]


def test_caller_cancel_during_the_hunt_cancels_only_the_current_attempt(
        hunt: Harness) -> None:
    h = hunt
    first = start(h, 8)
    h.feed(response_to(first, 500), source=dest_of(first.uri))
    second = one_invite(h, INNLANDET)
    h.feed(response_to(second, 180), source=dest_of(second.uri))
    h.take()
    h.feed(caller_cancel(8))
    assert h.take_one(487, CARRIER)
    assert h.take_one("CANCEL", dest_of(second.uri))
    assert [s for s in h.outbox if isinstance(s.message, Request)
            and s.message.method == "CANCEL"] == []
    assert h.records[0].end_reason is TerminatedReason.CALLER_CANCEL
    assert h.records[0].attempts[-1].end is AttemptEnd.CALLER_GONE


def test_total_ring_time_ends_the_hunt(snapshot: RoutingSnapshot) -> None:
    h = make_harness(snapshot, NodruteSettings(routing=RoutingSettings(ring_timeout_113_s=30)))
    first = start(h, 9)
    h.feed(response_to(first, 180), source=dest_of(first.uri))
    h.advance(20.05)
    second = one_invite(h, INNLANDET)
    h.feed(response_to(second, 180), source=dest_of(second.uri))
    h.take()
    h.advance(9.9)
    assert [s for s in h.outbox if s.dest == CARRIER] == []
    h.advance(0.2)
    assert h.take_one("CANCEL", dest_of(second.uri))
    final = h.take_one(480, CARRIER).message
    assert isinstance(final, Response) and "No centre answered" in (
        final.headers.get("Reason") or "")
    assert h.records[0].end_reason is TerminatedReason.RING_TIMEOUT


def test_a_late_final_on_an_abandoned_attempt_changes_nothing(hunt: Harness) -> None:
    h = hunt
    first = start(h, 10)
    h.advance(2.0)  # silent: moved on
    second = one_invite(h, INNLANDET)
    h.feed(response_to(first, 503), source=dest_of(first.uri))
    assert h.take_one("ACK", dest_of(first.uri))
    assert invites(h) == []  # no third attempt because of the old one
    h.feed(response_to(second, 200, body=SDP_ANSWER), source=dest_of(second.uri))
    assert h.take_one(200, CARRIER)


def test_failover_steps_and_exhausted_hunts_are_metrics(snapshot: RoutingSnapshot) -> None:
    metrics = NodeMetrics()
    h = make_harness(snapshot, NodruteSettings(failover=FailoverSettings(retry_plan_113=False)))
    h.b2bua._on_failover = metrics.failover
    h.b2bua._on_hunt_exhausted = metrics.hunt_exhausted
    h.feed(caller_invite(11, kommune="0301"))
    while found := invites(h):
        h.feed(response_to(found[0], 486), source=dest_of(found[0].uri))
    value = metrics.registry.get_sample_value
    assert value("nodrute_failover_total", {
        "service": "113", "from_centre": "AMK-OSLO", "to_centre": "AMK-INNLANDET",
        "reason": "rejected"}) == 1
    assert value("nodrute_failover_total", {
        "service": "113", "from_centre": "AMK-VESTREVIKEN", "to_centre": "none",
        "reason": "rejected"}) == 1
    assert value("nodrute_hunt_exhausted_total", {"service": "113"}) == 1
