"""TableManager: which routing table is in force on this node, and the switch to the next.

The database holds the versions and their activations (``municipality_map.store``); this module
decides, from the activations alone, which version is in force *now* and swaps the B2BUA's
snapshot to it with one assignment (``b2bua.snapshot = new``). A call keeps the snapshot it read
at its INVITE, so a switch never touches a call in progress.

Timing: the next scheduled version is fetched and built *before* its instant, and one
``loop.call_at`` timer is armed for the wall-clock instant; when it fires, the switch is a dict
lookup and an assignment (no I/O). The timer re-checks the wall clock and re-arms if it fired
early. The store is also polled every ``poll_interval_s`` (and at once on an MQTT notice), which
re-arms the timer, so a node that missed a notice or whose clock jumped still converges.

Failure: any error reading the store keeps the last good snapshot and is counted
(``nodrute_routing_table_reload_failures_total``); routing never stops. An unreachable database
at start falls back to the table on disk (``routing.table_dir``) and keeps retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from municipality_map import RoutingSnapshot, TableError
from municipality_map.schedule import active_at, next_after

log = logging.getLogger("nodrute.tables")

Clock = Callable[[], datetime]
"""Wall clock returning a tz-aware ``datetime`` (tests pass a fake)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


# -------------------------------------------------------------- what is needed of the store


class VersionLike(Protocol):
    @property
    def version_id(self) -> int: ...
    @property
    def label(self) -> str: ...
    @property
    def sha256(self) -> str: ...


class ActivationLike(Protocol):
    @property
    def activation_id(self) -> int: ...
    @property
    def version_id(self) -> int: ...
    @property
    def effective_at(self) -> datetime: ...


class TableStoreLike(Protocol):
    """The part of ``municipality_map.store.TableStore`` the runtime uses."""

    async def list_versions(self) -> Sequence[VersionLike]: ...
    async def import_version(
        self, table_dir: Path, *, actor: str, label: str | None = None
    ) -> tuple[VersionLike, Any]: ...
    async def get_version(self, version_id: int) -> VersionLike: ...
    async def activate(self, version_id: int, *, actor: str, now: datetime) -> ActivationLike: ...
    async def schedule(
        self, version_id: int, effective_at: datetime, *, actor: str
    ) -> ActivationLike: ...
    async def activations(self) -> Sequence[ActivationLike]: ...
    async def close(self) -> None: ...


class SnapshotHolder(Protocol):
    """Where the active snapshot lives (the B2BUA): replaced by one assignment."""

    snapshot: RoutingSnapshot


@dataclass(frozen=True)
class ActiveTable:
    """The table in force on this node."""

    version_id: int | None
    """Database id, or None for the table read from disk while the database was unreachable."""
    label: str
    sha256: str
    activated_at: datetime
    """When this node switched to it (wall clock)."""


class TableMetricsSink(Protocol):
    def table_switched(self, version: str, sha256: str, at: datetime) -> None: ...
    def reload_failed(self) -> None: ...


# -------------------------------------------------------------- the manager


