"""Shared ground of the four transaction state machines (RFC 3261 §17, RFC 6026).

* :class:`TransactionState` — the RFC's state names;
* :class:`Transaction` — the slotted base every machine extends (two timer slots, see
  :class:`sip.timers.DeadlineHeap`);
* :class:`TransactionTable` — what the machines act on: the heap, the transaction maps, the
  event and outgoing queues. :class:`sip.transaction.TransactionLayer` is the public face of it;
* matching keys (§17.1.3, §17.2.3), the server-side Via stamping (§18.2.1, RFC 3581) and response
  routing (§18.2.2), and the ACK/CANCEL builders (§17.1.1.3, §9.1).

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING

from .errors import SipParseError
from .events import Outgoing, TransactionEvent
from .headers import BRANCH_MAGIC_COOKIE, NameAddr, Via, is_token
from .message import Headers, Request, Response
from .timers import EXPIRE, DeadlineHeap, TimerConfig

if TYPE_CHECKING:
    from .transaction_client import ClientInviteTransaction
    from .transaction_server import ServerInviteTransaction

DEFAULT_SIP_PORT = 5060


class TransactionState(enum.Enum):
    """States of RFC 3261 §17 Figures 5-8, plus Accepted from RFC 6026 §7."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


CALLING = TransactionState.CALLING
TRYING = TransactionState.TRYING
PROCEEDING = TransactionState.PROCEEDING
ACCEPTED = TransactionState.ACCEPTED
COMPLETED = TransactionState.COMPLETED
CONFIRMED = TransactionState.CONFIRMED
TERMINATED = TransactionState.TERMINATED

# Kinds, as indexes into TransactionTable.live (a list is cheaper to bump than a dict).
CLIENT_INVITE = 0
CLIENT_NON_INVITE = 1
SERVER_INVITE = 2
SERVER_NON_INVITE = 3
KIND_NAMES = ("client_invite", "client_non_invite", "server_invite", "server_non_invite")


def is_reliable(transport: str) -> bool:
    """Everything but UDP is reliable here (TCP, TLS, SCTP, WS, WSS)."""
    return transport.upper() != "UDP"


class Transaction:
    """Base of the four machines. Subclasses add what their state machine needs."""

    __slots__ = (
        "expire_timer",
        "interval",
        "key",
        "kind",
        "method",
        "reliable",
        "retransmit_timer",
        "state",
    )

    def __init__(
        self, key: str, method: str, kind: int, state: TransactionState, reliable: bool
    ) -> None:
        self.key = key
        self.method = method
        self.kind = kind
        self.state = state
        self.reliable = reliable
        self.interval = 0.0  # current retransmit interval (A, E, G, 2xx)
        self.retransmit_timer = 0  # DeadlineHeap entry ids, 0 = not armed
        self.expire_timer = 0

    def on_timer(self, slot: int, table: TransactionTable, now: float) -> None:
        """A timer of this transaction fired (``slot`` is RETRANSMIT or EXPIRE)."""
        raise NotImplementedError

    def forget(self, table: TransactionTable) -> None:
        """Remove every reference the table holds to this (now terminated) transaction."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.state.value}>"


class ClientTransaction(Transaction):
    """A client transaction (§17.1): it sent ``out`` and waits for responses."""

    __slots__ = ("out",)

    def __init__(
        self, key: str, method: str, kind: int, state: TransactionState, out: Outgoing
    ) -> None:
        super().__init__(key, method, kind, state, is_reliable(out.transport))
        self.out: Outgoing | None = out
        """The request as sent (retransmissions re-send this object); dropped once final."""

    def on_response(self, response: Response, table: TransactionTable, now: float) -> None:
        """A response matched this transaction (§17.1.3)."""
        raise NotImplementedError

    def on_transport_error(self, table: TransactionTable) -> None:
        """The transport to ``out.dest`` failed (§17.1.4)."""
        raise NotImplementedError


class ServerTransaction(Transaction):
    """A server transaction (§17.2): it received a request and sends the TU's responses."""

    __slots__ = ("dest", "last", "transport")

    def __init__(
        self,
        key: str,
        method: str,
        kind: int,
        state: TransactionState,
        dest: tuple[str, int],
        transport: str,
    ) -> None:
        super().__init__(key, method, kind, state, is_reliable(transport))
        self.dest = dest
        """Where responses go (§18.2.2, RFC 3581), fixed when the request arrived."""
        self.transport = transport
        self.last: Outgoing | None = None
        """Last response sent: re-sent when the request is retransmitted."""

    def on_retransmission(self, table: TransactionTable) -> None:
        """The request arrived again (§17.2.1, §17.2.2)."""
        raise NotImplementedError

    def send_response(self, response: Response, table: TransactionTable, now: float) -> None:
        """The TU answers (§17.2.1, §17.2.2)."""
        raise NotImplementedError


