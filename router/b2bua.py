"""The dispatcher: transaction-layer events in, calls created, found and retired (sans-IO).

It is the transaction user (RFC 3261 §17) for the whole node. Each event is routed by what
identifies it — a new INVITE creates a :class:`~router.call.Call`; a response finds its call by
client transaction; an in-dialog request by (Call-ID, our tag); a CANCEL by the INVITE server
transaction it cancels — and anything that belongs to no call gets the response the RFC asks for
(404 not ours, 481 no such dialog, 405 wrong method) from here. A fault in one call is answered
500 and logged; it never escapes to the event loop.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ivr.engine import MediaEvent
from municipality_map import RoutingSnapshot, Service
from sip.errors import SipParseError
from sip.events import (
    AckTimedOut,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
)
from sip.headers import parse_name_addr_shared
from sip.ids import new_branch, new_call_id, new_tag
from sip.message import Request, make_response
from sip.parser import check_max_forwards, check_require, validate_request
from sip.transaction import TransactionLayer

from . import legs, logs
from .admission import TrunkLoad
from .call import Call, CallState, Leg
from .call_record import CallRecord
from .caller_location import Locators
from .config import NodruteSettings, TrunkSettings
from .drain import DrainState, release_call
from .health import HealthMonitor, ProbeOutcome, build_options
from .hunt import Attempt, AttemptEnd
from .media import MediaContext
from .resolve import dialled_service
from .trunk_tls import trunk_identity_refusal

log = logging.getLogger("nodrute.b2bua")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_TRUNK_CACHE_MAX = 1024

_KNOWN_METHODS = frozenset({
    "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})
"""Methods of RFC 3261 and its extensions (RFC 3262, 6665, 3903, 6086, 3515, 3428, 3311) that
reach the last branch of the dispatcher: 405 rather than 501 Not Implemented."""

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
"""Option tags we accept in Require (RFC 3261 §8.2.2.3); none yet, so 100rel etc. get 420."""


class B2bua:
    """Transaction user for the node: owns the call table and nothing that does I/O."""

    def __init__(
        self,
        layer: TransactionLayer,
        settings: NodruteSettings,
        snapshot: RoutingSnapshot,
        *,
        port: int,
        on_call_ended: Callable[[CallRecord], None] | None = None,
        media: MediaContext | None = None,
        on_failover: Callable[[str, str, str, str], None] | None = None,
        on_hunt_exhausted: Callable[[str], None] | None = None,
        locators: Locators | None = None,
        on_routed: Callable[[str, float], None] | None = None,
    ) -> None:
        self.layer = layer
        self.settings = settings
        self.snapshot = snapshot
        """The active routing table; replaced whole (atomically) by a table switch."""
        self.via_host = settings.sip.via_host
        self.port = port
        self.tls_port: int | None = None
        """The TLS listener's port, put in Via/Contact of TLS legs (set once it is bound)."""
        self._on_call_ended = on_call_ended
        self._on_failover = on_failover
        """(service, from_centre, to_centre, reason) per failover step, for the metric."""
        self._on_hunt_exhausted = on_hunt_exhausted
        self._on_routed = on_routed
        """(service, seconds) per new call: INVITE taken to centre INVITE queued (or IVR on)."""
        self._trunks = _trunk_networks(settings.trunks)
        self._trunk_by_source: dict[str, TrunkSettings | None] = {}
        self._by_server_tx: dict[str, Call] = {}
        self._by_client_tx: dict[str, Call] = {}
        self._by_dialog: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self.media = media
        """The media engine, prompts and IVR flows when media is anchored here; None: SDP relay."""
        self._by_media_leg: dict[str, Call] = {}
        self._deadlines: list[tuple[float, int, Call]] = []
        self._seq = itertools.count()
        self.active_calls = 0
        self.counters: Counter[str] = Counter()
        """Plain counts for tests and the (later) metrics endpoint: outcome, defaults, rejects."""
        self.health = HealthMonitor(settings.health)
        """Centre URI up/down (OPTIONS probes, live failures, overrides): the hunt asks
        ``health.is_up(uri)`` and reports ``health.mark_failed(uri, reason, now)``."""
        self._health_snapshot: RoutingSnapshot | None = None
        self.drain: DrainState | None = None
        """Set by :meth:`start_drain` (SIGTERM): new INVITEs and OPTIONS get 503 + Retry-After;
        everything of the calls in progress goes on (router/drain.py)."""
        self.locators = locators or Locators()
        """Position and postcode indexes for caller location (none loaded: those sources off)."""
        self.trunk_loads: dict[str, TrunkLoad] = {}
        """Calls and out-of-dialog transactions per trunk name (``max_calls``,
        ``max_transactions``: 503 + Retry-After beyond them, router/admission.py)."""
        self.on_rejected: Callable[[str], None] | None = None
        """Told the reason of each 503 for a trunk over its bounds (the metric)."""

    # ----------------------------------------------------------------- what calls ask of us

    def via(self, transport: str, branch: str) -> str:
        port = self.tls_port if transport == "TLS" and self.tls_port else self.port
        return legs.via_value(transport, self.via_host, port, branch)

    def contact(self, transport: str) -> str:
        port = self.tls_port if transport == "TLS" and self.tls_port else self.port
        return legs.contact_value(self.via_host, port, transport)

    def bind_client_tx(self, tx: str, call: Call) -> None:
        self._by_client_tx[tx] = call

    def bind_dialog(self, call_id: str, local_tag: str, call: Call, leg: Leg) -> None:
        self._by_dialog[(call_id, local_tag)] = (call, leg)

    def unbind_dialog(self, call_id: str, local_tag: str) -> None:
        self._by_dialog.pop((call_id, local_tag), None)

    def bind_media(self, leg_ids: tuple[str, ...], call: Call) -> None:
        for leg_id in leg_ids:
            self._by_media_leg[leg_id] = call

    def unbind_media(self, leg_ids: tuple[str, ...]) -> None:
        for leg_id in leg_ids:
            self._by_media_leg.pop(leg_id, None)

    def handle_media_event(self, event: MediaEvent, now: float) -> None:
        """An event from the media engine, handed to the call owning its leg; never raises."""
        call = self._by_media_leg.get(event.leg_id)
        if call is None:
            return
        try:
            call.on_media_event(event, now)
        except Exception:
            log.exception("fault handling media event %r", event)
            self.counters["internal_errors"] += 1

    def schedule(self, call: Call) -> None:
        if call.deadline is None:
            return
        heap = self._deadlines
        heapq.heappush(heap, (call.deadline, next(self._seq), call))
        if len(heap) > 1024 and len(heap) > 2 * self.active_calls:
            # Answered calls clear their ring deadline but their heap entry (and so the Call)
            # would stay until it surfaces a whole ring timeout later: drop the stale ones now.
            self._deadlines = [entry for entry in heap if entry[2].deadline == entry[0]]
            heapq.heapify(self._deadlines)

    def note_default_route(self, service: Service, had_hint: bool) -> None:
        key = "unknown_municipality" if had_hint else "missing_municipality"
        self.counters[f"default_route:{service.value}:{key}"] += 1

    def destination_up(self, uri: str) -> bool:
        """Whether the hunt should prefer ``uri`` (health monitor; unknown URIs count as up)."""
        return self.health.is_up(uri)

    def destination_failed(self, uri: str, reason: str, now: float) -> None:
        """A live call found ``uri`` dead (no response, transport error, 503): one miss."""
        self.health.mark_failed(uri, reason, now)

    def destination_reachable(self, uri: str, now: float) -> None:
        """A live call got a response from ``uri``: one success."""
        self.health.mark_reachable(uri, now)

    def note_failover(self, service: Service, previous: Attempt, to_centre: str | None) -> None:
        """One step of a hunt: ``previous`` ended without an answer; ``to_centre`` is next."""
        if previous.end is None or previous.end in (AttemptEnd.ANSWERED, AttemptEnd.CALLER_GONE):
            return
        reason = previous.end.value
        self.counters[f"failover:{service.value}:{reason}"] += 1
        log.warning("failover service=%s from=%s (%s) to=%s reason=%s status=%s",
                    service.value, previous.centre_id, previous.uri, to_centre or "-", reason,
                    previous.status)
        if self._on_failover is not None:
            self._on_failover(service.value, previous.centre_id, to_centre or "none", reason)

    def note_hunt_exhausted(self, call: Call, now: float) -> None:
        """Every destination failed for ``call``: the worst outcome short of a lost call."""
        self.counters[f"hunt_exhausted:{call.service.value}"] += 1
        log.critical("NO CENTRE ANSWERED call_id=%s service=%s kommune=%s attempts=[%s]",
                     call.record.call_id, call.service.value, call.record.municipality,
                     "; ".join(a.summary() for a in call.hunt.attempts) if call.hunt else "")
        if self._on_hunt_exhausted is not None:
            self._on_hunt_exhausted(call.service.value)

    def note_no_centre(self, service: Service) -> None:
        self.counters[f"no_centre:{service.value}"] += 1
        log.error("no centre with a URI for service %s (check default_centre)", service.value)

    def call_ended(self, call: Call, now: float) -> None:
        """Retire a call: unbind its dialogs; client transactions unbind as they finish."""
        self._by_server_tx.pop(call.in_tx, None)
        self._by_dialog.pop((call.caller_call_id, call.caller_tag), None)
        self._by_dialog.pop((call.centre_call_id, call.centre_tag), None)
        self.active_calls -= 1
        self._trunk_load(call.trunk).calls -= 1
        record = call.record
        outcome = record.outcome.value
        self.counters[f"calls:{record.service}:{outcome}"] += 1
        if logs.call_summary_enabled():  # the fields are built only for a line written
            logs.call_summary(
                record, "call ended", state="ended", reason=record.end_reason,
                status=record.final_status, outcome=outcome,
                source=record.location_source,
                caller=logs.caller_for_log(call.invite, record.caller),
                attempts=[attempt.summary() for attempt in record.attempts],
                location=list(record.location_evidence),
            )  # fmt: skip
        if self._on_call_ended is not None:
            self._on_call_ended(record)

    # ----------------------------------------------------------------- events in

    def handle_event(self, event: object, now: float) -> None:
        """Act on one transaction-layer event; never raises."""
        try:
            self._dispatch(event, now)
        except Exception:
            log.exception("fault handling %r", event)
            self.counters["internal_errors"] += 1
            self._answer_after_fault(event, now)

    def _dispatch(self, event: object, now: float) -> None:
        if isinstance(event, _CLIENT_EVENTS) and self.health.owns(event.tx):
            self._on_probe_event(event, now)
        elif isinstance(event, ResponseReceived):
            call = self._client_tx_call(event.tx, final=event.response.status >= 200)
            if call is not None:
                call.on_response(event.tx, event.response, event.retransmission, now)
        elif isinstance(event, RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, CancelReceived):
            self._on_cancel(event, now)
        elif isinstance(event, TransactionTimedOut):
            call = self._client_tx_call(event.tx, final=True)
            if call is not None:
                call.on_timeout(event.tx, now)
        elif isinstance(event, TransportFailed):
            call = self._client_tx_call(event.tx, final=True)
            if call is not None:
                call.on_transport_failed(event.tx, now)
        elif isinstance(event, AckTimedOut):
            call = self._by_server_tx.get(event.tx)
            if call is not None:
                call.on_ack_timeout(now)

    def _client_tx_call(self, tx: str, *, final: bool) -> Call | None:
        return self._by_client_tx.pop(tx, None) if final else self._by_client_tx.get(tx)

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        to_tag = _to_tag(request)
        if event.tx is None:  # ACK for a 2xx: not a transaction, find its dialog
            bound = self._by_dialog.get((request.headers.get("Call-ID") or "", to_tag or ""))
            if bound is not None:
                bound[0].on_ack(bound[1], request, now)
            return
        if to_tag:
            bound = self._by_dialog.get((request.headers.get("Call-ID") or "", to_tag))
            if bound is None:
                self._respond(event.tx, request, 481, now)
            else:
                bound[0].on_request(bound[1], request, event.tx, now)
            return
        method = request.method
        if method != "INVITE" and self._refuse_malformed(event, now):
            return
        if self.drain is not None and method in ("INVITE", "OPTIONS"):
            self._refuse_while_draining(event, now)
        elif self._trunk_busy(event, now):
            pass  # answered 503 + Retry-After
        elif method == "INVITE":
            self._on_invite(event, now)
        elif method == "OPTIONS":
            self._respond(event.tx, request, 200, now, extra=[
                ("Allow", legs.ALLOW), ("Accept", "application/sdp"),
                ("Supported", ""), ("Server", self.settings.sip.user_agent),
            ])
        elif method == "BYE":
            self._respond(event.tx, request, 481, now)
        else:
            # §8.2.1: 405 for a method we know but do not take here; 501 for one we do not know
            status = 405 if method in _KNOWN_METHODS else 501
            self._respond(event.tx, request, status, now, extra=[("Allow", legs.ALLOW)])

    def _refuse_malformed(self, event: RequestReceived, now: float) -> bool:
        """The UAS checks of §8.2 for a request outside any dialog (the INVITE makes them in
        :meth:`_on_invite`): 400 for a malformed header the parser leaves as text (RFC 4475
        §3.1.2.13 to §3.1.2.15), 420 for an unsupported Require (§8.2.2.3, RFC 4475 §3.3.5)."""
        assert event.tx is not None
        try:
            validate_request(event.request)
            check_require(event.request, SUPPORTED_EXTENSIONS)
        except SipParseError as err:
            self._respond(event.tx, event.request, err.status, now, reason=err.reason,
                          extra=err.extra_headers)
            return True
        return False

    def _on_invite(self, event: RequestReceived, now: float) -> None:
        # A real clock: ``now`` is read once per datagram, so it cannot time the routing step.
        taken = perf_counter() if self._on_routed is not None else 0.0
        request = event.request
        assert event.tx is not None
        try:
            validate_request(request)
            check_max_forwards(request)
            check_require(request, SUPPORTED_EXTENSIONS)
            dialled = dialled_service(request)
        except SipParseError as err:
            self._respond(event.tx, request, err.status, now, reason=err.reason,
                          extra=err.extra_headers)
            return
        if dialled is None:
            self.counters["rejected:not_emergency_number"] += 1
            self._respond(event.tx, request, 404, now)
            return
        trunk = self._trunk_for(event.source[0])
        if trunk is None:
            self.counters["rejected:unknown_source"] += 1
            self._respond(event.tx, request, 403, now)
            return
        refusal = trunk_identity_refusal(trunk, event.transport, event.peer)
        if refusal is not None:  # mutual TLS (router/trunk_tls.py); a TLS peer is not spoofed
            self.counters["rejected:tls_identity"] += 1
            if self.on_rejected is not None:
                self.on_rejected("tls_identity")
            log.warning("INVITE from %s:%s refused: %s", *event.source, refusal)
            self._respond(event.tx, request, 403, now)
            return
        call = Call(self, request, event.tx, event.transport, dialled, trunk, self.snapshot, now)
        self._by_server_tx[event.tx] = call
        self.active_calls += 1
        self._trunk_load(trunk).calls += 1
        call.start(now)
        if self._on_routed is not None:
            self._on_routed(dialled.service.value, perf_counter() - taken)

    def _on_cancel(self, event: CancelReceived, now: float) -> None:
        # RFC 3261 §9.2: answer the CANCEL itself first, 481 if there is nothing to cancel.
        call = self._by_server_tx.get(event.invite_tx) if event.invite_tx else None
        self._respond(event.tx, event.request, 200 if call is not None else 481, now)
        if call is not None:
            call.on_cancel(event.request, now)

    def _trunk_for(self, source_ip: str) -> TrunkSettings | None:
        # Memoised per source address: a node hears from a handful of carrier SBCs, and the
        # ipaddress parse + network tests cost more than the rest of the INVITE's routing.
        # A config reload (reconfigure) empties it; the size cap bounds what strangers can add.
        cache = self._trunk_by_source
        if source_ip in cache:
            return cache[source_ip]
        trunk = self._match_trunk(source_ip)
        if len(cache) < _TRUNK_CACHE_MAX:
            cache[source_ip] = trunk
        return trunk

    def _match_trunk(self, source_ip: str) -> TrunkSettings | None:
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return None
        for networks, trunk in self._trunks:
            if any(address in net for net in networks):
                return trunk
        return None

    def _respond(self, tx: str, request: Request, status: int, now: float, *,
                 reason: str = "", extra: list[tuple[str, str]] | None = None) -> None:
        to_tag = None if status == 100 or _to_tag(request) else new_tag()
        response = make_response(request, status, reason, to_tag=to_tag, extra=extra or [])
        self.layer.send_response(tx, response, now)

    def _answer_after_fault(self, event: Any, now: float) -> None:
        tx = getattr(event, "tx", None)
        request = getattr(event, "request", None)
        if isinstance(request, Request) and tx is not None and request.method != "ACK":
            call = self._by_server_tx.pop(tx, None)
            try:
                self._respond(tx, request, 500, now)
            except Exception:
                log.exception("could not answer 500 after a fault")
            if call is not None and call.state is not CallState.ENDED:
                call.state = CallState.ENDED
                self.active_calls -= 1
                self._trunk_load(call.trunk).calls -= 1

    # ----------------------------------------------------------------- per-trunk bounds

    def _trunk_load(self, trunk: TrunkSettings) -> TrunkLoad:
        load = self.trunk_loads.get(trunk.name)
        if load is None:
            load = self.trunk_loads[trunk.name] = TrunkLoad()
        return load

    def _trunk_busy(self, event: RequestReceived, now: float) -> bool:
        """A new out-of-dialog request from a trunk over its bounds: answer 503 + Retry-After
        (RFC 3261 §21.5.4; the carrier tries another node) and say True."""
        trunk = self._trunk_for(event.source[0])
        if trunk is None or event.tx is None:
            return False
        reason = self._trunk_load(trunk).admit(
            event.tx, event.request.method == "INVITE", trunk, self.layer.alive)
        if reason is None:
            return False
        self.counters[f"rejected:{reason.value}"] += 1
        if self.on_rejected is not None:
            self.on_rejected(reason.value)
        retry_after = str(self.settings.security.busy_retry_after_s)
        self._respond(event.tx, event.request, 503, now, extra=[("Retry-After", retry_after)])
        return True

    # ----------------------------------------------------------------- drain and reload

    def start_drain(self, now: float, retry_after_s: int) -> DrainState:
        """Close the gate for new calls (SIGTERM, router/drain.py); calls in progress go on."""
        if self.drain is None:
            self.drain = DrainState(now, retry_after_s, self.active_calls)
        return self.drain

    def _refuse_while_draining(self, event: RequestReceived, now: float) -> None:
        drain = self.drain
        assert drain is not None and event.tx is not None
        if event.request.method == "INVITE":
            drain.refused += 1
        else:
            drain.options_refused += 1
        self._respond(event.tx, event.request, 503, now, extra=drain.refusal_headers())

    def release_calls(self, text: str, now: float) -> int:
        """End every call in progress from the node's side (drain timeout, second signal)."""
        drain = self.drain or self.start_drain(now, self.settings.sip.drain_retry_after_s)
        released = 0
        for call in list(self._by_server_tx.values()):
            try:
                released += release_call(call, drain, text, now)
            except Exception:
                log.exception("fault releasing call %s", call.record.call_id)
                self.counters["internal_errors"] += 1
        return released

    @property
    def requests_pending(self) -> bool:
        """Requests calls sent (BYE, CANCEL, relays) still waiting for a final response.

        An INVITE of a call that has ended (an attempt given up on a silent centre, kept by
        Timer B for 32 s) is not waited for: nobody needs its answer."""
        return any(call.state is not CallState.ENDED or not tx.startswith("c|INVITE|")
                   for tx, call in self._by_client_tx.items())

    def reconfigure(self, settings: NodruteSettings, now: float) -> None:
        """A reloaded config (SIGHUP, router/reload.py decides what may change) for what comes
        next: new calls route with it, hunts started from now on take its timers. A call keeps
        its trunk, centre and hunt timers; with media, the IVR flows of calls already in one."""
        self.settings = settings
        self._trunks = _trunk_networks(settings.trunks)
        self._trunk_by_source = {}
        self.health.settings = settings.health
        if self.health.started:
            self.health.set_destinations(self.snapshot.centres.values(), now)
        if self.media is not None:
            self.media = MediaContext(self.media.engine, self.media.catalogue, settings.ivr)

    # ----------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and heap[0][2].deadline != heap[0][0]:
            heapq.heappop(heap)  # lazily drop deadlines a call has since cleared or moved
        probe_due = self.health.next_deadline()
        if probe_due is not None and (not heap or probe_due < heap[0][0]):
            return probe_due
        return heap[0][0] if heap else None

    def handle_timers(self, now: float) -> None:
        if self.health.started:
            self._run_health(now)
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, _, call = heapq.heappop(heap)
            if call.deadline == deadline:
                try:
                    call.on_deadline(now)
                except Exception:
                    log.exception("fault in call timer")
                    self.counters["internal_errors"] += 1

    # ----------------------------------------------------------------- centre health probes

    def start_health(self, now: float) -> None:
        """Begin probing the centres of the table in force (the node calls this once, serving)."""
        self._health_snapshot = self.snapshot
        self.health.start(self.snapshot.centres.values(), now)

    def _run_health(self, now: float) -> None:
        health = self.health
        if self.snapshot is not self._health_snapshot:  # a table switch: state survives it
            self._health_snapshot = self.snapshot
            health.set_destinations(self.snapshot.centres.values(), now)
        for uri in health.due_probes(now):
            try:
                self._send_probe(uri, now)
            except (SipParseError, ValueError) as err:
                health.probe_not_sent(uri, str(err), now)

    def _send_probe(self, uri: str, now: float) -> None:
        host, port, transport = legs.uri_destination(uri)
        probe = build_options(
            uri, via=self.via(transport, new_branch()), from_host=self.via_host,
            call_id=new_call_id(self.via_host), from_tag=new_tag(),
            max_forwards=self.settings.sip.max_forwards, user_agent=self.settings.sip.user_agent,
        )  # fmt: skip
        self.health.probe_sent(uri, self.layer.send_request(probe, (host, port), transport, now),
                               now)

    def _on_probe_event(self, event: ResponseReceived | TransactionTimedOut | TransportFailed,
                        now: float) -> None:
        if isinstance(event, ResponseReceived):
            self.health.on_response(event.tx, event.response.status, now)
        elif isinstance(event, TransportFailed):
            self.health.on_failure(event.tx, ProbeOutcome.TRANSPORT_ERROR, now)
        else:
            self.health.on_failure(event.tx, ProbeOutcome.TIMEOUT, now)


_CLIENT_EVENTS = (ResponseReceived, TransactionTimedOut, TransportFailed)


def _trunk_networks(trunks: list[TrunkSettings]) -> list[tuple[list[Network], TrunkSettings]]:
    return [([ipaddress.ip_network(c, strict=False) for c in t.sources], t) for t in trunks]


def _to_tag(request: Request) -> str | None:
    value = request.headers.get("To")
    if not value or "tag=" not in value:
        return None
    try:
        return parse_name_addr_shared(value, "To").tag
    except SipParseError:
        return None
