"""Operator overrides of centres (``nodrute centre drain|down|up``), from the database to
every node's :class:`~router.health.HealthMonitor`.

The CLI writes ``centre_overrides`` (and the audit log) in the table database; each node reads
the whole (small) table at start and then every ``[health] override_poll_interval_s``, and hands
it to the monitor in one call. The database is the authority: a node restarted after a drain
reads it before it serves its first call. A read that fails keeps the overrides last read
(and is logged); routing never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from .health import CentreOverride, HealthMonitor, OverrideState

log = logging.getLogger("nodrute.health.overrides")


class OverrideRow(Protocol):
    """What is read per centre (``municipality_map.store.StoredOverride``)."""

    @property
    def centre_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def since(self) -> datetime: ...


class OverrideStore(Protocol):
    async def centre_overrides(self) -> Sequence[OverrideRow]: ...


def to_overrides(rows: Sequence[OverrideRow]) -> list[CentreOverride]:
    """Database rows -> the monitor's overrides (an unknown state is skipped and logged)."""
    overrides: list[CentreOverride] = []
    for row in rows:
        try:
            state = OverrideState(row.state)
        except ValueError:
            log.error("centre %s: unknown override state %r ignored", row.centre_id, row.state)
            continue
        overrides.append(CentreOverride(row.centre_id, state, row.reason, row.actor, row.since))
    return overrides


class OverridePoller:
    """Keeps ``monitor``'s overrides equal to the database's."""

    def __init__(self, open_store: Callable[[], Awaitable[OverrideStore]],
                 monitor: HealthMonitor, *, interval_s: float) -> None:
        self._open_store = open_store
        self.monitor = monitor
        self.interval_s = interval_s
        self.failures = 0
        self._wake = asyncio.Event()

    async def refresh(self) -> bool:
        """Read the overrides and apply them; False (last ones kept) if the read failed."""
        try:
            store = await self._open_store()
            rows = await store.centre_overrides()
        except Exception:
            self.failures += 1
            log.exception("could not read the centre overrides; keeping the last ones")
            return False
        self.monitor.set_overrides(to_overrides(rows))
        return True

    def notify(self) -> None:
        """Read again soon (e.g. on an MQTT notice)."""
        self._wake.set()

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self.refresh()
