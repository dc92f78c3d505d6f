"""Walking a call's destination plan: which centre URI to try next, and when to give up on one.

Sans-IO like the call that owns it: every method takes ``now``; the call sends the INVITEs and
CANCELs, this only decides. One :class:`Hunt` per call, built from the routing snapshot's
destination plan (the centre's own URIs, then its backups, then the national overflow centre).

The rules (issue 6, README "when a centre goes down"):

* Destinations the health monitor knows are down are skipped while an untried one that is up
  remains in the pass; when every remaining one is down they are still tried, in plan order: an
  emergency call is never rejected without trying.
* An attempt is abandoned (next destination) when the centre sends no provisional response
  within ``first_response_s``, has not answered within the service's ``attempt_ring_s``, answers
  with any final non-2xx status that is not listed in ``final_codes``, its transaction times out
  (Timer B) or the transport fails.
* When the plan is exhausted, a service with ``passes`` = 2 (113 by default) walks it once more;
  after that, and whenever the call's total ring time is over, the hunt is exhausted: last resort.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Attempt",
    "AttemptEnd",
    "DestinationLike",
    "Hunt",
    "HuntPolicy",
]


class DestinationLike(Protocol):
    """One entry of a destination plan (``municipality_map.Destination``)."""

    @property
    def centre_id(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def role(self) -> str: ...


class AttemptEnd(enum.StrEnum):
    """Why an attempt stopped; the ``reason`` label of ``nodrute_failover_total``."""

    ANSWERED = "answered"
    NO_RESPONSE = "no_response"
    """No provisional response within ``first_response_s`` (packet loss, a dead host)."""
    RING_TIMEOUT = "ring_timeout"
    """Provisional responses but no answer within ``attempt_ring_s``."""
    REJECTED = "rejected"
    """A final non-2xx response (the status is kept on the attempt)."""
    TIMEOUT = "timeout"
    """Timer B: the INVITE client transaction gave up (RFC 3261 §17.1.1.2)."""
    TRANSPORT_ERROR = "transport_error"
    """ICMP unreachable on UDP, TCP connect refused or reset."""
    TOTAL_TIMEOUT = "total_timeout"
    """The call's whole ring time ran out during this attempt."""
    CALLER_GONE = "caller_gone"
    """The caller cancelled or the call ended otherwise while this attempt was running."""


@dataclass(frozen=True, slots=True)
class HuntPolicy:
    """The timing knobs of one service (from ``[failover]`` and ``[routing]``)."""

    first_response_s: float
    attempt_ring_s: float
    total_ring_s: float
    final_codes: frozenset[int] = frozenset()
    """Final statuses passed to the caller as they are, with no further attempt."""
    passes: int = 1
    """How many times the whole plan is walked (2: "retry the plan once more")."""


@dataclass(slots=True)
class Attempt:
    """One INVITE towards one destination, for the call record and the failover metric."""

    centre_id: str
    uri: str
    role: str
    started_at: float
    pass_number: int
    skipped_down: bool = False
    """Tried although the health monitor had it down (nothing better was left)."""
    provisional_at: float | None = None
    ended_at: float | None = None
    end: AttemptEnd | None = None
    status: int | None = None

    def summary(self) -> str:
        """One line for the call record's attempt list."""
        took = "" if self.ended_at is None else f" {self.ended_at - self.started_at:.3f}s"
        status = f" {self.status}" if self.status is not None else ""
        end = self.end.value if self.end is not None else "open"
        down = " (was down)" if self.skipped_down else ""
        return f"{self.centre_id} {self.uri} {self.role}: {end}{status}{took}{down}"


@dataclass(slots=True)
class Hunt:
    """The state of one call's walk along its plan."""

    plan: Sequence[DestinationLike]
    policy: HuntPolicy
    is_up: Callable[[str], bool]
    started_at: float
    attempts: list[Attempt] = field(default_factory=list, init=False)
    _pass: int = field(default=1, init=False)
    _tried: set[int] = field(default_factory=set, init=False)

    @property
    def current(self) -> Attempt | None:
        """The attempt in progress (not ended), if any."""
        if self.attempts and self.attempts[-1].end is None:
            return self.attempts[-1]
        return None

    @property
    def total_deadline(self) -> float:
        return self.started_at + self.policy.total_ring_s

    def next(self, now: float) -> Attempt | None:
        """Start the next attempt, or None when the plan (and its passes) is exhausted."""
        attempts = self.attempts
        assert not attempts or attempts[-1].end is not None, "end the current attempt first"
        if now >= self.started_at + self.policy.total_ring_s:
            return None
        index = self._pick()
        if index is None and self._pass < self.policy.passes and self.plan:
            self._pass += 1
            self._tried.clear()
            index = self._pick()
        if index is None:
            return None
        self._tried.add(index)
        destination = self.plan[index]
        attempt = Attempt(destination.centre_id, destination.uri, destination.role, now,
                          self._pass, skipped_down=not self.is_up(destination.uri))
        attempts.append(attempt)
        return attempt

    def _pick(self) -> int | None:
        tried = self._tried
        is_up = self.is_up
        first: int | None = None
        for index, destination in enumerate(self.plan):
            if index in tried:
                continue
            if is_up(destination.uri):
                return index
            if first is None:
                first = index
        return first

    def deadline(self) -> float:
        """When the current attempt must be abandoned (or the whole hunt, if sooner)."""
        policy = self.policy
        total = self.started_at + policy.total_ring_s
        attempts = self.attempts
        if not attempts or attempts[-1].end is not None:  # no current attempt
            return total
        attempt = attempts[-1]
        if attempt.provisional_at is None:
            limit = attempt.started_at + policy.first_response_s
        else:
            limit = attempt.started_at + policy.attempt_ring_s
        return limit if limit < total else total

    def expired(self, now: float) -> AttemptEnd | None:
        """Why the current attempt must stop at ``now``, or None if it may go on."""
        attempt = self.current
        if attempt is None:
            return None
        if now >= self.total_deadline:
            return AttemptEnd.TOTAL_TIMEOUT
        if attempt.provisional_at is None:
            if now >= attempt.started_at + self.policy.first_response_s:
                return AttemptEnd.NO_RESPONSE
        elif now >= attempt.started_at + self.policy.attempt_ring_s:
            return AttemptEnd.RING_TIMEOUT
        return None

    def provisional(self, now: float) -> None:
        """The current attempt had a provisional response (100 counts: the host is alive)."""
        attempt = self.current
        if attempt is not None and attempt.provisional_at is None:
            attempt.provisional_at = now

    def fails_over(self, status: int) -> bool:
        """Whether a final ``status`` from a centre moves on to the next destination."""
        return status >= 300 and status not in self.policy.final_codes

    def end(self, how: AttemptEnd, now: float, status: int | None = None) -> Attempt | None:
        """Close the current attempt; returns it (None if there was none)."""
        attempt = self.current
        if attempt is None:
            return None
        attempt.end = how
        attempt.ended_at = now
        attempt.status = status
        return attempt

    @property
    def exhausted_reason(self) -> str:
        """A short text for the Reason header when nothing answered."""
        tried = len(self.attempts)
        return f"No centre answered ({tried} attempt{'s' if tried != 1 else ''})"
