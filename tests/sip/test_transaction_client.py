"""Client transactions, as transcripts on a fake clock (RFC 3261 §17.1, §9.1, RFC 6026 §7.2)."""

from __future__ import annotations

import pytest
from test_transaction_support import CENTRE, Harness, first_line, parse_wire, request, response

from sip.events import ResponseReceived, TransactionTimedOut, TransportFailed
from sip.message import Request, Response
from sip.parser import validate_request
from sip.transaction import TransactionState

INVITE_RETRANSMITS = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A: T1, doubling, until B = 32


def ack_2xx(invite: Request, to_tag: str = "totag1") -> Request:
    return request(
        "ACK",
        call_id=invite.headers.get("Call-ID") or "",
        to_tag=to_tag,
        uri="sip:centre@198.51.100.20",
    )


# -- INVITE client: Calling --------------------------------------------------------------------


def test_timer_a_retransmits_at_t1_doubling_then_timer_b_times_out(harness: Harness) -> None:
    tx = harness.send_request(request("INVITE"))
    assert harness.layer.state(tx) is TransactionState.CALLING
    harness.run_until(100)
    assert harness.sent_lines() == [(0.0, "INVITE")] + [(t, "INVITE") for t in INVITE_RETRANSMITS]
    assert harness.take_events() == [(32.0, TransactionTimedOut(tx, "INVITE"))]
    assert harness.layer.state(tx) is None
    assert len(harness.layer) == 0


def test_no_timer_a_over_tcp_but_timer_b_still(harness: Harness) -> None:
    tx = harness.send_request(request("INVITE"), transport="TCP")
    harness.run_until(100)
    assert harness.sent_lines() == [(0.0, "INVITE")]
    assert harness.take_events() == [(32.0, TransactionTimedOut(tx, "INVITE"))]


def test_retransmissions_resend_the_same_bytes(harness: Harness) -> None:
    harness.send_request(request("INVITE"))
    harness.run_until(2)
    sent = harness.take_sent()
    assert len(sent) == 3 and len({out.data for _, out in sent}) == 1
    assert all(out.dest == CENTRE and out.transport == "UDP" for _, out in sent)


# -- INVITE client: Proceeding, Completed --------------------------------------------------------


def test_provisional_stops_timer_a_and_timer_b(harness: Harness) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv)
    harness.run_until(0.7)
    harness.receive(response(inv, 180), source=CENTRE)
    harness.run_until(1000)
    assert harness.sent_lines() == [(0.0, "INVITE"), (0.5, "INVITE")]
    event = harness.only_event()
    assert isinstance(event, ResponseReceived) and event.response.status == 180
    assert event.tx == tx and not event.retransmission
    assert harness.layer.state(tx) is TransactionState.PROCEEDING


def test_non_2xx_final_is_acked_and_retransmitted_final_re_acked_until_timer_d(
    harness: Harness,
) -> None:
    inv = request("INVITE", routes=["<sip:sbc1.example;lr>", "<sip:sbc2.example;lr>"])
    tx = harness.send_request(inv)
    harness.receive(response(inv, 100), source=CENTRE)
    harness.run_until(2.0)
    busy = response(inv, 486, to_tag="uas-tag")
    harness.receive(busy, source=CENTRE)
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    assert [type(e).__name__ for _, e in harness.take_events()] == [
        "ResponseReceived",
        "ResponseReceived",
    ]
    ((_, ack_out),) = harness.take_sent()[1:]
    assert ack_out.dest == CENTRE

    # §17.1.1.3: the ACK, field by field
    ack = parse_wire(ack_out.data)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri == inv.uri
    validate_request(ack)  # what a UAS checks (§8.2) passes
    assert ack.headers.get_all("Via") == inv.headers.get_all("Via")[:1]
    assert ack.headers.get("From") == inv.headers.get("From")
    assert ack.headers.get("To") == busy.headers.get("To")
    assert ";tag=uas-tag" in (ack.headers.get("To") or "")
    assert ack.headers.get("Call-ID") == inv.headers.get("Call-ID")
    assert ack.headers.get("CSeq") == "1 ACK"
    assert ack.headers.get_all("Route") == inv.headers.get_all("Route")

    # a retransmitted final: the same ACK again, nothing passed up (§17.1.1.2)
    harness.run_until(5.0)
    harness.receive(busy, source=CENTRE)
    assert harness.take_sent() == [(5.0, ack_out)]
    assert harness.take_events() == []

    # Timer D = 32 s over UDP
    harness.run_until(33.9)
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    assert harness.layer.alive(tx)  # what the trunk bounds sweep with (router/admission.py)
    harness.run_until(34.0)
    assert harness.layer.state(tx) is None
    assert not harness.layer.alive(tx)
    assert harness.take_events() == [] and harness.take_sent() == []


