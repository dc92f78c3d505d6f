"""``nodrute stats`` arithmetic against a set of calls computed by hand."""

from __future__ import annotations

import csv
import io
import json

import pytest

from router.cli_stats import render_csv, render_json, render_table
from router.records_store import StatsCall
from router.stats import StatsRow, compute_stats, percentile_nearest_rank


def call(service: str, centre: str | None, outcome: str, answer_s: float | None = None,
         attempts: int = 1) -> StatsCall:
    return StatsCall(service, centre, outcome, attempts, answer_s)


# AMK-OSLO: 6 answered (2, 4, 9, 10, 11, 30 s), 1 abandoned, 1 failed over and answered.
# AMK-BERGEN: 1 answered at 12 s, 1 failed (3 attempts).
# 116117 LVS-0301: answered at 60 and 121 s (IVR excluded already), 1 abandoned.
# 116117 with no centre (routing failed before any attempt): 1 failed.
CALLS = [
    call("113", "AMK-OSLO", "answered", 2.0),
    call("113", "AMK-OSLO", "answered", 4.0),
    call("113", "AMK-OSLO", "answered", 9.0),
    call("113", "AMK-OSLO", "answered", 10.0),      # exactly the target: within
    call("113", "AMK-OSLO", "answered", 11.0),
    call("113", "AMK-OSLO", "answered", 30.0, attempts=2),
    call("113", "AMK-OSLO", "abandoned"),
    call("113", "AMK-BERGEN", "answered", 12.0),
    call("113", "AMK-BERGEN", "failed", attempts=3),
    call("116117", "LVS-0301", "answered", 60.0),
    call("116117", "LVS-0301", "answered", 121.0),
    call("116117", "LVS-0301", "abandoned"),
    call("116117", None, "failed", attempts=0),
]


def by_key(rows: list[StatsRow]) -> dict[tuple[str, str], StatsRow]:
    return {(row.service, row.centre): row for row in rows}


def test_figures_per_centre_match_the_hand_computed_ones() -> None:
    rows = compute_stats(CALLS)
    assert [(r.service, r.centre) for r in rows] == [
        ("113", "AMK-BERGEN"), ("113", "AMK-OSLO"), ("113", "ALL"),
        ("116117", "-"), ("116117", "LVS-0301"), ("116117", "ALL"),
    ]
    got = by_key(rows)
    oslo = got["113", "AMK-OSLO"]
    assert (oslo.calls, oslo.answered, oslo.abandoned, oslo.failed, oslo.failed_over) == \
        (7, 6, 1, 0, 1)
    assert oslo.target_s == 10.0
    assert oslo.answered_within_target == 4                  # 2, 4, 9, 10
    assert oslo.share_within_target == pytest.approx(4 / 6)
    assert oslo.median_answer_s == pytest.approx(9.5)        # (9 + 10) / 2
    assert oslo.p90_answer_s == 30.0                         # rank ceil(0.9 * 6) = 6

    bergen = got["113", "AMK-BERGEN"]
    assert (bergen.calls, bergen.answered, bergen.failed, bergen.failed_over) == (2, 1, 1, 1)
    assert bergen.answered_within_target == 0
    assert bergen.share_within_target == 0.0
    assert bergen.median_answer_s == bergen.p90_answer_s == 12.0

    amk = got["113", "ALL"]
    assert (amk.calls, amk.answered, amk.abandoned, amk.failed, amk.failed_over) == \
        (9, 7, 1, 1, 2)
    assert amk.answered_within_target == 4
    assert amk.share_within_target == pytest.approx(4 / 7)
    assert amk.median_answer_s == 10.0                       # 2 4 9 [10] 11 12 30
    assert amk.p90_answer_s == 30.0                          # rank ceil(6.3) = 7

    lvs = got["116117", "LVS-0301"]
    assert lvs.target_s == 120.0
    assert (lvs.calls, lvs.answered, lvs.abandoned, lvs.answered_within_target) == (3, 2, 1, 1)
    assert lvs.share_within_target == 0.5
    assert lvs.median_answer_s == pytest.approx(90.5)

    nowhere = got["116117", "-"]
    assert (nowhere.calls, nowhere.failed, nowhere.answered) == (1, 1, 0)
    assert nowhere.share_within_target is None and nowhere.median_answer_s is None
    assert got["116117", "ALL"].calls == 4


def test_no_calls_no_rows() -> None:
    assert compute_stats([]) == []


def test_nearest_rank_percentile() -> None:
    assert percentile_nearest_rank([], 0.9) is None
    assert percentile_nearest_rank([5.0], 0.9) == 5.0
    values = [float(v) for v in range(1, 11)]                # 1..10
    assert percentile_nearest_rank(values, 0.9) == 9.0
    assert percentile_nearest_rank(list(reversed(values)), 0.5) == 5.0


def test_renderings_carry_the_same_figures() -> None:
    rows = compute_stats(CALLS)
    table = render_table(rows).splitlines()
    assert len(table) == 1 + len(rows)
    oslo_line = next(line for line in table if "AMK-OSLO" in line)
    assert "66.7 %" in oslo_line and "9.500" in oslo_line
    parsed = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert [(r["service"], r["centre"], r["answered"]) for r in parsed][:2] == [
        ("113", "AMK-BERGEN", "1"), ("113", "AMK-OSLO", "6")]
    assert parsed[3]["share_within_target"] == ""            # 116117 "-": nothing answered
    document = json.loads(render_json(rows, None, None))
    assert document["rows"][1]["share_within_target"] == pytest.approx(4 / 6)
