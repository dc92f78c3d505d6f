"""The SIP transaction layer (RFC 3261 §17, RFC 6026), sans-IO.

:class:`TransactionLayer` is the one object the transaction user (the B2BUA core) talks to, in
the aioquic style: feed it what arrived (:meth:`~TransactionLayer.receive`) and what the TU wants
to send (``send_*``), pass ``now`` in, then drain :meth:`~TransactionLayer.datagrams_to_send`
and :meth:`~TransactionLayer.next_event`, and call :meth:`~TransactionLayer.handle_timers` at
:meth:`~TransactionLayer.next_deadline`. It never reads a clock and never touches a socket.

The state machines live in :mod:`sip.transaction_client` and :mod:`sip.transaction_server`;
keys, Via stamping and the ACK/CANCEL builders in :mod:`sip.transaction_base`.

Choices worth knowing:

* **100 Trying**: an INVITE server transaction sends one itself only when the TU has not sent any
  response ``trying_delay`` (200 ms) after the INVITE arrived (§17.2.1); ``trying_delay=None``
  turns that off.
* **2xx retransmission** for the UAS core (§13.3.1.4) is done here, over UDP only; over any
  transport, 64·T1 without the ACK gives :class:`~sip.events.AckTimedOut`.
* **Stray 2xx to INVITE** (no live transaction, e.g. after Timer B or Timer M) goes up as
  ``ResponseReceived(retransmission=True)`` keyed with the INVITE client key its branch names,
  so the TU can still ACK and BYE it; other stray responses are dropped (§17.1.3, RFC 6026 §7.2).
* **Malformed requests**: :meth:`~TransactionLayer.receive` raises
  :class:`~sip.errors.SipParseError` for a request without a usable Via or CSeq, before any state
  changes; the caller answers it with :meth:`~TransactionLayer.send_stateless` when it can.
  Malformed responses are dropped silently (§18.1.2).
"""

from __future__ import annotations

from .errors import SipParseError, SipUsageError
from .events import CancelReceived, Outgoing, RequestReceived, ResponseReceived, TransactionEvent
from .headers import Via, parse_cseq
from .message import Message, Request, Response
from .timers import RETRANSMIT, TimerConfig
from .tls import PeerIdentity
from .transaction_base import (
    KIND_NAMES,
    Rfc2543Match,
    ServerTransaction,
    TransactionState,
    TransactionTable,
    build_cancel,
    client_key,
    has_magic_cookie,
    response_destination,
    server_key,
    stamp_via,
    to_tag_of,
    top_branch,
)
from .transaction_client import ClientInviteTransaction, start_client_transaction
from .transaction_server import ServerInviteTransaction, ServerNonInviteTransaction

__all__ = ["TransactionLayer", "TransactionState", "build_cancel"]

DEFAULT_TRYING_DELAY = 0.2  # §17.2.1: "within 200 ms"


