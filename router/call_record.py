"""What is kept about one call when it ends: the record and the reason it ended.

One enum of terminated reasons (after reSIProcate's ``InviteSessionHandler``) serves call
records, logs and metric labels alike, so the three never disagree about what happened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .hunt import Attempt


class TerminatedReason(enum.StrEnum):
    """Why a call ended. Values are stable: they are metric labels and stored in records."""

    CALLER_BYE = "caller_bye"
    """Answered call, the caller hung up."""
    CENTRE_BYE = "centre_bye"
    """Answered call, the centre hung up."""
    CALLER_CANCEL = "caller_cancel"
    """The caller gave up before the centre answered."""
    CENTRE_REJECTED = "centre_rejected"
    """The centre answered the INVITE with a final error response."""
    CENTRE_TIMEOUT = "centre_timeout"
    """No response at all from the centre (RFC 3261 Timer B)."""
    RING_TIMEOUT = "ring_timeout"
    """The centre rang but nobody answered within the service's ring timeout."""
    TRANSPORT_ERROR = "transport_error"
    """The centre could not be reached (connection refused, ICMP unreachable)."""
    NO_ACK = "no_ack"
    """The caller never acknowledged the answer (RFC 3261 §13.3.1.4): both legs released."""
    ERROR = "error"
    """A fault inside the router; the caller got 500 and the centre leg was released."""
    NODE_SHUTDOWN = "node_shutdown"
    """The node stopped (drain timeout, second SIGTERM) and released the call itself: BYE on
    both legs, or 503 + Retry-After to a caller not yet answered (router/drain.py)."""


class Outcome(enum.StrEnum):
    """Coarse outcome for dashboards: was the call answered by a centre?"""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    FAILED = "failed"


@dataclass(slots=True)
class CallRecord:
    """Everything worth storing about one emergency call (one row per call, later issue)."""

    call_id: str
    """The caller leg's Call-ID as the carrier sent it."""
    service: str
    trunk: str
    caller: str
    """Caller's From URI as received (Privacy is honoured where records are displayed)."""
    started_at: float
    """Monotonic clock of the INVITE's arrival (wall clock is added where it is stored)."""
    requested_municipality: str | None = None
    municipality: str | None = None
    """Today's municipality number the route used; ``None`` for the default centre."""
    location_source: str = "default"
    """Which hint decided: header, uri_param, prefix, geo, postcode or default."""
    location_evidence: list[str] = field(default_factory=list)
    """What every location source said (``geo=0301 inside r=25m``, ``header=0301``…)."""
    location_ambiguous: bool = False
    """The caller's position may lie in more than one municipality."""
    location_disagreement: bool = False
    """The carrier's municipality and the caller's position name different municipalities."""
    table_version: str = ""
    centre_id: str | None = None
    """The centre of the last attempt: the one that answered, if any."""
    centre_uri: str | None = None
    centre_call_id: str | None = None
    first_provisional_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    final_status: int | None = None
    """Final status the caller got on its INVITE."""
    centre_status: int | None = None
    """Final status the centre gave (may differ from what the caller got)."""
    end_reason: TerminatedReason | None = None
    attempts: list[Attempt] = field(default_factory=list)
    """Every destination tried, in order: centre, URI, role, start, first provisional, end,
    how it ended and the SIP status (``Attempt.summary()`` gives one line)."""
    hunt_started_at: float | None = None
    """When the first centre INVITE went out; after an IVR flow (116117 greeting, menu) the
    time before it is the caller's time in the IVR, which answer-time targets exclude."""
    hunt_exhausted: bool = False
    """Every destination failed: a critical outcome (logged and counted)."""
    notes: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        if self.answered_at is not None:
            return Outcome.ANSWERED
        if self.end_reason is TerminatedReason.CALLER_CANCEL:
            return Outcome.ABANDONED
        return Outcome.FAILED
