"""One call through the B2BUA, message by message, on a fake clock."""

from __future__ import annotations

import pytest
from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    SDP_OFFER,
    Harness,
    caller_cancel,
    caller_invite,
    centre_request,
    dest_of,
    in_dialog_request,
    make_harness,
    response_to,
)

from municipality_map import RoutingSnapshot
from router.call_record import Outcome, TerminatedReason
from router.config import FailoverSettings, NodruteSettings, RoutingSettings
from sip.headers import NameAddr
from sip.message import Request, Response


def start_call(h: Harness, n: int, **kwargs: object) -> tuple[Request, Response]:
    """Send the caller's INVITE; return the INVITE the centre got and the caller's 100."""
    h.feed(caller_invite(n, **kwargs))  # type: ignore[arg-type]
    trying = h.take_one(100, CARRIER).message
    assert isinstance(trying, Response)
    centre = h.take_one("INVITE").message
    assert isinstance(centre, Request)
    assert h.take() == []
    return centre, trying


def answer(h: Harness, centre_invite: Request, dest: tuple[str, int]) -> Response:
    """Centre rings and answers; return the 200 the caller got."""
    h.feed(response_to(centre_invite, 180), source=dest)
    ringing = h.take_one(180, CARRIER).message
    assert isinstance(ringing, Response)
    h.feed(response_to(centre_invite, 200, body=SDP_ANSWER), source=dest)
    ack = h.take_one("ACK", dest).message
    assert isinstance(ack, Request)
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    return ok


def test_answered_call_caller_hangs_up(harness: Harness, centre_uris: dict[str, str]) -> None:
    h = harness
    centre_invite, trying = start_call(h, 1, kommune="0301")
    oslo = centre_uris["AMK-OSLO"]
    # RFC 3261 §8.2.6.2: a 100 carries no To tag
    assert "tag=" not in (trying.headers.get("To") or "")
    # The centre leg: a new dialog to the centre's URI, the caller's identity preserved
    assert centre_invite.uri == oslo
    assert centre_invite.headers.get("Call-ID") != "call1@carrier.example"
    caller = NameAddr.parse(centre_invite.headers.get("From") or "")
    assert caller.uri == "sip:4790000001@carrier.example"
    assert caller.tag and caller.tag != "ctag1"
    assert centre_invite.headers.get("P-Asserted-Identity") == "<tel:+4790000001>"
    assert centre_invite.headers.get("Privacy") == "none"
    assert "X-Carrier-Secret" not in centre_invite.headers  # not on the allow-list
    assert centre_invite.headers.get("X-Kommunenummer") == "0301"
    assert "centre=AMK-OSLO;source=header;requested=0301" in (
        centre_invite.headers.get("X-Nodrute-Route") or "")
    assert centre_invite.body == SDP_OFFER
    assert centre_invite.headers.get("Max-Forwards") == "69"

    ok = answer(h, centre_invite, dest_of(oslo))
    assert ok.body == SDP_ANSWER
    to_tag = NameAddr.parse(ok.headers.get("To") or "").tag
    assert to_tag
    assert ok.headers.get("Contact", "").startswith("<sip:nodrute@127.0.0.1:5060")

    h.feed(in_dialog_request("ACK", ok, 1, 1))
    assert h.take() == []
    h.feed(in_dialog_request("BYE", ok, 1, 2))
    assert isinstance(h.take_one(200, CARRIER).message, Response)
    bye = h.take_one("BYE", dest_of(oslo)).message
    assert isinstance(bye, Request)
    assert bye.headers.get("Call-ID") == centre_invite.headers.get("Call-ID")
    assert "Q.850;cause=16" in (bye.headers.get("Reason") or "")
    h.feed(response_to(bye, 200), source=dest_of(oslo))
    assert h.take() == []
    [record] = h.records
    assert record.end_reason is TerminatedReason.CALLER_BYE
    assert record.outcome is Outcome.ANSWERED
    assert record.centre_id == "AMK-OSLO"
    assert h.b2bua.active_calls == 0


def test_centre_bye_reaches_the_caller(harness: Harness, centre_uris: dict[str, str]) -> None:
    h = harness
    centre_invite, _ = start_call(h, 2, kommune="4601")
    dest = dest_of(centre_invite.uri)
    ok_from_centre = response_to(centre_invite, 200, body=SDP_ANSWER)
    ok = answer(h, centre_invite, dest)
    h.feed(in_dialog_request("ACK", ok, 2, 1))
    from sip.parser import parse_message
    centre_ok = parse_message(ok_from_centre)
    assert isinstance(centre_ok, Response)
    h.feed(centre_request("BYE", centre_invite, centre_ok, 1), source=dest)
    assert isinstance(h.take_one(200, dest).message, Response)
    bye = h.take_one("BYE", CARRIER).message
    assert isinstance(bye, Request)
    assert bye.headers.get("Call-ID") == "call2@carrier.example"
    # the caller's dialog: From is our tag (the To tag we gave), To is the caller with its tag
    assert NameAddr.parse(bye.headers.get("To") or "").tag == "ctag2"
    assert bye.uri == "sip:4790000002@192.0.2.10:5080"  # the caller's Contact
    assert h.records[0].end_reason is TerminatedReason.CENTRE_BYE


