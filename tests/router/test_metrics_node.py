"""NodeMetrics: bounded labels, one table-info series at a time, and the /metrics endpoint."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

from router.call_record import CallRecord, TerminatedReason
from router.metrics import NodeMetrics


def test_only_the_active_table_has_an_info_series() -> None:
    metrics = NodeMetrics()
    metrics.table_switched("v1", "a" * 64, datetime(2020, 1, 7, 8, tzinfo=UTC))
    metrics.table_switched("v2", "b" * 64, datetime(2020, 1, 7, 9, tzinfo=UTC))
    reg = metrics.registry
    assert reg.get_sample_value("nodrute_routing_table_info",
                                {"version": "v2", "sha256": "b" * 64}) == 1
    assert reg.get_sample_value("nodrute_routing_table_info",
                                {"version": "v1", "sha256": "a" * 64}) is None
    assert reg.get_sample_value("nodrute_routing_table_activated_timestamp_seconds") == (
        datetime(2020, 1, 7, 9, tzinfo=UTC).timestamp())


def test_calls_are_counted_by_service_and_outcome() -> None:
    metrics = NodeMetrics()
    answered = CallRecord("c1", "113", "default", "sip:1@x", 0.0, answered_at=1.0,
                          end_reason=TerminatedReason.CALLER_BYE)
    cancelled = CallRecord("c2", "116117", "default", "sip:2@x", 0.0,
                           end_reason=TerminatedReason.CALLER_CANCEL)
    for record in (answered, answered, cancelled):
        metrics.call_ended(record)
    reg = metrics.registry
    assert reg.get_sample_value("nodrute_calls_total",
                                {"service": "113", "outcome": "answered"}) == 2
    assert reg.get_sample_value("nodrute_calls_total",
                                {"service": "116117", "outcome": "abandoned"}) == 1
    active = [3]
    metrics.track_active_calls(lambda: active[0])
    assert reg.get_sample_value("nodrute_active_calls") == 3


def test_metrics_endpoint_serves_the_registry() -> None:
    metrics = NodeMetrics()
    metrics.table_switched("sample-2024", "c" * 64, datetime(2024, 1, 1, tzinfo=UTC))
    metrics.reload_failed()
    port = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    assert f'nodrute_routing_table_info{{sha256="{"c" * 64}",version="sample-2024"}} 1.0' in text
    assert "nodrute_routing_table_reload_failures_total 1.0" in text
