"""Server transactions, as transcripts on a fake clock (RFC 3261 §17.2, §9.2, §13.3.1.4,
§18.2, RFC 3581, RFC 6026 §7.1)."""

from __future__ import annotations

import pytest
from test_transaction_support import (
    UAC,
    Harness,
    ack_for_2xx,
    first_line,
    parse_wire,
    request,
    response,
)

from sip.errors import SipParseError, SipUsageError
from sip.events import (
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    TransactionTimedOut,
)
from sip.headers import Via
from sip.message import Request, Response
from sip.transaction import TransactionState

G_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # T1 doubling, cap T2


def new_invite(harness: Harness, **kwargs: object) -> tuple[Request, str]:
    inv = request("INVITE", **kwargs)  # type: ignore[arg-type]
    harness.receive(inv)
    event = harness.only_event()
    assert isinstance(event, RequestReceived) and event.tx is not None
    assert event.request is inv and event.source == UAC and event.transport == "UDP"
    return inv, event.tx


def shifted(schedule: list[float], start: float, what: str) -> list[tuple[float, str]]:
    return [(start + t, what) for t in schedule]


# -- INVITE server: Proceeding ---------------------------------------------------------------


def test_new_invite_is_passed_up_in_proceeding(harness: Harness) -> None:
    _, tx = new_invite(harness)
    assert tx.startswith("s|")
    assert harness.layer.state(tx) is TransactionState.PROCEEDING
    assert harness.layer.alive(tx)
    assert harness.layer.counts()["server_invite"] == 1


def test_100_trying_only_when_the_tu_is_silent_for_200ms(harness: Harness) -> None:
    inv, _ = new_invite(harness, extra=[("Timestamp", "54.2")])
    harness.run_until(0.199)
    assert harness.take_sent() == []
    harness.run_until(1.0)
    ((t, out),) = harness.take_sent()
    trying = parse_wire(out.data)
    assert t == pytest.approx(0.2) and isinstance(trying, Response) and trying.status == 100
    assert trying.headers.get("To") == inv.headers.get("To")  # no tag on a 100 (§8.2.6.2)
    assert trying.headers.get("Timestamp") == "54.2"  # §8.2.6.1
    assert out.dest == UAC


