"""Answer-time indicators over sliding windows, per service and centre (issue 8, must-have 3).

The national targets: 113 — 90 % answered within 10 s; 116117 — 80 % within 2 min; time in
the IVR (greeting, menu) excluded. The share is computed, by default for both services, as AMK
answer-time statistics count it ("andel anrop besvart innen 10 sekunder i forhold til antall
besvarte anrop"): answered within the target **among answered calls**; unanswered calls are
counted beside it (``result="abandoned"|"failed"``), not hidden in the share — as
``nodrute stats`` does, so the two tell the same story. Helsedirektoratet's legevakt figure
for 116117 counts unanswered calls in the denominator ("av alle anrop"): set
``denominator = {"116117" = "offered"}`` for that (answered + abandoned + failed).

A call counts when it ends, in the window of its end, for the centre of its last attempt (the
one that answered, if any). Its answer time runs from the first centre INVITE (the end of any
IVR flow; ``CallRecord.hunt_started_at``) to the answer, so time lost to failover counts: the
caller waited it. Calls that never reached a centre (refused, hung up in the IVR menu) are not
counted at all — the statistics leave out time in menus too.

Memory is bounded whatever the call rate: per (service, centre) a ring of time slots
(``slot_s`` wide) holding four counts; adding a call is O(1), and a scrape sums at most
``max(windows_s) / slot_s`` slots per centre, in the metrics endpoint's thread. A window of
W seconds covers the current slot and the ones before it back to W seconds ago, so between
W - ``slot_s`` and W seconds of calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Literal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .call_record import CallRecord, TerminatedReason

RESULTS = ("answered_within_target", "answered_late", "abandoned", "failed")
"""How a counted call ended; the ``result`` label of ``nodrute_answer_window_calls``."""
_WITHIN, _LATE, _ABANDONED, _FAILED = range(4)

Denominator = Literal["answered", "offered"]


def _answered_only() -> dict[str, Denominator]:
    return {"113": "answered", "116117": "answered"}


class AnswerTimeSettings(BaseModel):
    """``[metrics.answer_time]``: windows, targets and how each service's share is computed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows_s: list[int] = Field(default_factory=lambda: [900, 3600], min_length=1,
                                 max_length=4)
    """Sliding windows, seconds (default the last 15 min and the last hour)."""
    slot_s: int = Field(10, ge=1, le=3600)
    """Time resolution of the windows."""
    target_s: dict[str, float] = Field(default_factory=lambda: {"113": 10.0, "116117": 120.0})
    """Answer-time target per service, seconds (IVR time excluded)."""
    target_share: dict[str, float] = Field(
        default_factory=lambda: {"113": 0.9, "116117": 0.8})
    """Share that must be answered within the target (exported for dashboards)."""
    denominator: dict[str, Denominator] = Field(default_factory=_answered_only)
    """What the share is computed over: ``answered`` calls (default, as AMK statistics and
    ``nodrute stats``), or every call ``offered`` to a centre (answered + abandoned + failed:
    Helsedirektoratet's 116117 figure)."""

    @model_validator(mode="after")
    def _check(self) -> AnswerTimeSettings:
        for window in self.windows_s:
            if not self.slot_s <= window <= 86_400:
                raise ValueError(f"windows_s: {window} must lie between slot_s and 86400")
            if window // self.slot_s > 8_640:
                raise ValueError(f"windows_s: {window} s needs more than 8640 slots of slot_s")
        if len(set(self.windows_s)) != len(self.windows_s):
            raise ValueError("windows_s: the same window twice")
        for service, target in self.target_s.items():
            if target <= 0:
                raise ValueError(f"target_s[{service}] must be positive")
        return self


