"""Answer-time indicators over sliding windows, against a hand-computed set on a fake clock.

Windows of 60 s and 300 s in 10 s slots; targets 113: 10 s, 116117: 120 s. The share is over
answered calls (the default, as AMK statistics); 116117's may be set to count every call offered
to a centre (Helsedirektoratet's legevakt figure).
"""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from router.answer_time import AnswerTimeSettings, AnswerTimeWindows, window_label
from router.call_record import CallRecord, TerminatedReason
from router.metrics import NodeMetrics

SETTINGS = AnswerTimeSettings(windows_s=[60, 300], slot_s=10)


class Clock:
    def __init__(self) -> None:
        self.t = 10_000.0  # a multiple of the slot width: slot edges fall on whole tens below

    def __call__(self) -> float:
        return self.t

    def at(self, offset: float) -> None:
        self.t = 10_000.0 + offset


def record(service: str, centre: str, *, hunt: float | None = 0.0, answer: float | None = None,
           reason: TerminatedReason = TerminatedReason.CALLER_BYE,
           started: float = 0.0) -> CallRecord:
    """A call that started at ``started``, rang a centre from ``hunt``, was answered ``answer``
    seconds after that (None: never)."""
    return CallRecord(
        "id", service, "default", "sip:caller@x", started, centre_id=centre,
        hunt_started_at=hunt, answered_at=None if answer is None or hunt is None else hunt + answer,
        end_reason=reason,
    )


def feed(metrics: NodeMetrics, clock: Clock) -> None:
    """The hand-computed set (``clock`` offsets: when each call ended)."""
    calls = [
        (0, record("113", "AMK-A", answer=4.0)),  # within
        (5, record("113", "AMK-A", answer=12.0)),  # late
        (100, record("113", "AMK-A", answer=10.0)),  # exactly the target: within
        (100, record("113", "AMK-A", reason=TerminatedReason.CALLER_CANCEL)),  # abandoned
        (250, record("113", "AMK-A", reason=TerminatedReason.CENTRE_REJECTED)),  # failed
        # 40 s in the IVR, then 100 s ringing: within 120 s (140 s counting the IVR)
        (250, record("116117", "LVS-1", hunt=40.0, answer=100.0)),
        (260, record("116117", "LVS-1", reason=TerminatedReason.CALLER_CANCEL)),
        (260, record("116117", "LVS-1", hunt=None, reason=TerminatedReason.CALLER_CANCEL)),
        (270, record("116117", "LVS-1", answer=130.0)),  # late
    ]
    for offset, call in calls:
        clock.at(offset)
        metrics.call_ended(call)


