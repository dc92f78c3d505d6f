"""The drain gate (router/drain.py, B2bua.start_drain) on the sans-IO harness: new calls are
refused 503 + Retry-After, the calls in progress carry on, a release ends what is left."""

from __future__ import annotations

from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    Harness,
    caller_cancel,
    caller_invite,
    centre_request,
    dest_of,
    in_dialog_request,
    response_to,
)

from router.call_record import Outcome, TerminatedReason
from sip.message import Request, Response
from sip.parser import parse_message


def start_call(h: Harness, n: int) -> Request:
    h.feed(caller_invite(n))
    h.take_one(100, CARRIER)
    invite = h.take_one("INVITE").message
    assert isinstance(invite, Request)
    return invite


def answer(h: Harness, invite: Request, n: int) -> Response:
    """The centre answers, the caller ACKs; the 200 the caller got."""
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=dest_of(invite.uri))
    h.take_one("ACK", dest_of(invite.uri))
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    h.feed(in_dialog_request("ACK", ok, n, 1))
    return ok


def options(n: int) -> bytes:
    return (
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bKping{n}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:sbc@carrier.example>;tag=ping{n}\r\n"
        "To: <sip:127.0.0.1:5060>\r\n"
        f"Call-ID: ping{n}@carrier.example\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_new_invite_while_draining_gets_503_with_retry_after(harness: Harness) -> None:
    h = harness
    drain = h.b2bua.start_drain(h.now, retry_after_s=45)
    h.feed(caller_invite(1))
    refusal = h.take_one(503, CARRIER).message
    assert isinstance(refusal, Response)
    assert refusal.headers.get("Retry-After") == "45"
    assert (refusal.headers.get("Reason") or "").startswith("SIP;cause=503;")
    assert h.take() == [], "no 100 Trying and no INVITE towards a centre"
    assert (h.b2bua.active_calls, drain.refused) == (0, 1)
    # the caller's ACK for the 503 is absorbed by the transaction layer
    h.feed(caller_invite(1).replace(b"INVITE sip:113@127.0.0.1 SIP/2.0", b"ACK sip:113@127.0.0.1 "
                                    b"SIP/2.0").replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK"))
    assert h.take() == []


def test_options_while_draining_gets_503_and_200_before(harness: Harness) -> None:
    h = harness
    h.feed(options(1))
    assert h.take_one(200, CARRIER)
    drain = h.b2bua.start_drain(h.now, retry_after_s=30)
    h.feed(options(2))
    refusal = h.take_one(503, CARRIER).message
    assert isinstance(refusal, Response)
    assert refusal.headers.get("Retry-After") == "30"
    assert drain.options_refused == 1


def test_answered_call_goes_on_and_ends_normally(harness: Harness) -> None:
    h = harness
    invite = start_call(h, 2)
    ok = answer(h, invite, 2)
    drain = h.b2bua.start_drain(h.now, retry_after_s=30)
    assert drain.calls_at_start == 1
    # an in-dialog OPTIONS (keep-alive of the call) is still answered by the call, 200
    h.feed(in_dialog_request("OPTIONS", ok, 2, 2))
    assert h.take_one(200, CARRIER)
    h.advance(60.0)
    assert h.b2bua.active_calls == 1, "the drain never ends a call by itself"
    h.feed(in_dialog_request("BYE", ok, 2, 3))
    h.take_one(200, CARRIER)
    bye = h.take_one("BYE", dest_of(invite.uri)).message
    assert isinstance(bye, Request)
    assert h.b2bua.active_calls == 0
    assert h.b2bua.requests_pending, "the centre has not answered our BYE yet"
    h.feed(response_to(bye, 200), source=dest_of(invite.uri))
    assert not h.b2bua.requests_pending
    [record] = h.records
    assert (record.end_reason, record.outcome) == (TerminatedReason.CALLER_BYE, Outcome.ANSWERED)
    assert drain.released == 0


def test_ringing_call_is_answered_or_cancelled_as_usual(harness: Harness) -> None:
    h = harness
    ringing = start_call(h, 3)
    cancelled = start_call(h, 4)
    for invite in (ringing, cancelled):
        h.feed(response_to(invite, 180), source=dest_of(invite.uri))
        h.take_one(180, CARRIER)
    h.b2bua.start_drain(h.now, retry_after_s=30)
    answer(h, ringing, 3)
    h.feed(caller_cancel(4))
    statuses = sorted(s.message.status for s in h.take() if isinstance(s.message, Response))
    assert statuses == [200, 487]
    assert [r.end_reason for r in h.records] == [TerminatedReason.CALLER_CANCEL]
    assert h.b2bua.active_calls == 1


def test_centre_bye_during_drain_reaches_the_caller(harness: Harness) -> None:
    h = harness
    invite = start_call(h, 5)
    centre_ok = response_to(invite, 200, body=SDP_ANSWER)
    answer(h, invite, 5)
    h.b2bua.start_drain(h.now, retry_after_s=30)
    ok = parse_message(centre_ok)
    assert isinstance(ok, Response)
    h.feed(centre_request("BYE", invite, ok, 1), source=dest_of(invite.uri))
    assert h.take_one(200)  # to the centre, by its Via
    assert h.take_one("BYE", CARRIER)
    assert h.b2bua.active_calls == 0


def test_release_ends_answered_and_unanswered_calls_with_reason(harness: Harness) -> None:
    h = harness
    answered = start_call(h, 6)
    answer(h, answered, 6)
    hunting = start_call(h, 7)
    h.feed(response_to(hunting, 180), source=dest_of(hunting.uri))
    h.take_one(180, CARRIER)
    drain = h.b2bua.start_drain(h.now, retry_after_s=20)

    assert h.b2bua.release_calls("Node shutting down", h.now) == 2
    h._pump()  # what the node's endpoint does after a release
    out = h.take()
    byes = [s for s in out if isinstance(s.message, Request) and s.message.method == "BYE"]
    assert sorted(s.dest for s in byes) == sorted([CARRIER, dest_of(answered.uri)])
    assert all("cause=503" in (s.message.headers.get("Reason") or "") for s in byes)
    [refusal] = [s.message for s in out if isinstance(s.message, Response)]
    assert (refusal.status, refusal.headers.get("Retry-After")) == (503, "20")
    assert refusal.headers.get("Call-ID") == "call7@carrier.example"
    [cancel] = [s for s in out if isinstance(s.message, Request) and s.message.method == "CANCEL"]
    assert cancel.dest == dest_of(hunting.uri)
    assert len(out) == 4

    assert h.b2bua.active_calls == 0
    assert drain.released == 2
    assert {r.end_reason for r in h.records} == {TerminatedReason.NODE_SHUTDOWN}
    assert sorted(r.outcome for r in h.records) == sorted([Outcome.ANSWERED, Outcome.FAILED])
    # nothing left to release; the centres' answers to BYE/CANCEL still find their calls
    assert h.b2bua.release_calls("again", h.now) == 0
    assert h.b2bua.requests_pending
    for sent in byes:
        if sent.dest != CARRIER:
            assert isinstance(sent.message, Request)
            h.feed(response_to(sent.message, 200), source=sent.dest)
    h.feed(response_to(hunting, 487), source=dest_of(hunting.uri))
    h.take()
    assert [s.dest for s in byes if s.dest == CARRIER] == [CARRIER]
    bye_to_caller = next(s.message for s in byes if s.dest == CARRIER)
    assert isinstance(bye_to_caller, Request)
    h.feed(response_to(bye_to_caller, 200, to_tag=None))
    assert not h.b2bua.requests_pending


def test_a_call_arriving_before_the_gate_closes_is_kept(harness: Harness) -> None:
    h = harness
    invite = start_call(h, 8)
    h.b2bua.start_drain(h.now, retry_after_s=30)
    # a retransmission of that INVITE is the same transaction: no 503 for it
    h.feed(caller_invite(8))
    assert [s.message.status for s in h.take() if isinstance(s.message, Response)] == [100]
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=dest_of(invite.uri))
    assert h.take_one(200, CARRIER)


def test_an_ended_calls_invite_to_a_silent_centre_is_not_waited_for(harness: Harness) -> None:
    h = harness
    first = start_call(h, 9)
    h.advance(2.0)  # silent: the hunt moves on, that INVITE stays pending until Timer B
    backup = h.take_one("INVITE", (dest_of(first.uri)[0], 5106)).message
    assert isinstance(backup, Request)
    ok = answer(h, backup, 9)
    h.feed(in_dialog_request("BYE", ok, 9, 2))
    bye = h.take_one("BYE", dest_of(backup.uri)).message
    assert isinstance(bye, Request)
    assert h.b2bua.requests_pending  # our BYE waits for its 200
    h.feed(response_to(bye, 200), source=dest_of(backup.uri))
    assert h.b2bua.active_calls == 0
    assert not h.b2bua.requests_pending  # only the silent centre's INVITE is left