def window_label(seconds: int) -> str:
    """``900`` -> ``15m``, ``3600`` -> ``1h``, ``90`` -> ``90s`` (the ``window`` label)."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


class _Ring:
    """Counts per time slot for one (service, centre): a flat list, four counts a slot."""

    __slots__ = ("counts", "latest", "slots")

    def __init__(self, size: int) -> None:
        self.slots = [-1] * size
        """The absolute slot number each position holds (-1: never used)."""
        self.counts = [0] * (4 * size)
        self.latest = -1


class AnswerTimeWindows:
    """Sliding-window answer-time indicators; ``add(record)`` per ended call, O(1)."""

    def __init__(self, settings: AnswerTimeSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings = settings or AnswerTimeSettings()
        self.clock = clock
        self._slot_s = settings.slot_s
        self._windows = sorted((w // settings.slot_s, window_label(w))
                               for w in settings.windows_s)
        """(slots, label) per window, shortest first."""
        self._size = self._windows[-1][0] + 1
        self._targets = dict(settings.target_s)
        self._rings: dict[tuple[str, str], _Ring] = {}

    def add(self, record: CallRecord) -> None:
        """Count one ended call (ignored when it never reached a centre)."""
        hunt_started = record.hunt_started_at
        target = self._targets.get(record.service)
        if hunt_started is None or target is None:
            return
        if record.answered_at is not None:
            result = _WITHIN if record.answered_at - hunt_started <= target else _LATE
        elif record.end_reason is TerminatedReason.CALLER_CANCEL:
            result = _ABANDONED
        else:
            result = _FAILED
        key = (record.service, record.centre_id or "none")
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = _Ring(self._size)
        slot = int(self.clock() // self._slot_s)
        pos = slot % self._size
        base = 4 * pos
        counts = ring.counts
        if ring.slots[pos] != slot:
            ring.slots[pos] = slot
            counts[base] = counts[base + 1] = counts[base + 2] = counts[base + 3] = 0
        counts[base + result] += 1
        if slot > ring.latest:
            ring.latest = slot

    def totals(self) -> Iterator[tuple[str, str, str, tuple[int, int, int, int]]]:
        """(service, centre, window label, counts by :data:`RESULTS`) for every centre seen."""
        now_slot = int(self.clock() // self._slot_s)
        size = self._size
        for (service, centre), ring in list(self._rings.items()):
            sums = [0, 0, 0, 0]
            slot = now_slot
            fresh = ring.latest > now_slot - self._windows[-1][0]
            for slots, label in self._windows:
                oldest = now_slot - slots + 1
                while fresh and slot >= oldest:
                    pos = slot % size
                    if ring.slots[pos] == slot:
                        base = 4 * pos
                        counts = ring.counts
                        sums[0] += counts[base]
                        sums[1] += counts[base + 1]
                        sums[2] += counts[base + 2]
                        sums[3] += counts[base + 3]
                    slot -= 1
                yield service, centre, label, (sums[0], sums[1], sums[2], sums[3])

    def indicator(self, service: str, counts: tuple[int, int, int, int]) -> tuple[float, int]:
        """(share answered within target, calls it is computed over) by the service's rule;
        the share is NaN over no calls."""
        within, late, abandoned, failed = counts
        over = within + late
        if self.settings.denominator.get(service, "answered") == "offered":
            over += abandoned + failed
        return (within / over if over else float("nan")), over


class AnswerTimeCollector(Collector):
    """The indicators as gauges, computed at scrape time from :class:`AnswerTimeWindows`."""

    def __init__(self, windows: AnswerTimeWindows) -> None:
        self.windows = windows

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "nodrute_answer_indicator_ratio",
                "Share of calls answered within the service's target (113: 10 s, 116117: "
                "120 s; IVR time excluded, failover time included) over the sliding window, "
                "per centre: among answered calls, as AMK statistics count it (configurable "
                "per service: among all calls offered to a centre). Absent while the window "
                "holds no such call.",
                labels=["service", "centre", "window"]),
            GaugeMetricFamily(
                "nodrute_answer_indicator_calls",
                "Calls the answer indicator of the same labels is computed over (its "
                "denominator).", labels=["service", "centre", "window"]),
            GaugeMetricFamily(
                "nodrute_answer_window_calls",
                "Calls that reached a centre and ended within the sliding window, by result: "
                "answered_within_target, answered_late, abandoned (caller hung up before the "
                "answer), failed (no centre answered).",
                labels=["service", "centre", "window", "result"]),
            GaugeMetricFamily(
                "nodrute_answer_target_seconds",
                "Answer-time target per service (seconds, IVR time excluded).",
                labels=["service"]),
            GaugeMetricFamily(
                "nodrute_answer_target_ratio",
                "Share of calls that must be answered within the target, per service.",
                labels=["service"]),
        )  # fmt: skip

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ratio, over, calls, target_s, target_share = self._families()
        windows = self.windows
        for service, centre, window, counts in windows.totals():
            share, denominator = windows.indicator(service, counts)
            over.add_metric([service, centre, window], denominator)
            if denominator:
                ratio.add_metric([service, centre, window], share)
            for result, count in zip(RESULTS, counts, strict=True):
                calls.add_metric([service, centre, window, result], count)
        settings = windows.settings
        for service, seconds in settings.target_s.items():
            target_s.add_metric([service], seconds)
        for service, share in settings.target_share.items():
            target_share.add_metric([service], share)
        yield from (ratio, over, calls, target_s, target_share)
