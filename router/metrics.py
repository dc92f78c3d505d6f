"""Prometheus metrics of a node, in one place, and the ``/metrics`` HTTP endpoint.

Each node owns a :class:`NodeMetrics` with its own registry (tests start several side by side).
Labels are bounded: a service (2 values), an outcome (3), a centre of the table, a SIP method or
status code from fixed lists (anything else is bucketed), the active table version (1 at a
time: the info gauge is cleared before the new version is set). Never a caller, Call-ID or
municipality number. The HTTP endpoint is prometheus_client's own server on a daemon thread,
off the event loop.

Cost on the call path (1,500 calls/s): SIP messages are counted in plain lists
(router/sip_traffic.py: a dict lookup and an int increment per message, turned into samples at
scrape time); per-call series bind their label children on first use, so no call formats label
strings. Call durations are observed when the call ends, from its record.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from .answer_time import AnswerTimeCollector, AnswerTimeSettings, AnswerTimeWindows
from .call_record import CallRecord
from .health import Availability, ProbeOutcome
from .plain_metrics import PlainCounter, PlainHistogram
from .sip_traffic import SipTraffic

log = logging.getLogger("nodrute.metrics")



ROUTING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0)
POST_DIAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0,
                     30.0)
ANSWER_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
                  180.0, 240.0, 300.0)
"""Includes the two targets (10 s for 113, 120 s for 116117) as bucket edges."""


class NodeMetrics:
    """The metric objects of one router node."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 answer_time: AnswerTimeSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.table_info = Gauge(
            "nodrute_routing_table_info",
            "The routing table version in force on this node (value 1).",
            ["version", "sha256"], registry=r,
        )  # fmt: skip
        self.table_activated = Gauge(
            "nodrute_routing_table_activated_timestamp_seconds",
            "Wall-clock time this node switched to the table in force (Unix seconds).",
            registry=r,
        )
        self.table_reload_failures = Counter(
            "nodrute_routing_table_reload_failures",
            "Attempts to read or switch the routing table that failed (database, hash, MQTT).",
            registry=r,
        )
        self.active_calls = Gauge(
            "nodrute_active_calls", "Calls in progress on this node.", registry=r
        )
        self.calls = PlainCounter(
            "nodrute_calls", "Calls ended, by service and outcome.", ["service", "outcome"],
            registry=r,
        )  # fmt: skip
        self.location_sources = PlainCounter(
            "nodrute_location_source",
            "Calls by the location source that decided their route (header, uri_param, prefix, "
            "geo, postcode, default).", ["service", "source"], registry=r,
        )  # fmt: skip
        self.location_disagreements = PlainCounter(
            "nodrute_location_disagreements",
            "Calls whose carrier municipality and PIDF-LO position named different "
            "municipalities.", ["service"], registry=r,
        )  # fmt: skip
        self.failovers = Counter(
            "nodrute_failover",
            "Hunt steps: an attempt at from_centre ended without an answer (reason) and the "
            "call went on to to_centre ('none': nothing left).",
            ["service", "from_centre", "to_centre", "reason"], registry=r,
        )  # fmt: skip
        self.hunts_exhausted = Counter(
            "nodrute_hunt_exhausted",
            "CRITICAL: calls for which every destination of the plan failed.", ["service"],
            registry=r,
        )  # fmt: skip
        # Centre health (router/health.py): one series per centre URI of the table (~120).
        self.destination_up = Gauge(
            "nodrute_destination_up",
            "1 if new calls may go to this centre URI (probes up or not yet known, no drain or "
            "forced-down override), else 0.", ["centre", "uri"], registry=r,
        )  # fmt: skip
        self.destination_reachable = Gauge(
            "nodrute_destination_reachable",
            "What the OPTIONS probes say, overrides aside: 1 up or unknown, 0 down.",
            ["centre", "uri"], registry=r,
        )  # fmt: skip
        self.destination_since = Gauge(
            "nodrute_destination_state_since_timestamp_seconds",
            "Wall-clock time the destination's effective state last changed (Unix seconds).",
            ["centre", "uri", "state"], registry=r,
        )  # fmt: skip
        self.probe_latency = Gauge(
            "nodrute_destination_probe_latency_seconds",
            "Round-trip time of the last answered OPTIONS probe.", ["centre", "uri"], registry=r,
        )  # fmt: skip
        self.probes = Counter(
            "nodrute_destination_probes",
            "OPTIONS probe results, and live call results reported by the hunt "
            "(call_failure, call_response), by centre and outcome.",
            ["centre", "outcome"], registry=r,
        )  # fmt: skip
        self.draining = Gauge(
            "nodrute_draining",
            "1 while the node drains (SIGTERM: new calls get 503, calls in progress go on).",
            registry=r,
        )
        self.config_reload_failures = Counter(
            "nodrute_config_reload_failures",
            "SIGHUP reloads refused (unreadable or invalid file); the running config stays.",
            registry=r,
        )
        self.rejected = Counter(
            "nodrute_rejected",
            "Messages given no service, by reason: unknown_source, rate_limited, blocked "
            "(non-trunk sources, dropped or 403 unparsed), trunk_calls, trunk_transactions "
            "(a trunk over its bounds, 503 + Retry-After), tls_identity (a mutual-TLS trunk's "
            "request without its certificate, 403), tls_handshake (a failed TLS handshake).",
            ["reason"], registry=r,
        )  # fmt: skip
        self._rejected_by: dict[str, Counter] = {}
        self.blocked_sources = Gauge(
            "nodrute_blocked_sources",
            "Non-trunk source addresses blocked now for staying over their packet rate.",
            registry=r,
        )
        self.call_records = Counter(
            "nodrute_call_records",
            "Call records by what became of them: written (to the database), spilled (to the "
            "local spill file: database down or queue full), replayed (spill file -> database), "
            "lost (not even the spill file could be written).", ["result"], registry=r,
        )  # fmt: skip
        self.call_records_queue = Gauge(
            "nodrute_call_records_queue_depth",
            "Call records waiting in memory for the database.", registry=r,
        )  # fmt: skip
        self.routing_decision = PlainHistogram(
            "nodrute_routing_decision_seconds",
            "Router time for a new call's INVITE: from the dispatcher taking it (parsed, "
            "transaction created) to the first centre INVITE queued — or, where an IVR flow "
            "runs first, the flow started. Location, table lookup and INVITE building.",
            ["service"], buckets=ROUTING_BUCKETS, registry=r,
        )  # fmt: skip
        self.post_dial_delay = PlainHistogram(
            "nodrute_post_dial_delay_seconds",
            "Post-dial delay: the caller's INVITE in to the first 18x sent to the caller (the "
            "centre's ringing relayed, or the IVR's 183). Observed when the call ends; calls "
            "that got no 18x are not observed.", ["service"], buckets=POST_DIAL_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.answer = PlainHistogram(
            "nodrute_answer_seconds",
            "Time to answer at the centre: first centre INVITE (the end of any IVR flow) to "
            "the 200 OK; failover time included, IVR time excluded. Per service and the centre "
            "that answered; observed when the call ends.",
            ["service", "centre"], buckets=ANSWER_BUCKETS, registry=r,
        )  # fmt: skip
        self.traffic = SipTraffic()
        """SIP messages by method/code: the transport's ``traffic`` hook, and a collector."""
        r.register(self.traffic)
        self.answer_windows = AnswerTimeWindows(answer_time, clock)
        r.register(AnswerTimeCollector(self.answer_windows))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ feeding

    def table_switched(self, version: str, sha256: str, at: datetime) -> None:
        """Record that ``version`` is now in force (one info series at a time)."""
        self.table_info.clear()
        self.table_info.labels(version=version, sha256=sha256).set(1)
        self.table_activated.set(at.timestamp())

    def reload_failed(self) -> None:
        self.table_reload_failures.inc()

    def track_active_calls(self, count: Callable[[], int]) -> None:
        """Read the number of calls in progress from ``count`` at each scrape."""
        self.active_calls.set_function(lambda: float(count()))

    def call_ended(self, record: CallRecord) -> None:
        """The B2BUA's ``on_call_ended`` hook."""
        service = record.service
        self.calls.labels(service, record.outcome.value).inc()
        self.location_sources.labels(service, record.location_source).inc()
        if record.location_disagreement:
            self.location_disagreements.labels(service).inc()
        started = record.started_at
        if record.first_provisional_at is not None:
            self.post_dial_delay.labels(service).observe(
                record.first_provisional_at - started)
        if record.answered_at is not None:
            hunt_started = record.hunt_started_at
            self.answer.labels(service, record.centre_id or "none").observe(
                record.answered_at - (started if hunt_started is None else hunt_started))
        self.answer_windows.add(record)

    def routed(self, service: str, seconds: float) -> None:
        """The B2BUA's ``on_routed`` hook: a new call's routing step took ``seconds``."""
        self.routing_decision.labels(service).observe(seconds)

    def call_records_moved(self, result: str, count: int) -> None:
        """router.records.RecordsObserver: ``count`` records written/spilled/replayed/lost."""
        self.call_records.labels(result=result).inc(count)

    def track_records_queue(self, depth: Callable[[], int]) -> None:
        self.call_records_queue.set_function(lambda: float(depth()))

    def failover(self, service: str, from_centre: str, to_centre: str, reason: str) -> None:
        """The B2BUA's ``on_failover`` hook."""
        self.failovers.labels(service=service, from_centre=from_centre, to_centre=to_centre,
                              reason=reason).inc()

    def hunt_exhausted(self, service: str) -> None:
        """The B2BUA's ``on_hunt_exhausted`` hook."""
        self.hunts_exhausted.labels(service=service).inc()

    def note_rejected(self, reason: str) -> None:
        """Admission and trunk bounds: one message refused (per packet under a flood: cheap)."""
        child = self._rejected_by.get(reason)
        if child is None:
            child = self._rejected_by[reason] = self.rejected.labels(reason=reason)
        child.inc()

    def track_blocked_sources(self, count: Callable[[], int]) -> None:
        self.blocked_sources.set_function(lambda: float(count()))

    # ------------------------------------------------------------------ centre health

    def destination_changed(
        self, centre: str, uri: str, availability: Availability, reachable: bool
    ) -> None:
        """:class:`router.health.HealthObserver`: a URI's effective state changed."""
        self.destination_up.labels(centre=centre, uri=uri).set(1 if availability.usable else 0)
        self.destination_reachable.labels(centre=centre, uri=uri).set(1 if reachable else 0)
        self._clear_since(centre, uri)
        self.destination_since.labels(centre=centre, uri=uri, state=availability.value).set(
            time.time())

    def destination_removed(self, centre: str, uri: str) -> None:
        """The URI left the routing table: drop its series."""
        for gauge in (self.destination_up, self.destination_reachable, self.probe_latency):
            with contextlib.suppress(KeyError):
                gauge.remove(centre, uri)
        self._clear_since(centre, uri)

    def probe_finished(
        self, centre: str, uri: str, outcome: ProbeOutcome, latency_s: float | None
    ) -> None:
        self.probes.labels(centre=centre, outcome=outcome.value).inc()
        if latency_s is not None:
            self.probe_latency.labels(centre=centre, uri=uri).set(latency_s)

    def _clear_since(self, centre: str, uri: str) -> None:
        for state in Availability:
            with contextlib.suppress(KeyError):
                self.destination_since.remove(centre, uri, state.value)

    # ------------------------------------------------------------------ serving

    def serve(self, host: str, port: int) -> int:
        """Start the ``/metrics`` endpoint; returns the bound port (``port`` 0 picks one)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        bound: int = server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
