"""``[media] mode = "release"``: answered anchored, then the router hands the RTP to the
endpoints with a re-INVITE on each leg (RFC 3725 flow I); a refusal keeps the call anchored."""

from __future__ import annotations

from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    SDP_OFFER,
    Harness,
    in_dialog_request,
    response_to,
)
from test_call_media_anchor import (
    AMK_OSLO,
    FakeEngine,
    answered_media_call,
    audio_port,
    caller_leg,
    media_harness,
    response,
)

from ivr.config import MediaSettings
from municipality_map import RoutingSnapshot
from router.config import NodruteSettings
from sip.message import Request
from sip.sdp import SessionDescription

CALLER_MOVED = SDP_OFFER.replace(b"m=audio 40000", b"m=audio 40002")


def release_harness(snapshot: RoutingSnapshot, engine: FakeEngine) -> Harness:
    return media_harness(snapshot, engine, NodruteSettings(
        media=MediaSettings(enabled=True, mode="release")))


def reinvite_to(h: Harness, dest: tuple[str, int]) -> Request:
    message = h.take_one("INVITE", dest).message
    assert isinstance(message, Request)
    return message


def test_after_the_ack_the_media_is_handed_to_caller_and_centre(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = release_harness(snapshot, engine)
    progress, ok = answered_media_call(h, engine, 1)
    leg = caller_leg(engine)
    # 1. the caller is offered the centre's media, as our SDP's next version
    to_caller = reinvite_to(h, CARRIER)
    offer = SessionDescription.parse(to_caller.body)
    ours = SessionDescription.parse(progress.body)
    assert audio_port(to_caller.body) == audio_port(SDP_ANSWER)  # the centre's RTP port
    assert (offer.origin_username, offer.session_id) == (ours.origin_username, ours.session_id)
    assert offer.session_version == ours.session_version + 1
    h.feed(response_to(to_caller, 200, body=CALLER_MOVED, to_tag=None))
    assert h.take_one("ACK", CARRIER)
    # 2. the centre is offered the caller's media
    to_centre = reinvite_to(h, AMK_OSLO)
    assert audio_port(to_centre.body) == 40002
    assert engine.legs  # still relaying until the centre agrees
    h.feed(response_to(to_centre, 200, body=SDP_ANSWER, to_tag=None), source=AMK_OSLO)
    assert h.take_one("ACK", AMK_OSLO)
    # 3. the router is out of the media path
    assert engine.legs == {}
    assert ("release", leg) in engine.calls
    # a later re-INVITE from the caller goes to the centre (no local answer any more)
    h.feed(in_dialog_request("INVITE", ok, 1, 2, body=SDP_OFFER))
    relayed = reinvite_to(h, AMK_OSLO)
    assert relayed.body == SDP_OFFER
    assert [s for s in h.outbox if s.dest == CARRIER] == []


def test_a_caller_refusing_the_reinvite_keeps_the_call_anchored(
        snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = release_harness(snapshot, engine)
    _, ok = answered_media_call(h, engine, 2)
    to_caller = reinvite_to(h, CARRIER)
    h.feed(response_to(to_caller, 488))
    assert h.take_one("ACK", CARRIER)  # the transaction ACKs the non-2xx itself
    assert [s for s in h.outbox if isinstance(s.message, Request)
            and s.message.method == "INVITE"] == []
    assert len(engine.legs) == 2  # still anchored, still relaying
    h.feed(in_dialog_request("INVITE", ok, 2, 2, body=CALLER_MOVED))
    assert response(h, 200)  # answered by the router as with anchor mode
    assert [s for s in h.outbox if s.dest == AMK_OSLO] == []


def test_anchor_mode_sends_no_reinvite(snapshot: RoutingSnapshot) -> None:
    engine = FakeEngine()
    h = media_harness(snapshot, engine)
    answered_media_call(h, engine, 3)
    assert [s for s in h.outbox if isinstance(s.message, Request)
            and s.message.method == "INVITE"] == []
