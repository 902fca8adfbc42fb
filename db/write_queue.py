"""The writer's queue: every accepted line, in order, in memory and behind it in the on-disk spool.

Modelled on Telegraf's buffer (`models/buffer.go`) as a transaction: a sender `take()`s a batch,
then `accept()`s it (InfluxDB took it, refused lines of it went to the dead-letter files) or
`reject()`s it (not deliverable now): a rejected batch goes to the spool, and the replayer takes
spooled segments oldest first (`oldest_spooled()`, then `accept_spooled()` once InfluxDB took
one). The writer sends nothing past the spool while it holds anything (`spool_busy`), so
everything lands oldest first.

Memory is bounded: when more than `max_pending` points wait in memory for a sender (InfluxDB
takes points slower than they come, e.g. through a long liquidation cascade), the oldest queued
batches go to the spool instead, and the replayer delivers them from there. Nothing is dropped
for it. One spool thread appends in the order batches are handed over, so the spool stays
oldest first.

Marks: line i is the i-th line accepted by `add()` (0-based). A batch is a contiguous run of
indices; marks advance over settled batches at the front, so they are conservative when batches
settle out of order (two senders, replays) and never decrease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

from db.spool import Segment, Spool

log = logging.getLogger(__name__)

ALERT_EVERY = 60.0


@dataclass
class WriterStats:
    """Points counted at each outcome; `retried` counts failed delivery attempts."""

    written: int = 0
    retried: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(eq=False, slots=True)
class Batch:
    """Lines `first` to `first + count - 1`; `lines` is emptied once they are settled or on disk
    (the marks keep the Batch a while; memory must not keep its lines)."""

    first: int  # index of lines[0] among the accepted lines
    count: int
    lines: list[str]
    durable: bool = False  # in InfluxDB, dead-lettered, on disk, or lost to a full spool
    landed: bool = False  # in InfluxDB, dead-lettered, or lost to a full spool
    handed: bool = False  # given to the spool thread
    segment: Segment | None = None  # where it waits in the spool; gone from it = landed (or lost)


class WriteQueue:
    def __init__(
        self, spool: Spool, stats: WriterStats, *, batch_size: int, max_pending: int
    ) -> None:
        self.spool = spool
        self.stats = stats  # counts `spooled` and `dropped`; the writer counts the rest
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._buffer: list[str] = []
        self._cut_through = 0  # index of the first line in the buffer
        self._memory: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._queued_points = 0
        self._taken = 0  # batches taken by a sender, not yet accepted or rejected
        self._spooling = 0  # points handed to the spool thread, not yet on disk
        self._spool_thread = ThreadPoolExecutor(1, thread_name_prefix="writer-spool")
        self._overflows: set[asyncio.Future[None]] = set()
        self._last_overflow_alert = 0.0
        self._not_durable: deque[Batch] = deque()
        self._not_landed: deque[Batch] = deque()
        self.spool_ready = asyncio.Event()  # set while the spool may hold something
        if len(spool):
            self.spool_ready.set()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- producer side ---------------------------------------------------------------------------

    def add(self, lines: Iterable[str]) -> None:
        buffer = self._buffer
        buffer.extend(lines)
        while len(buffer) >= self.batch_size:
            self._enqueue(buffer[: self.batch_size])
            del buffer[: self.batch_size]

    def cut(self) -> None:
        """Queue the partial batch in the buffer (the flush interval passed, or a flush)."""
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._enqueue(batch)

    def _enqueue(self, lines: list[str]) -> None:
        batch = Batch(self._cut_through, len(lines), lines)
        self._cut_through += len(lines)
        self._not_durable.append(batch)
        self._not_landed.append(batch)
        self._idle.clear()
        self._queued_points += len(lines)
        self._memory.put_nowait(batch)
        while self._queued_points > self.max_pending and self._memory.qsize() > 1:
            self._overflow(self._memory.get_nowait())

    def _overflow(self, batch: Batch | None) -> None:
        """Too much waits in memory: the oldest queued batch goes to the spool (in the spool
        thread, in order), and the replayer delivers it."""
        if batch is None:
            return
        self._queued_points -= batch.count
        now = time.monotonic()
        if now - self._last_overflow_alert >= ALERT_EVERY:
            self._last_overflow_alert = now
            log.warning(
                "InfluxDB takes points slower than they come: over %d wait in memory, so the "
                "oldest batches go to the spool (%s) and are written from there",
                self.max_pending,
                self.spool.directory,
            )
        future = self._hand_to_spool(batch)
        self._overflows.add(future)
        future.add_done_callback(self._overflows.discard)

    # -- marks and figures -----------------------------------------------------------------------

    @property
    def accepted(self) -> int:
        """Lines accepted so far (the next line's index)."""
        return self._cut_through + len(self._buffer)

    def _trim(self) -> None:
        """Let settled batches at the front go (the marks do it too when read)."""
        _ = self.durable_through, self.landed_through

    @property
    def durable_through(self) -> int:
        pending = self._not_durable
        while pending and pending[0].durable:
            pending.popleft()
        return pending[0].first if pending else self._cut_through

    @property
    def landed_through(self) -> int:
        pending = self._not_landed
        while pending and (pending[0].landed or self._left_spool(pending[0])):
            pending.popleft()
        return pending[0].first if pending else self._cut_through

    def _left_spool(self, batch: Batch) -> bool:
        """Spooled, and gone from the spool since: replayed, or dropped by the full policy."""
        return batch.segment is not None and batch.segment not in self.spool

    @property
    def pending_points(self) -> int:
        """Points accepted but not yet written or spooled (buffer, queued batches, batches on
        their way to the spool)."""
        return len(self._buffer) + self._queued_points + self._spooling

    @property
    def spool_busy(self) -> bool:
        """The spool holds (or is about to hold) older batches: new ones must queue behind."""
        return bool(len(self.spool) or self._spooling)

    # -- sender side -----------------------------------------------------------------------------

    async def take(self) -> Batch | None:
        """The next batch for a sender; None tells the sender to stop."""
        batch = await self._memory.get()
        if batch is not None:
            self._queued_points -= batch.count
            self._taken += 1
        return batch

    def stop_takers(self, count: int) -> None:
        for _ in range(count):
            self._memory.put_nowait(None)

    def accept(self, batch: Batch) -> None:
        """Settled: InfluxDB holds every line, or refused some for good (dead-lettered)."""
        batch.durable = batch.landed = True
        batch.lines = []
        self._taken -= 1
        self._trim()
        self._set_idle_if_done()

    async def reject(self, batch: Batch) -> None:
        """Not deliverable now: to the spool, behind everything handed over before it."""
        try:
            with contextlib.suppress(OSError):  # logged by _spooled
                await asyncio.shield(self._hand_to_spool(batch))
        finally:
            self._taken -= 1
            self._set_idle_if_done()

    def reject_now(self, batch: Batch) -> None:
        """A sender was cancelled (close) with `batch`: spool it here unless already handed."""
        if batch.handed:
            return
        self._taken -= 1
        self._append(batch)
        self.spool_ready.set()
        self._trim()

    # -- replayer side ---------------------------------------------------------------------------

    async def oldest_spooled(self) -> tuple[Segment, list[str]] | None:
        """The oldest spooled segment and its lines; None (and `spool_ready` cleared) if none."""
        while (segment := self.spool.oldest()) is not None:
            try:
                body = await asyncio.to_thread(self.spool.read, segment)
            except FileNotFoundError:  # dropped by the full-spool policy meanwhile
                self.spool.remove(segment)
                continue
            return segment, body.decode("utf-8").split("\n")
        self.spool_ready.clear()
        return None

    def accept_spooled(self, segment: Segment) -> None:
        """InfluxDB took the segment (or dead-lettered parts of it): forget it."""
        self.spool.remove(segment)
        self._trim()

    # -- spooling --------------------------------------------------------------------------------

    def _hand_to_spool(self, batch: Batch) -> asyncio.Future[None]:
        """Append in the one spool thread (appends keep the order they were handed over in).
        The append runs to its end even if the caller is cancelled meanwhile."""
        batch.handed = True
        self._spooling += batch.count
        future = asyncio.get_running_loop().run_in_executor(self._spool_thread, self._append, batch)
        future.add_done_callback(lambda done: self._spooled(batch, done))
        return future

    def _spooled(self, batch: Batch, future: asyncio.Future[None]) -> None:
        self._spooling -= batch.count
        error = None if future.cancelled() else future.exception()
        if error is not None:
            batch.durable = batch.landed = True  # lost: the marks must not wait for it forever
            log.error("could not spool %d points, they are lost: %s", batch.count, error)
        self.spool_ready.set()
        self._trim()
        self._set_idle_if_done()

    def _append(self, batch: Batch) -> None:
        """Runs in the spool thread (or the loop's, at close): touches no asyncio object."""
        batch.handed = True
        batch.segment = self.spool.append("\n".join(batch.lines).encode("utf-8"), batch.count)
        if batch.segment is None:  # refused by a full spool (counted, logged): it never lands
            batch.landed = True
        else:
            self.stats.spooled += batch.count
        batch.durable = True
        batch.lines = []
        self.stats.dropped = self.spool.dropped_points

    # -- idle and close --------------------------------------------------------------------------

    def _set_idle_if_done(self) -> None:
        if self._memory.empty() and self._taken == 0 and self._spooling == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until every batch cut so far is settled or spooled."""
        await self._idle.wait()

    async def close(self) -> None:
        """Spool what still waits in memory, and finish the spool thread's appends."""
        leftovers = list(self._overflows)
        while not self._memory.empty():
            batch = self._memory.get_nowait()
            if batch is not None:
                self._queued_points -= batch.count
                leftovers.append(self._hand_to_spool(batch))
        await asyncio.gather(*leftovers, return_exceptions=True)
        await asyncio.to_thread(self._spool_thread.shutdown, wait=True)
