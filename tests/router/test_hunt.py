"""The hunt state machine alone: which destination next, which timer, when it is over."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from router.hunt import AttemptEnd, Hunt, HuntPolicy


@dataclass(frozen=True)
class Dest:
    centre_id: str
    uri: str
    role: str = "primary"


PLAN = (Dest("A", "sip:a1"), Dest("A", "sip:a2"), Dest("B", "sip:b", "backup"),
        Dest("O", "sip:o", "overflow"))
POLICY = HuntPolicy(first_response_s=2.0, attempt_ring_s=20.0, total_ring_s=100.0)


def walk(hunt: Hunt, now: float = 0.0) -> list[str]:
    uris = []
    while (attempt := hunt.next(now)) is not None:
        uris.append(attempt.uri)
        hunt.end(AttemptEnd.REJECTED, now, 503)
    return uris


def test_plan_order_one_pass() -> None:
    assert walk(Hunt(PLAN, POLICY, lambda uri: True, 0.0)) == ["sip:a1", "sip:a2", "sip:b",
                                                                "sip:o"]


def test_second_pass_walks_everything_again() -> None:
    policy = HuntPolicy(2.0, 20.0, 100.0, passes=2)
    hunt = Hunt(PLAN, policy, lambda uri: True, 0.0)
    assert walk(hunt) == [d.uri for d in PLAN] * 2
    assert [a.pass_number for a in hunt.attempts] == [1] * 4 + [2] * 4


def test_down_destinations_go_last_and_are_marked() -> None:
    down = {"sip:a1", "sip:b"}
    hunt = Hunt(PLAN, POLICY, lambda uri: uri not in down, 0.0)
    assert walk(hunt) == ["sip:a2", "sip:o", "sip:a1", "sip:b"]
    assert [a.skipped_down for a in hunt.attempts] == [False, False, True, True]


def test_health_is_asked_at_each_step() -> None:
    down: set[str] = set()
    hunt = Hunt(PLAN, POLICY, lambda uri: uri not in down, 0.0)
    first = hunt.next(0.0)
    assert first is not None and first.uri == "sip:a1"
    hunt.end(AttemptEnd.NO_RESPONSE, 2.0)
    down.add("sip:a2")  # the prober saw it die meanwhile
    second = hunt.next(2.0)
    assert second is not None and second.uri == "sip:b"


def test_timers_first_response_then_ring_then_total() -> None:
    hunt = Hunt(PLAN, HuntPolicy(2.0, 20.0, 30.0), lambda uri: True, 100.0)
    hunt.next(100.0)
    assert hunt.deadline() == 102.0
    assert hunt.expired(101.99) is None
    assert hunt.expired(102.0) is AttemptEnd.NO_RESPONSE
    hunt.provisional(101.0)
    assert hunt.deadline() == 120.0
    assert hunt.expired(119.9) is None
    assert hunt.expired(120.0) is AttemptEnd.RING_TIMEOUT
    hunt.end(AttemptEnd.RING_TIMEOUT, 120.0)
    hunt.next(120.0)
    hunt.provisional(120.1)
    assert hunt.deadline() == 130.0  # the total ring time comes first
    assert hunt.expired(130.0) is AttemptEnd.TOTAL_TIMEOUT
    hunt.end(AttemptEnd.TOTAL_TIMEOUT, 130.0)
    assert hunt.next(130.0) is None  # no new attempt once the total is over


@pytest.mark.parametrize(("status", "final_codes", "moves_on"), [
    (486, (), True), (503, (), True), (603, (), True), (404, (), True), (302, (), True),
    (404, (404,), False), (200, (), False), (180, (), False),
])
def test_which_statuses_fail_over(status: int, final_codes: tuple[int, ...],
                                  moves_on: bool) -> None:
    policy = HuntPolicy(2.0, 20.0, 100.0, final_codes=frozenset(final_codes))
    assert Hunt(PLAN, policy, lambda uri: True, 0.0).fails_over(status) is moves_on


def test_empty_plan_has_no_attempt() -> None:
    assert Hunt((), HuntPolicy(2.0, 20.0, 100.0, passes=2), lambda uri: True, 0.0).next(0) is None


def test_summary_names_centre_uri_role_end_status_and_duration() -> None:
    hunt = Hunt(PLAN, POLICY, lambda uri: True, 0.0)
    hunt.next(1.0)
    attempt = hunt.end(AttemptEnd.REJECTED, 1.25, 486)
    assert attempt is not None
    assert attempt.summary() == "A sip:a1 primary: rejected 486 0.250s"
