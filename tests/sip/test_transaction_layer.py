"""The layer as a whole: two layers talking over a (lossy) fake network, counts, and bounded
memory after many transactions."""

from __future__ import annotations

from dataclasses import dataclass, field

from test_transaction_support import (
    CENTRE,
    TIMERS,
    UAC,
    ack_for_2xx,
    fresh_branch,
    parse_wire,
    request,
    response,
)

from sip.events import (
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
)
from sip.message import Request, Response
from sip.transaction import TransactionLayer, TransactionState, build_cancel

A = ("198.51.100.1", 5060)
B = ("198.51.100.2", 5060)


@dataclass
class Network:
    """Two layers on one fake clock; ``drop`` decides per datagram whether it is lost."""

    a: TransactionLayer = field(default_factory=lambda: TransactionLayer(TIMERS))
    b: TransactionLayer = field(default_factory=lambda: TransactionLayer(TIMERS))
    now: float = 0.0
    drop: list[str] = field(default_factory=list)
    """First lines to lose, once each (``"INVITE"``, ``"200"``…)."""
    wire: list[tuple[float, str, str]] = field(default_factory=list)
    events_a: list[TransactionEvent] = field(default_factory=list)
    events_b: list[TransactionEvent] = field(default_factory=list)

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for layer, here, there, other in ((self.a, A, B, self.b), (self.b, B, A, self.a)):
                for out in layer.datagrams_to_send():
                    moved = True
                    assert out.dest == there, (out.dest, there)
                    message = parse_wire(out.data)
                    line = message.method if isinstance(message, Request) else str(message.status)
                    if line in self.drop:
                        self.drop.remove(line)
                        self.wire.append((self.now, "lost", line))
                        continue
                    self.wire.append((self.now, "A→B" if here == A else "B→A", line))
                    other.receive(message, here, "UDP", self.now)
            for layer, sink in ((self.a, self.events_a), (self.b, self.events_b)):
                while (event := layer.next_event()) is not None:
                    sink.append(event)

    def run_until(self, until: float) -> None:
        while True:
            deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline()) if d]
            if not deadlines or min(deadlines) > until:
                break
            self.now = min(deadlines)
            self.a.handle_timers(self.now)
            self.b.handle_timers(self.now)
            self.pump()
        self.now = until


def outbound_invite() -> Request:
    return request(
        "INVITE",
        via=f"SIP/2.0/UDP {A[0]}:{A[1]};branch={fresh_branch()}",
        call_id="e2e-1@a",
        uri=f"sip:113@{B[0]}",
    )


def test_a_call_across_a_lossy_network_recovers_by_retransmission() -> None:
    net = Network(drop=["INVITE", "200"])
    inv = outbound_invite()
    client_tx = net.a.send_request(inv, B, "UDP", 0.0)
    net.pump()
    net.run_until(0.5)  # Timer A re-sends the lost INVITE
    (arrived,) = net.events_b
    assert isinstance(arrived, RequestReceived) and arrived.tx is not None
    server_tx = arrived.tx
    net.run_until(0.8)  # B's TU is silent for 200 ms: automatic 100 Trying
    assert ("B→A", "100") in [(d, line) for _, d, line in net.wire]
    received = arrived.request
    net.b.send_response(server_tx, response(received, 180, to_tag="b-tag"), net.now)
    net.b.send_response(server_tx, response(received, 200, to_tag="b-tag"), net.now)
    net.pump()  # the 200 is lost; B retransmits it at T1
    net.run_until(1.3)
    ok = [e for e in net.events_a if isinstance(e, ResponseReceived) and e.response.status == 200]
    assert len(ok) == 1 and ok[0].tx == client_tx and not ok[0].retransmission
    ack = request(
        "ACK",
        via=f"SIP/2.0/UDP {A[0]}:{A[1]};branch={fresh_branch()}",
        call_id="e2e-1@a",
        to_tag="b-tag",
        uri=f"sip:113@{B[0]}",
    )
    net.a.send_ack(ack, B, "UDP", net.now)
    net.pump()
    assert any(isinstance(e, RequestReceived) and e.tx is None for e in net.events_b)
    assert net.b.pending_acks == 0
    net.run_until(100)
    assert [line for t, d, line in net.wire if t > 1.3] == []  # quiet once ACKed
    assert len(net.a) == len(net.b) == 0
    assert net.a.timer_entries == net.b.timer_entries == 0
    assert not any(isinstance(e, AckTimedOut) for e in net.events_b)


