"""Call records written by a child process: the router's event loop only hands them over.

Building a row and inserting it through SQLAlchemy cost ~116 µs of CPU per call under the
router's GIL, and batch inserts stalled its event loop. :class:`RecordSink` has the writer's
interface (``submit``, ``start``, ``close``, ``counts``) but only does this in the router:

- ``submit`` appends a compact tuple of the record's raw fields (monotonic times, attempts as
  small tuples) and a sequence number to a list: O(1), a few µs;
- every ``flush_interval_s`` a loop timer pickles that list as one batch (with the
  monotonic → wall-clock offset) onto the child's stdin pipe (non-blocking: what the pipe does
  not take waits in the transport's buffer; beyond ``backlog_limit`` records the router
  spills the rows itself, a rare path);
- the child (``python -m router.records_process``) builds the rows
  (:func:`router.record_rows.record_row`) and hosts the :class:`router.records.CallRecordWriter`
  unchanged (database batches, spill file, replay). It acknowledges on stdout, per batch, once
  the batch's rows are in the database or the spill file, with its counts.

A batch not acknowledged when the child dies goes to the spill file from the router, and the
child is restarted (backoff); the new child replays the spill file. Record ids are derived
from the sink's random base and the sequence number, so a row the dead child had stored
already is not stored twice (the store is idempotent by record id). On close the pipe is
closed (EOF: the child flushes to the database or the spill file and exits), the child gets
5 s, then it is killed and what it had not acknowledged is spilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import random
import signal
import struct
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .call_record import CallRecord, TerminatedReason
from .hunt import Attempt, AttemptEnd
from .record_rows import Row, append_rows, record_row, wall_offset_s

if TYPE_CHECKING:
    from .config import NodruteSettings
    from .records import RecordsObserver

log = logging.getLogger("nodrute.records")

__all__ = ["RecordSink", "record_from_tuple", "record_tuple", "sink_from_settings"]

_FRAME = struct.Struct("!I")
RecordTuple = tuple[Any, ...]
Batch = tuple[int, float, list[RecordTuple]]
"""(batch number, mono → wall offset, records) as pickled onto the pipe."""


# --- the compact form ----------------------------------------------------------------------------


def record_tuple(seq: int, r: CallRecord) -> RecordTuple:
    """``r``'s raw fields (what :func:`record_from_tuple` reads back), led by ``seq``."""
    return (
        seq, r.call_id, r.service, r.trunk, r.caller, r.started_at, r.requested_municipality,
        r.municipality, r.location_source, tuple(r.location_evidence), r.location_ambiguous,
        r.location_disagreement, r.table_version, r.centre_id, r.centre_uri, r.centre_call_id,
        r.first_provisional_at, r.ringing_at, r.answered_at, r.ended_at, r.final_status,
        r.centre_status, None if r.end_reason is None else r.end_reason.value,
        tuple((a.centre_id, a.uri, a.role, a.started_at, a.pass_number, a.skipped_down,
               a.provisional_at, a.ended_at, None if a.end is None else a.end.value, a.status)
              for a in r.attempts),
        r.hunt_started_at, r.hunt_exhausted, tuple(r.notes),
    )  # fmt: skip


def record_from_tuple(t: RecordTuple) -> tuple[int, CallRecord]:
    """The sequence number and the record of :func:`record_tuple`'s output."""
    attempts = [Attempt(c, u, role, started, p, skipped, prov, ended,
                        None if end is None else AttemptEnd(end), status)
                for c, u, role, started, p, skipped, prov, ended, end, status in t[23]]
    record = CallRecord(
        call_id=t[1], service=t[2], trunk=t[3], caller=t[4], started_at=t[5],
        requested_municipality=t[6], municipality=t[7], location_source=t[8],
        location_evidence=list(t[9]), location_ambiguous=t[10], location_disagreement=t[11],
        table_version=t[12], centre_id=t[13], centre_uri=t[14], centre_call_id=t[15],
        first_provisional_at=t[16], ringing_at=t[17], answered_at=t[18], ended_at=t[19],
        final_status=t[20], centre_status=t[21],
        end_reason=None if t[22] is None else TerminatedReason(t[22]), attempts=attempts,
        hunt_started_at=t[24], hunt_exhausted=t[25], notes=list(t[26]),
    )  # fmt: skip
    return t[0], record


def record_id(base: int, seq: int) -> str:
    """A record's id: stable across a child's death, so a replay never stores it twice."""
    return str(uuid.UUID(int=(base + seq) % (1 << 128)))


def rows_of(base: int, offset_s: float, records: list[RecordTuple]) -> list[Row]:
    rows = []
    for t in records:
        try:
            seq, record = record_from_tuple(t)
            rows.append(record_row(record, offset_s, record_id(base, seq)))
        except Exception:
            log.exception("call record %r not converted; not stored", t[1:2])
    return rows


# --- the router side -----------------------------------------------------------------------------


