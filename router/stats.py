"""Answer-time figures per service and centre from call records (pure: no I/O).

``nodrute stats`` reads the calls of a period from the database and hands them here. Per
service and centre (the centre of the call's last attempt: the one that answered, if any; ``-``
for a call that never reached a centre), and per service over all centres (centre ``ALL``):

- ``calls``: every call; ``answered`` / ``abandoned`` (the caller gave up before an answer) /
  ``failed`` (no centre answered) partition them; ``failed_over``: calls with more than one
  attempt (whatever the outcome);
- ``answered_within_target``: answered with an answer time at the centre (IVR time excluded)
  of at most the service's target, 10 s for 113 and 120 s for 116117 (the national targets:
  113 90 % within 10 s, 116117 80 % within 2 min);
- ``share_within_target``: ``answered_within_target / answered`` — among answered calls, as
  AMK answer-time statistics count them (the abandoned are shown beside it, not hidden in the
  share); None without answered calls;
- ``median_answer_s`` (the middle value, or the mean of the two middle ones) and
  ``p90_answer_s`` (nearest rank: the smallest answer time with at least 90 % of the answered
  calls at or below it), over answered calls.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .records_store import StatsCall

TARGET_S: dict[str, float] = {"113": 10.0, "116117": 120.0}
"""Answer-time target per service, seconds at the centre (IVR excluded)."""
ALL_CENTRES = "ALL"
NO_CENTRE = "-"


@dataclass(frozen=True, slots=True)
class StatsRow:
    """The figures of one service and centre (or ``ALL`` centres of the service)."""

    service: str
    centre: str
    calls: int
    answered: int
    abandoned: int
    failed: int
    failed_over: int
    target_s: float | None
    answered_within_target: int
    share_within_target: float | None
    median_answer_s: float | None
    p90_answer_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile_nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    """The smallest value with at least ``fraction`` of ``values`` at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _row(service: str, centre: str, calls: Sequence[StatsCall],
         targets: dict[str, float]) -> StatsRow:
    target = targets.get(service)
    answer_times = [c.answer_s for c in calls if c.outcome == "answered" and c.answer_s is not None]
    answered = sum(1 for c in calls if c.outcome == "answered")
    within = 0 if target is None else sum(1 for t in answer_times if t <= target)
    return StatsRow(
        service=service,
        centre=centre,
        calls=len(calls),
        answered=answered,
        abandoned=sum(1 for c in calls if c.outcome == "abandoned"),
        failed=sum(1 for c in calls if c.outcome == "failed"),
        failed_over=sum(1 for c in calls if c.attempt_count > 1),
        target_s=target,
        answered_within_target=within,
        share_within_target=(within / answered) if answered and target is not None else None,
        median_answer_s=statistics.median(answer_times) if answer_times else None,
        p90_answer_s=percentile_nearest_rank(answer_times, 0.9),
    )


def compute_stats(calls: Iterable[StatsCall],
                  targets: dict[str, float] | None = None) -> list[StatsRow]:
    """Rows per (service, centre) sorted by service then centre, each service followed by its
    ``ALL`` row."""
    targets = TARGET_S if targets is None else targets
    by_service: dict[str, dict[str, list[StatsCall]]] = {}
    for call in calls:
        centre = call.centre_id or NO_CENTRE
        by_service.setdefault(call.service, {}).setdefault(centre, []).append(call)
    rows: list[StatsRow] = []
    for service in sorted(by_service):
        centres = by_service[service]
        for centre in sorted(centres):
            rows.append(_row(service, centre, centres[centre], targets))
        every = [call for group in centres.values() for call in group]
        rows.append(_row(service, ALL_CENTRES, every, targets))
    return rows
