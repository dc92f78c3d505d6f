"""The per-call histograms and counters move as calls go through the real dispatcher.

Sans-IO harness (fake clock) with a NodeMetrics wired as router/app.py wires it. Sample table:
a 113 call for 0301 goes to AMK-OSLO (5110), its backup is AMK-INNLANDET (5106).
"""

from __future__ import annotations

from b2bua_harness import (
    CARRIER,
    SDP_ANSWER,
    Harness,
    caller_cancel,
    caller_invite,
    dest_of,
    in_dialog_request,
    response_to,
)

from municipality_map import RoutingSnapshot
from router.b2bua import B2bua
from router.call_record import CallRecord
from router.config import NodruteSettings
from router.metrics import NodeMetrics
from sip.message import Request, Response
from sip.timers import TimerConfig
from sip.transaction import TransactionLayer

OSLO, INNLANDET = 5110, 5106


def metered(snapshot: RoutingSnapshot) -> tuple[Harness, NodeMetrics]:
    layer = TransactionLayer(TimerConfig())
    metrics = NodeMetrics()
    records: list[CallRecord] = []

    def ended(record: CallRecord) -> None:
        records.append(record)
        metrics.call_ended(record)

    b2bua = B2bua(layer, NodruteSettings(), snapshot, port=5060, on_call_ended=ended,
                  on_failover=metrics.failover, on_hunt_exhausted=metrics.hunt_exhausted,
                  on_routed=metrics.routed)
    return Harness(b2bua, layer, records=records), metrics


