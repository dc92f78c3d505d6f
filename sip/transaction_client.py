"""Client transactions: INVITE (RFC 3261 §17.1.1, RFC 6026 §7.2) and non-INVITE (§17.1.2).

Each machine reacts to three things: a matching response (``on_response``), one of its two
timers (``on_timer``) and a transport failure (``on_transport_error``). Timers are slots in the
layer's single :class:`~sip.timers.DeadlineHeap`: RETRANSMIT holds A or E, EXPIRE holds B, D,
F, K or M (and the §9.1 CANCEL guard).
"""

from __future__ import annotations

from .errors import SipUsageError
from .events import Outgoing, ResponseReceived, TransactionTimedOut, TransportFailed
from .headers import parse_cseq
from .message import Request, Response
from .timers import EXPIRE, RETRANSMIT
from .transaction_base import (
    ACCEPTED,
    CALLING,
    CLIENT_INVITE,
    CLIENT_NON_INVITE,
    COMPLETED,
    PROCEEDING,
    TRYING,
    ClientTransaction,
    TransactionTable,
    build_ack_for_non2xx,
    build_cancel,
    client_key,
    to_tag_of,
)


class ClientInviteTransaction(ClientTransaction):
    """INVITE client transaction: Calling → Proceeding → Completed | Accepted → Terminated."""

    __slots__ = ("ack", "acks", "branch", "call_id", "cancel_key", "cseq", "held_cancel", "request")

    def __init__(self, key: str, branch: str, request: Request, cseq: int, out: Outgoing) -> None:
        super().__init__(key, "INVITE", CLIENT_INVITE, CALLING, out)
        self.branch = branch
        self.request: Request | None = request
        """Kept until the final response: the non-2xx ACK and the CANCEL are built from it."""
        self.cseq = cseq
        self.call_id = request.headers.get("Call-ID") or ""
        self.ack: Outgoing | None = None
        """Completed: the ACK for the non-2xx final, re-sent on each retransmitted final."""
        self.acks: dict[str, Outgoing | None] | None = None
        """Accepted: To tag of each 2xx seen → the TU's ACK for it (RFC 6026 §7.2, Timer M)."""
        self.cancel_key: str | None = None
        """Key of the CANCEL for this INVITE once the TU asked for one."""
        self.held_cancel: Request | None = None
        """CANCEL waiting for the first provisional response (§9.1)."""

    def start(self, table: TransactionTable, now: float) -> None:
        # §17.1.1.2: send, start Timer A (unreliable only) and Timer B.
        assert self.out is not None
        table.send(self.out)
        timers = table.timers
        interval = timers.a(self.reliable)
        if interval is not None:
            self.interval = interval
            table.heap.arm(self, RETRANSMIT, now + interval)
        table.heap.arm(self, EXPIRE, now + timers.b(self.reliable))

    def on_response(self, response: Response, table: TransactionTable, now: float) -> None:
        status = response.status
        state = self.state
        if status < 200:
            if state is CALLING:
                # §17.1.1.2: a provisional stops Timer A and moves to Proceeding; Timer B only
                # guards Calling.
                self.state = PROCEEDING
                table.heap.disarm_all(self)
                table.emit(ResponseReceived(response, self.key, False))
                if self.held_cancel is not None:
                    self._send_cancel(self.held_cancel, table, now)
            elif state is PROCEEDING:
                table.emit(ResponseReceived(response, self.key, False))
            return  # a late provisional after a final is dropped
        if status < 300:
            if state is CALLING or state is PROCEEDING:
                self._accept(response, table, now)
            elif state is ACCEPTED:
                self._on_2xx_in_accepted(response, table)
            return  # 2xx in Completed (after a non-2xx final): nothing sensible to do, drop
        if state is CALLING or state is PROCEEDING:
            self._complete(response, table, now)
        elif state is COMPLETED and self.ack is not None:
            # §17.1.1.2: a retransmitted final is re-ACKed and not passed up.
            table.send(self.ack)

    def _accept(self, response: Response, table: TransactionTable, now: float) -> None:
        # RFC 6026 §7.2: 2xx → Accepted, pass it up, Timer M keeps the transaction for
        # retransmitted or forked 2xx. The ACK is the TU's (RFC 3261 §13.2.2.4).
        self.state = ACCEPTED
        table.heap.disarm_all(self)
        self.held_cancel = None
        self.request = None
        self.out = None
        self.acks = {to_tag_of(response): None}
        table.accepted_invites[(self.call_id, self.cseq)] = self
        table.emit(ResponseReceived(response, self.key, False))
        table.heap.arm(self, EXPIRE, now + table.timers.m(self.reliable))

    def _on_2xx_in_accepted(self, response: Response, table: TransactionTable) -> None:
        # RFC 6026 §7.2: every 2xx in Accepted goes up. One with a known To tag is a
        # retransmission: answer it with the TU's ACK (§13.2.2.4) and flag it.
        acks = self.acks
        assert acks is not None
        tag = to_tag_of(response)
        if tag in acks:
            ack = acks[tag]
            if ack is not None:
                table.send(ack)
            table.emit(ResponseReceived(response, self.key, True))
        else:  # a 2xx from another fork: a new dialog
            acks[tag] = None
            table.emit(ResponseReceived(response, self.key, False))

    def _complete(self, response: Response, table: TransactionTable, now: float) -> None:
        # §17.1.1.2: 300-699 → ACK it (§17.1.1.3), pass it up, Completed, Timer D.
        self.state = COMPLETED
        table.heap.disarm_all(self)
        self.held_cancel = None  # §9.1: nothing left to cancel
        request, out = self.request, self.out
        assert request is not None and out is not None
        ack = build_ack_for_non2xx(request, response, self.cseq)
        self.ack = Outgoing(ack.to_bytes(), out.dest, out.transport)
        self.request = None
        self.out = None
        table.send(self.ack)
        table.emit(ResponseReceived(response, self.key, False))
        table.linger(self, table.timers.d(self.reliable), now)

    def on_timer(self, slot: int, table: TransactionTable, now: float) -> None:
        if slot == RETRANSMIT:
            if self.state is CALLING and self.out is not None:
                # Timer A: retransmit, double the interval (no cap for INVITE, §17.1.1.2).
                table.send(self.out)
                self.interval = table.timers.next_invite_interval(self.interval)
                table.heap.arm(self, RETRANSMIT, now + self.interval)
            return
        if self.state is CALLING or self.state is PROCEEDING:
            # Timer B in Calling (§17.1.1.2), or 64·T1 after our CANCEL without a final
            # response (§9.1): report a timeout, the TU treats it as 408.
            table.emit(TransactionTimedOut(self.key, "INVITE"))
        table.terminate(self)  # also Timer D (Completed) and Timer M (Accepted)

    def on_transport_error(self, table: TransactionTable) -> None:
        # §17.1.4: only a transaction still waiting for its final response fails.
        if self.state is CALLING or self.state is PROCEEDING:
            table.emit(TransportFailed(self.key, "INVITE"))
            table.terminate(self)

    def request_cancel(self, table: TransactionTable, now: float, reason: str | None) -> str | None:
        """§9.1: CANCEL only after a provisional response; before that it is held.

        Returns the CANCEL's client transaction key, or ``None`` when a final response has
        already arrived (nothing left to cancel).
        """
        if self.state is not CALLING and self.state is not PROCEEDING:
            return None
        if self.cancel_key is not None:
            return self.cancel_key  # asked twice: one CANCEL is enough
        assert self.request is not None
        self.cancel_key = client_key(self.branch, "CANCEL")
        cancel = build_cancel(self.request, self.cseq, reason)
        if self.state is PROCEEDING:
            self._send_cancel(cancel, table, now)
        else:
            self.held_cancel = cancel
        return self.cancel_key

    def _send_cancel(self, cancel: Request, table: TransactionTable, now: float) -> None:
        self.held_cancel = None
        out = self.out
        assert out is not None and self.cancel_key is not None
        if self.cancel_key not in table.clients:
            start_client_transaction(table, cancel, self.branch, out.dest, out.transport, now)
        # §9.1: if no final response comes within 64·T1 of the CANCEL, give up on the INVITE.
        table.heap.arm(self, EXPIRE, now + table.timers.b(self.reliable))

    def remember_ack(self, to_tag: str, ack: Outgoing) -> None:
        """Keep the TU's ACK for a 2xx so retransmissions of that 2xx get it again."""
        if self.acks is not None:
            self.acks[to_tag] = ack

    def forget(self, table: TransactionTable) -> None:
        if table.clients.get(self.key) is self:
            del table.clients[self.key]
        if table.accepted_invites.get((self.call_id, self.cseq)) is self:
            del table.accepted_invites[(self.call_id, self.cseq)]
        # Stale heap entries may still point here for a while: keep the shell light.
        self.request = self.out = self.ack = self.held_cancel = None
        self.acks = None


