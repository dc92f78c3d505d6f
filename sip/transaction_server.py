"""Server transactions: INVITE (RFC 3261 §17.2.1, RFC 6026 §7.1) and non-INVITE (§17.2.2).

The INVITE server transaction also carries the UAS core's 2xx retransmission (§13.3.1.4) in its
RETRANSMIT slot while Accepted: it runs on the same T1…T2 schedule as Timer G and for the same
64·T1 as Timer L, so one object and two heap slots serve both, and Timer L firing without an
ACK is exactly the §13.3.1.4 "no ACK" moment (:class:`~sip.events.AckTimedOut`).
"""

from __future__ import annotations

from .errors import SipUsageError
from .events import AckTimedOut, Outgoing, RequestReceived, TransactionTimedOut
from .message import Request, Response, make_response
from .timers import EXPIRE, RETRANSMIT
from .transaction_base import (
    ACCEPTED,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    SERVER_INVITE,
    SERVER_NON_INVITE,
    TRYING,
    Rfc2543Match,
    ServerTransaction,
    TransactionTable,
    to_tag_of,
)


class ServerInviteTransaction(ServerTransaction):
    """INVITE server transaction: Proceeding → Completed → Confirmed | Accepted → Terminated."""

    __slots__ = ("ack_key", "alias", "compat", "cseq", "request")

    def __init__(
        self,
        key: str,
        request: Request,
        cseq: int,
        dest: tuple[str, int],
        transport: str,
        compat: Rfc2543Match | None,
    ) -> None:
        super().__init__(key, "INVITE", SERVER_INVITE, PROCEEDING, dest, transport)
        self.request: Request | None = request
        """Kept until the TU first answers: the automatic 100 Trying is built from it."""
        self.cseq = cseq
        self.compat = compat
        """RFC 2543 matching fields when the branch lacks the magic cookie (§17.2.3)."""
        self.alias: str | None = None
        """RFC 2543 only: the key an ACK for our non-2xx final matches (it carries our tag)."""
        self.ack_key: tuple[str, int, str] | None = None
        """Accepted and not ACKed yet: (Call-ID, CSeq number, To tag) of our 2xx."""

    def on_retransmission(self, table: TransactionTable) -> None:
        state = self.state
        # §17.2.1: re-send the last provisional (Proceeding) or the final (Completed).
        # RFC 6026 §7.1: absorbed in Accepted; §17.2.1: absorbed in Confirmed.
        if (state is PROCEEDING or state is COMPLETED) and self.last is not None:
            table.send(self.last)

    def on_ack(
        self,
        ack: Request,
        source: tuple[str, int],
        transport: str,
        table: TransactionTable,
        now: float,
    ) -> None:
        """An ACK matched this transaction by branch (§17.2.3)."""
        state = self.state
        if state is COMPLETED:
            # §17.2.1: ACK → Confirmed: stop G and H, absorb further ACKs for Timer I.
            self.state = CONFIRMED
            table.heap.disarm_all(self)
            self.last = None
            table.linger(self, table.timers.i(self.reliable), now)
        elif state is ACCEPTED:
            # RFC 6026 §7.1: an ACK in Accepted goes to the TU (it is the ACK for our 2xx).
            self.ack_received(table)
            table.emit(RequestReceived(ack, None, source, transport))
        # Confirmed: absorbed. Proceeding: an ACK before any final answers nothing; dropped.

    def ack_received(self, table: TransactionTable) -> None:
        """The ACK for our 2xx arrived: stop retransmitting it (§13.3.1.4). Timer L goes on."""
        if self.ack_key is not None:
            if table.awaiting_ack.get(self.ack_key) is self:
                del table.awaiting_ack[self.ack_key]
            self.ack_key = None
            table.heap.disarm(self, RETRANSMIT)
            self.last = None

    def send_response(self, response: Response, table: TransactionTable, now: float) -> None:
        status = response.status
        state = self.state
        out = Outgoing(response.to_bytes(), self.dest, self.transport)
        if state is ACCEPTED and 200 <= status < 300:
            table.send(out)  # RFC 6026 §7.1: a 2xx from the TU in Accepted is sent as is
            return
        if state is not PROCEEDING:
            raise SipUsageError(f"cannot send {status} on {self.key} in {state.value}")
        self.request = None  # the TU has answered: no automatic 100 from here on
        self.last = out
        table.send(out)
        heap = table.heap
        if status < 200:
            heap.disarm(self, RETRANSMIT)  # cancels the pending automatic 100
            return
        timers = table.timers
        heap.disarm_all(self)
        if status < 300:
            # RFC 6026 §7.1: 2xx → Accepted, Timer L. The UAS core's 2xx retransmission
            # (§13.3.1.4: T1, doubling up to T2, UDP only) runs until the ACK arrives.
            self.state = ACCEPTED
            call_id = response.headers.get("Call-ID") or ""
            self.ack_key = (call_id, self.cseq, to_tag_of(response))
            table.awaiting_ack[self.ack_key] = self
            if not self.reliable:
                self.interval = timers.t1
                heap.arm(self, RETRANSMIT, now + self.interval)
            heap.arm(self, EXPIRE, now + timers.l(self.reliable))
            return
        # §17.2.1: 300-699 → Completed, Timer G (unreliable) and Timer H.
        self.state = COMPLETED
        interval = timers.g(self.reliable)
        if interval is not None:
            self.interval = interval
            heap.arm(self, RETRANSMIT, now + interval)
        heap.arm(self, EXPIRE, now + timers.h(self.reliable))
        if self.compat is not None:
            # §17.2.3 (RFC 2543 peer): its ACK carries the To tag of this response.
            self.alias = self.compat.key("INVITE", to_tag_of(response))
            table.servers[self.alias] = self

    def on_timer(self, slot: int, table: TransactionTable, now: float) -> None:
        state = self.state
        if slot == RETRANSMIT:
            if state is PROCEEDING:
                self._send_trying(table)
            elif (state is COMPLETED or state is ACCEPTED) and self.last is not None:
                # Timer G (§17.2.1) or the UAS 2xx retransmission (§13.3.1.4).
                table.send(self.last)
                self.interval = table.timers.next_capped_interval(self.interval)
                table.heap.arm(self, RETRANSMIT, now + self.interval)
            return
        if state is COMPLETED:
            table.emit(TransactionTimedOut(self.key, "INVITE"))  # Timer H: no ACK came
        elif state is ACCEPTED and self.ack_key is not None:
            table.emit(AckTimedOut(self.key))  # Timer L without an ACK (§13.3.1.4)
        table.terminate(self)  # also Timer I (Confirmed)

    def _send_trying(self, table: TransactionTable) -> None:
        # §17.2.1: a 100 Trying when the TU has not answered within 200 ms. §8.2.6.1: no To
        # tag, Timestamp copied.
        request = self.request
        if request is None or self.last is not None:
            return
        stamp = request.headers.get("Timestamp")
        extra = (("Timestamp", stamp),) if stamp is not None else ()
        trying = make_response(request, 100, extra=extra)
        self.request = None
        self.last = Outgoing(trying.to_bytes(), self.dest, self.transport)
        table.send(self.last)

    def forget(self, table: TransactionTable) -> None:
        servers = table.servers
        if servers.get(self.key) is self:
            del servers[self.key]
        if self.alias is not None and servers.get(self.alias) is self:
            del servers[self.alias]
        if self.ack_key is not None and table.awaiting_ack.get(self.ack_key) is self:
            del table.awaiting_ack[self.ack_key]
        self.request = self.last = self.compat = None