class TransactionTable:
    """The state all transactions share; the machines call into it, the TU never does."""

    __slots__ = (
        "accepted_invites",
        "awaiting_ack",
        "clients",
        "events",
        "heap",
        "live",
        "outgoing",
        "servers",
        "timers",
        "trying_delay",
    )

    def __init__(self, timers: TimerConfig, trying_delay: float | None) -> None:
        self.timers = timers
        self.trying_delay = trying_delay
        self.heap: DeadlineHeap[Transaction] = DeadlineHeap()
        self.clients: dict[str, ClientTransaction] = {}
        """Client transactions by key (§17.1.3: branch + CSeq method)."""
        self.servers: dict[str, ServerTransaction] = {}
        """Server transactions by key (§17.2.3), plus RFC 2543 ACK aliases."""
        self.accepted_invites: dict[tuple[str, int], ClientInviteTransaction] = {}
        """Accepted INVITE client transactions by (Call-ID, CSeq number): where send_ack
        remembers the ACK for Timer M (RFC 3261 §13.2.2.4, RFC 6026 §7.2)."""
        self.awaiting_ack: dict[tuple[str, int, str], ServerInviteTransaction] = {}
        """INVITE server transactions whose 2xx is not ACKed yet, by (Call-ID, CSeq number,
        To tag) (§13.3.1.4)."""
        self.events: deque[TransactionEvent] = deque()
        self.outgoing: list[Outgoing] = []
        self.live = [0, 0, 0, 0]

    def send(self, out: Outgoing) -> None:
        self.outgoing.append(out)

    def emit(self, event: TransactionEvent) -> None:
        self.events.append(event)

    def linger(self, tx: Transaction, delay: float, now: float) -> None:
        """Arm the expiry timer for ``delay``; a zero delay (reliable D/I/J/K) terminates now."""
        if delay > 0.0:
            self.heap.arm(tx, EXPIRE, now + delay)
        else:
            self.terminate(tx)

    def terminate(self, tx: Transaction) -> None:
        """Enter Terminated: cancel timers and drop every reference (memory stays bounded)."""
        if tx.state is TERMINATED:
            return
        tx.state = TERMINATED
        self.heap.disarm_all(tx)
        tx.forget(self)
        self.live[tx.kind] -= 1


# ---------------------------------------------------------------------------------------------
# Matching keys


def client_key(branch: str, method: str) -> str:
    """§17.1.3: branch of the top Via plus the CSeq method (ACK never has a client tx)."""
    return f"c|{method}|{branch}"


def server_key(branch: str, via: Via, method: str) -> str:
    """§17.2.3 with a magic-cookie branch: branch, sent-by and method (ACK → INVITE)."""
    port = "" if via.port is None else via.port
    return f"s|{method}|{branch}|{via.host.lower()}:{port}"


def has_magic_cookie(branch: str | None) -> bool:
    """True if the branch was minted by an RFC 3261 element (§8.1.1.7)."""
    return branch is not None and branch.startswith(BRANCH_MAGIC_COOKIE)


class Rfc2543Match:
    """The fields RFC 3261 §17.2.3 falls back to when the branch lacks the magic cookie:
    Request-URI, From tag, Call-ID, CSeq number, top Via and (but for ACK) To tag."""

    __slots__ = ("call_id", "cseq", "from_tag", "uri", "via")

    def __init__(self, request: Request, cseq: int, via_text: str) -> None:
        self.call_id = request.headers.get("Call-ID") or ""
        self.cseq = cseq
        self.from_tag = tag_of(request.headers.get("From"))
        self.uri = request.uri
        self.via = via_text.strip()

    def key(self, method: str, to_tag: str) -> str:
        return (
            f"s|{method}|2543|{self.call_id}|{self.from_tag}|{to_tag}|{self.cseq}|"
            f"{self.uri}|{self.via}"
        )


def to_tag_of(message: Request | Response) -> str:
    """The To tag, ``""`` when there is none (or To does not parse)."""
    return tag_of(message.headers.get("To"))


# The two helpers below read one parameter without building the whole structured view (they
# run on every message): the common spelling (";branch=", ";tag=", no quotes) is sliced out
# directly, anything else goes through sip.headers. On well-formed values they agree with it
# (tests/sip/test_transaction_matching.py checks that).