class ClientNonInviteTransaction(ClientTransaction):
    """Non-INVITE client transaction (§17.1.2): Trying → Proceeding → Completed → Terminated."""

    __slots__ = ()

    def __init__(self, key: str, method: str, out: Outgoing) -> None:
        super().__init__(key, method, CLIENT_NON_INVITE, TRYING, out)

    def start(self, table: TransactionTable, now: float) -> None:
        # §17.1.2.2: send, start Timer E (unreliable only) and Timer F.
        assert self.out is not None
        table.send(self.out)
        timers = table.timers
        interval = timers.e(self.reliable)
        if interval is not None:
            self.interval = interval
            table.heap.arm(self, RETRANSMIT, now + interval)
        table.heap.arm(self, EXPIRE, now + timers.f(self.reliable))

    def on_response(self, response: Response, table: TransactionTable, now: float) -> None:
        state = self.state
        if state is not TRYING and state is not PROCEEDING:
            return  # Completed: retransmitted responses are absorbed (§17.1.2.2)
        if response.status < 200:
            self.state = PROCEEDING
            table.emit(ResponseReceived(response, self.key, False))
            return
        # §17.1.2.2: a final response → Completed, Timer K.
        self.state = COMPLETED
        table.heap.disarm_all(self)
        self.out = None
        table.emit(ResponseReceived(response, self.key, False))
        table.linger(self, table.timers.k(self.reliable), now)

    def on_timer(self, slot: int, table: TransactionTable, now: float) -> None:
        state = self.state
        if slot == RETRANSMIT:
            if self.out is None:
                return
            # Timer E: doubling up to T2 in Trying, T2 flat in Proceeding (§17.1.2.2).
            table.send(self.out)
            if state is TRYING:
                self.interval = table.timers.next_capped_interval(self.interval)
            else:
                self.interval = table.timers.t2
            table.heap.arm(self, RETRANSMIT, now + self.interval)
            return
        if state is TRYING or state is PROCEEDING:
            table.emit(TransactionTimedOut(self.key, self.method))  # Timer F
        table.terminate(self)  # also Timer K

    def on_transport_error(self, table: TransactionTable) -> None:
        if self.state is TRYING or self.state is PROCEEDING:  # §17.1.4
            table.emit(TransportFailed(self.key, self.method))
            table.terminate(self)

    def forget(self, table: TransactionTable) -> None:
        if table.clients.get(self.key) is self:
            del table.clients[self.key]
        self.out = None


def start_client_transaction(
    table: TransactionTable,
    request: Request,
    branch: str,
    dest: tuple[str, int],
    transport: str,
    now: float,
) -> str:
    """Create, register and start the client transaction for ``request``; return its key."""
    method = request.method
    key = client_key(branch, method)
    if key in table.clients:
        raise SipUsageError(f"a client transaction {key} already exists (reused branch?)")
    out = Outgoing(request.to_bytes(), dest, transport)
    tx: ClientInviteTransaction | ClientNonInviteTransaction
    if method == "INVITE":
        cseq, _ = parse_cseq(request.headers.get("CSeq") or "")
        tx = ClientInviteTransaction(key, branch, request, cseq, out)
    else:
        tx = ClientNonInviteTransaction(key, method, out)
    table.clients[key] = tx
    table.live[tx.kind] += 1
    tx.start(table, now)
    return key