def test_timer_d_is_zero_over_tcp(harness: Harness) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv, transport="TCP")
    harness.receive(response(inv, 603), source=CENTRE, transport="TCP")
    assert harness.sent_lines() == [(0.0, "INVITE"), (0.0, "ACK")]
    assert harness.layer.state(tx) is None
    assert len(harness.layer) == 0 and harness.layer.next_deadline() is None


def test_final_in_calling_goes_straight_to_completed(harness: Harness) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv)
    harness.receive(response(inv, 404), source=CENTRE)
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    harness.run_until(31.0)
    assert harness.sent_lines() == [(0.0, "INVITE"), (0.0, "ACK")]  # Timer A stopped


# -- INVITE client: Accepted (RFC 6026) ------------------------------------------------------


def test_2xx_accepted_retransmission_passed_up_and_re_acked_until_timer_m(
    harness: Harness,
) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv)
    harness.receive(response(inv, 180), source=CENTRE)
    harness.run_until(3.0)
    ok = response(inv, 200)
    harness.receive(ok, source=CENTRE)
    assert harness.layer.state(tx) is TransactionState.ACCEPTED
    events = [e for _, e in harness.take_events()]
    assert events[-1] == ResponseReceived(ok, tx, False)
    harness.take_sent()

    # The TU ACKs (a new transaction-less request, to the remote target)
    ack = ack_2xx(inv)
    harness.send_ack(ack, dest=("198.51.100.21", 5062))
    ((_, ack_out),) = harness.take_sent()
    assert first_line(ack_out.data) == "ACK" and ack_out.dest == ("198.51.100.21", 5062)

    # a retransmitted 2xx: the same ACK automatically, passed up as a retransmission
    harness.run_until(4.0)
    harness.receive(ok, source=CENTRE)
    assert harness.take_sent() == [(4.0, ack_out)]
    assert harness.only_event() == ResponseReceived(ok, tx, True)

    # a 2xx from another fork (other To tag): a new dialog, not a retransmission, no ACK yet
    forked = response(inv, 200, to_tag="other-fork")
    harness.receive(forked, source=CENTRE)
    assert harness.only_event() == ResponseReceived(forked, tx, False)
    assert harness.take_sent() == []

    # Timer M = 64·T1 from the first 2xx
    harness.run_until(34.9)
    assert harness.layer.state(tx) is TransactionState.ACCEPTED
    harness.run_until(35.0)
    assert harness.layer.state(tx) is None and len(harness.layer) == 0
    assert harness.take_events() == []


def test_2xx_retransmission_before_tu_acked_is_passed_up_without_ack(harness: Harness) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv)
    ok = response(inv, 200)
    harness.receive(ok, source=CENTRE)
    harness.receive(ok, source=CENTRE)
    assert [e for _, e in harness.take_events()] == [
        ResponseReceived(ok, tx, False),
        ResponseReceived(ok, tx, True),
    ]
    assert harness.sent_lines() == [(0.0, "INVITE")]


