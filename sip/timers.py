"""SIP timer values (RFC 3261 §17, Table 4; RFC 6026 §8.4, §8.7) and the one deadline heap.

:class:`TimerConfig` derives every transaction timer from T1, T2 and T4 in one place, so a trunk
with a longer round trip changes T1 and everything follows. :class:`DeadlineHeap` is the single
priority queue the transaction layer keeps for *all* its timers: an entry is a tuple, not an
object, and a cancelled timer is not searched for and removed but left to be skipped when it
surfaces ("lazy invalidation"); a periodic compaction keeps the stale ones from piling up.

Everything is in seconds of the caller's clock (``now: float``); nothing here reads a clock.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

# RFC 3261 §17.1.2.2: "Timer D ... at least 32 seconds for unreliable transports".
_TIMER_D_MIN = 32.0


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1/T2/T4 (RFC 3261 §17.1.1.1, Table 4) and the timers derived from them.

    Retransmission timers (A, E, G) return ``None`` over a reliable transport: they are not
    started at all there (§17.1.1.2, §17.1.2.2, §17.2.1). Wait timers that are "0s for
    reliable" (D, I, J, K) return ``0.0``: the state is left at once.
    """

    t1: float = 0.5
    """RTT estimate (default 500 ms)."""
    t2: float = 4.0
    """Maximum retransmission interval for non-INVITE requests and INVITE responses."""
    t4: float = 5.0
    """Maximum time a message stays in the network."""

    def __post_init__(self) -> None:
        if not 0.0 < self.t1 <= self.t2 or self.t4 <= 0.0:
            raise ValueError(f"need 0 < T1 <= T2 and T4 > 0, got {self}")

    def a(self, reliable: bool) -> float | None:
        """Timer A, initial INVITE retransmit interval: T1, doubling, UDP only (§17.1.1.2)."""
        return None if reliable else self.t1

    def b(self, reliable: bool = False) -> float:
        """Timer B, INVITE transaction timeout: 64·T1 on any transport (§17.1.1.2)."""
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        """Timer D, wait for response retransmits: ≥32 s UDP, 0 reliable (§17.1.1.2).

        Never shorter than 64·T1 so that it covers the server's Timer H window when T1 is
        raised above its default.
        """
        return 0.0 if reliable else max(_TIMER_D_MIN, 64 * self.t1)

    def e(self, reliable: bool) -> float | None:
        """Timer E, initial non-INVITE retransmit interval: T1, UDP only (§17.1.2.2)."""
        return None if reliable else self.t1

    def f(self, reliable: bool = False) -> float:
        """Timer F, non-INVITE transaction timeout: 64·T1 (§17.1.2.2)."""
        return 64 * self.t1

    def g(self, reliable: bool) -> float | None:
        """Timer G, initial INVITE response retransmit interval: T1, UDP only (§17.2.1)."""
        return None if reliable else self.t1

    def h(self, reliable: bool = False) -> float:
        """Timer H, wait time for ACK receipt: 64·T1 (§17.2.1)."""
        return 64 * self.t1

    def i(self, reliable: bool) -> float:
        """Timer I, wait time for ACK retransmits: T4 UDP, 0 reliable (§17.2.1)."""
        return 0.0 if reliable else self.t4

    def j(self, reliable: bool) -> float:
        """Timer J, wait time for non-INVITE request retransmits: 64·T1 UDP, 0 reliable."""
        return 0.0 if reliable else 64 * self.t1

    def k(self, reliable: bool) -> float:
        """Timer K, wait time for response retransmits: T4 UDP, 0 reliable (§17.1.2.2)."""
        return 0.0 if reliable else self.t4

    def l(self, reliable: bool = False) -> float:  # noqa: E743 - the RFC's name for it
        """Timer L, wait time for accepted INVITE request retransmits: 64·T1 (RFC 6026 §8.7)."""
        return 64 * self.t1

    def m(self, reliable: bool = False) -> float:
        """Timer M, wait time for retransmission of 2xx to INVITE: 64·T1 (RFC 6026 §8.4)."""
        return 64 * self.t1

    def next_invite_interval(self, interval: float) -> float:
        """Timer A after firing: doubled, no cap (§17.1.1.2)."""
        return 2 * interval

    def next_capped_interval(self, interval: float) -> float:
        """Timers E, G and the UAS 2xx retransmit after firing: doubled, capped at T2
        (§17.1.2.2, §17.2.1, §13.3.1.4)."""
        return min(2 * interval, self.t2)


