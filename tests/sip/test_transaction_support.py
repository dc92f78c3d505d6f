"""Helpers for the transaction-layer transcript tests (imported by them; holds no tests).

Message builders, a fake clock (:class:`Harness`) and :func:`parse_wire` to read back what the
layer sent. No test sleeps: the
harness walks the clock from deadline to deadline. It lives in a ``test_*`` module rather than
in conftest.py because conftest modules are not importable by name (every folder has one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sip.events import Outgoing, TransactionEvent
from sip.message import Headers, Message, Request, Response, make_response
from sip.parser import parse_message
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer

UAC = ("192.0.2.10", 5060)
"""Where inbound requests come from (a trunk's SBC)."""
CENTRE = ("198.51.100.20", 5060)
"""Where outbound requests go (an emergency centre)."""
TIMERS = TimerConfig()

_branches = iter(range(1, 10**9))


def fresh_branch(prefix: str = "z9hG4bK") -> str:
    return f"{prefix}test{next(_branches)}"


def request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    via: str | None = None,
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "fromtag1",
    to_tag: str | None = None,
    uri: str = "sip:113@nodrute.example",
    routes: Iterable[str] = (),
    extra: Iterable[tuple[str, str]] = (),
) -> Request:
    """A request as a peer (or our TU) would put it together."""
    if via is None:
        via = f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch or fresh_branch()}"
    headers = Headers([("Via", via), ("Max-Forwards", "70")])
    for route in routes:
        headers.add("Route", route)
    headers.add("From", f"<sip:+4712345678@trunk.example>;tag={from_tag}")
    headers.add("To", "<sip:113@nodrute.example>" + (f";tag={to_tag}" if to_tag else ""))
    headers.add("Call-ID", call_id)
    headers.add("CSeq", f"{cseq} {cseq_method or method}")
    for name, value in extra:
        headers.add(name, value)
    return Request(method, uri, headers)


def response(req: Request, status: int, to_tag: str | None = "totag1") -> Response:
    """The response a peer sends to ``req`` (no To tag on a 100, §8.2.6.2)."""
    return make_response(req, status, to_tag=None if status == 100 else to_tag)


def ack_for_2xx(invite: Request, to_tag: str = "totag1", branch: str | None = None) -> Request:
    """The UAC's ACK for a 2xx (§13.2.2.4): a new branch, the dialog's To tag."""
    ack = request(
        "ACK",
        branch=branch or fresh_branch(),
        call_id=invite.headers.get("Call-ID") or "",
        to_tag=to_tag,
        cseq=_cseq_number(invite),
    )
    return ack


def _cseq_number(req: Request) -> int:
    return int((req.headers.get("CSeq") or "0").split()[0])


def parse_wire(data: bytes) -> Message:
    """Read back a message the layer serialised, with the real parser (so what the layer builds
    itself, ACK, CANCEL, 100 Trying, is checked to be well-formed too)."""
    return parse_message(data)


def first_line(data: bytes) -> str:
    """``"INVITE"``, ``"ACK"``… for a request, ``"200"`` for a response."""
    line = data.split(b"\r\n", 1)[0].decode()
    return line.split(" ")[1] if line.startswith("SIP/2.0") else line.split(" ")[0]


@dataclass
class Harness:
    """A layer with a fake clock. ``now`` only moves through :meth:`run_until`."""

    layer: TransactionLayer
    now: float = 0.0
    sent: list[tuple[float, Outgoing]] = field(default_factory=list)
    events: list[tuple[float, TransactionEvent]] = field(default_factory=list)

    def _collect(self) -> None:
        self.sent.extend((self.now, out) for out in self.layer.datagrams_to_send())
        while (event := self.layer.next_event()) is not None:
            self.events.append((self.now, event))

    def run_until(self, until: float) -> None:
        """Fire every timer up to ``until``, each exactly at its deadline."""
        while (deadline := self.layer.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.layer.handle_timers(self.now)
            self._collect()
        self.now = max(self.now, until)

    def receive(
        self, message: Message, source: tuple[str, int] = UAC, transport: str = "UDP"
    ) -> None:
        self.layer.receive(message, source, transport, self.now)
        self._collect()

    def send_request(
        self, req: Request, dest: tuple[str, int] = CENTRE, transport: str = "UDP"
    ) -> str:
        key = self.layer.send_request(req, dest, transport, self.now)
        self._collect()
        return key

    def send_response(self, tx: str, resp: Response) -> None:
        self.layer.send_response(tx, resp, self.now)
        self._collect()

    def send_ack(
        self, ack: Request, dest: tuple[str, int] = CENTRE, transport: str = "UDP"
    ) -> None:
        self.layer.send_ack(ack, dest, transport, self.now)
        self._collect()

    def send_cancel(self, invite_tx: str) -> str | None:
        key = self.layer.send_cancel(invite_tx, self.now)
        self._collect()
        return key

    def take_sent(self) -> list[tuple[float, Outgoing]]:
        out, self.sent = self.sent, []
        return out

    def take_events(self) -> list[tuple[float, TransactionEvent]]:
        out, self.events = self.events, []
        return out

    def sent_lines(self) -> list[tuple[float, str]]:
        """``(time, first line)`` of everything sent since the last take, and take it."""
        return [(t, first_line(out.data)) for t, out in self.take_sent()]

    def event_names(self) -> list[tuple[float, str]]:
        return [(t, type(e).__name__) for t, e in self.take_events()]

    def only_event(self) -> TransactionEvent:
        events = self.take_events()
        assert len(events) == 1, events
        return events[0][1]
