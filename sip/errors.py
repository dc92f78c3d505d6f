"""Errors the SIP core raises.

Split the way h11 splits them: :class:`SipParseError` means the *peer* broke the protocol and
carries the response the server should send (RFC 3261 §21.4); :class:`SipUsageError` means our own
code misused the API and is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request, Response


class SipParseError(Exception):
    """A received message violates the SIP grammar or one of its rules.

    ``status``/``reason`` are the response a UAS sends for a malformed *request*
    (400 Bad Request by default; 505 for a bad version, 416 for an unsupported URI scheme,
    420 for a bad extension, 483 for Max-Forwards exhausted, 513 for an oversize message,
    413 for an oversize body).
    A malformed *response* is silently dropped (RFC 3261 §18.1.2, §18.2.1), never answered.
    """

    def __init__(self, reason: str, status: int = 400, *, detail: str = "",
                 extra_headers: Iterable[tuple[str, str]] = (),
                 partial: Request | Response | None = None) -> None:
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        """Status code of the response to send back for a malformed request."""
        self.reason = reason
        """Reason phrase for that response: short, printable, safe to put on the wire."""
        self.detail = detail
        """Longer explanation for logs (never sent)."""
        self.extra_headers: list[tuple[str, str]] = list(extra_headers)
        """Header fields the response must carry, e.g. ``Unsupported`` with a 420 (§8.2.2.3)."""
        self.partial = partial
        """The message as far as it parsed (start line and header fields, no body), when the
        error was found after the header section was read; ``None`` otherwise. A UAS builds the
        error response from it (:func:`sip.parser.make_error_response`)."""


class SipUsageError(Exception):
    """The SIP core was called in a way its API does not allow (a bug in the caller)."""