def value(metrics: NodeMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def centre_invite(h: Harness, port: int) -> Request:
    [sent] = [s for s in h.take() if isinstance(s.message, Request)
              and s.message.method == "INVITE" and s.dest[1] == port]
    assert isinstance(sent.message, Request)
    return sent.message


def caller_final(h: Harness, status: int) -> Response:
    sent = h.take_one(status, CARRIER)
    assert isinstance(sent.message, Response)
    return sent.message


def test_answered_call_observes_routing_post_dial_delay_and_answer_time(
        snapshot: RoutingSnapshot) -> None:
    h, metrics = metered(snapshot)
    h.feed(caller_invite(1))
    invite = centre_invite(h, OSLO)
    h.advance(0.4)
    h.feed(response_to(invite, 180), source=dest_of(invite.uri))
    h.advance(6.6)  # answered 7 s after the centre INVITE
    h.feed(response_to(invite, 200, body=SDP_ANSWER), source=dest_of(invite.uri))
    ok = caller_final(h, 200)
    assert value(metrics, "nodrute_post_dial_delay_seconds_count", service="113") == 0  # not yet
    h.feed(in_dialog_request("ACK", ok, 1, 1))
    h.feed(in_dialog_request("BYE", ok, 1, 2))

    assert value(metrics, "nodrute_routing_decision_seconds_count", service="113") == 1
    assert value(metrics, "nodrute_routing_decision_seconds_sum", service="113") > 0
    pdd = {"service": "113"}
    assert value(metrics, "nodrute_post_dial_delay_seconds_count", **pdd) == 1
    assert abs(value(metrics, "nodrute_post_dial_delay_seconds_sum", **pdd) - 0.4) < 1e-9
    assert value(metrics, "nodrute_post_dial_delay_seconds_bucket", le="0.25", **pdd) == 0
    assert value(metrics, "nodrute_post_dial_delay_seconds_bucket", le="0.5", **pdd) == 1
    answer = {"service": "113", "centre": "AMK-OSLO"}
    assert value(metrics, "nodrute_answer_seconds_count", **answer) == 1
    assert abs(value(metrics, "nodrute_answer_seconds_sum", **answer) - 7.0) < 1e-9
    assert value(metrics, "nodrute_answer_seconds_bucket", le="5.0", **answer) == 0
    assert value(metrics, "nodrute_answer_seconds_bucket", le="7.5", **answer) == 1
    assert value(metrics, "nodrute_calls_total", service="113", outcome="answered") == 1
    assert value(metrics, "nodrute_location_source_total", service="113", source="header") == 1
    # 7 s <= 10 s: within the 113 target, in both windows
    for window in ("15m", "1h"):
        assert value(metrics, "nodrute_answer_indicator_ratio", service="113",
                     centre="AMK-OSLO", window=window) == 1.0
        assert value(metrics, "nodrute_answer_window_calls", service="113", centre="AMK-OSLO",
                     window=window, result="answered_within_target") == 1


def test_answer_time_after_failover_counts_from_the_first_centre_invite(
        snapshot: RoutingSnapshot) -> None:
    h, metrics = metered(snapshot)
    h.feed(caller_invite(2))
    first = centre_invite(h, OSLO)
    h.advance(1.0)
    h.feed(response_to(first, 503), source=dest_of(first.uri))
    second = centre_invite(h, INNLANDET)
    h.advance(0.5)
    h.feed(response_to(second, 180), source=dest_of(second.uri))
    h.advance(10.0)
    h.feed(response_to(second, 200, body=SDP_ANSWER), source=dest_of(second.uri))
    ok = caller_final(h, 200)
    h.feed(in_dialog_request("ACK", ok, 2, 1))
    h.feed(in_dialog_request("BYE", ok, 2, 2))

    answer = {"service": "113", "centre": "AMK-INNLANDET"}
    assert abs(value(metrics, "nodrute_answer_seconds_sum", **answer) - 11.5) < 1e-9
    assert value(metrics, "nodrute_answer_seconds_count", service="113",
                 centre="AMK-OSLO") == 0
    assert value(metrics, "nodrute_failover_total", service="113", from_centre="AMK-OSLO",
                 to_centre="AMK-INNLANDET", reason="rejected") == 1
    # the caller's first 18x is the backup's ringing, 1.5 s after its INVITE
    assert abs(value(metrics, "nodrute_post_dial_delay_seconds_sum", service="113") - 1.5) < 1e-9
    assert value(metrics, "nodrute_answer_window_calls", service="113", centre="AMK-INNLANDET",
                 window="15m", result="answered_late") == 1
    assert value(metrics, "nodrute_answer_indicator_ratio", service="113",
                 centre="AMK-INNLANDET", window="15m") == 0.0


def test_abandoned_call_has_post_dial_delay_but_no_answer_time(
        snapshot: RoutingSnapshot) -> None:
    h, metrics = metered(snapshot)
    h.feed(caller_invite(3, "sip:116117@127.0.0.1", kommune="0301"))
    invite = centre_invite(h, 5201)
    h.advance(0.05)
    h.feed(response_to(invite, 180), source=dest_of(invite.uri))
    h.advance(30)
    h.feed(caller_cancel(3))

    assert value(metrics, "nodrute_routing_decision_seconds_count", service="116117") == 1
    assert value(metrics, "nodrute_post_dial_delay_seconds_bucket", service="116117",
                 le="0.05") == 1
    assert value(metrics, "nodrute_calls_total", service="116117", outcome="abandoned") == 1
    assert metrics.registry.get_sample_value("nodrute_answer_seconds_count",
                                             {"service": "116117", "centre": "LVS-0301"}) is None
    # counted beside the share (which is over answered calls: none yet, so no share)
    labels = {"service": "116117", "centre": "LVS-0301", "window": "1h"}
    assert value(metrics, "nodrute_answer_indicator_calls", **labels) == 0
    assert metrics.registry.get_sample_value("nodrute_answer_indicator_ratio", labels) is None
    assert value(metrics, "nodrute_answer_window_calls", result="abandoned", **labels) == 1


def test_calls_refused_before_routing_are_not_timed(snapshot: RoutingSnapshot) -> None:
    h, metrics = metered(snapshot)
    h.feed(caller_invite(4, "sip:22225555@127.0.0.1"))  # not an emergency number: 404
    assert caller_final(h, 404)
    assert metrics.registry.get_sample_value("nodrute_routing_decision_seconds_count",
                                             {"service": "113"}) is None
    assert list(metrics.answer_windows.totals()) == []