def test_cancel_during_ringing_cancels_the_centre_leg(harness: Harness) -> None:
    h = harness
    centre_invite, _ = start_call(h, 3, kommune="0301")
    dest = dest_of(centre_invite.uri)
    h.feed(response_to(centre_invite, 180), source=dest)
    h.take_one(180, CARRIER)
    h.feed(caller_cancel(3, reason='Q.850;cause=31;text="Caller gave up"'))
    out = h.take()
    kinds = sorted(
        (str(s.message.status if isinstance(s.message, Response) else s.message.method), s.dest)
        for s in out
    )
    assert kinds == sorted([("200", CARRIER), ("487", CARRIER), ("CANCEL", dest)])
    centre_cancel = next(s.message for s in out if isinstance(s.message, Request))
    assert centre_cancel.headers.get("Call-ID") == centre_invite.headers.get("Call-ID")
    # §9.1: same branch as the INVITE it cancels
    assert centre_cancel.headers.get("Via") == centre_invite.headers.get("Via")
    assert centre_cancel.headers.get("Reason") == 'Q.850;cause=31;text="Caller gave up"'

    h.feed(response_to(centre_invite, 487), source=dest)
    assert h.take_one("ACK", dest)  # the client transaction ACKs the 487 itself
    assert h.records[0].end_reason is TerminatedReason.CALLER_CANCEL
    assert h.records[0].outcome is Outcome.ABANDONED


def test_cancel_racing_the_answer_releases_the_centre(harness: Harness) -> None:
    h = harness
    centre_invite, _ = start_call(h, 4)
    dest = dest_of(centre_invite.uri)
    h.feed(response_to(centre_invite, 180), source=dest)
    h.take()
    h.feed(caller_cancel(4))
    h.take()
    h.feed(response_to(centre_invite, 200, body=SDP_ANSWER), source=dest)
    assert h.take_one("ACK", dest)
    assert h.take_one("BYE", dest)


@pytest.mark.parametrize(("centre_status", "caller_status"),
                         [(486, 486), (503, 503), (603, 603), (302, 480), (407, 503)])
def test_a_final_code_from_the_centre_is_mapped_back_with_reason(
        snapshot: RoutingSnapshot, centre_status: int, caller_status: int) -> None:
    # [failover] final_codes: relayed at once, no further destination tried.
    h = make_harness(snapshot, NodruteSettings(
        failover=FailoverSettings(final_codes=[centre_status])))
    centre_invite, _ = start_call(h, 5)
    dest = dest_of(centre_invite.uri)
    h.feed(response_to(centre_invite, centre_status), source=dest)
    final = h.take_one(caller_status, CARRIER).message
    assert isinstance(final, Response)
    assert f"cause={centre_status}" in (final.headers.get("Reason") or "")
    assert NameAddr.parse(final.headers.get("To") or "").tag
    assert h.take_one("ACK", dest)
    assert h.records[0].end_reason is TerminatedReason.CENTRE_REJECTED


def test_silent_centre_times_out_with_408_when_it_is_the_only_destination(
        lone_snapshot: RoutingSnapshot) -> None:
    # first_response_s longer than Timer B: the transaction's own timeout ends the attempt.
    h = make_harness(lone_snapshot, NodruteSettings(failover=FailoverSettings(
        first_response_s=60, retry_plan_113=False)))
    centre_invite, _ = start_call(h, 6)
    dest = dest_of(centre_invite.uri)
    h.advance(31.6)
    retransmits = [s for s in h.take() if isinstance(s.message, Request)]
    # Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    assert len(retransmits) == 6 and all(s.dest == dest for s in retransmits)
    h.advance(0.5)  # Timer B = 64*T1 = 32 s
    assert h.take_one(408, CARRIER)
    assert h.records[0].end_reason is TerminatedReason.CENTRE_TIMEOUT
    assert h.records[0].hunt_exhausted


def test_ringing_without_answer_hits_the_ring_timeout(snapshot: RoutingSnapshot) -> None:
    h = make_harness(snapshot, NodruteSettings(routing=RoutingSettings(ring_timeout_113_s=20)))
    centre_invite, _ = start_call(h, 7)
    dest = dest_of(centre_invite.uri)
    h.feed(response_to(centre_invite, 180), source=dest)
    h.take()
    h.advance(19.0)
    assert h.take() == []
    h.advance(1.1)  # before Timer G/E would retransmit the 480 and the CANCEL
    assert h.take_one(480, CARRIER)
    assert h.take_one("CANCEL", dest)
    assert h.records[0].end_reason is TerminatedReason.RING_TIMEOUT