def top_branch(via_value: str) -> str | None:
    """The ``branch`` of one Via value (``None`` if absent); raises SipParseError if malformed."""
    at = via_value.find(";branch=")
    if at >= 0 and '"' not in via_value:
        branch = via_value[at + 8 :].partition(";")[0].strip(" \t")
        if is_token(branch):
            return branch
    return Via.parse(via_value).branch


def tag_of(value: str | None) -> str:
    """The ``tag`` parameter of a From/To value, ``""`` when absent or unparseable."""
    if value is None:
        return ""
    gt = value.rfind(">")
    if gt >= 0 or "<" not in value:  # otherwise malformed: let NameAddr.parse say so
        tail = value[gt + 1 :]  # header parameters follow the name-addr / addr-spec (§20.10)
        at = tail.find(";tag=")
        if at >= 0 and '"' not in tail:
            tag = tail[at + 5 :].partition(";")[0].strip(" \t")
            if is_token(tag):
                return tag
        if "tag" not in tail.lower():
            return ""
    try:
        return NameAddr.parse(value, "To").tag or ""
    except SipParseError:
        return ""


# ---------------------------------------------------------------------------------------------
# Via handling on the server side


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def stamp_via(via: Via, source: tuple[str, int]) -> bool:
    """Add ``received``/fill ``rport`` on a received request's top Via; True if it changed.

    RFC 3261 §18.2.1: ``received`` when the sent-by host differs from the source address.
    RFC 3581 §4: an empty ``rport`` gets the source port, and then ``received`` is added even
    when it equals the sent-by host.
    """
    params = via.params
    ip = source[0]
    if "rport" in params and not params["rport"]:
        params["rport"] = str(source[1])
        params["received"] = ip
        return True
    if _bare_host(via.host) != ip and params.get("received") != ip:
        params["received"] = ip
        return True
    return False


def response_destination(via: Via, source: tuple[str, int], transport: str) -> tuple[str, int]:
    """Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4); ``maddr`` ignored.

    Reliable: back to the source (the connection it came on). UDP: the source IP (which is the
    ``received`` value, or the sent-by host when they are equal), port ``rport`` when present,
    else the sent-by port, else 5060.
    """
    if is_reliable(transport):
        return source
    rport = via.params.get("rport")
    if rport and rport.isdigit():
        return source[0], int(rport)
    return source[0], via.port or DEFAULT_SIP_PORT


# ---------------------------------------------------------------------------------------------
# Requests the transaction layer builds itself


def build_ack_for_non2xx(invite: Request, response: Response, cseq: int) -> Request:
    """The ACK an INVITE client transaction sends for a 300-699 (RFC 3261 §17.1.1.3).

    Same Request-URI, Call-ID, From and top Via (so the same branch) as the INVITE, To from the
    response (with its tag), CSeq number with method ACK, the INVITE's Route headers.
    """
    src = invite.headers
    headers = Headers()
    headers.add("Via", src.get("Via") or "")
    headers.add("Max-Forwards", "70")
    for route in src.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", src.get("From") or "")
    headers.add("To", response.headers.get("To") or src.get("To") or "")
    headers.add("Call-ID", src.get("Call-ID") or "")
    headers.add("CSeq", f"{cseq} ACK")
    return Request("ACK", invite.uri, headers)


def build_cancel(invite: Request, cseq: int | None = None, reason: str | None = None) -> Request:
    """A CANCEL for ``invite`` (RFC 3261 §9.1).

    Same Request-URI, Call-ID, To, From (tags included) and CSeq number, method CANCEL; only the
    top Via (same branch, so it reaches the same server transaction); the INVITE's Route
    headers. ``reason`` becomes a Reason header (RFC 3326), e.g. ``SIP;cause=200;text="Call
    completed elsewhere"``.
    """
    src = invite.headers
    if cseq is None:
        number, _, _ = (src.get("CSeq") or "").strip().partition(" ")
        cseq = int(number) if number.isdigit() else 0
    headers = Headers()
    headers.add("Via", src.get("Via") or "")
    headers.add("Max-Forwards", "70")
    for route in src.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", src.get("From") or "")
    headers.add("To", src.get("To") or "")
    headers.add("Call-ID", src.get("Call-ID") or "")
    headers.add("CSeq", f"{cseq} CANCEL")
    if reason is not None:
        headers.add("Reason", reason)
    return Request("CANCEL", invite.uri, headers)
