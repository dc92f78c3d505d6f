"""What the transaction layer hands up to the transaction user (TU), and down to the transport.

Small frozen dataclasses, one per thing that happened (the h11/aioquic style): the TU drains them
with :meth:`sip.transaction.TransactionLayer.next_event`, the transport drains :class:`Outgoing`
with :meth:`~sip.transaction.TransactionLayer.datagrams_to_send`.

Transaction keys (``tx``) are opaque strings. Client keys start with ``"c|"`` and server keys with
``"s|"``, so a log line or a :class:`TransactionTimedOut` says which side it is about.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import Request, Response
from .tls import PeerIdentity


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (not a retransmission), or an ACK for a 2xx (RFC 3261 §17.2.3, §13.3.1.4)."""

    request: Request
    """The request; its top Via already carries ``received``/``rport`` (§18.2.1, RFC 3581)."""
    tx: str | None
    """Server transaction key to answer with ``send_response``; ``None`` for an ACK to a 2xx,
    which is not part of any transaction (§17)."""
    source: tuple[str, int]
    """IP address and port the request came from."""
    transport: str
    """Transport it came over: ``UDP``, ``TCP``, ``TLS``…"""
    peer: PeerIdentity | None = None
    """Over TLS: the verified certificate identity of the connection's peer (RFC 3261
    §26.3.2.2, RFC 5922); None without TLS or without a client certificate."""


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A new CANCEL (RFC 3261 §9.2). It is its own non-INVITE server transaction: answer it with
    ``send_response(tx, 200 or 481)`` and, when ``invite_tx`` is still pending, answer that INVITE
    with 487."""

    request: Request
    """The CANCEL request."""
    tx: str
    """Server transaction key of the CANCEL itself."""
    invite_tx: str | None
    """Server transaction key of the INVITE it cancels; ``None`` → the TU answers the CANCEL
    with 481 (§9.2)."""
    source: tuple[str, int]
    """IP address and port the CANCEL came from."""
    transport: str
    """Transport it came over."""


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response matched to one of our client transactions (RFC 3261 §17.1.3)."""

    response: Response
    """The response."""
    tx: str
    """Client transaction key returned by ``send_request``."""
    retransmission: bool
    """True for a 2xx to INVITE the TU has already seen (same To tag), RFC 6026 §7.2: the
    layer has re-sent the ACK the TU gave it, if any; the TU normally ignores it."""


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """A transaction gave up waiting (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1).

    Client side (Timer B/F, or 64·T1 after a CANCEL with no final response, §9.1): the TU treats
    it as a 408 (§8.1.3.1). Server side (Timer H): the ACK for our non-2xx final never came.
    """

    tx: str
    """Key of the transaction that timed out."""
    method: str
    """Method of its request."""


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not reach the next hop of a client transaction (RFC 3261 §17.1.4).

    The TU treats it as a 503 (§8.1.3.1) and may try the next destination.
    """

    tx: str
    """Client transaction key."""
    method: str
    """Method of its request."""


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """We sent a 2xx to an INVITE and no ACK came within 64·T1 (RFC 3261 §13.3.1.4): the
    session should be ended with a BYE."""

    tx: str
    """Server transaction key of the INVITE."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the transport to send."""

    data: bytes
    """The serialised message."""
    dest: tuple[str, int]
    """Destination IP address and port (for TCP/TLS: the connection's remote address)."""
    transport: str
    """``UDP``, ``TCP``, ``TLS``…"""


TransactionEvent = (
    RequestReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimedOut
    | TransportFailed
    | AckTimedOut
)
"""Everything :meth:`~sip.transaction.TransactionLayer.next_event` can return."""