class ServerNonInviteTransaction(ServerTransaction):
    """Non-INVITE server transaction (§17.2.2): Trying → Proceeding → Completed → Terminated."""

    __slots__ = ()

    def __init__(self, key: str, method: str, dest: tuple[str, int], transport: str) -> None:
        super().__init__(key, method, SERVER_NON_INVITE, TRYING, dest, transport)

    def on_retransmission(self, table: TransactionTable) -> None:
        # §17.2.2: absorbed in Trying; the last response re-sent in Proceeding and Completed.
        if self.last is not None:
            table.send(self.last)

    def send_response(self, response: Response, table: TransactionTable, now: float) -> None:
        state = self.state
        if state is not TRYING and state is not PROCEEDING:
            raise SipUsageError(f"cannot send {response.status} on {self.key} in {state.value}")
        self.last = out = Outgoing(response.to_bytes(), self.dest, self.transport)
        table.send(out)
        if response.status < 200:
            self.state = PROCEEDING
            return
        # §17.2.2: final → Completed, Timer J (64·T1 unreliable, 0 reliable).
        self.state = COMPLETED
        table.linger(self, table.timers.j(self.reliable), now)

    def on_timer(self, slot: int, table: TransactionTable, now: float) -> None:
        if slot == EXPIRE:
            table.terminate(self)  # Timer J

    def forget(self, table: TransactionTable) -> None:
        if table.servers.get(self.key) is self:
            del table.servers[self.key]
        self.last = None