def test_stray_2xx_after_timer_m_is_passed_up_others_dropped(harness: Harness) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv)
    ok = response(inv, 200)
    harness.receive(ok, source=CENTRE)
    harness.run_until(100)
    assert harness.layer.state(tx) is None
    harness.take_events()
    harness.take_sent()
    harness.receive(ok, source=CENTRE)
    assert harness.only_event() == ResponseReceived(ok, tx, True)
    harness.receive(response(inv, 180), source=CENTRE)
    harness.receive(response(inv, 486), source=CENTRE)
    harness.receive(response(request("OPTIONS"), 200), source=CENTRE)
    assert harness.take_events() == [] and harness.take_sent() == []


def test_late_2xx_after_timer_b_is_passed_up(harness: Harness) -> None:
    inv = request("INVITE")
    tx = harness.send_request(inv)
    harness.run_until(40)
    harness.take_events()
    ok = response(inv, 200)
    harness.receive(ok, source=CENTRE)
    assert harness.only_event() == ResponseReceived(ok, tx, True)


def test_malformed_responses_are_dropped(harness: Harness) -> None:
    inv = request("INVITE")
    harness.send_request(inv)
    no_via = response(inv, 200)
    no_via.headers.remove("Via")
    bad_cseq = response(inv, 200)
    bad_cseq.headers.set("CSeq", "one INVITE")
    no_branch = response(inv, 200)
    no_branch.headers.set("Via", "SIP/2.0/UDP 192.0.2.10:5060")
    for bad in (no_via, bad_cseq, no_branch):
        harness.receive(bad, source=CENTRE)
    assert harness.take_events() == []


# -- non-INVITE client -----------------------------------------------------------------------

E_TRYING = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # T1 doubling, cap T2


def test_timer_e_doubles_up_to_t2_then_timer_f(harness: Harness) -> None:
    tx = harness.send_request(request("OPTIONS"))
    assert harness.layer.state(tx) is TransactionState.TRYING
    harness.run_until(100)
    assert harness.sent_lines() == [(0.0, "OPTIONS")] + [(t, "OPTIONS") for t in E_TRYING]
    assert harness.take_events() == [(32.0, TransactionTimedOut(tx, "OPTIONS"))]
    assert len(harness.layer) == 0


def test_timer_e_is_t2_in_proceeding_final_completes_and_timer_k(harness: Harness) -> None:
    bye = request("BYE", to_tag="totag1", cseq=2)
    tx = harness.send_request(bye)
    harness.run_until(0.2)
    harness.receive(response(bye, 100), source=CENTRE)
    assert harness.layer.state(tx) is TransactionState.PROCEEDING
    harness.run_until(10.0)
    # E fired at 0.5 (in Proceeding) and from then on every T2
    assert harness.sent_lines() == [(0.0, "BYE"), (0.5, "BYE"), (4.5, "BYE"), (8.5, "BYE")]
    ok = response(bye, 200)
    harness.receive(ok, source=CENTRE)
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    assert [e for _, e in harness.take_events()][-1] == ResponseReceived(ok, tx, False)
    harness.receive(ok, source=CENTRE)  # absorbed in Completed
    assert harness.take_events() == []
    harness.run_until(14.9)
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    harness.run_until(15.0)  # Timer K = T4
    assert harness.layer.state(tx) is None
    assert harness.take_sent() == [] and harness.take_events() == []


def test_non_invite_over_tcp_no_timer_e_and_k_zero(harness: Harness) -> None:
    opt = request("OPTIONS")
    tx = harness.send_request(opt, transport="TCP")
    harness.run_until(10)
    assert harness.sent_lines() == [(0.0, "OPTIONS")]
    harness.receive(response(opt, 200), source=CENTRE, transport="TCP")
    assert harness.layer.state(tx) is None
    assert harness.layer.next_deadline() is None


