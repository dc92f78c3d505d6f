"""Timer values (RFC 3261 Table 4, RFC 6026) and the lazy-invalidation deadline heap."""

from __future__ import annotations

import dataclasses

import pytest

from sip.timers import EXPIRE, RETRANSMIT, DeadlineHeap, TimerConfig


def test_defaults_are_rfc_3261_table_4() -> None:
    t = TimerConfig()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert t.a(reliable=False) == 0.5 and t.a(reliable=True) is None
    assert t.b() == 32.0 and t.b(reliable=True) == 32.0
    assert t.d(reliable=False) == 32.0 and t.d(reliable=True) == 0.0
    assert t.e(reliable=False) == 0.5 and t.e(reliable=True) is None
    assert t.f() == 32.0
    assert t.g(reliable=False) == 0.5 and t.g(reliable=True) is None
    assert t.h() == 32.0
    assert t.i(reliable=False) == 5.0 and t.i(reliable=True) == 0.0
    assert t.j(reliable=False) == 32.0 and t.j(reliable=True) == 0.0
    assert t.k(reliable=False) == 5.0 and t.k(reliable=True) == 0.0
    assert t.l() == 32.0 and t.m() == 32.0


def test_everything_follows_t1() -> None:
    t = TimerConfig(t1=1.0, t2=8.0, t4=10.0)
    assert t.a(False) == t.e(False) == t.g(False) == 1.0
    assert t.b() == t.f() == t.h() == t.j(False) == t.l() == t.m() == 64.0
    assert t.d(False) == 64.0  # never below the far end's Timer H window
    assert t.i(False) == t.k(False) == 10.0
    assert TimerConfig(t1=0.1).d(False) == 32.0  # ...and never below 32 s


def test_retransmit_interval_growth() -> None:
    t = TimerConfig()
    intervals = [0.5]
    for _ in range(6):
        intervals.append(t.next_capped_interval(intervals[-1]))
    assert intervals == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]  # E, G: capped at T2
    assert t.next_invite_interval(8.0) == 16.0  # A: no cap


def test_config_is_frozen_and_validated() -> None:
    t = TimerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.t1 = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        TimerConfig(t1=5.0, t2=4.0)
    with pytest.raises(ValueError):
        TimerConfig(t1=0.0)


class Owner:
    __slots__ = ("expire_timer", "name", "retransmit_timer")

    def __init__(self, name: str) -> None:
        self.name = name
        self.retransmit_timer = 0
        self.expire_timer = 0


def drain(heap: DeadlineHeap[Owner], now: float) -> list[tuple[str, int]]:
    fired = []
    while (due := heap.pop_due(now)) is not None:
        fired.append((due[0].name, due[1]))
    return fired


def test_heap_fires_in_deadline_order_and_only_when_due() -> None:
    heap: DeadlineHeap[Owner] = DeadlineHeap()
    a, b = Owner("a"), Owner("b")
    heap.arm(a, EXPIRE, 3.0)
    heap.arm(b, RETRANSMIT, 1.0)
    heap.arm(a, RETRANSMIT, 2.0)
    assert heap.next_deadline() == 1.0
    assert drain(heap, 0.9) == []
    assert drain(heap, 2.0) == [("b", RETRANSMIT), ("a", RETRANSMIT)]
    assert heap.next_deadline() == 3.0
    assert drain(heap, 10.0) == [("a", EXPIRE)]
    assert heap.next_deadline() is None and len(heap) == 0
    assert a.retransmit_timer == a.expire_timer == 0


def test_rearm_and_disarm_invalidate_lazily() -> None:
    heap: DeadlineHeap[Owner] = DeadlineHeap()
    a = Owner("a")
    heap.arm(a, RETRANSMIT, 1.0)
    heap.arm(a, RETRANSMIT, 5.0)  # replaces the 1.0 deadline
    heap.arm(a, EXPIRE, 2.0)
    heap.disarm(a, EXPIRE)
    heap.disarm(a, EXPIRE)  # twice is harmless
    assert heap.stale == 2 and len(heap) == 3
    assert heap.next_deadline() == 5.0  # the stale tops were dropped on the way
    assert heap.stale == 0 and len(heap) == 1
    assert drain(heap, 5.0) == [("a", RETRANSMIT)]


def test_rearming_at_the_same_instant_fires_once() -> None:
    heap: DeadlineHeap[Owner] = DeadlineHeap()
    a = Owner("a")
    heap.arm(a, EXPIRE, 1.0)
    heap.disarm(a, EXPIRE)
    heap.arm(a, EXPIRE, 1.0)
    assert drain(heap, 1.0) == [("a", EXPIRE)]


def test_handler_may_rearm_the_slot_it_was_popped_for() -> None:
    heap: DeadlineHeap[Owner] = DeadlineHeap()
    a = Owner("a")
    heap.arm(a, RETRANSMIT, 1.0)
    due = heap.pop_due(1.0)
    assert due is not None and a.retransmit_timer == 0
    heap.arm(a, RETRANSMIT, 3.0)
    assert heap.stale == 0
    assert drain(heap, 2.0) == [] and drain(heap, 3.0) == [("a", RETRANSMIT)]


def test_compaction_bounds_stale_entries() -> None:
    heap: DeadlineHeap[Owner] = DeadlineHeap()
    owners = [Owner(str(i)) for i in range(10_000)]
    for i, owner in enumerate(owners):
        heap.arm(owner, EXPIRE, 1000.0 + i)  # long timers...
        heap.disarm(owner, EXPIRE)  # ...cancelled at once, as B/F nearly always are
    assert len(heap) <= 2100
    keep = Owner("keep")
    heap.arm(keep, EXPIRE, 5.0)
    assert heap.next_deadline() == 5.0
    assert drain(heap, 1e9) == [("keep", EXPIRE)]
    assert len(heap) == 0 and heap.stale == 0


def test_disarm_all() -> None:
    heap: DeadlineHeap[Owner] = DeadlineHeap()
    a = Owner("a")
    heap.arm(a, RETRANSMIT, 1.0)
    heap.arm(a, EXPIRE, 2.0)
    heap.disarm_all(a)
    assert heap.next_deadline() is None and len(heap) == 0
