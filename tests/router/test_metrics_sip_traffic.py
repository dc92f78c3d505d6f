"""SIP message counters: every message through the real SipEndpoint, counted once per wire copy.

The endpoint runs on a stand-in loop and UDP transport (no sockets): what goes in is bytes as
a carrier or centre sends them, what comes out is what the router would put on the wire.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    caller_invite,
    dest_of,
    in_dialog_request,
    response_to,
)

from municipality_map import RoutingSnapshot
from router.b2bua import B2bua
from router.config import NodruteSettings
from router.metrics import NodeMetrics
from sip.message import Request, Response
from sip.parser import parse_message
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer
from sip.transport import SipEndpoint


class _Loop:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Loop:
        return self

    def cancel(self) -> None:
        pass


class _Udp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def take(self) -> list[Request | Response]:
        out = [parse_message(data) for data, _ in self.sent]
        self.sent.clear()
        return out


@pytest.fixture
def node(snapshot: RoutingSnapshot) -> tuple[SipEndpoint, _Udp, NodeMetrics]:
    metrics = NodeMetrics()
    layer = TransactionLayer(TimerConfig())
    endpoint = SipEndpoint(layer)
    udp = _Udp()
    endpoint._loop = _Loop()  # type: ignore[assignment]
    endpoint._udp = udp  # type: ignore[assignment]
    endpoint.local_address = ("127.0.0.1", 5060)
    endpoint.user = B2bua(layer, NodruteSettings(), snapshot, port=5060)
    endpoint.traffic = metrics.traffic
    return endpoint, udp, metrics


def count(metrics: NodeMetrics, name: str, direction: str, **label: str) -> float:
    found = metrics.registry.get_sample_value(name, {"direction": direction, **label})
    assert found is not None, f"{name} {direction} {label} not exported"
    return found


def test_one_answered_call_counts_each_message_in_and_out(
        node: tuple[SipEndpoint, _Udp, NodeMetrics]) -> None:
    endpoint, udp, metrics = node
    endpoint.receive(caller_invite(1), CARRIER, "UDP")
    [trying, invite] = udp.take()
    assert isinstance(invite, Request) and isinstance(trying, Response)
    centre = dest_of(invite.uri)
    endpoint.receive(response_to(invite, 100), centre, "UDP")
    endpoint.receive(response_to(invite, 180), centre, "UDP")
    endpoint.receive(response_to(invite, 200, body=SDP_ANSWER), centre, "UDP")
    [_ringing, ok, _ack] = udp.take()  # the centre's 2xx is ACKed at once (offer in the INVITE)
    assert isinstance(ok, Response) and ok.status == 200
    endpoint.receive(in_dialog_request("ACK", ok, 1, 1), CARRIER, "UDP")
    endpoint.receive(in_dialog_request("BYE", ok, 1, 2), CARRIER, "UDP")
    [_bye_ok, bye] = udp.take()  # the caller's BYE is answered at once, then relayed
    assert isinstance(bye, Request) and bye.method == "BYE"
    endpoint.receive(response_to(bye, 200), centre, "UDP")
    udp.take()

    requests, responses = "nodrute_sip_requests_total", "nodrute_sip_responses_total"
    assert count(metrics, requests, "received", method="INVITE") == 1
    assert count(metrics, requests, "received", method="ACK") == 1
    assert count(metrics, requests, "received", method="BYE") == 1
    assert count(metrics, requests, "sent", method="INVITE") == 1
    assert count(metrics, requests, "sent", method="ACK") == 1
    assert count(metrics, requests, "sent", method="BYE") == 1
    assert count(metrics, responses, "received", code="100") == 1
    assert count(metrics, responses, "received", code="180") == 1
    assert count(metrics, responses, "received", code="200") == 2  # centre's answer, BYE's 200
    assert count(metrics, responses, "sent", code="100") == 1
    assert count(metrics, responses, "sent", code="180") == 1
    assert count(metrics, responses, "sent", code="200") == 2  # to the INVITE and to the BYE
    assert count(metrics, requests, "received", method="CANCEL") == 0


def test_unlisted_methods_and_codes_are_bucketed_and_garbage_is_counted(
        node: tuple[SipEndpoint, _Udp, NodeMetrics]) -> None:
    endpoint, udp, metrics = node
    foo = caller_invite(2).replace(b"INVITE", b"FOOBAR")
    endpoint.receive(foo, CARRIER, "UDP")  # unknown method: 501 (RFC 3261 §8.2.1)
    [refusal] = udp.take()
    assert isinstance(refusal, Response) and refusal.status == 501
    endpoint.receive(b"SIP/2.0 299 Odd\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
                     b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\n"
                     b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", ("127.0.0.1", 5110), "UDP")
    endpoint.receive(b"INVITE nonsense\r\n\r\n", CARRIER, "UDP")  # no Via: not answerable
    sip3 = caller_invite(3).replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    endpoint.receive(sip3, CARRIER, "UDP")  # answered 505 statelessly

    assert count(metrics, "nodrute_sip_requests_total", "received", method="other") == 1
    assert count(metrics, "nodrute_sip_responses_total", "sent", code="501") == 1
    assert count(metrics, "nodrute_sip_responses_total", "received", code="2xx") == 1
    assert count(metrics, "nodrute_sip_responses_total", "received", code="200") == 0
    assert metrics.registry.get_sample_value("nodrute_sip_malformed_messages_total") == 2
    assert [m.status for m in udp.take() if isinstance(m, Response)] == [505]
    assert count(metrics, "nodrute_sip_responses_total", "sent", code="505") == 1
    assert count(metrics, "nodrute_sip_requests_total", "received", method="INVITE") == 0


def test_sent_bytes_are_classified_like_received_messages() -> None:
    metrics = NodeMetrics()
    for data in (b"SIP/2.0 486 Busy Here\r\n\r\n", b"SIP/2.0 599 Odd\r\n\r\n",
                 b"OPTIONS sip:x SIP/2.0\r\n\r\n", b"XYZZYPLUGHFOOBARBAZ sip:x SIP/2.0\r\n\r\n",
                 b"garbage"):
        metrics.traffic.sent(data)
    assert count(metrics, "nodrute_sip_responses_total", "sent", code="486") == 1
    assert count(metrics, "nodrute_sip_responses_total", "sent", code="5xx") == 1
    assert count(metrics, "nodrute_sip_requests_total", "sent", method="OPTIONS") == 1
    assert count(metrics, "nodrute_sip_requests_total", "sent", method="other") == 2