def test_a_cancelled_call_across_the_network() -> None:
    net = Network()
    inv = outbound_invite()
    client_tx = net.a.send_request(inv, B, "UDP", 0.0)
    net.pump()
    (arrived,) = net.events_b
    assert isinstance(arrived, RequestReceived) and arrived.tx is not None
    cancel_tx = net.a.send_cancel(client_tx, 0.0)  # before any provisional: held
    net.pump()
    assert [line for _, _, line in net.wire] == ["INVITE"]
    net.run_until(0.3)  # B's automatic 100 releases the held CANCEL
    assert [line for _, _, line in net.wire] == ["INVITE", "100", "CANCEL"]
    cancel = net.events_b[-1]
    assert isinstance(cancel, CancelReceived) and cancel.invite_tx == arrived.tx
    net.b.send_response(cancel.tx, response(cancel.request, 200, to_tag=None), net.now)
    net.b.send_response(arrived.tx, response(arrived.request, 487, to_tag="b"), net.now)
    net.pump()
    assert [line for _, _, line in net.wire][3:] == ["200", "487", "ACK"]
    assert net.b.state(arrived.tx) is TransactionState.CONFIRMED
    finals = [(e.tx, e.response.status) for e in net.events_a if isinstance(e, ResponseReceived)]
    assert finals[-2:] == [(cancel_tx, 200), (client_tx, 487)]
    net.run_until(100)
    assert len(net.a) == len(net.b) == 0


def test_build_cancel_is_exported() -> None:
    inv = request("INVITE", cseq=7)
    cancel = build_cancel(inv, reason='SIP;cause=200;text="Call completed elsewhere"')
    assert cancel.method == "CANCEL" and cancel.headers.get("CSeq") == "7 CANCEL"
    assert cancel.headers.get("Reason") == 'SIP;cause=200;text="Call completed elsewhere"'


def test_counts_by_kind() -> None:
    layer = TransactionLayer(TIMERS)
    layer.send_request(request("INVITE"), CENTRE, "UDP", 0.0)
    layer.send_request(request("OPTIONS"), CENTRE, "UDP", 0.0)
    layer.receive(request("INVITE"), UAC, "UDP", 0.0)
    layer.receive(request("BYE", to_tag="t"), UAC, "UDP", 0.0)
    layer.receive(request("ACK", to_tag="t"), UAC, "UDP", 0.0)  # no transaction
    assert layer.counts() == {
        "client_invite": 1,
        "client_non_invite": 1,
        "server_invite": 1,
        "server_non_invite": 1,
    }
    assert len(layer) == 4


def run_one_call(layer: TransactionLayer, i: int, now: float) -> int:
    """Seven transactions of a typical B2BUA call; returns how many were created."""
    # inbound leg: INVITE → 180, 200 → ACK
    inv = request("INVITE", call_id=f"in-{i}")
    layer.receive(inv, UAC, "UDP", now)
    event = layer.next_event()
    assert isinstance(event, RequestReceived) and event.tx is not None
    layer.send_response(event.tx, response(inv, 180), now)
    layer.send_response(event.tx, response(inv, 200), now)
    layer.receive(ack_for_2xx(inv), UAC, "UDP", now)
    # outbound leg, first centre busy; second answers
    busy = request("INVITE", call_id=f"out-{i}")
    layer.send_request(busy, CENTRE, "UDP", now)
    layer.receive(response(busy, 100), CENTRE, "UDP", now)
    layer.receive(response(busy, 486), CENTRE, "UDP", now)
    out = request("INVITE", call_id=f"out2-{i}")
    tx = layer.send_request(out, CENTRE, "UDP", now)
    layer.receive(response(out, 180), CENTRE, "UDP", now)
    ok: Response = response(out, 200)
    layer.receive(ok, CENTRE, "UDP", now)
    layer.send_ack(request("ACK", call_id=f"out2-{i}", to_tag="totag1"), CENTRE, "UDP", now)
    assert layer.state(tx) is TransactionState.ACCEPTED
    # hang-up: BYE in from the caller, BYE out to the centre
    bye_in = request("BYE", call_id=f"in-{i}", cseq=2, to_tag="totag1")
    layer.receive(bye_in, UAC, "UDP", now)
    while (event := layer.next_event()) is not None:
        if isinstance(event, RequestReceived) and event.request is bye_in:
            assert event.tx is not None
            layer.send_response(event.tx, response(bye_in, 200), now)
    bye_out = request("BYE", call_id=f"out2-{i}", cseq=2, to_tag="totag1")
    layer.send_request(bye_out, CENTRE, "UDP", now)
    layer.receive(response(bye_out, 200), CENTRE, "UDP", now)
    layer.datagrams_to_send()
    return 6


def test_memory_is_bounded_after_10000_transactions() -> None:
    layer = TransactionLayer(TIMERS)
    created = 0
    now = 0.0
    peak_live = peak_heap = 0
    i = 0
    while created < 10_000:
        created += run_one_call(layer, i, now)
        i += 1
        now += 0.1  # 10 calls/s: 167 s in all, several Timer L/M/D/J lifetimes
        layer.handle_timers(now)
        while layer.next_event() is not None:
            pass
        layer.datagrams_to_send()
        peak_live = max(peak_live, len(layer))
        peak_heap = max(peak_heap, layer.timer_entries)
    # Steady state is 64·T1 worth of lingering transactions (~32 s at 50/s), not all of them
    assert peak_live < 0.25 * created
    assert peak_heap < 3 * peak_live + 2048  # stale entries are compacted away
    layer.handle_timers(now + 1000)
    assert len(layer) == 0
    assert layer.timer_entries == 0 and layer.next_deadline() is None
    assert layer.pending_acks == 0
    assert layer.counts() == dict.fromkeys(layer.counts(), 0)
    assert layer.next_event() is None
