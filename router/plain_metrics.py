"""Labelled histograms and counters kept as plain numbers and read at scrape time (per call).

prometheus_client's :class:`~prometheus_client.Histogram` takes a lock and makes a Python call
per bucket on every ``observe``; here an observation is one ``bisect`` and two additions, and the
cumulative buckets, ``_count`` and ``_sum`` are built when ``/metrics`` is read — as
router/sip_traffic.py does for counters. The exposition is the same family (``_bucket`` with
``le``, ``_count``, ``_sum``) without the ``_created`` samples, which nothing reads;
:class:`PlainCounter` likewise exposes ``_total`` alone.

``observe`` runs on the event loop only; a scrape (another thread) reads the numbers without a
lock and may see one observation in the buckets before it is in ``_sum`` — as harmless as a
scrape a microsecond earlier.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["PlainCounter", "PlainCounterChild", "PlainHistogram", "PlainHistogramChild"]

_Child = TypeVar("_Child")


class PlainHistogramChild:
    """One label set: counts per bucket (the last one is ``+Inf``) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose bound is >= it (``le`` semantics)."""
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.sum += amount


class _Labelled(Generic[_Child]):
    """The label handling both families share: one child per label set, made on first use."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 make_child: Callable[[], _Child]) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._make_child = make_child
        self._children: dict[tuple[str, ...], _Child] = {}

    def labels(self, *values: str) -> _Child:
        """The child of one label set (made on first use; then one dict lookup)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames) or \
                    not all(isinstance(v, str) for v in values):
                raise ValueError(f"{self._name}: labels {self._labelnames} as strings, "
                                 f"got {values!r}")
            child = self._children[values] = self._make_child()
        return child


class PlainHistogram(_Labelled[PlainHistogramChild], Collector):
    """Drop-in for the ``labels(...).observe(x)`` use of a labelled prometheus Histogram."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Iterable[float], registry: CollectorRegistry | None = None) -> None:
        bounds = sorted(float(b) for b in buckets if b != float("inf"))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError("buckets must be distinct and at least one finite bound")
        self._bounds = tuple(bounds)
        self._les = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames,
                         lambda: PlainHistogramChild(self._bounds))
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._doc, labels=list(self._labelnames))]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._doc, labels=list(self._labelnames))
        for values, child in list(self._children.items()):
            running = 0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self._les, list(child.counts), strict=True):
                running += count
                buckets.append((le, running))
            family.add_metric(list(values), buckets, child.sum)
        yield family


class PlainCounterChild:
    """One label set's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class PlainCounter(_Labelled[PlainCounterChild], Collector):
    """Drop-in for the ``labels(...).inc()`` use of a labelled prometheus Counter (``name``
    without ``_total``, as prometheus_client takes it)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry | None = None) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames,
                         PlainCounterChild)
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self._name, self._doc, labels=list(self._labelnames))]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._doc, labels=list(self._labelnames))
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family