def test_non_invite_tcp_timer_f(harness: Harness) -> None:
    tx = harness.send_request(request("OPTIONS"), transport="TCP")
    harness.run_until(100)
    assert harness.take_events() == [(32.0, TransactionTimedOut(tx, "OPTIONS"))]


# -- transport errors (§17.1.4) --------------------------------------------------------------


def test_transport_error_fails_pending_client_transactions_towards_dest(
    harness: Harness,
) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv, transport="TCP")
    bye_tx = harness.send_request(request("BYE", to_tag="t"), transport="TCP")
    elsewhere = harness.send_request(
        request("OPTIONS"), dest=("203.0.113.5", 5060), transport="TCP"
    )
    over_udp = harness.send_request(request("OPTIONS"), transport="UDP")
    done = request("INVITE")
    accepted = harness.send_request(done, transport="TCP")
    harness.receive(response(done, 200), source=CENTRE, transport="TCP")
    harness.take_events()

    harness.layer.transport_error(CENTRE, "tcp", harness.now)
    events = []
    while (event := harness.layer.next_event()) is not None:
        events.append(event)
    assert events == [TransportFailed(invite_tx, "INVITE"), TransportFailed(bye_tx, "BYE")]
    for gone in (invite_tx, bye_tx):
        assert harness.layer.state(gone) is None
    assert harness.layer.state(elsewhere) is TransactionState.TRYING
    assert harness.layer.state(over_udp) is TransactionState.TRYING
    assert harness.layer.state(accepted) is TransactionState.ACCEPTED


# -- CANCEL (§9.1) ---------------------------------------------------------------------------


def test_cancel_after_provisional_is_sent_at_once(harness: Harness) -> None:
    inv = request("INVITE", routes=["<sip:sbc1.example;lr>"])
    invite_tx = harness.send_request(inv)
    harness.receive(response(inv, 180), source=CENTRE)
    harness.take_sent()
    cancel_tx = harness.send_cancel(invite_tx)
    assert cancel_tx is not None
    assert harness.layer.state(cancel_tx) is TransactionState.TRYING
    ((_, out),) = harness.take_sent()
    cancel = parse_wire(out.data)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL" and out.dest == CENTRE
    validate_request(cancel)
    assert cancel.uri == inv.uri
    assert cancel.headers.get_all("Via") == inv.headers.get_all("Via")[:1]
    for name in ("From", "To", "Call-ID"):
        assert cancel.headers.get(name) == inv.headers.get(name)
    assert cancel.headers.get("CSeq") == "1 CANCEL"
    assert cancel.headers.get_all("Route") == inv.headers.get_all("Route")
    # asking twice sends nothing more
    assert harness.send_cancel(invite_tx) == cancel_tx
    assert harness.take_sent() == []
    # 200 to CANCEL, then 487 to INVITE
    harness.receive(response(cancel, 200), source=CENTRE)
    harness.receive(response(inv, 487), source=CENTRE)
    assert [
        (e.tx, e.response.status)
        for _, e in harness.take_events()
        if isinstance(e, ResponseReceived)
    ][-2:] == [(cancel_tx, 200), (invite_tx, 487)]
    assert harness.sent_lines() == [(0.0, "ACK")]


def test_cancel_is_held_until_the_first_provisional(harness: Harness) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    harness.run_until(0.6)
    cancel_tx = harness.send_cancel(invite_tx)
    assert cancel_tx is not None and harness.layer.state(cancel_tx) is None
    harness.run_until(1.2)
    assert [line for _, line in harness.sent_lines()] == ["INVITE", "INVITE"]
    harness.receive(response(inv, 100), source=CENTRE)
    assert harness.sent_lines() == [(1.2, "CANCEL")]
    assert harness.layer.state(cancel_tx) is TransactionState.TRYING
    harness.run_until(1.7)  # the CANCEL has its own Timer E
    assert harness.sent_lines() == [(1.7, "CANCEL")]


