"""The garbage-collector policy of a running node: no full collection in the middle of traffic.

Why: at 1,000 calls/s a node keeps ~450,000 GC-tracked objects alive — mostly transactions
lingering for RFC 3261's 64·T1 = 32 s (Timers J, L, M) and their timer-heap entries. CPython's
default policy runs a full (generation 2) collection whenever a quarter of that has been
replaced, i.e. every few seconds under load, and each one walks every object: measured with
``loadtests/profile_core.py``-style steady load, pauses of 100-250 ms, which is the whole p99 of
INVITE→180 at that rate (every datagram arriving during the pause waits for it).

What: after start-up, :func:`tune_for_latency`

* collects once and ``gc.freeze()``\\ s what start-up built (configuration, the routing table,
  every imported module): those never become garbage and are never walked again;
* keeps the young generations as they are (cycles made by a call — exception tracebacks and
  the like — are still found within milliseconds), but turns off the automatic full collection;
* runs the full collection itself every ``interval_s`` instead, so old cyclic garbage is still
  reclaimed and memory stays bounded, with one known pause per interval instead of one every
  few seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("nodrute.gc")

FULL_COLLECTION_INTERVAL_S = 120.0
"""How often the node runs the full collection itself."""

_NEVER = 1_000_000_000  # a generation-2 threshold that is never reached


class FullCollections:
    """The periodic full collection; :meth:`cancel` stops it and restores the thresholds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float,
                 previous_thresholds: tuple[int, int, int]) -> None:
        self._loop = loop
        self.interval_s = interval_s
        self._previous = previous_thresholds
        self._handle = loop.call_later(interval_s, self._collect)
        self.runs = 0
        """Full collections run so far."""
        self.last_pause_s = 0.0
        """How long the last one held the loop."""

    def _collect(self) -> None:
        started = time.perf_counter()
        found = gc.collect()
        self.last_pause_s = time.perf_counter() - started
        self.runs += 1
        log.debug("full GC: %d unreachable objects, %.1f ms", found, self.last_pause_s * 1000)
        self._handle = self._loop.call_later(self.interval_s, self._collect)

    def cancel(self) -> None:
        self._handle.cancel()
        gc.set_threshold(*self._previous)


def tune_for_latency(interval_s: float = FULL_COLLECTION_INTERVAL_S) -> FullCollections:
    """Apply the policy above to this process; call once, from the running loop, after
    start-up. Process-wide: for ``nodrute serve``, not for code sharing its interpreter."""
    loop = asyncio.get_running_loop()
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(previous[0], previous[1], _NEVER)
    return FullCollections(loop, interval_s, previous)
