"""Last resort with anchored media: every destination failed, the caller hears why, then gets the
final response (never silence, never a bare drop)."""

from __future__ import annotations

from b2bua_harness import (
    CARRIER,
    SDP_OFFER,
    Harness,
    caller_invite,
    dest_of,
    response_to,
)
from test_call_media_anchor import FakeEngine, caller_leg, cancel_for, media_harness

from ivr.config import MediaSettings
from ivr.engine import PromptFinished
from municipality_map import RoutingSnapshot
from router.call_record import TerminatedReason
from router.config import FailoverSettings, NodruteSettings
from sip.message import Request, Response


def harness_with(snapshot: RoutingSnapshot, engine: FakeEngine, prompts: tuple[str, ...]
                 ) -> Harness:
    settings = NodruteSettings(media=MediaSettings(enabled=True),
                               failover=FailoverSettings(retry_plan_113=False))
    return media_harness(snapshot, engine, settings, prompts)


def reject_every_attempt(h: Harness, status: int) -> int:
    attempts = 0
    while invites := [s.message for s in h.outbox
                      if isinstance(s.message, Request) and s.message.method == "INVITE"]:
        h.outbox = [s for s in h.outbox if s.message is not invites[0]]
        h.feed(response_to(invites[0], status), source=dest_of(invites[0].uri))
        attempts += 1
    return attempts


def test_caller_hears_the_no_centre_prompt_then_gets_the_final_response(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = harness_with(snapshot, engine, ("please_wait_113", "no_centre"))
    h.feed(caller_invite(1, body=SDP_OFFER))
    assert reject_every_attempt(h, 503) == 3
    leg = caller_leg(engine)
    assert ("play", leg, "nb/no_centre", "False") in engine.calls
    progress = [s.message for s in h.outbox if isinstance(s.message, Response)
                and s.message.status == 183]
    assert len(progress) == 1  # the early-media 183 of the 113 announcement, not a second one
    assert [s for s in h.outbox if isinstance(s.message, Response)
            and s.message.status >= 300] == []  # no final while the prompt plays
    h.b2bua.handle_media_event(PromptFinished(leg, "no_centre"), h.now)
    h._pump()
    final = h.take_one(503, CARRIER).message
    assert isinstance(final, Response)
    assert "No centre answered (3 attempts)" in (final.headers.get("Reason") or "")
    [record] = h.records
    assert record.hunt_exhausted
    assert ("release", leg) in engine.calls


def test_cancel_during_the_last_resort_prompt(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = harness_with(snapshot, engine, ("please_wait_113", "no_centre"))
    invite = caller_invite(2, body=SDP_OFFER)
    h.feed(invite)
    reject_every_attempt(h, 486)
    h.feed(cancel_for(invite))
    assert h.take_one(487, CARRIER)
    assert h.records[0].end_reason is TerminatedReason.CALLER_CANCEL
    assert engine.legs == {}


def test_without_the_prompt_the_final_response_comes_at_once(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = harness_with(snapshot, engine, ("please_wait_113",))
    h.feed(caller_invite(3, body=SDP_OFFER))
    reject_every_attempt(h, 486)
    assert h.take_one(486, CARRIER)
    assert h.records[0].end_reason is TerminatedReason.CENTRE_REJECTED
