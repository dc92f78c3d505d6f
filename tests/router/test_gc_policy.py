"""The node's GC policy: no automatic full collection, a periodic one instead, start-up frozen."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from router.gc_policy import tune_for_latency


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.asyncio
@pytest.mark.usefixtures("restore_gc")
async def test_full_collections_run_on_the_nodes_schedule_and_reclaim_cycles() -> None:
    young = gc.get_threshold()[:2]
    collections = tune_for_latency(interval_s=0.0)
    try:
        assert gc.get_freeze_count() > 0  # start-up objects are out of every collection
        assert gc.get_threshold()[:2] == young  # young generations as before
        assert gc.get_threshold()[2] >= 10**9  # no automatic full collection
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: only the cyclic collector can free it
        gone = weakref.ref(a)
        del a, b
        for _ in range(100):
            if collections.runs >= 2:
                break
            await asyncio.sleep(0)
        assert collections.runs >= 2  # re-armed itself after the first run
        assert gone() is None
    finally:
        collections.cancel()
    assert gc.get_threshold()[:2] == young
    assert gc.get_threshold()[2] < 10**9  # thresholds restored