class RecordSink:
    """The router's end of the records child process; see the module docstring."""

    def __init__(
        self,
        child_config: dict[str, Any],
        spill_path: Path,
        *,
        flush_interval_s: float = 0.075,
        backlog_limit: int = 10_000,
        observer: RecordsObserver | None = None,
        python: str = sys.executable,
    ) -> None:
        self.child_config = {**child_config, "spill_path": str(spill_path)}
        self.spill_path = spill_path
        self._flush_interval_s = flush_interval_s
        self._backlog_limit = backlog_limit
        self._observer = observer
        self._python = python
        self._base = random.getrandbits(128)
        self.child_config["base"] = str(self._base)
        self._seq = 0
        self._batch_no = 0
        self._pending: list[RecordTuple] = []
        self._unacked: dict[int, Batch] = {}
        """Batches handed to the child and not yet in its database or spill file."""
        self._unacked_count = 0
        self._offset_s = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._child_up = asyncio.Event()
        self._closing = False
        self.counts: dict[str, int] = {"written": 0, "spilled": 0, "replayed": 0, "lost": 0}
        self.child_failures = 0
        """How often the child died or could not be started (each logged as an error)."""
        if observer is not None:
            observer.track_records_queue(self.queue_depth)

    # ------------------------------------------------------------------ the call path

    def submit(self, record: CallRecord) -> None:
        """Keep ``record`` for the next batch: O(1), never blocks, never raises."""
        self._seq += 1
        try:
            self._pending.append(record_tuple(self._seq, record))
        except Exception:
            log.exception("call record of %s not kept; not stored", record.call_id)
            self._count("lost", 1)

    def queue_depth(self) -> int:
        return len(self._pending) + self._unacked_count

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the child and the flush timer (on the running loop)."""
        loop = asyncio.get_running_loop()
        self._offset_s = wall_offset_s(loop.time())
        self._supervisor = asyncio.create_task(self._supervise(), name="records-child")
        self._timer = loop.call_later(self._flush_interval_s, self._tick)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Hand over what is left, close the pipe, give the child ``timeout_s`` to store it,
        then kill it; whatever it did not acknowledge is spilled from here."""
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._supervisor is not None and not self._child_up.is_set() and self._pending:
            with contextlib.suppress(TimeoutError):  # still starting: let it take the rest
                await asyncio.wait_for(self._child_up.wait(), timeout_s)
        proc = self._proc
        if proc is not None and proc.returncode is None and not self._child_up.is_set() \
                and not self._pending and not self._unacked:  # still starting, nothing to do
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        elif proc is not None and proc.returncode is None and proc.stdin is not None:
            self._flush()
            with contextlib.suppress(Exception):
                proc.stdin.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._supervisor_done()), timeout_s)
            except TimeoutError:
                log.error("call records child did not stop within %.0f s; killed", timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        left = [t for _, _, records in self._unacked.values() for t in records] + self._pending
        self._unacked.clear()
        self._unacked_count = 0
        self._pending = []
        if left:
            log.warning("%d call records not acknowledged by the child at stop; kept in %s",
                        len(left), self.spill_path)
            self._spill_tuples(self._offset_s, left)

    async def _supervisor_done(self) -> None:
        if self._supervisor is not None:
            await asyncio.gather(self._supervisor, return_exceptions=True)

    # ------------------------------------------------------------------ handing over

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._offset_s = wall_offset_s(loop.time())
        self._flush()
        if not self._closing:
            self._timer = loop.call_later(self._flush_interval_s, self._tick)

    def _flush(self) -> None:
        if not self._pending:
            return
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None \
                or not self._child_up.is_set():
            if len(self._pending) > self._backlog_limit:  # no child for a while: spill
                self._spill_tuples(self._offset_s, self._pending)
                self._pending = []
            return
        if self._unacked_count + len(self._pending) > self._backlog_limit:
            # The child is far behind: keep the records, at a cost (rare).
            log.warning("call records child %d records behind; spilling %d from the router",
                        self._unacked_count, len(self._pending))
            self._spill_tuples(self._offset_s, self._pending)
            self._pending = []
            return
        self._batch_no += 1
        batch: Batch = (self._batch_no, self._offset_s, self._pending)
        self._pending = []
        data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        self._unacked[self._batch_no] = batch
        self._unacked_count += len(batch[2])
        try:  # a non-blocking pipe: what it does not take now waits in the transport
            proc.stdin.write(_FRAME.pack(len(data)) + data)
        except Exception:
            log.exception("call records: pipe to the child failed")

    def _acknowledge(self, line: bytes) -> None:
        """A report from the child: ``{"ack": n, "counts": {...}}`` (batches <= n stored)."""
        try:
            report = json.loads(line)
        except ValueError:
            log.error("call records child said %.200r", line)
            return
        acked = int(report.get("ack", 0))
        for number in [n for n in self._unacked if n <= acked]:
            self._unacked_count -= len(self._unacked.pop(number)[2])
        for result, n in report.get("moved", {}).items():
            if result in self.counts and n > 0:
                self._count(result, int(n))
        if report.get("ready"):
            self._child_up.set()

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        backoff_s = 0.2
        while True:
            try:
                await self._run_child()
                backoff_s = 0.2
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call records child could not be started")
            if self._closing:
                return
            self.child_failures += 1
            log.error("call records child died (exit %s); restarting in %.1f s",
                      None if self._proc is None else self._proc.returncode, backoff_s)
            self._spill_unacked()
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 5.0)

    async def _run_child(self) -> None:
        self._child_up.clear()
        self._proc = proc = await asyncio.create_subprocess_exec(
            self._python, "-m", "router.records_process", json.dumps(self.child_config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            async for line in proc.stdout:
                self._acknowledge(line)
        finally:
            if proc.returncode is None and not self._closing:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
            self._child_up.clear()

    def _spill_unacked(self) -> None:
        batches = sorted(self._unacked.items())
        self._unacked.clear()
        self._unacked_count = 0
        for _, (_, offset_s, records) in batches:
            self._spill_tuples(offset_s, records)

    def _spill_tuples(self, offset_s: float, records: list[RecordTuple]) -> None:
        rows = rows_of(self._base, offset_s, records)
        try:
            append_rows(self.spill_path, rows)
        except Exception:
            log.exception("call records LOST: spill file %s not writable", self.spill_path)
            self._count("lost", len(rows))
            return
        self._count("spilled", len(rows))

    def _count(self, result: str, n: int) -> None:
        self.counts[result] += n
        if self._observer is not None:
            self._observer.call_records_moved(result, n)


def sink_from_settings(settings: NodruteSettings,
                       observer: RecordsObserver | None) -> RecordSink | None:
    """The node's sink (not started), or None with ``[records] enabled = false``."""
    from .records import default_spill_path

    config = settings.records
    if not config.enabled:
        return None
    url = settings.database.url
    child = {"url": url, "queue_size": config.queue_size, "batch_size": config.batch_size,
             "replay_interval_s": config.replay_interval_s}
    return RecordSink(child, config.spill_path or default_spill_path(url),
                      backlog_limit=config.queue_size, observer=observer)


# --- the child -----------------------------------------------------------------------------------


class _Reporter:
    """Collects the writer's counts between two reports to the router."""

    def __init__(self) -> None:
        self.moved: dict[str, int] = {}

    def call_records_moved(self, result: str, count: int) -> None:
        self.moved[result] = self.moved.get(result, 0) + count

    def track_records_queue(self, depth: Callable[[], int]) -> None:
        pass


async def _child_main(config: dict[str, Any]) -> None:
    from .records import CallRecordWriter, RowStore
    from .records_store import CallRecordStore

    url = str(config["url"])
    base = int(config["base"])

    async def open_store() -> RowStore:
        return await CallRecordStore.open(url)

    reporter = _Reporter()
    writer = CallRecordWriter(
        open_store, Path(config["spill_path"]), queue_size=int(config["queue_size"]),
        batch_size=int(config["batch_size"]),
        replay_interval_s=float(config["replay_interval_s"]), observer=reporter,
    )  # fmt: skip
    writer.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    received: list[tuple[int, int]] = []  # (batch number, rows submitted up to it)
    submitted = 0
    acked = 0

    def report(**extra: Any) -> None:
        nonlocal acked
        done = sum(writer.counts[k] for k in ("written", "spilled", "lost"))
        while received and received[0][1] <= done:
            acked = received.pop(0)[0]
        if reporter.moved or extra or acked:
            out.write(json.dumps({"ack": acked, "moved": reporter.moved, **extra}).encode()
                      + b"\n")
            out.flush()
            reporter.moved = {}

    async def report_loop() -> None:
        while True:
            await asyncio.sleep(0.05)
            report()

    reporting = asyncio.create_task(report_loop())
    report(ready=True)
    while True:
        try:
            size = _FRAME.unpack(await reader.readexactly(_FRAME.size))[0]
            number, offset_s, records = pickle.loads(await reader.readexactly(size))
        except asyncio.IncompleteReadError:
            break  # EOF: the router is closing
        rows = rows_of(base, offset_s, records)
        if len(rows) < len(records):
            reporter.call_records_moved("lost", len(records) - len(rows))
        for row in rows:
            writer.submit_row(row)
        submitted += len(rows)
        received.append((number, submitted))
    reporting.cancel()
    await writer.close(timeout_s=3.0)
    received = [(n, 0) for n, _ in received]  # all stored or spilled now
    with contextlib.suppress(OSError):  # the router may be gone
        report(done=True)


def main(argv: list[str]) -> int:
    # Ctrl-C and SIGTERM reach the whole process group: the child stops only when the router
    # closes the pipe (EOF, also when the router itself dies), so nothing queued is dropped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s records-child %(levelname)s %(message)s")
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_child_main(json.loads(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