def test_late_offer_answer_travels_in_the_ack(harness: Harness) -> None:
    h = harness
    centre_invite, _ = start_call(h, 8, body=b"")
    assert centre_invite.body == b""
    dest = dest_of(centre_invite.uri)
    h.feed(response_to(centre_invite, 200, body=SDP_ANSWER), source=dest)
    ok = h.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    assert h.take() == []  # no ACK to the centre until the caller answers the offer
    h.feed(in_dialog_request("ACK", ok, 8, 1, body=SDP_OFFER))
    ack = h.take_one("ACK", dest).message
    assert isinstance(ack, Request)
    assert ack.body == SDP_OFFER


def test_caller_that_never_acks_is_released(harness: Harness) -> None:
    h = harness
    centre_invite, _ = start_call(h, 9)
    dest = dest_of(centre_invite.uri)
    h.feed(response_to(centre_invite, 200, body=SDP_ANSWER), source=dest)
    h.take()
    h.advance(40.0)
    out = h.take()
    retransmitted_ok = [s for s in out if isinstance(s.message, Response)]
    assert len(retransmitted_ok) >= 5  # §13.3.1.4: 2xx retransmitted until ACK or 64*T1
    byes = {s.dest for s in out if isinstance(s.message, Request) and s.message.method == "BYE"}
    assert byes == {dest, CARRIER}
    assert h.records[0].end_reason is TerminatedReason.NO_ACK


def test_non_emergency_number_gets_404(harness: Harness) -> None:
    harness.feed(caller_invite(10, "sip:22334455@127.0.0.1"))
    assert harness.take_one(404, CARRIER)
    assert harness.take() == []
    assert harness.b2bua.active_calls == 0


def test_max_forwards_zero_gets_483(harness: Harness) -> None:
    harness.feed(caller_invite(11, max_forwards=0))
    assert harness.take_one(483, CARRIER)
    assert harness.take() == []


def test_out_of_dialog_options_gets_200_with_allow(harness: Harness) -> None:
    options = (
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bKopt1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:sbc@carrier.example>;tag=o1\r\n"
        "To: <sip:127.0.0.1:5060>\r\nCall-ID: opt1@carrier.example\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    harness.feed(options)
    ok = harness.take_one(200, CARRIER).message
    assert isinstance(ok, Response)
    assert "INVITE" in (ok.headers.get("Allow") or "")


def test_bye_for_unknown_dialog_gets_481(harness: Harness) -> None:
    bye = (
        "BYE sip:nodrute@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CARRIER[0]}:{CARRIER[1]};branch=z9hG4bKbye1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@carrier.example>;tag=a\r\n"
        "To: <sip:113@127.0.0.1>;tag=nosuch\r\nCall-ID: gone@carrier.example\r\n"
        "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    harness.feed(bye)
    assert harness.take_one(481, CARRIER)


def test_reinvite_is_relayed_to_the_other_leg(harness: Harness) -> None:
    h = harness
    centre_invite, _ = start_call(h, 12)
    dest = dest_of(centre_invite.uri)
    ok = answer(h, centre_invite, dest)
    h.feed(in_dialog_request("ACK", ok, 12, 1))
    h.feed(in_dialog_request("INVITE", ok, 12, 2, body=SDP_OFFER))
    reinvite = h.take_one("INVITE", dest).message
    assert isinstance(reinvite, Request)
    assert reinvite.headers.get("Call-ID") == centre_invite.headers.get("Call-ID")
    assert reinvite.headers.get("CSeq") == "2 INVITE"
    assert reinvite.body == SDP_OFFER
    h.feed(response_to(reinvite, 200, body=SDP_ANSWER), source=dest)
    assert h.take_one("ACK", dest)
    relayed = h.take_one(200, CARRIER).message
    assert isinstance(relayed, Response)
    assert relayed.body == SDP_ANSWER
    assert relayed.headers.get("CSeq") == "2 INVITE"


def test_tcp_caller_gets_answers_on_its_connection(harness: Harness) -> None:
    h = harness
    data = caller_invite(13).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    h.feed(data, transport="TCP")
    trying = h.take_one(100)
    assert trying.transport == "TCP" and trying.dest == CARRIER


def test_answered_calls_are_not_kept_alive_by_their_ring_deadline(harness: Harness) -> None:
    h = harness
    for n in range(3000):
        centre_invite, _ = start_call(h, 10_000 + n)
        ok = answer(h, centre_invite, dest_of(centre_invite.uri))
        h.feed(in_dialog_request("ACK", ok, 10_000 + n, 1))
        h.feed(in_dialog_request("BYE", ok, 10_000 + n, 2))
        h.take()
    # every call ended long before its 60 s ring timeout; the heap must not hold them all
    assert h.b2bua.active_calls == 0
    assert len(h.b2bua._deadlines) <= 1025