def sample(metrics: NodeMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_shares_and_counts_per_window_match_the_hand_computed_set() -> None:
    clock = Clock()
    metrics = NodeMetrics(answer_time=SETTINGS, clock=clock)
    feed(metrics, clock)
    clock.at(305)  # 60 s window: calls ended at 250..309; 300 s window: 10..309
    a60 = {"service": "113", "centre": "AMK-A", "window": "1m"}
    a300 = {"service": "113", "centre": "AMK-A", "window": "5m"}
    l60 = {"service": "116117", "centre": "LVS-1", "window": "1m"}
    l300 = {"service": "116117", "centre": "LVS-1", "window": "5m"}

    # 113, last minute: one failed call, nothing answered: no share, computed over 0 calls
    assert sample(metrics, "nodrute_answer_indicator_ratio", **a60) is None
    assert sample(metrics, "nodrute_answer_indicator_calls", **a60) == 0
    assert sample(metrics, "nodrute_answer_window_calls", result="failed", **a60) == 1
    # 113, 5 min: the calls at 0 and 5 s have left; 1 answered (within), 1 abandoned, 1 failed
    assert sample(metrics, "nodrute_answer_indicator_ratio", **a300) == 1.0
    assert sample(metrics, "nodrute_answer_indicator_calls", **a300) == 1
    assert [sample(metrics, "nodrute_answer_window_calls", result=r, **a300)
            for r in ("answered_within_target", "answered_late", "abandoned", "failed")] == [
        1, 0, 1, 1]
    # 116117: within, abandoned, late (the IVR hang-up is not counted): 1 of 2 answered
    for labels in (l60, l300):
        assert sample(metrics, "nodrute_answer_indicator_ratio", **labels) == 0.5
        assert sample(metrics, "nodrute_answer_indicator_calls", **labels) == 2
        assert sample(metrics, "nodrute_answer_window_calls", result="abandoned", **labels) == 1
    assert sample(metrics, "nodrute_answer_target_seconds", service="116117") == 120
    assert sample(metrics, "nodrute_answer_target_ratio", service="113") == 0.9
    # the answer-time histogram excludes the IVR too: 100 s and 130 s
    assert sample(metrics, "nodrute_answer_seconds_sum", service="116117",
                  centre="LVS-1") == 230.0


def test_early_calls_count_while_in_the_window_and_everything_leaves_it() -> None:
    clock = Clock()
    metrics = NodeMetrics(answer_time=SETTINGS, clock=clock)
    feed(metrics, clock)
    clock.at(15)
    windows = metrics.answer_windows
    early = {(s, c, w): counts for s, c, w, counts in windows.totals()}
    assert early[("113", "AMK-A", "1m")] == (1, 1, 0, 0)  # the calls at 0 s and 5 s
    # (the later calls were added "in the future" of this read: a real clock never does that)
    clock.at(700)
    late = {(s, c, w): counts for s, c, w, counts in windows.totals()}
    assert set(late.values()) == {(0, 0, 0, 0)}
    assert sample(metrics, "nodrute_answer_indicator_ratio", service="113", centre="AMK-A",
                  window="5m") is None


def test_denominator_can_be_set_per_service() -> None:
    clock = Clock()
    settings = AnswerTimeSettings(windows_s=[60], slot_s=10,
                                  denominator={"113": "answered", "116117": "offered"})
    windows = AnswerTimeWindows(settings, clock)
    share, over = windows.indicator("116117", (1, 1, 1, 1))
    assert over == 4 and share == 0.25  # within / (answered + abandoned + failed)
    share, over = AnswerTimeWindows(SETTINGS, clock).indicator("116117", (1, 1, 1, 1))
    assert (share, over) == (0.5, 2)  # the default: within / answered
    assert math.isnan(windows.indicator("113", (0, 0, 2, 1))[0])

    clock.at(0)
    offered = NodeMetrics(answer_time=AnswerTimeSettings(
        windows_s=[60], slot_s=10, denominator={"116117": "offered"}), clock=clock)
    offered.call_ended(record("116117", "LVS-1", answer=100.0))
    offered.call_ended(record("116117", "LVS-1", reason=TerminatedReason.CALLER_CANCEL))
    labels = {"service": "116117", "centre": "LVS-1", "window": "1m"}
    assert sample(offered, "nodrute_answer_indicator_ratio", **labels) == 0.5
    assert sample(offered, "nodrute_answer_indicator_calls", **labels) == 2


def test_memory_stays_bounded_whatever_the_call_rate() -> None:
    clock = Clock()
    windows = AnswerTimeWindows(SETTINGS, clock)
    for i in range(20_000):  # 20,000 calls over 2,000 s
        clock.at(i / 10)
        windows.add(record("113", "AMK-A", answer=1.0))
    [ring] = windows._rings.values()
    assert len(ring.slots) == 31 and len(ring.counts) == 4 * 31
    totals = {w: counts for _, _, w, counts in windows.totals()}
    assert totals["1m"] == (600, 0, 0, 0) and totals["5m"] == (3000, 0, 0, 0)  # 10 calls/s


def test_calls_of_unknown_services_or_without_a_centre_leg_are_ignored() -> None:
    clock = Clock()
    windows = AnswerTimeWindows(SETTINGS, clock)
    windows.add(record("999", "X", answer=1.0))
    windows.add(record("113", "AMK-A", hunt=None, reason=TerminatedReason.ERROR))
    assert list(windows.totals()) == []


@pytest.mark.parametrize("bad", [
    {"windows_s": [5]},  # shorter than a slot
    {"windows_s": [60, 60]},
    {"windows_s": []},
    {"windows_s": [86_400], "slot_s": 1},  # too many slots
    {"target_s": {"113": 0}},
    {"denominator": {"113": "everything"}},
])
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AnswerTimeSettings.model_validate(bad)


def test_window_labels() -> None:
    assert [window_label(s) for s in (900, 3600, 90, 7200, 45)] == ["15m", "1h", "90s", "2h",
                                                                     "45s"]
