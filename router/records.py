"""Call records: bounded queue -> database, spill file when the database is down.

The B2BUA hands every ended call to :meth:`CallRecordWriter.submit` (its ``on_call_ended``
hook). ``submit`` is synchronous, O(1) and never raises: it turns the record into a plain row
(:func:`record_row`, wall-clock times) and puts it on a bounded queue. Everything else happens
in the writer's background tasks, off the call path:

- the *write loop* takes batches off the queue (a batch gathers for up to ``linger_s`` after
  its first record: one transaction per call would cost more than the call itself) and inserts
  them (``router/records_store.py``);
  if that fails, the batch is appended to the spill file (one JSON line per row, fsync per
  batch) and the database counts as down: further batches go straight to the spill file;
- the *replay loop* tries the database every ``replay_interval_s``; once it answers, it moves
  the spill file aside, inserts its rows (idempotent by record id: a row stored already is not
  stored again) and deletes it;
- the *overflow loop* spills rows that found the queue full (the call path never writes files;
  only if even the overflow list is full is a row written to the spill file at once).

On shutdown :meth:`CallRecordWriter.close` gives the queue a bounded time to reach the
database, then spills what is left. No record is dropped unless the spill file itself cannot
be written (logged as an error with the row, counted as ``lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .call_record import CallRecord
from .record_rows import Row, append_rows, read_rows, record_row, wall_offset_s

if TYPE_CHECKING:
    from .config import NodruteSettings

log = logging.getLogger("nodrute.records")

__all__ = ["CallRecordWriter", "RecordsObserver", "RowStore", "append_rows", "chain_hooks",
           "default_spill_path", "read_rows", "record_row", "wall_offset_s",
           "writer_from_settings"]


class RecordsObserver(Protocol):
    """What the writer reports (router.metrics.NodeMetrics implements it)."""

    def call_records_moved(self, result: str, count: int) -> None:
        """``count`` rows were ``written``, ``spilled``, ``replayed`` or ``lost``."""

    def track_records_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth from ``depth`` at each scrape."""


class RowStore(Protocol):
    """The database side (router.records_store.CallRecordStore; tests use fakes)."""

    async def insert(self, rows: list[Row]) -> int: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


# --- the writer ----------------------------------------------------------------------------------