class TableManager:
    """Follows the activations in the store and keeps the holder's snapshot in force."""

    CACHE_SIZE = 4
    RETRY_FIRST_S = 0.5
    """After a failed refresh, retry after this long, doubling up to the poll interval."""

    def __init__(
        self,
        open_store: Callable[[], Awaitable[TableStoreLike]],
        build_snapshot: Callable[[VersionLike], RoutingSnapshot],
        *,
        clock: Clock = utc_now,
        poll_interval_s: float = 5.0,
        actor: str = "nodrute",
        metrics: TableMetricsSink | None = None,
        check: Callable[[RoutingSnapshot], None] | None = None,
    ) -> None:
        self._open_store = open_store
        self._build = build_snapshot
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.actor = actor
        self._metrics = metrics
        self._check = check
        self.store: TableStoreLike | None = None
        self.holder: SnapshotHolder | None = None
        self.snapshot: RoutingSnapshot | None = None
        self.active: ActiveTable | None = None
        self.failures = 0
        self._activations: list[ActivationLike] = []
        self._cache: OrderedDict[int, tuple[VersionLike, RoutingSnapshot]] = OrderedDict()
        self._rejected: set[int] = set()
        self._announced: dict[int, str] = {}
        self._import_if_empty: Path | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: datetime | None = None
        self._wake = asyncio.Event()
        self.on_switch: list[Callable[[ActiveTable], None]] = []
        """Called after each switch (MQTT publishes the node's active version)."""

    # ------------------------------------------------------------------ start

    async def start(self, table_dir: Path, *, import_on_empty: bool = True) -> RoutingSnapshot:
        """The snapshot to start with: the version in force in the database, else ``table_dir``.

        On an empty database (and ``import_on_empty``) ``table_dir`` is imported and activated
        first. A database that cannot be reached falls back to ``table_dir`` from disk.
        Raises TableError if it comes to reading ``table_dir`` and that table is invalid.
        """
        self._import_if_empty = table_dir if import_on_empty else None
        try:
            await self._seed(await self._ensure_store())
            await self.refresh()
        except Exception:
            self._failed("could not read the table database at start")
        if self.snapshot is None:
            from municipality_map import load_snapshot

            log.error("no table from the database; ROUTING WITH %s FROM DISK until it is back",
                      table_dir)
            snapshot = await asyncio.to_thread(load_snapshot, table_dir)
            self._switch(snapshot, ActiveTable(None, snapshot.version.label, "",
                                               self.clock()))
        assert self.snapshot is not None
        return self.snapshot

    async def _seed(self, store: TableStoreLike) -> None:
        """Import and activate the configured table if the database has no version at all."""
        if self._import_if_empty is None or await store.list_versions():
            return
        version, _ = await store.import_version(self._import_if_empty, actor=self.actor)
        await store.activate(version.version_id, actor=self.actor, now=self.clock())
        log.info("empty table database: imported %s (version %d) and activated it",
                 self._import_if_empty, version.version_id)

    def attach(self, holder: SnapshotHolder) -> None:
        """From now on, switches assign ``holder.snapshot``."""
        self.holder = holder
        if self.snapshot is not None:
            holder.snapshot = self.snapshot

    # ------------------------------------------------------------------ following the store

    def notify(self) -> None:
        """Re-read the store soon (an MQTT notice, a drop-folder import)."""
        self._wake.set()

    def announced(self, version_id: int, sha256: str) -> None:
        """An MQTT notice: ``version_id`` was activated or scheduled with content ``sha256``.

        The database decides what is in force; the notice's hash must match the stored
        version's, or that version is refused on this node.
        """
        self._announced[version_id] = sha256
        self.notify()

    async def run(self) -> None:
        """Poll the store forever (cancel to stop)."""
        retry_s = self.RETRY_FIRST_S
        wait_s = self.poll_interval_s
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                self._wake.clear()
                if await self.refresh():
                    retry_s, wait_s = self.RETRY_FIRST_S, self.poll_interval_s
                else:
                    # A notice whose refresh failed (database busy or away) must not wait a
                    # whole poll interval: a scheduled switch could be missed by that much.
                    wait_s = min(retry_s, self.poll_interval_s)
                    retry_s = min(retry_s * 2, self.poll_interval_s)
        finally:
            self._disarm()

    async def refresh(self) -> bool:
        """Read the activations, prepare the current and next version, switch, arm the timer.

        Returns False (and counts a failure) if the store could not be read; the snapshot in
        force stays.
        """
        try:
            store = await self._ensure_store()
            activations = list(await store.activations())
            if not activations and self.active is not None and self.active.version_id is None:
                # Started from disk while the database was away; it is back, and empty.
                await self._seed(store)
                activations = list(await store.activations())
        except Exception:
            self._failed("could not read the activations")
            return False
        now = self.clock()
        ok = True
        for wanted in (active_at(activations, now), next_after(activations, now)):
            if wanted is not None and not await self._prepare(store, wanted.version_id):
                ok = False
        self._activations = activations
        self.apply(self.clock())
        self._arm()
        return ok

    async def _prepare(self, store: TableStoreLike, version_id: int) -> bool:
        if version_id in self._cache:
            self._cache.move_to_end(version_id)
            return True
        if version_id in self._rejected:
            return False
        try:
            version = await store.get_version(version_id)
            announced = self._announced.get(version_id)
            if announced is not None and announced != version.sha256:
                raise ValueError(f"announced sha256 {announced[:12]}… but the database has "
                                 f"{version.sha256[:12]}…")
            snapshot = await asyncio.to_thread(self._build, version)
            if self._check is not None:
                self._check(snapshot)
        except (KeyError, ValueError, TableError) as err:
            # Permanently bad (missing, hash mismatch, invalid, lacks a default centre):
            # never switch to it; the table in force stays.
            self._rejected.add(version_id)
            self._failed(f"version {version_id} refused: {err}")
            return False
        except Exception:
            self._failed(f"could not load version {version_id}")
            return False
        self._cache[version_id] = (version, snapshot)
        while len(self._cache) > self.CACHE_SIZE:
            oldest = next(iter(self._cache))
            if self.active is not None and oldest == self.active.version_id:
                self._cache.move_to_end(oldest)
                oldest = next(iter(self._cache))
            del self._cache[oldest]
        return True

    # ------------------------------------------------------------------ the switch (no I/O)

    def apply(self, now: datetime) -> bool:
        """Put in force the version the known activations name for ``now``; True if switched."""
        wanted = active_at(self._activations, now)
        if wanted is None or (self.active is not None
                              and wanted.version_id == self.active.version_id):
            return False
        cached = self._cache.get(wanted.version_id)
        if cached is None:
            self.notify()  # not prepared (a notice raced the poll): fetch it now
            return False
        version, snapshot = cached
        switched_at = self.clock()
        was_running = self.active is not None
        self._switch(snapshot, ActiveTable(version.version_id, version.label, version.sha256,
                                           switched_at))
        if was_running:
            log.info("switch to version %d: %.3f s after its instant %s", version.version_id,
                     (switched_at - wanted.effective_at).total_seconds(),
                     wanted.effective_at.isoformat())
        return True

    def _switch(self, snapshot: RoutingSnapshot, active: ActiveTable) -> None:
        self.snapshot = snapshot
        if self.holder is not None:
            self.holder.snapshot = snapshot  # the one assignment calls see
        previous, self.active = self.active, active
        log.info("routing table now %s (version %s, sha256 %s), was %s", active.label,
                 active.version_id, active.sha256[:12] or "-",
                 previous.label if previous else "-")
        if self._metrics is not None:
            self._metrics.table_switched(active.label, active.sha256, active.activated_at)
        for callback in self.on_switch:
            try:
                callback(active)
            except Exception:
                log.exception("table switch callback failed")

    # ------------------------------------------------------------------ the timer

    @property
    def next_switch_at(self) -> datetime | None:
        """The instant the timer is armed for, if any."""
        return self._armed_for

    def on_timer(self) -> None:
        """The armed instant has come (by the loop's clock): switch if the wall clock agrees."""
        self._timer = None
        self._armed_for = None
        self.apply(self.clock())
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        now = self.clock()
        upcoming = next_after(self._activations, now)
        if upcoming is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, (upcoming.effective_at - now).total_seconds())
        self._timer = loop.call_at(loop.time() + delay, self.on_timer)
        self._armed_for = upcoming.effective_at
        log.debug("armed for version %d at %s (in %.3f s)", upcoming.version_id,
                  upcoming.effective_at.isoformat(), delay)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed_for = None

    # ------------------------------------------------------------------ helpers

    async def _ensure_store(self) -> TableStoreLike:
        if self.store is None:
            self.store = await self._open_store()
        return self.store

    def _failed(self, what: str) -> None:
        self.failures += 1
        if self._metrics is not None:
            self._metrics.reload_failed()
        log.exception("%s; keeping table %s", what,
                      self.active.label if self.active else "(none yet)")

    async def close(self) -> None:
        self._disarm()
        if self.store is not None:
            store, self.store = self.store, None
            try:
                await store.close()
            except Exception:
                log.exception("closing the table store")
