"""active_at / next_after: which activation is in force at an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from municipality_map.schedule import active_at, next_after

T0 = datetime(2020, 1, 7, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Act:
    activation_id: int
    effective_at: datetime
    version_id: int


ACTS = [
    Act(1, T0 - timedelta(days=7), 10),
    Act(2, T0, 20),
    Act(3, T0 + timedelta(hours=1), 30),
]


def test_in_force_switches_exactly_at_the_instant() -> None:
    assert active_at(ACTS, T0 - timedelta(microseconds=1)) == ACTS[0]
    assert active_at(ACTS, T0) == ACTS[1]
    assert active_at(ACTS, T0 + timedelta(minutes=59)) == ACTS[1]


def test_nothing_in_force_before_the_first_activation() -> None:
    assert active_at(ACTS, T0 - timedelta(days=8)) is None


def test_same_instant_the_later_activation_wins() -> None:
    rollback = Act(4, T0, 10)
    assert active_at([*ACTS, rollback], T0) == rollback
    assert active_at([rollback, *ACTS], T0) == rollback


def test_next_after_is_strictly_later() -> None:
    assert next_after(ACTS, T0 - timedelta(seconds=1)) == ACTS[1]
    assert next_after(ACTS, T0) == ACTS[2]
    assert next_after(ACTS, T0 + timedelta(hours=2)) is None


def test_order_of_the_list_does_not_matter() -> None:
    shuffled = [ACTS[2], ACTS[0], ACTS[1]]
    assert active_at(shuffled, T0 + timedelta(hours=1)) == ACTS[2]
    assert next_after(shuffled, T0 - timedelta(days=30)) == ACTS[0]
