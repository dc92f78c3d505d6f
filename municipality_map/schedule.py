"""Which table version is in force at an instant: pure functions over a list of activations.

An activation says "version V is in force from instant T". The one in force at ``t`` is the
latest with ``effective_at <= t`` (ties: the highest ``activation_id``, i.e. the one made last);
the next switch after ``t`` is the earliest with ``effective_at > t``. The store and every node
use these same two functions, so all nodes agree on the answer for the same instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar


class Scheduled(Protocol):
    """What the functions need of an activation (``store.Activation`` has it)."""

    @property
    def activation_id(self) -> int: ...

    @property
    def effective_at(self) -> datetime: ...


A = TypeVar("A", bound=Scheduled)


def _live(activation: Scheduled) -> bool:
    # A cancelled activation never takes effect; objects without the flag are never cancelled.
    return not getattr(activation, "cancelled", False)


def active_at(activations: Sequence[A], t: datetime) -> A | None:
    """The activation in force at ``t`` (tz-aware), or None if none has taken effect yet."""
    best: A | None = None
    for activation in activations:
        if activation.effective_at > t or not _live(activation):
            continue
        if best is None or (activation.effective_at, activation.activation_id) > (
            best.effective_at, best.activation_id
        ):
            best = activation
    return best


def next_after(activations: Sequence[A], t: datetime) -> A | None:
    """The earliest activation taking effect strictly after ``t`` (ties: highest id)."""
    best: A | None = None
    for activation in activations:
        if activation.effective_at <= t or not _live(activation):
            continue
        if best is None or activation.effective_at < best.effective_at or (
            activation.effective_at == best.effective_at
            and activation.activation_id > best.activation_id
        ):
            best = activation
    return best