def test_held_cancel_is_dropped_when_the_final_comes_first(harness: Harness) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    cancel_tx = harness.send_cancel(invite_tx)
    assert cancel_tx is not None
    harness.receive(response(inv, 486), source=CENTRE)
    harness.run_until(100)
    assert [line for _, line in harness.sent_lines()] == ["INVITE", "ACK"]
    assert harness.layer.state(cancel_tx) is None and len(harness.layer) == 0


def test_held_cancel_is_dropped_when_the_2xx_comes_first(harness: Harness) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    cancel_tx = harness.send_cancel(invite_tx)
    harness.receive(response(inv, 200), source=CENTRE)
    harness.receive(response(inv, 200), source=CENTRE)
    assert [line for _, line in harness.sent_lines()] == ["INVITE"]
    assert cancel_tx is not None and harness.layer.state(cancel_tx) is None


def test_cancel_after_final_or_for_unknown_tx_is_none(harness: Harness) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    harness.receive(response(inv, 200), source=CENTRE)
    assert harness.send_cancel(invite_tx) is None
    assert harness.send_cancel("c|INVITE|z9hG4bKnothere") is None
    opt_tx = harness.send_request(request("OPTIONS"))
    assert harness.send_cancel(opt_tx) is None


def test_invite_given_up_64t1_after_cancel_without_final(harness: Harness) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    harness.receive(response(inv, 180), source=CENTRE)
    harness.run_until(10.0)
    cancel_tx = harness.send_cancel(invite_tx)
    assert cancel_tx is not None
    cancel = parse_wire(harness.take_sent()[-1][1].data)
    assert isinstance(cancel, Request)
    harness.receive(response(cancel, 200), source=CENTRE)
    harness.take_events()
    harness.run_until(100)
    assert harness.take_events() == [(42.0, TransactionTimedOut(invite_tx, "INVITE"))]
    assert len(harness.layer) == 0


def test_transport_error_drops_held_cancel(harness: Harness) -> None:
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    cancel_tx = harness.send_cancel(invite_tx)
    harness.layer.transport_error(CENTRE, "UDP", 0.0)
    assert harness.layer.next_event() == TransportFailed(invite_tx, "INVITE")
    harness.receive(response(inv, 180), source=CENTRE)
    assert [line for _, line in harness.sent_lines()] == ["INVITE"]
    assert cancel_tx is not None and harness.layer.state(cancel_tx) is None


# -- misuse ----------------------------------------------------------------------------------


def test_send_request_rejects_ack_missing_branch_and_reused_branch(harness: Harness) -> None:
    from sip.errors import SipUsageError

    with pytest.raises(SipUsageError):
        harness.send_request(request("ACK"))
    with pytest.raises(SipUsageError):
        harness.send_request(request("OPTIONS", via="SIP/2.0/UDP 192.0.2.1:5060"))
    with pytest.raises(SipUsageError):
        harness.send_request(request("OPTIONS", branch="1234-rfc2543"))
    twice = request("OPTIONS")
    harness.send_request(twice)
    with pytest.raises(SipUsageError):
        harness.send_request(twice)


def test_response_matching_uses_cseq_method(harness: Harness) -> None:
    # §17.1.3: the INVITE and its CANCEL share a branch; the CSeq method tells them apart.
    inv = request("INVITE")
    invite_tx = harness.send_request(inv)
    harness.receive(response(inv, 180), source=CENTRE)
    cancel_tx = harness.send_cancel(invite_tx)
    harness.take_events()
    ok_to_cancel: Response = response(inv, 200)
    ok_to_cancel.headers.set("CSeq", "1 CANCEL")
    harness.receive(ok_to_cancel, source=CENTRE)
    assert harness.only_event() == ResponseReceived(ok_to_cancel, cancel_tx or "", False)
    assert harness.layer.state(invite_tx) is TransactionState.PROCEEDING
