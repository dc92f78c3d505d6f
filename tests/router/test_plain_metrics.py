"""router.plain_metrics.py exposes what a prometheus_client Histogram does for the same data."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from router.metrics import ANSWER_BUCKETS, ROUTING_BUCKETS
from router.plain_metrics import PlainCounter, PlainHistogram


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples
            if not s.name.endswith("_created")}


@pytest.mark.parametrize("buckets", [ROUTING_BUCKETS, ANSWER_BUCKETS])
def test_same_buckets_count_and_sum_as_prometheus_histogram(buckets: tuple[float, ...]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = PlainHistogram("x_seconds", "doc", ["service", "centre"], buckets, registry=ours)
    reference = Histogram("x_seconds", "doc", ["service", "centre"], buckets=buckets,
                          registry=theirs)
    rng = random.Random(7)
    values = [rng.uniform(0, 2 * buckets[-1]) for _ in range(500)]
    values += [*buckets, 0.0, -1.0]  # exactly on a bound counts in that bucket (le)
    for i, value in enumerate(values):
        labels = ("113", f"C{i % 3}")
        plain.labels(*labels).observe(value)
        reference.labels(*labels).observe(value)
    mine, expected = _samples(ours), _samples(theirs)
    assert mine.keys() == expected.keys()
    for key, value in expected.items():
        assert mine[key] == pytest.approx(value), key
    assert b'x_seconds_bucket{centre="C0",le="+Inf",service="113"}' in generate_latest(ours)


def test_labels_are_checked_and_the_child_reused() -> None:
    plain = PlainHistogram("y_seconds", "doc", ["service"], (0.1, 1.0))
    assert plain.labels("113") is plain.labels("113")
    with pytest.raises(ValueError):
        plain.labels("113", "extra")
    plain.labels("113").observe(0.5)
    samples = {(s.name, s.labels.get("le")): s.value
               for family in plain.collect() for s in family.samples}
    assert samples == {("y_seconds_bucket", "0.1"): 0, ("y_seconds_bucket", "1.0"): 1,
                       ("y_seconds_bucket", "+Inf"): 1, ("y_seconds_count", None): 1,
                       ("y_seconds_sum", None): 0.5}


def test_counter_same_samples_as_prometheus_counter() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    plain = PlainCounter("z_calls", "doc", ["service", "outcome"], registry=ours)
    reference = Counter("z_calls", "doc", ["service", "outcome"], registry=theirs)
    for i in range(50):
        labels = ("113" if i % 2 else "116117", ("answered", "failed", "abandoned")[i % 3])
        plain.labels(*labels).inc()
        reference.labels(*labels).inc()
    plain.labels("113", "answered").inc(2.5)
    reference.labels("113", "answered").inc(2.5)
    assert _samples(ours) == _samples(theirs)
    with pytest.raises(ValueError):
        plain.labels("113", "answered").inc(-1)
    def headers(registry: CollectorRegistry) -> list[bytes]:
        return [line for line in generate_latest(registry).splitlines()
                if line.startswith(b"#") and b"_created" not in line]

    assert headers(ours) == headers(theirs)
