"""configs/grafana/nodrute.json only names metrics the router exports (a rename fails here).

Every panel expression (and every template-variable query) is reduced to the names it reads:
strings, label matchers, ranges, label lists of ``by``/``on``/``group_left``…, numbers and
dashboard variables are removed; what remains is PromQL functions and keywords, and metric
names. Each metric name must be one a fresh ``NodeMetrics()`` registry exposes, including the
``_total``/``_bucket``/``_sum``/``_count`` series of its counters and histograms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.metrics import NodeMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "nodrute.json"

PROMQL_WORDS = {
    # aggregations and their modifiers, binary keywords
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset",
    # functions used by dashboards
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "vector",
    "scalar", "abs", "clamp_min", "clamp_max", "label_replace", "label_join", "time",
    "timestamp", "absent", "sort", "sort_desc", "avg_over_time", "max_over_time",
    "min_over_time", "sum_over_time", "changes", "resets", "round", "ceil", "floor",
    # Grafana's label_values() in variable queries
    "label_values",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_NUMBERS = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b")
_IDENTIFIERS = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def names_in(expr: str) -> set[str]:
    """The identifiers of a PromQL expression that are neither keywords nor functions."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _VARIABLES.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    return {name for name in _IDENTIFIERS.findall(text) if name not in PROMQL_WORDS}


def label_values_metric(query: str) -> set[str]:
    """``label_values(metric, label)`` -> {metric} (the label is not a metric)."""
    found = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)\s*", query)
    assert found, f"unexpected variable query {query!r}"
    return {found.group(1)}


def exported_names() -> set[str]:
    names: set[str] = set()
    for family in NodeMetrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{s}" for s in ("_bucket", "_sum", "_count"))
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels(dashboard)
            for target in panel.get("targets", [])]


def test_every_expression_names_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_names()
    exprs = expressions(dashboard)
    assert len(exprs) >= 20
    for title, expr in exprs:
        used = names_in(expr)
        assert used, f"{title!r}: no metric in {expr!r}"
        unknown = used - exported
        assert not unknown, f"{title!r}: {sorted(unknown)} not exported by NodeMetrics ({expr})"


def test_template_variables_read_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_names()
    queries = [v["query"]["query"] for v in dashboard["templating"]["list"]
               if v["type"] == "query"]
    assert queries
    for query in queries:
        assert label_values_metric(query) <= exported, query


def test_the_dashboard_covers_what_operators_asked_for(dashboard: dict[str, Any]) -> None:
    used = set().union(*(names_in(expr) for _, expr in expressions(dashboard)))
    for wanted in ("nodrute_calls_total", "nodrute_active_calls",
                   "nodrute_post_dial_delay_seconds_bucket", "nodrute_answer_seconds_bucket",
                   "nodrute_answer_indicator_ratio", "nodrute_answer_target_ratio",
                   "nodrute_destination_up", "nodrute_failover_total",
                   "nodrute_hunt_exhausted_total", "nodrute_location_source_total",
                   "nodrute_routing_table_info", "nodrute_draining",
                   "nodrute_sip_requests_total", "nodrute_sip_responses_total"):
        assert wanted in used, f"no panel shows {wanted}"


def test_panels_are_well_formed(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        ref_ids = [target["refId"] for target in panel.get("targets", [])]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (le, service) (rate(nodrute_x_bucket{window="$window"}[5m]))', {"nodrute_x_bucket"}),
    ("a_total / on (instance) group_left (version) b_info > 0.9", {"a_total", "b_info"}),
    ('count(nodrute_up{instance=~"$instance"} == 0) or vector(0)', {"nodrute_up"}),
    ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
])
def test_the_expression_reader_finds_metric_names(expr: str, names: set[str]) -> None:
    assert names_in(expr) == names
