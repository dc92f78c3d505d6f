"""Prometheus metrics of a node, in one place, and the ``/metrics`` HTTP endpoint.

Each node owns a :class:`NodeMetrics` with its own registry (tests start several side by side).
Labels are bounded: a service (2 values), an outcome (3), the active table version (1 at a
time: the info gauge is cleared before the new version is set). Never a caller or Call-ID.
The HTTP endpoint is prometheus_client's own server on a daemon thread, off the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from .call_record import CallRecord

log = logging.getLogger("nodrute.metrics")


class NodeMetrics:
    """The metric objects of one router node."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
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
        self.calls = Counter(
            "nodrute_calls", "Calls ended, by service and outcome.", ["service", "outcome"],
            registry=r,
        )  # fmt: skip
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
        self.calls.labels(service=record.service, outcome=record.outcome.value).inc()

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