def test_no_100_when_the_tu_answers_within_200ms(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.run_until(0.1)
    harness.send_response(tx, response(inv, 180))
    harness.run_until(10.0)
    assert harness.sent_lines() == [(0.1, "180")]


def test_no_automatic_100_when_disabled(harness_no_trying: Harness) -> None:
    h = harness_no_trying
    inv, _ = new_invite(h)
    h.run_until(10.0)
    assert h.take_sent() == []
    h.receive(inv)  # a retransmission before any provisional: nothing to re-send
    assert h.take_sent() == [] and h.take_events() == []


def test_retransmitted_invite_gets_the_last_provisional(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.send_response(tx, response(inv, 100))
    harness.send_response(tx, response(inv, 180))
    harness.take_sent()
    harness.run_until(0.5)
    harness.receive(inv)
    ((_, out),) = harness.take_sent()
    assert first_line(out.data) == "180"
    assert harness.take_events() == []  # absorbed, not passed up again


# -- INVITE server: Completed, Confirmed -----------------------------------------------------


def test_non_2xx_final_timer_g_capped_at_t2_then_timer_h(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.run_until(1.0)
    harness.take_sent()  # the automatic 100
    harness.send_response(tx, response(inv, 486))
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    harness.run_until(100)
    assert harness.sent_lines() == [(1.0, "486"), *shifted(G_SCHEDULE, 1.0, "486")]
    assert harness.take_events() == [(33.0, TransactionTimedOut(tx, "INVITE"))]
    assert harness.layer.state(tx) is None and len(harness.layer) == 0
    assert not harness.layer.alive(tx)


def test_retransmitted_invite_in_completed_gets_the_final(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.send_response(tx, response(inv, 404))
    harness.take_sent()
    harness.receive(inv)
    assert [line for _, line in harness.sent_lines()] == ["404"]


def test_ack_confirms_stops_g_then_timer_i(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.send_response(tx, response(inv, 480, to_tag="ours"))
    harness.run_until(2.0)
    harness.take_sent()
    # §17.1.1.3: the non-2xx ACK shares the INVITE's branch
    ack = request("ACK", via=inv.headers.get("Via"), to_tag="ours")
    harness.receive(ack)
    assert harness.layer.state(tx) is TransactionState.CONFIRMED
    assert harness.take_events() == []  # the non-2xx ACK is the transaction's, not the TU's
    harness.receive(ack)  # absorbed
    harness.receive(inv)  # absorbed too
    harness.run_until(6.99)
    assert harness.take_sent() == [] and harness.take_events() == []
    assert harness.layer.state(tx) is TransactionState.CONFIRMED
    harness.run_until(7.0)  # Timer I = T4
    assert harness.layer.state(tx) is None


def test_reliable_transport_no_g_and_i_is_zero(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKtcp1")
    harness.receive(inv, transport="TCP")
    event = harness.only_event()
    assert isinstance(event, RequestReceived) and event.tx is not None
    tx = event.tx
    harness.send_response(tx, response(inv, 486))
    harness.run_until(10)
    assert harness.sent_lines() == [(0.0, "486")]
    harness.receive(request("ACK", via=inv.headers.get("Via"), to_tag="totag1"), transport="TCP")
    assert harness.layer.state(tx) is None and len(harness.layer) == 0


def test_timer_h_over_tcp(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKtcp2")
    harness.receive(inv, transport="TCP")
    tx = harness.only_event().tx
    assert tx is not None
    harness.send_response(tx, response(inv, 486))
    harness.run_until(100)
    assert harness.take_events() == [(32.0, TransactionTimedOut(tx, "INVITE"))]


# -- INVITE server: Accepted (RFC 6026) and the UAS 2xx retransmission (§13.3.1.4) -----------


def test_2xx_is_retransmitted_until_the_ack_which_is_passed_up(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.send_response(tx, response(inv, 180))
    harness.send_response(tx, response(inv, 200))
    assert harness.layer.state(tx) is TransactionState.ACCEPTED
    assert harness.layer.pending_acks == 1
    harness.run_until(4.0)
    assert harness.sent_lines() == [
        (0.0, "180"),
        (0.0, "200"),
        (0.5, "200"),
        (1.5, "200"),
        (3.5, "200"),
    ]
    ack = ack_for_2xx(inv)
    harness.receive(ack)
    assert harness.only_event() == RequestReceived(ack, None, UAC, "UDP")
    assert harness.layer.pending_acks == 0
    # RFC 6026 §7.1: retransmitted INVITEs are absorbed in Accepted
    harness.receive(inv)
    harness.run_until(31.99)
    assert harness.take_sent() == [] and harness.take_events() == []
    assert harness.layer.state(tx) is TransactionState.ACCEPTED
    harness.run_until(32.0)  # Timer L
    assert harness.layer.state(tx) is None and harness.take_events() == []


def test_no_ack_for_2xx_gives_ack_timed_out_at_64t1(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.run_until(0.3)
    harness.take_sent()
    harness.send_response(tx, response(inv, 200))
    harness.run_until(100)
    assert harness.sent_lines() == [(0.3, "200"), *shifted(G_SCHEDULE, 0.3, "200")]
    ((when, event),) = harness.take_events()
    assert when == pytest.approx(32.3) and event == AckTimedOut(tx)
    assert len(harness.layer) == 0 and harness.layer.pending_acks == 0


def test_2xx_over_tcp_is_not_retransmitted_but_ack_still_awaited(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKtcp3")
    harness.receive(inv, transport="TCP")
    tx = harness.only_event().tx
    assert tx is not None
    harness.send_response(tx, response(inv, 200))
    harness.run_until(100)
    assert harness.sent_lines() == [(0.0, "200")]
    assert harness.take_events() == [(32.0, AckTimedOut(tx))]


def test_ack_for_2xx_with_the_invite_branch_is_passed_up_too(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.send_response(tx, response(inv, 200))
    ack = request("ACK", via=inv.headers.get("Via"), to_tag="totag1")
    harness.receive(ack)
    assert harness.only_event() == RequestReceived(ack, None, UAC, "UDP")
    assert harness.layer.pending_acks == 0


def test_ack_matching_for_2xx_needs_call_id_cseq_and_to_tag(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    harness.send_response(tx, response(inv, 200, to_tag="mine"))
    for wrong in (ack_for_2xx(inv, to_tag="other"), request("ACK", call_id="x", to_tag="mine")):
        harness.receive(wrong)
        assert harness.layer.pending_acks == 1
    harness.receive(ack_for_2xx(inv, to_tag="mine"))
    assert harness.layer.pending_acks == 0


def test_tu_may_resend_2xx_in_accepted_but_nothing_else(harness: Harness) -> None:
    inv, tx = new_invite(harness)
    ok = response(inv, 200)
    harness.send_response(tx, ok)
    harness.send_response(tx, ok)
    assert [line for _, line in harness.sent_lines()] == ["200", "200"]
    with pytest.raises(SipUsageError):
        harness.send_response(tx, response(inv, 486))
    with pytest.raises(SipUsageError):
        harness.send_response("s|INVITE|z9hG4bKnone|host:", ok)


def test_stray_ack_is_passed_up_without_a_transaction(harness: Harness) -> None:
    ack = request("ACK", to_tag="whatever")
    harness.receive(ack)
    assert harness.only_event() == RequestReceived(ack, None, UAC, "UDP")
    assert len(harness.layer) == 0


# -- non-INVITE server -----------------------------------------------------------------------


def test_non_invite_trying_proceeding_completed_timer_j(harness: Harness) -> None:
    bye = request("BYE", to_tag="totag1", cseq=2)
    harness.receive(bye)
    event = harness.only_event()
    assert isinstance(event, RequestReceived) and event.tx is not None
    tx = event.tx
    assert harness.layer.state(tx) is TransactionState.TRYING
    harness.receive(bye)  # Trying: absorbed
    assert harness.take_sent() == [] and harness.take_events() == []
    harness.run_until(1.0)  # no automatic 100 for non-INVITE
    assert harness.take_sent() == []
    harness.send_response(tx, response(bye, 100))
    assert harness.layer.state(tx) is TransactionState.PROCEEDING
    harness.receive(bye)  # Proceeding: the provisional again
    assert [line for _, line in harness.sent_lines()] == ["100", "100"]
    harness.run_until(2.0)
    harness.send_response(tx, response(bye, 200))
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    harness.receive(bye)  # Completed: the final again
    assert [line for _, line in harness.sent_lines()] == ["200", "200"]
    with pytest.raises(SipUsageError):
        harness.send_response(tx, response(bye, 500))
    harness.run_until(33.99)
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    harness.run_until(34.0)  # Timer J = 64·T1
    assert harness.layer.state(tx) is None and len(harness.layer) == 0
    assert harness.take_sent() == [] and harness.take_events() == []


def test_non_invite_timer_j_is_zero_over_tcp(harness: Harness) -> None:
    opt = request("OPTIONS", via="SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKtcp4")
    harness.receive(opt, transport="TCP")
    tx = harness.only_event().tx
    assert tx is not None
    harness.send_response(tx, response(opt, 200))
    assert harness.layer.state(tx) is None and harness.layer.next_deadline() is None


# -- CANCEL (§9.2) ---------------------------------------------------------------------------


def test_cancel_matches_the_invite_and_is_its_own_transaction(harness: Harness) -> None:
    inv, invite_tx = new_invite(harness)
    cancel = request("CANCEL", via=inv.headers.get("Via"))
    harness.receive(cancel)
    event = harness.only_event()
    assert isinstance(event, CancelReceived)
    assert event.invite_tx == invite_tx and event.tx != invite_tx
    assert event.request is cancel and event.source == UAC
    assert harness.layer.state(event.tx) is TransactionState.TRYING
    assert harness.layer.counts() == {
        "client_invite": 0,
        "client_non_invite": 0,
        "server_invite": 1,
        "server_non_invite": 1,
    }
    harness.receive(cancel)  # a retransmitted CANCEL, absorbed in Trying
    assert harness.take_events() == []
    harness.send_response(event.tx, response(cancel, 200))
    harness.send_response(invite_tx, response(inv, 487))
    harness.take_sent()
    harness.receive(cancel)
    assert [line for _, line in harness.sent_lines()] == ["200"]


def test_cancel_without_its_invite_has_no_invite_tx(harness: Harness) -> None:
    inv, _ = new_invite(harness)
    for cancel in (
        request("CANCEL"),  # another branch
        request("CANCEL", via=(inv.headers.get("Via") or "").replace("192.0.2.10", "192.0.2.99")),
    ):
        harness.receive(cancel)
        event = harness.only_event()
        assert isinstance(event, CancelReceived) and event.invite_tx is None


# -- Via: received and rport (§18.2.1, RFC 3581 §4), response routing (§18.2.2) --------------


def top_via(req: Request) -> Via:
    return Via.parse(req.headers.get("Via") or "")


def test_received_added_when_sent_by_differs(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bKr1")
    inv.headers.add("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKolder")
    harness.receive(inv)
    via = top_via(inv)
    assert via.params["received"] == "192.0.2.10" and via.branch == "z9hG4bKr1"
    assert inv.headers.get_all("Via")[1] == "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKolder"


def test_via_untouched_when_sent_by_is_the_source(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKr2")
    harness.receive(inv)
    assert inv.headers.get("Via") == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKr2"


def test_empty_rport_filled_and_received_added_even_if_equal(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKr3")
    harness.receive(inv, source=("192.0.2.10", 40123))
    via = top_via(inv)
    assert via.params["rport"] == "40123" and via.params["received"] == "192.0.2.10"


def test_ipv6_sent_by_equal_to_source_needs_no_received(harness: Harness) -> None:
    inv = request("INVITE", via="SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKr4")
    harness.receive(inv, source=("2001:db8::9", 5060))
    assert "received" not in top_via(inv).params


@pytest.mark.parametrize(
    ("via", "source", "transport", "dest"),
    [
        # rport: back to the source port (NAT binding), RFC 3581 §4
        (
            "SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKd1",
            ("192.0.2.10", 40000),
            "UDP",
            ("192.0.2.10", 40000),
        ),
        # no rport: received (source) IP, sent-by port (§18.2.2)
        (
            "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKd2",
            ("192.0.2.10", 40000),
            "UDP",
            ("192.0.2.10", 5070),
        ),
        # no port in sent-by: 5060
        (
            "SIP/2.0/UDP sbc.example;branch=z9hG4bKd3",
            ("192.0.2.10", 40000),
            "UDP",
            ("192.0.2.10", 5060),
        ),
        # maddr is ignored
        (
            "SIP/2.0/UDP 10.0.0.5:5070;maddr=239.1.1.1;branch=z9hG4bKd4",
            ("192.0.2.10", 40000),
            "UDP",
            ("192.0.2.10", 5070),
        ),
        # reliable: back over the connection it came on
        (
            "SIP/2.0/TCP 10.0.0.5:5070;branch=z9hG4bKd5",
            ("192.0.2.10", 40001),
            "TCP",
            ("192.0.2.10", 40001),
        ),
        (
            "SIP/2.0/TLS 10.0.0.5;rport;branch=z9hG4bKd6",
            ("192.0.2.10", 40002),
            "TLS",
            ("192.0.2.10", 40002),
        ),
    ],
)
def test_response_routing(
    harness: Harness, via: str, source: tuple[str, int], transport: str, dest: tuple[str, int]
) -> None:
    inv = request("INVITE", via=via)
    harness.receive(inv, source=source, transport=transport)
    tx = harness.only_event().tx
    assert tx is not None
    harness.send_response(tx, response(inv, 180))
    ((_, out),) = harness.take_sent()
    assert out.dest == dest and out.transport == transport
    sent = parse_wire(out.data)
    assert sent.headers.get("Via") == inv.headers.get("Via")  # the stamped Via goes back


# -- RFC 2543 fallback matching (§17.2.3) ----------------------------------------------------

OLD_VIA = "SIP/2.0/UDP 192.0.2.10:5060"


def test_rfc2543_invite_retransmission_ack_and_cancel(harness: Harness) -> None:
    inv = request("INVITE", via=OLD_VIA, call_id="old-1")
    harness.receive(inv)
    tx = harness.only_event().tx
    assert tx is not None
    harness.send_response(tx, response(inv, 180))
    harness.receive(request("INVITE", via=OLD_VIA, call_id="old-1"))  # retransmission
    assert harness.take_events() == []
    assert [line for _, line in harness.sent_lines()] == ["180", "180"]

    cancel = request("CANCEL", via=OLD_VIA, call_id="old-1")
    harness.receive(cancel)
    event = harness.only_event()
    assert isinstance(event, CancelReceived) and event.invite_tx == tx

    harness.send_response(tx, response(inv, 487, to_tag="t2543"))
    # the ACK carries the tag of our 487, which the INVITE did not have
    harness.receive(request("ACK", via=OLD_VIA, call_id="old-1", to_tag="t2543"))
    assert harness.layer.state(tx) is TransactionState.CONFIRMED
    assert harness.take_events() == []


def test_rfc2543_different_cseq_or_from_tag_is_a_new_transaction(harness: Harness) -> None:
    harness.receive(request("INVITE", via=OLD_VIA, call_id="old-2", cseq=1))
    harness.receive(request("INVITE", via=OLD_VIA, call_id="old-2", cseq=2))
    harness.receive(request("INVITE", via=OLD_VIA, call_id="old-2", cseq=2, from_tag="x"))
    harness.receive(
        request("INVITE", via=OLD_VIA, call_id="old-2", cseq=2, uri="sip:116117@nodrute.example")
    )
    assert len(harness.take_events()) == 4 and len(harness.layer) == 4


def test_rfc2543_ack_with_a_wrong_tag_is_not_the_transactions(harness: Harness) -> None:
    inv = request("INVITE", via=OLD_VIA, call_id="old-3")
    harness.receive(inv)
    tx = harness.only_event().tx
    assert tx is not None
    harness.send_response(tx, response(inv, 486, to_tag="right"))
    harness.receive(request("ACK", via=OLD_VIA, call_id="old-3", to_tag="wrong"))
    assert harness.layer.state(tx) is TransactionState.COMPLETED
    assert isinstance(harness.only_event(), RequestReceived)  # stray: up to the TU


def test_magic_cookie_matching_includes_sent_by(harness: Harness) -> None:
    via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsame"
    harness.receive(request("OPTIONS", via=via))
    harness.receive(request("OPTIONS", via=via.replace("192.0.2.10", "192.0.2.11")))
    harness.receive(request("OPTIONS", via=via))  # a retransmission of the first
    assert len(harness.take_events()) == 2 and len(harness.layer) == 2


# -- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r.headers.remove("Via"),
        lambda r: r.headers.remove("CSeq"),
        lambda r: r.headers.set("CSeq", "1 BYE"),
        lambda r: r.headers.set("Via", "garbage"),
    ],
)
def test_request_without_usable_via_or_cseq_raises_before_any_state(
    harness: Harness, mangle: object
) -> None:
    inv = request("INVITE")
    mangle(inv)  # type: ignore[operator]
    with pytest.raises(SipParseError) as caught:
        harness.layer.receive(inv, UAC, "UDP", 0.0)
    assert caught.value.status == 400
    assert len(harness.layer) == 0 and harness.layer.next_event() is None


def test_send_stateless(harness: Harness) -> None:
    inv = request("INVITE")
    harness.layer.send_stateless(response(inv, 400), UAC, "UDP")
    (out,) = harness.layer.datagrams_to_send()
    assert first_line(out.data) == "400" and out.dest == UAC
    assert harness.layer.datagrams_to_send() == []