class CallRecordWriter:
    """Call records to the database through a bounded queue; see the module docstring."""

    def __init__(
        self,
        open_store: Callable[[], Awaitable[RowStore]],
        spill_path: Path,
        *,
        queue_size: int = 10_000,
        batch_size: int = 200,
        replay_interval_s: float = 5.0,
        write_timeout_s: float = 10.0,
        linger_s: float = 0.5,
        offset_s: float | None = None,
        observer: RecordsObserver | None = None,
    ) -> None:
        self._open_store = open_store
        self.spill_path = spill_path
        self.replaying_path = spill_path.with_name(spill_path.name + ".replaying")
        """Where the spill file is moved while its rows are replayed (kept if that fails)."""
        self._queue: asyncio.Queue[Row] = asyncio.Queue(maxsize=queue_size)
        self._overflow: deque[Row] = deque()
        self._overflow_limit = queue_size
        self._overflow_ready = asyncio.Event()
        self._batch_size = batch_size
        self._replay_interval_s = replay_interval_s
        self._write_timeout_s = write_timeout_s
        self._linger_s = linger_s
        """How long a batch may gather after its first record (unless it fills up first)."""
        self._closing = False
        self._batch_full = asyncio.Event()
        """Set when a batch's worth is queued (or at stop): the write loop stops lingering."""
        self._follow_wall_clock = offset_s is None
        self.offset_s = 0.0 if offset_s is None else offset_s
        """Added to the loop's monotonic clock to get Unix time (:func:`wall_offset_s`). None
        at construction: taken at :meth:`start` and again every ``replay_interval_s``, so a
        long-running node follows NTP's corrections of the wall clock."""
        self._observer = observer
        self._store: RowStore | None = None
        self._store_lock = asyncio.Lock()
        self._spill_lock = asyncio.Lock()
        self._in_flight: list[Row] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.database_ok = True
        """False after a failed write, until the replay loop reaches the database again."""
        self.counts: dict[str, int] = {"written": 0, "spilled": 0, "replayed": 0, "lost": 0}
        if observer is not None:
            observer.track_records_queue(self.queue_depth)
        with contextlib.suppress(RuntimeError):  # no running loop: taken at start()
            self._sync_wall_clock()

    # ------------------------------------------------------------------ the call path

    def submit(self, record: CallRecord) -> None:
        """Queue ``record`` for the database: O(1), never blocks, never raises."""
        try:
            row = record_row(record, self.offset_s)
        except Exception:
            log.exception("call record of %s not converted; not stored", record.call_id)
            self._count("lost", 1)
            return
        self.submit_row(row)

    def submit_row(self, row: Row) -> None:
        """Queue a converted row (see :meth:`submit`)."""
        if self._closed:
            self._spill_now([row])
            return
        try:
            self._queue.put_nowait(row)
            if self._queue.qsize() >= self._batch_size:
                self._batch_full.set()
            return
        except asyncio.QueueFull:
            pass
        if len(self._overflow) < self._overflow_limit:
            self._overflow.append(row)
            self._overflow_ready.set()
        else:  # the writer is far behind and the spill task too: keep the record, at a cost
            self._spill_now([row])

    def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._overflow)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background tasks (on the running loop)."""
        self._sync_wall_clock()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="records-write"),
            asyncio.create_task(self._replay_loop(), name="records-replay"),
            asyncio.create_task(self._overflow_loop(), name="records-overflow"),
        ]

    async def close(self, timeout_s: float = 5.0) -> None:
        """Give the queue ``timeout_s`` to reach the database (or the spill file), spill what
        is left, stop the tasks and close the database."""
        self._closing = True  # no more lingering: write what is queued now
        self._batch_full.set()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout_s)
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        left = list(self._in_flight)
        self._in_flight = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
            self._queue.task_done()
        left.extend(self._overflow)
        self._overflow.clear()
        if left:
            log.warning("%d call records not written at stop; kept in %s", len(left),
                        self.spill_path)
            self._spill_now(left)
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self._store.close()
            self._store = None

    # ------------------------------------------------------------------ background

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._in_flight = batch  # a cancel (stop) leaves it here for close() to spill
            if self._linger_s > 0 and self._queue.qsize() < self._batch_size - 1 \
                    and not self._closing:
                # One transaction per row would cost ~1 ms of CPU each (commit, fsync, thread
                # hops): let a batch gather first (cut short when it is full or at stop).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_full.wait(), self._linger_s)
            if not self._closing:
                self._batch_full.clear()
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                if not await self._insert(batch, "written"):
                    await self._spill(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call records: unexpected fault; spilling the batch")
                await self._spill(batch)
            self._in_flight = []
            for _ in batch:
                self._queue.task_done()

    async def _insert(self, batch: list[Row], result: str) -> bool:
        """Insert ``batch``; False (database marked down) if that failed."""
        if not self.database_ok and result == "written":
            return False
        store = await self._get_store()
        if store is None:
            return False
        try:
            await asyncio.wait_for(store.insert(batch), self._write_timeout_s)
        except Exception as err:
            if self.database_ok:
                log.warning("call records: database write failed (%s); spilling to %s "
                            "until it is back", _brief(err), self.spill_path)
            self.database_ok = False
            return False
        self._count(result, len(batch))
        return True

    async def _get_store(self) -> RowStore | None:
        async with self._store_lock:
            if self._store is None:
                try:
                    self._store = await asyncio.wait_for(self._open_store(),
                                                         self._write_timeout_s)
                except Exception as err:
                    if self.database_ok:
                        log.warning("call records: database not reachable (%s); spilling to "
                                    "%s until it is", _brief(err), self.spill_path)
                    self.database_ok = False
                    return None
            return self._store

    async def _overflow_loop(self) -> None:
        while True:
            await self._overflow_ready.wait()
            self._overflow_ready.clear()
            rows = list(self._overflow)
            if rows:
                await self._spill(rows)
            for _ in rows:  # only now: a cancel mid-spill leaves them for close()
                self._overflow.popleft()

    def _sync_wall_clock(self) -> None:
        if self._follow_wall_clock:
            self.offset_s = wall_offset_s(asyncio.get_running_loop().time())

    async def _replay_loop(self) -> None:
        while True:
            self._sync_wall_clock()
            try:
                await self.replay()
            except Exception:
                log.exception("call records: replay failed; will retry")
            await asyncio.sleep(self._replay_interval_s)

    async def replay(self) -> int:
        """If the database answers: mark it up and store the spilled rows. Returns how many
        rows were replayed (rows stored already are not stored twice)."""
        if not self.replaying_path.exists() and not self.spill_path.exists() \
                and self.database_ok:
            return 0
        store = await self._get_store()
        if store is None:
            return 0
        try:
            await asyncio.wait_for(store.ping(), self._write_timeout_s)
        except Exception:
            return 0
        async with self._spill_lock:
            if not self.replaying_path.exists() and self.spill_path.exists():
                self.spill_path.rename(self.replaying_path)
        replayed = 0
        if self.replaying_path.exists():
            rows = await asyncio.to_thread(read_rows, self.replaying_path)
            for start in range(0, len(rows), self._batch_size):
                batch = rows[start:start + self._batch_size]
                try:
                    await asyncio.wait_for(store.insert(batch), self._write_timeout_s)
                except Exception as err:
                    log.warning("call records: replay of %s failed (%s); will retry",
                                self.replaying_path, _brief(err))
                    return replayed
                replayed += len(batch)
            self._count("replayed", replayed)
            self.replaying_path.unlink(missing_ok=True)
            log.info("call records: %d spilled rows replayed into the database", replayed)
        if not self.database_ok:
            log.info("call records: database reachable again; writing directly")
        self.database_ok = True
        return replayed

    # ------------------------------------------------------------------ spilling

    async def _spill(self, rows: list[Row]) -> None:
        async with self._spill_lock:
            try:
                await asyncio.to_thread(append_rows, self.spill_path, rows)
            except Exception:
                self._lost(rows)
                return
        self._count("spilled", len(rows))

    def _spill_now(self, rows: list[Row]) -> None:
        """Synchronous spill: at stop, after close, or when even the overflow is full."""
        try:
            append_rows(self.spill_path, rows)
        except Exception:
            self._lost(rows)
            return
        self._count("spilled", len(rows))

    def _lost(self, rows: list[Row]) -> None:
        log.exception("call records LOST: spill file %s not writable; the rows follow",
                      self.spill_path)
        for row in rows:  # the caller is left out: the log cannot honour Privacy
            kept = {k: v for k, v in row.items() if k != "caller"}
            log.error("lost call record: %s", json.dumps(kept, ensure_ascii=False))
        self._count("lost", len(rows))

    def _count(self, result: str, n: int) -> None:
        self.counts[result] += n
        if self._observer is not None:
            self._observer.call_records_moved(result, n)


def _brief(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


# --- wiring (router/app.py) ----------------------------------------------------------------------


def writer_from_settings(settings: NodruteSettings,
                         observer: RecordsObserver | None) -> CallRecordWriter | None:
    """The node's writer on ``[database] url`` (not started), or None with ``[records]``
    ``enabled = false``."""
    config = settings.records
    if not config.enabled:
        return None
    url = settings.database.url

    async def open_store() -> RowStore:
        from .records_store import CallRecordStore

        return await CallRecordStore.open(url)

    return CallRecordWriter(
        open_store, config.spill_path or default_spill_path(url), queue_size=config.queue_size,
        batch_size=config.batch_size, replay_interval_s=config.replay_interval_s,
        observer=observer,
    )  # fmt: skip


def default_spill_path(database_url: str) -> Path:
    """``records-spill.jsonl`` beside an SQLite database file, else ``var/`` of the checkout."""
    scheme, sep, path = database_url.partition(":///")
    if sep and scheme.startswith("sqlite") and path not in ("", ":memory:"):
        return Path(path).parent / "records-spill.jsonl"
    return Path(__file__).resolve().parents[1] / "var" / "records-spill.jsonl"


def chain_hooks(*hooks: Callable[[CallRecord], None] | None
                ) -> Callable[[CallRecord], None] | None:
    """One ``on_call_ended`` hook calling each given one in order (None: no hook at all)."""
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call_all(record: CallRecord) -> None:
        for hook in present:
            hook(record)

    return call_all