# ---------------------------------------------------------------------------------------------
# The deadline heap


class TimerOwner(Protocol):
    """Something with two timer slots, each holding the id of its live heap entry (0 = none).

    Two slots cover every SIP transaction: one retransmit timer (A, E, G, the UAS 2xx
    retransmit, the auto-100) and one expiry timer (B, D, F, H, I, J, K, L, M).
    """

    retransmit_timer: int
    expire_timer: int


RETRANSMIT = 0
"""Slot number of the retransmit timer."""
EXPIRE = 1
"""Slot number of the expiry timer."""

OwnerT = TypeVar("OwnerT", bound=TimerOwner)

# Compact once this many entries are stale *and* they are more than half of the heap.
_COMPACT_MIN_STALE = 1024


class DeadlineHeap(Generic[OwnerT]):
    """One min-heap of ``(deadline, entry id, owner, slot)`` for all timers of all owners.

    An owner's slot stores the id of its current entry; re-arming or cancelling just changes or
    clears that id, and the old entry is skipped when popped. ``stale`` counts such dead
    entries so the heap can be rebuilt when they dominate (bounded memory under load).
    """

    __slots__ = ("_entries", "_ids", "_stale")

    def __init__(self) -> None:
        self._entries: list[tuple[float, int, OwnerT, int]] = []
        self._ids = itertools.count(1)
        self._stale = 0

    def __len__(self) -> int:
        """Entries held, stale ones included (for metrics and memory tests)."""
        return len(self._entries)

    @property
    def stale(self) -> int:
        """Entries known to be dead but not yet popped or compacted away."""
        return self._stale

    def arm(self, owner: OwnerT, slot: int, when: float) -> None:
        """Set ``owner``'s ``slot`` to fire at ``when``, replacing any deadline it had."""
        entry_id = next(self._ids)
        if slot == RETRANSMIT:
            if owner.retransmit_timer:
                self._stale += 1
            owner.retransmit_timer = entry_id
        else:
            if owner.expire_timer:
                self._stale += 1
            owner.expire_timer = entry_id
        heapq.heappush(self._entries, (when, entry_id, owner, slot))
        if self._stale > _COMPACT_MIN_STALE and 2 * self._stale > len(self._entries):
            self._compact()

    def disarm(self, owner: OwnerT, slot: int) -> None:
        """Cancel ``owner``'s ``slot`` (no-op when it is not armed)."""
        if slot == RETRANSMIT:
            if owner.retransmit_timer:
                owner.retransmit_timer = 0
                self._stale += 1
        elif owner.expire_timer:
            owner.expire_timer = 0
            self._stale += 1

    def disarm_all(self, owner: OwnerT) -> None:
        """Cancel both slots of ``owner`` (it is going away)."""
        if owner.retransmit_timer:
            owner.retransmit_timer = 0
            self._stale += 1
        if owner.expire_timer:
            owner.expire_timer = 0
            self._stale += 1

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or ``None`` (drops stale entries found on top)."""
        entries = self._entries
        while entries:
            when, entry_id, owner, slot = entries[0]
            current = owner.retransmit_timer if slot == RETRANSMIT else owner.expire_timer
            if current == entry_id:
                return when
            heapq.heappop(entries)
            self._stale -= 1
        return None

    def pop_due(self, now: float) -> tuple[OwnerT, int] | None:
        """Remove and return the earliest live ``(owner, slot)`` due at ``now``, else ``None``.

        The slot is cleared before it is returned, so the handler may re-arm it.
        """
        entries = self._entries
        while entries and entries[0][0] <= now:
            _, entry_id, owner, slot = heapq.heappop(entries)
            if slot == RETRANSMIT:
                if owner.retransmit_timer == entry_id:
                    owner.retransmit_timer = 0
                    return owner, slot
            elif owner.expire_timer == entry_id:
                owner.expire_timer = 0
                return owner, slot
            self._stale -= 1
        return None

    def _compact(self) -> None:
        live = [
            entry
            for entry in self._entries
            if (entry[2].retransmit_timer if entry[3] == RETRANSMIT else entry[2].expire_timer)
            == entry[1]
        ]
        heapq.heapify(live)
        self._entries = live
        self._stale = 0
