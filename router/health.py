"""Centre health: SIP OPTIONS probes with hysteresis, live-call failures, operator overrides.

Sans-IO, like the rest of the call path: ``now`` is passed in, nothing here reads a clock or a
socket. The dispatcher (:class:`router.b2bua.B2bua`) asks :meth:`HealthMonitor.due_probes` in
its timer handling, sends each OPTIONS as a non-INVITE client transaction and feeds back what
came of it (:meth:`~HealthMonitor.on_response`, :meth:`~HealthMonitor.on_failure`). The hunt
asks :meth:`~HealthMonitor.is_up` and reports live failures with
:meth:`~HealthMonitor.mark_failed`.

What counts (decided here, once):

* **Success** — any *final* response to the OPTIONS except 503 and 408: a SIP stack answered,
  so INVITEs will be answered too (404/405/403 from a centre that dislikes OPTIONS still proves
  it is there; RFC 3261 §11.2 lets a UAS answer OPTIONS as it would an INVITE).
* **Miss** — 503 (§21.5.4: the server is out of service or overloaded), 408 (a proxy in front
  saying the centre did not answer), no final response within ``timeout_s`` (our own timer,
  far shorter than Timer F's 32 s), a transport error (§17.1.4: TCP connect refused, …), or a
  live call failure reported with :meth:`~HealthMonitor.mark_failed`.

Destination states (per URI, what the evidence says):

* ``unknown`` — no verdict yet (node just started, or the URI is new in the table). Usable:
  without evidence a destination is assumed reachable.
* ``up`` — ``up_after`` consecutive successes.
* ``down`` — ``down_after`` consecutive misses. Probing goes on at the same interval; it comes
  back after ``up_after`` consecutive successes.

Operator overrides (per centre id, ``nodrute centre drain|down|up``) win over the probes:
``drain`` (no new calls; still probed; calls in progress untouched), ``down`` (forced down,
still probed), ``auto`` (follow the probes; what ``nodrute centre up`` sets). A URI listed by
several centres takes the strictest override of them. The effective view is
:class:`Availability`.

One OPTIONS transaction per URI at a time: over UDP an unanswered OPTIONS is retransmitted
by the transaction layer until Timer F (64·T1, 32 s), long after our ``timeout_s`` verdict.
While it lives, the next probe slots reuse it (a window of ``timeout_s`` opens, no new
request), and an answer to it, however late, counts; a fresh OPTIONS goes out once it ended.
A silent centre thus costs one retransmitting transaction, not six piled up; when it comes
back, the next retransmission (at most T2 = 4 s after the last) is answered and counts.

Probes are spread deterministically: each URI gets a fixed phase in ``[0, interval_s)`` from a
CRC of its text, so 40 destinations are not probed in one burst, and the same URI is probed at
the same phase on every restart (reproducible in tests).

State is kept per URI across table switches (:meth:`~HealthMonitor.set_destinations`): a URI
still in the new table keeps its state, counters and schedule; a new URI starts ``unknown``;
a URI gone from the table is forgotten.

With ``enabled = false`` nothing is probed and live failures are ignored (with no probe to bring
a destination back, a live failure must not take it down for good); overrides still apply.
"""

from __future__ import annotations

import enum
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from municipality_map import Centre
from sip.message import Headers, Request

log = logging.getLogger("nodrute.health")

LATENCY_EWMA_WEIGHT = 0.3
"""Weight of the newest probe round-trip in the smoothed latency."""