class TransactionLayer:
    """All client and server transactions of one SIP endpoint, and their timers."""

    __slots__ = ("_table",)

    def __init__(
        self,
        timers: TimerConfig | None = None,
        *,
        trying_delay: float | None = DEFAULT_TRYING_DELAY,
    ) -> None:
        self._table = TransactionTable(timers or TimerConfig(), trying_delay)

    # -- what arrived -------------------------------------------------------------------------

    def receive(
        self, message: Message, source: tuple[str, int], transport: str, now: float,
        peer: PeerIdentity | None = None,
    ) -> None:
        """Match a parsed message to a transaction (§17.1.3, §17.2.3) and act on it.

        ``peer`` is the TLS peer's certificate identity, handed up with new requests."""
        if isinstance(message, Response):
            self._receive_response(message, now)
        else:
            self._receive_request(message, source, transport, now, peer)

    def _receive_response(self, response: Response, now: float) -> None:
        headers = response.headers
        top, cseq_text = headers.get("Via"), headers.get("CSeq")
        if top is None or cseq_text is None:
            return  # §18.1.2: malformed responses are discarded
        try:
            branch = top_branch(top)
            _, method = parse_cseq(cseq_text)
        except SipParseError:
            return
        if branch is None:
            return
        table = self._table
        key = client_key(branch, method)
        tx = table.clients.get(key)
        if tx is not None:
            tx.on_response(response, table, now)
            return
        # No transaction: only a 2xx to INVITE matters, the dialog behind it may still need an
        # ACK and a BYE (RFC 6026 §7.2 leaves strays to the TU core).
        if method == "INVITE" and 200 <= response.status < 300 and has_magic_cookie(branch):
            table.emit(ResponseReceived(response, key, True))

    def _receive_request(
        self, request: Request, source: tuple[str, int], transport: str, now: float,
        peer: PeerIdentity | None,
    ) -> None:
        via, top, cseq = _read_top_via_and_cseq(request, source)
        method = request.method
        branch = via.branch
        compat: Rfc2543Match | None = None
        to_tag = ""
        if not has_magic_cookie(branch):
            compat = Rfc2543Match(request, cseq, top)
            to_tag = to_tag_of(request)
        table = self._table

        if method == "ACK":  # §17.2.3: an ACK matches the INVITE it acknowledges
            inv = table.servers.get(_server_key(via, compat, to_tag, "INVITE"))
            if isinstance(inv, ServerInviteTransaction):
                inv.on_ack(request, source, transport, table, now)
            else:
                self._receive_ack_for_2xx(request, cseq, source, transport)
            return

        key = _server_key(via, compat, to_tag, method)
        tx = table.servers.get(key)
        if tx is not None:
            tx.on_retransmission(table)
            return

        dest = response_destination(via, source, transport)
        new: ServerTransaction
        if method == "INVITE":
            new = ServerInviteTransaction(key, request, cseq, dest, transport, compat)
            if table.trying_delay is not None:  # §17.2.1: the 200 ms rule for 100 Trying
                table.heap.arm(new, RETRANSMIT, now + table.trying_delay)
        else:
            new = ServerNonInviteTransaction(key, method, dest, transport)
        table.servers[key] = new
        table.live[new.kind] += 1
        if method == "CANCEL":
            # §9.2: the CANCEL finds its INVITE by the same rules, method aside.
            inv = table.servers.get(_server_key(via, compat, to_tag, "INVITE"))
            invite_tx = inv.key if isinstance(inv, ServerInviteTransaction) else None
            table.emit(CancelReceived(request, key, invite_tx, source, transport))
        else:
            table.emit(RequestReceived(request, key, source, transport, peer))

    def _receive_ack_for_2xx(
        self, ack: Request, cseq: int, source: tuple[str, int], transport: str
    ) -> None:
        # §17.2.3: an ACK matching no transaction goes to the TU. When it answers a 2xx we are
        # retransmitting (Call-ID, CSeq number, To tag; §13.3.1.4), that stops.
        table = self._table
        call_id = ack.headers.get("Call-ID") or ""
        tx = table.awaiting_ack.get((call_id, cseq, to_tag_of(ack)))
        if tx is not None:
            tx.ack_received(table)
        table.emit(RequestReceived(ack, None, source, transport))

    # -- what the TU sends --------------------------------------------------------------------

    def send_request(
        self, request: Request, dest: tuple[str, int], transport: str, now: float
    ) -> str:
        """Start a client transaction for ``request`` and return its key.

        The TU has already put the top Via with a fresh magic-cookie branch on it (§8.1.1.7).
        ACKs for 2xx go through :meth:`send_ack`; CANCELs preferably through
        :meth:`send_cancel`.
        """
        if request.method == "ACK":
            raise SipUsageError("an ACK is not a transaction: use send_ack")
        top = request.headers.get("Via")
        branch = top_branch(top) if top is not None else None
        if branch is None or not has_magic_cookie(branch):
            raise SipUsageError("send_request needs a top Via with a z9hG4bK branch")
        return start_client_transaction(self._table, request, branch, dest, transport, now)

    def send_response(self, tx: str, response: Response, now: float) -> None:
        """Send ``response`` on server transaction ``tx`` (§17.2.1, §17.2.2).

        It goes where §18.2.2/RFC 3581 say, fixed when the request arrived. A 2xx to an INVITE
        is retransmitted here until its ACK arrives (§13.3.1.4).
        """
        table = self._table
        server = table.servers.get(tx)
        if server is None:
            raise SipUsageError(f"no server transaction {tx}")
        server.send_response(response, table, now)

    def send_ack(self, ack: Request, dest: tuple[str, int], transport: str, now: float) -> None:
        """Send the TU's ACK for a 2xx (§13.2.2.4); not a transaction.

        While the INVITE client transaction is Accepted (Timer M), a retransmission of that 2xx
        is answered with this same ACK automatically.
        """
        out = Outgoing(ack.to_bytes(), dest, transport)
        table = self._table
        table.send(out)
        cseq_text = ack.headers.get("CSeq")
        if cseq_text is None:
            return
        cseq, _ = parse_cseq(cseq_text)
        invite = table.accepted_invites.get((ack.headers.get("Call-ID") or "", cseq))
        if invite is not None:
            invite.remember_ack(to_tag_of(ack), out)

    def send_cancel(self, invite_tx: str, now: float, *, reason: str | None = None) -> str | None:
        """CANCEL the INVITE of client transaction ``invite_tx`` (§9.1); return the CANCEL's key.

        Sent at once when a provisional response has arrived; otherwise held and sent with the
        first provisional, or dropped if a final response comes first. ``None`` when there is
        nothing to cancel (final response already received, or no such transaction).
        """
        table = self._table
        tx = table.clients.get(invite_tx)
        if not isinstance(tx, ClientInviteTransaction):
            return None
        return tx.request_cancel(table, now, reason)

    def send_stateless(self, message: Message, dest: tuple[str, int], transport: str) -> None:
        """Send without a transaction (e.g. a 400 to a request that could not be matched)."""
        self._table.send(Outgoing(message.to_bytes(), dest, transport))

    def transport_error(self, dest: tuple[str, int], transport: str, now: float) -> None:
        """The transport cannot reach ``dest``: fail every client transaction towards it that
        still waits for a final response (§17.1.4) with :class:`~sip.events.TransportFailed`."""
        table = self._table
        wanted = transport.upper()
        for tx in list(table.clients.values()):
            out = tx.out
            if out is not None and out.dest == dest and out.transport.upper() == wanted:
                tx.on_transport_error(table)

    # -- time ---------------------------------------------------------------------------------

    def handle_timers(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        table = self._table
        pop_due = table.heap.pop_due
        while (due := pop_due(now)) is not None:
            tx, slot = due
            tx.on_timer(slot, table, now)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timers` should next be called, or ``None``."""
        return self._table.heap.next_deadline()

    # -- what to hand on ----------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        """Everything queued for the transport, oldest first; the queue is emptied."""
        table = self._table
        out, table.outgoing = table.outgoing, []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The oldest event for the TU, or ``None``."""
        events = self._table.events
        return events.popleft() if events else None

    # -- introspection ------------------------------------------------------------------------

    def alive(self, tx: str) -> bool:
        """Whether ``tx`` is a live transaction (``state(tx) is not None``, cheaper)."""
        table = self._table
        return tx in table.clients or tx in table.servers

    def state(self, tx: str) -> TransactionState | None:
        """State of a live transaction, ``None`` once it is gone (or never existed)."""
        table = self._table
        found = table.clients.get(tx) or table.servers.get(tx)
        return found.state if found is not None else None

    def counts(self) -> dict[str, int]:
        """Live transactions by kind: client_invite, client_non_invite, server_invite,
        server_non_invite (for metrics)."""
        return dict(zip(KIND_NAMES, self._table.live, strict=True))

    def __len__(self) -> int:
        """Live transactions of every kind."""
        return sum(self._table.live)

    @property
    def timer_entries(self) -> int:
        """Entries in the deadline heap, stale ones included (memory checks)."""
        return len(self._table.heap)

    @property
    def pending_acks(self) -> int:
        """2xx responses sent and not yet ACKed."""
        return len(self._table.awaiting_ack)


def _read_top_via_and_cseq(request: Request, source: tuple[str, int]) -> tuple[Via, str, int]:
    """Check the two headers the layer reads and stamp the top Via; raise SipParseError (a 400)
    before any state changes. Returns the stamped Via, its text as received, the CSeq number."""
    headers = request.headers
    top = headers.get("Via")
    if top is None:
        raise SipParseError("Missing Via header")
    cseq_text = headers.get("CSeq")
    if cseq_text is None:
        raise SipParseError("Missing CSeq header")
    via = Via.parse(top)
    cseq, cseq_method = parse_cseq(cseq_text)
    if cseq_method != request.method:
        raise SipParseError("CSeq method does not match the request method")
    if stamp_via(via, source):  # §18.2.1, RFC 3581 §4, before anything else
        headers.replace_first("Via", via.to_str())
    return via, top, cseq


def _server_key(via: Via, compat: Rfc2543Match | None, to_tag: str, method: str) -> str:
    """§17.2.3: branch + sent-by + method, or the RFC 2543 fields when there is no cookie."""
    if compat is not None:
        return compat.key(method, to_tag)
    branch = via.branch
    assert branch is not None  # has_magic_cookie() held
    return server_key(branch, via, method)