class HealthSettings(BaseModel):
    """``[health]``: OPTIONS probing of every centre URI in the routing table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    """Probe the centres (off: every destination counts as up unless an override says not)."""
    interval_s: float = Field(5.0, gt=0)
    """Time between two probes of one URI."""
    timeout_s: float = Field(2.0, gt=0)
    """A probe with no final response after this long is a miss."""
    down_after: int = Field(2, ge=1)
    """Consecutive misses that mark a destination down."""
    up_after: int = Field(2, ge=1)
    """Consecutive successes that mark it up again."""
    override_poll_interval_s: float = Field(5.0, gt=0)
    """Re-read the operator overrides (``nodrute centre …``) from the database this often."""

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> HealthSettings:
        if self.timeout_s > self.interval_s:
            raise ValueError(f"timeout_s ({self.timeout_s}) must not exceed interval_s "
                             f"({self.interval_s}): one probe per URI is in flight at a time")
        return self


class ProbeState(enum.StrEnum):
    """What the probes (and live failures) say about one URI."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class OverrideState(enum.StrEnum):
    """An operator's word on a centre (persisted in the database, see router/health_overrides)."""

    AUTO = "auto"
    """Follow the probes (``nodrute centre up``)."""
    DRAIN = "drain"
    """No new calls; calls in progress go on; still probed."""
    DOWN = "down"
    """Forced down: no new calls whatever the probes say; still probed."""


class Availability(enum.StrEnum):
    """The effective state of a URI for new calls: override first, then the probes."""

    UP = "up"
    UNKNOWN = "unknown"
    """No verdict yet; usable."""
    DOWN = "down"
    DRAINED = "drained"
    FORCED_DOWN = "forced_down"

    @property
    def usable(self) -> bool:
        """True when a new call may be sent there."""
        return self in (Availability.UP, Availability.UNKNOWN)


class ProbeOutcome(enum.StrEnum):
    """How one probe (or live call attempt) ended; a bounded metric label."""

    OK = "ok"
    UNAVAILABLE = "unavailable"
    """503 or 408 final response."""
    TIMEOUT = "timeout"
    TRANSPORT_ERROR = "transport_error"
    CALL_FAILURE = "call_failure"
    """A live call failed towards it (:meth:`HealthMonitor.mark_failed`)."""
    CALL_RESPONSE = "call_response"
    """A live call got an answer from it (:meth:`HealthMonitor.mark_reachable`)."""

    @property
    def success(self) -> bool:
        return self in (ProbeOutcome.OK, ProbeOutcome.CALL_RESPONSE)


MISS_STATUSES = frozenset({408, 503})
"""Final responses to OPTIONS that count as a miss; every other final one is a success."""


@dataclass(frozen=True, slots=True)
class CentreOverride:
    """One centre's override as stored (``centre_overrides`` table)."""

    centre_id: str
    state: OverrideState
    reason: str = ""
    actor: str = ""
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    """A read-only view of one URI (``nodrute centre status``, tests)."""

    uri: str
    centres: tuple[str, ...]
    state: ProbeState
    availability: Availability
    since: float
    """``now`` of the last change of ``state``."""
    last_outcome: ProbeOutcome | None
    last_latency_s: float | None
    latency_ewma_s: float | None
    consecutive_misses: int
    consecutive_successes: int


class HealthObserver(Protocol):
    """Where changes are reported (``router.metrics.NodeMetrics`` implements it)."""

    def destination_changed(
        self, centre: str, uri: str, availability: Availability, reachable: bool
    ) -> None: ...
    def destination_removed(self, centre: str, uri: str) -> None: ...
    def probe_finished(
        self, centre: str, uri: str, outcome: ProbeOutcome, latency_s: float | None
    ) -> None: ...


class _Destination:
    __slots__ = ("awaiting", "centres", "fresh", "last_latency_s", "last_outcome",
                 "latency_ewma_s", "misses", "next_probe_at", "probe_deadline", "probe_sent_at",
                 "probe_tx", "published", "since", "state", "successes", "uri")

    def __init__(self, uri: str, centres: tuple[str, ...], next_probe_at: float, now: float):
        self.uri = uri
        self.centres = centres
        self.state = ProbeState.UNKNOWN
        self.since = now
        self.misses = 0
        self.successes = 0
        self.next_probe_at = next_probe_at
        self.probe_tx: str | None = None
        """Our OPTIONS transaction still alive in the layer (answered or not), if any."""
        self.awaiting = False
        """A probe window is open: a verdict is due by ``probe_deadline``."""
        self.fresh = False
        """``probe_tx`` was sent for this window (so its answer gives a latency)."""
        self.probe_sent_at = 0.0
        self.probe_deadline = 0.0
        self.last_outcome: ProbeOutcome | None = None
        self.last_latency_s: float | None = None
        self.latency_ewma_s: float | None = None
        self.published: tuple[Availability, bool] | None = None


def probe_phase(uri: str, interval_s: float) -> float:
    """The fixed offset of ``uri``'s probes within the interval (deterministic spreading)."""
    return zlib.crc32(uri.encode("utf-8")) / 2**32 * interval_s


_STRICTNESS = {OverrideState.AUTO: 0, OverrideState.DRAIN: 1, OverrideState.DOWN: 2}


class HealthMonitor:
    """Up/down state of every centre URI of the active table; see the module docstring."""

    def __init__(self, settings: HealthSettings, observer: HealthObserver | None = None) -> None:
        self.settings = settings
        self.observer = observer
        """Told of every change (metrics); set before :meth:`start`."""
        self.started = False
        self._dests: dict[str, _Destination] = {}
        self._probes: dict[str, _Destination] = {}
        self._overrides: dict[str, CentreOverride] = {}
        self._next_due: float | None = None

    # ------------------------------------------------------------------ what the hunt asks

    def is_up(self, uri: str) -> bool:
        """May a new call be sent to ``uri``? Unknown URIs (not in the table) count as up."""
        dest = self._dests.get(uri)
        return dest is None or self._availability(dest).usable

    def availability(self, uri: str) -> Availability:
        dest = self._dests.get(uri)
        return Availability.UNKNOWN if dest is None else self._availability(dest)

    def centre_override(self, centre_id: str) -> CentreOverride | None:
        """The operator's override of ``centre_id``, if any (``auto`` is not kept)."""
        return self._overrides.get(centre_id)

    def mark_failed(self, uri: str, reason: str, now: float) -> None:
        """A live call to ``uri`` failed (transport error, no provisional response in time,
        503): counts as one miss. Ignored with probing off or for a URI not in the table."""
        dest = self._dests.get(uri)
        if dest is None or not self.settings.enabled:
            return
        log.info("live call failure towards %s: %s", uri, reason)
        self._record(dest, ProbeOutcome.CALL_FAILURE, None, now)

    def mark_reachable(self, uri: str, now: float) -> None:
        """A live call got a response from ``uri`` (other than 503/408): counts as a success."""
        dest = self._dests.get(uri)
        if dest is None or not self.settings.enabled:
            return
        self._record(dest, ProbeOutcome.CALL_RESPONSE, None, now)

    # ------------------------------------------------------------------ the table and overrides

    def start(self, centres: Iterable[Centre], now: float) -> None:
        """Take the destinations of the table in force and schedule their first probes."""
        self.started = True
        self.set_destinations(centres, now)

    def set_destinations(self, centres: Iterable[Centre], now: float) -> None:
        """The table changed: keep the state of URIs that remain, add and forget the rest."""
        owners: dict[str, list[str]] = {}
        for centre in centres:
            for uri in centre.uris:
                owners.setdefault(uri, []).append(centre.centre_id)
        old = self._dests
        new: dict[str, _Destination] = {}
        interval = self.settings.interval_s
        for uri, ids in owners.items():
            dest = old.pop(uri, None)
            centre_ids = tuple(ids)
            if dest is None:
                dest = _Destination(uri, centre_ids, now + probe_phase(uri, interval), now)
            elif dest.centres != centre_ids:
                self._unpublish(dest)
                dest.centres = centre_ids
            new[uri] = dest
        for gone in old.values():
            if gone.probe_tx is not None:
                self._probes.pop(gone.probe_tx, None)
            self._unpublish(gone)
        self._dests = new
        for dest in new.values():
            self._publish(dest)
        self._recompute_deadline()

    def set_overrides(self, overrides: Iterable[CentreOverride]) -> None:
        """Replace the operator overrides (all of them, as read from the database)."""
        wanted = {o.centre_id: o for o in overrides if o.state is not OverrideState.AUTO}
        if wanted == self._overrides:
            return
        for centre_id in wanted.keys() ^ self._overrides.keys():
            log.warning("centre %s override now %s", centre_id,
                        wanted[centre_id].state if centre_id in wanted else OverrideState.AUTO)
        self._overrides = wanted
        for dest in self._dests.values():
            self._publish(dest)

    # ------------------------------------------------------------------ probing (timers)

    def next_deadline(self) -> float | None:
        """When :meth:`due_probes` next has work (a probe to send or one timing out)."""
        return self._next_due

    def due_probes(self, now: float) -> list[str]:
        """Expire probes past ``timeout_s`` (misses) and return the URIs to probe now.

        For each URI returned the caller sends an OPTIONS and reports
        :meth:`probe_sent` (or :meth:`probe_not_sent`).
        """
        due: list[str] = []
        if not self.started or not self.settings.enabled:
            return due
        interval = self.settings.interval_s
        for dest in self._dests.values():
            if dest.awaiting and dest.probe_deadline <= now:
                # A miss; the transaction lingers (the layer retransmits it until Timer F) and
                # an answer to it, however late, still counts.
                dest.awaiting = False
                self._record(dest, ProbeOutcome.TIMEOUT, None, now)
            if dest.next_probe_at <= now:
                if dest.probe_tx is None:
                    due.append(dest.uri)
                elif not dest.awaiting:
                    # The last OPTIONS is still being retransmitted (RFC 3261 §17.1.2.2): let
                    # it stand for this slot rather than pile a second transaction on a
                    # silent centre.
                    self._open_window(dest, now, fresh=False)
                # Keep the phase; after a stall, skip the missed slots instead of bursting.
                dest.next_probe_at += interval
                if dest.next_probe_at <= now:
                    dest.next_probe_at += (now - dest.next_probe_at) // interval * interval
                    dest.next_probe_at += interval
        self._recompute_deadline()
        return due

    def probe_sent(self, uri: str, tx: str, now: float) -> None:
        """The OPTIONS for ``uri`` went out as client transaction ``tx``."""
        dest = self._dests.get(uri)
        if dest is None:
            return
        if dest.probe_tx is not None:
            self._probes.pop(dest.probe_tx, None)
        dest.probe_tx = tx
        self._probes[tx] = dest
        self._open_window(dest, now, fresh=True)
        if self._next_due is None or dest.probe_deadline < self._next_due:
            self._next_due = dest.probe_deadline

    def _open_window(self, dest: _Destination, now: float, *, fresh: bool) -> None:
        dest.awaiting = True
        dest.fresh = fresh
        dest.probe_sent_at = now
        dest.probe_deadline = now + self.settings.timeout_s

    def probe_not_sent(self, uri: str, reason: str, now: float) -> None:
        """The OPTIONS for ``uri`` could not even be built or sent (bad URI): a miss."""
        dest = self._dests.get(uri)
        if dest is not None:
            log.warning("cannot probe %s: %s", uri, reason)
            self._record(dest, ProbeOutcome.TRANSPORT_ERROR, None, now)

    def owns(self, tx: str) -> bool:
        """Is ``tx`` one of our probe transactions (still alive in the layer)?"""
        return tx in self._probes

    def on_response(self, tx: str, status: int, now: float) -> None:
        """A response on probe transaction ``tx`` (provisional ones are ignored).

        Inside the probe window it is that window's verdict; after it (the transaction
        lingered) it is one more result: a centre answering again is recorded at once."""
        if status < 200:
            return
        dest = self._probes.pop(tx, None)
        if dest is None:
            return
        dest.probe_tx = None
        outcome = ProbeOutcome.UNAVAILABLE if status in MISS_STATUSES else ProbeOutcome.OK
        latency = now - dest.probe_sent_at if dest.awaiting and dest.fresh else None
        dest.awaiting = False
        self._record(dest, outcome, latency, now)
        self._recompute_deadline()

    def on_failure(self, tx: str, outcome: ProbeOutcome, now: float) -> None:
        """Probe transaction ``tx`` timed out (Timer F) or hit a transport error: a miss if a
        window is open, else (its miss already counted) just forgotten."""
        dest = self._probes.pop(tx, None)
        if dest is None:
            return
        dest.probe_tx = None
        if dest.awaiting:
            dest.awaiting = False
            self._record(dest, outcome, None, now)
        self._recompute_deadline()

    # ------------------------------------------------------------------ reporting

    def statuses(self) -> list[DestinationStatus]:
        """Every destination, in table order."""
        return [
            DestinationStatus(d.uri, d.centres, d.state, self._availability(d), d.since,
                              d.last_outcome, d.last_latency_s, d.latency_ewma_s, d.misses,
                              d.successes)
            for d in self._dests.values()
        ]

    # ------------------------------------------------------------------ internals

    def _record(self, dest: _Destination, outcome: ProbeOutcome, latency_s: float | None,
                now: float) -> None:
        dest.last_outcome = outcome
        if outcome.success:
            dest.successes += 1
            dest.misses = 0
            if latency_s is not None:
                dest.last_latency_s = latency_s
                previous = dest.latency_ewma_s
                dest.latency_ewma_s = latency_s if previous is None else (
                    LATENCY_EWMA_WEIGHT * latency_s + (1 - LATENCY_EWMA_WEIGHT) * previous)
            if dest.state is not ProbeState.UP and dest.successes >= self.settings.up_after:
                self._change(dest, ProbeState.UP, now)
        else:
            dest.misses += 1
            dest.successes = 0
            if dest.state is not ProbeState.DOWN and dest.misses >= self.settings.down_after:
                self._change(dest, ProbeState.DOWN, now)
        if self.observer is not None:
            self.observer.probe_finished(dest.centres[0], dest.uri, outcome, latency_s)
        self._publish(dest)

    def _change(self, dest: _Destination, state: ProbeState, now: float) -> None:
        log.log(logging.WARNING if state is ProbeState.DOWN else logging.INFO,
                "destination %s (%s) %s -> %s after %s", dest.uri, ",".join(dest.centres),
                dest.state, state, dest.last_outcome)
        dest.state = state
        dest.since = now

    def _override(self, dest: _Destination) -> OverrideState:
        strictest = OverrideState.AUTO
        for centre_id in dest.centres:
            found = self._overrides.get(centre_id)
            if found is not None and _STRICTNESS[found.state] > _STRICTNESS[strictest]:
                strictest = found.state
        return strictest

    def _availability(self, dest: _Destination) -> Availability:
        if self._overrides:
            override = self._override(dest)
            if override is OverrideState.DOWN:
                return Availability.FORCED_DOWN
            if override is OverrideState.DRAIN:
                return Availability.DRAINED
        return Availability(dest.state.value)

    def _publish(self, dest: _Destination) -> None:
        view = (self._availability(dest), dest.state is not ProbeState.DOWN)
        if view != dest.published and self.observer is not None:
            self.observer.destination_changed(dest.centres[0], dest.uri, *view)
        dest.published = view

    def _unpublish(self, dest: _Destination) -> None:
        if dest.published is not None and self.observer is not None:
            self.observer.destination_removed(dest.centres[0], dest.uri)
        dest.published = None

    def _recompute_deadline(self) -> None:
        if not self.started or not self.settings.enabled or not self._dests:
            self._next_due = None
            return
        self._next_due = min(
            min(d.next_probe_at, d.probe_deadline) if d.awaiting else d.next_probe_at
            for d in self._dests.values()
        )


def build_options(uri: str, *, via: str, from_host: str, call_id: str, from_tag: str,
                  max_forwards: int, user_agent: str) -> Request:
    """An out-of-dialog OPTIONS probe to ``uri`` (RFC 3261 §11.1): our own From tag and
    Call-ID, CSeq 1, Accept so the centre may describe its media capabilities."""
    headers = Headers()
    headers.add("Via", via)
    headers.add("Max-Forwards", str(max_forwards))
    headers.add("From", f"<sip:nodrute@{from_host}>;tag={from_tag}")
    headers.add("To", f"<{uri}>")
    headers.add("Call-ID", call_id)
    headers.add("CSeq", "1 OPTIONS")
    headers.add("Accept", "application/sdp")
    headers.add("User-Agent", user_agent)
    return Request("OPTIONS", uri, headers)
