"""The one way points reach InfluxDB: batch, send, sort the answer, lose nothing that was accepted.

Producers call `write()` with line-protocol lines (synchronous, cheap). `InfluxWriter` runs the
parts the way Telegraf's running_output does: the queue (`db.write_queue`: batches by size and
time, memory with the on-disk spool behind it, in order) and the protocol client (`db.sender`:
posts a batch and turns the answer into a typed `Delivery`). Sender tasks post each batch once
(`in_flight` requests at a time, so InfluxDB parses one batch while the answer to another waits
for the busy event loop); a batch that cannot be delivered now (server down, slow, overloaded,
credentials refused, database missing) goes to the spool, and while the spool holds anything
every new batch joins it there, so the replayer delivers everything oldest first, backing off
with jitter (or as Retry-After asks) between tries.

Marks for consumers (line i = the i-th line `write()` accepted since start, 0-based):
- `accepted_lines`: lines accepted so far.
- `durable_through`: every line below it is in InfluxDB, on disk in the spool, dead-lettered, or
  was lost to the full-spool policy (logged at ERROR, counted in `stats.dropped`).
- `landed_through`: the same without "in the spool": every line below it is in InfluxDB (or was
  dead-lettered, or lost to a full spool). Readers of InfluxDB see it.
Both never decrease and are conservative: a batch that settles before an older one does not move
them until the older one settles too.

`on_replayed(lines)` is called on the event loop with the lines of each spooled segment right
after InfluxDB took it, including segments left in the spool by an earlier run (all its lines,
dead-lettered ones too), so that derived data over them can be recomputed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import httpx

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.sender import Delivery, Outcome, Sender
from db.spool import Spool
from db.write_queue import WriteQueue, WriterStats
from utils.backoff import jittered_backoff

__all__ = ["Delivery", "InfluxWriter", "Outcome", "WriterStats"]

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
ALERT_EVERY = 60.0


class InfluxWriter:
    def __init__(
        self,
        target: InfluxTarget,
        spool: Spool,
        dead_letters: DeadLetters,
        *,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        on_database_missing: Callable[[], Awaitable[bool]] | None = None,
        backoff_cap: float = BACKOFF_CAP,
        in_flight: int = 2,
        max_pending: int = 200_000,
        on_replayed: Callable[[list[str]], None] | None = None,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`client` (with its base_url) or `transport` replace the network, e.g. in tests."""
        self.target = target
        self.spool = spool
        self.dead_letters = dead_letters
        self.flush_interval = flush_interval
        self.backoff_cap = backoff_cap
        self.in_flight = in_flight
        self.on_replayed = on_replayed
        self.stats = WriterStats()
        self.sender = Sender(
            target,
            dead_letters,
            on_database_missing=on_database_missing,
            client=client,
            transport=transport,
        )
        self.queue = WriteQueue(spool, self.stats, batch_size=batch_size, max_pending=max_pending)
        self._tasks: list[asyncio.Task[None]] = []
        self._senders: list[asyncio.Task[None]] = []
        self._released = asyncio.Event()
        self._released.set()
        self._last_alert = 0.0
        self._failures = 0  # consecutive failed deliveries
        self._resume_at = 0.0  # monotonic time before which the replayer does not try
        self._closed = False

    # -- producer side ---------------------------------------------------------------------------

    def write(self, lines: Iterable[str]) -> None:
        """Accept lines (no trailing newlines). Never blocks; delivery happens in the background."""
        if self._closed:
            raise RuntimeError("write() after close(): the writer no longer accepts points")
        self.queue.add(lines)

    @property
    def accepted_lines(self) -> int:
        """Lines accepted by write() since start; the next line gets this index."""
        return self.queue.accepted

    @property
    def durable_through(self) -> int:
        """Lines below this index cannot be lost any more: in InfluxDB, in the spool (on disk),
        dead-lettered, or already lost to a full spool (see the module docstring)."""
        return self.queue.durable_through

    @property
    def landed_through(self) -> int:
        """Lines below this index are in InfluxDB (or dead-lettered, or lost to a full spool)."""
        return self.queue.landed_through

    @property
    def pending_points(self) -> int:
        """Points accepted but not yet written or spooled (buffer, queued batches, batches on
        their way to the spool)."""
        return self.queue.pending_points

    @property
    def batch_size(self) -> int:
        return self.queue.batch_size

    @property
    def max_pending(self) -> int:
        return self.queue.max_pending

    @property
    def on_database_missing(self) -> Callable[[], Awaitable[bool]] | None:
        return self.sender.on_database_missing

    @on_database_missing.setter
    def on_database_missing(self, callback: Callable[[], Awaitable[bool]] | None) -> None:
        self.sender.on_database_missing = callback

    def status(self) -> str:
        """One line for the periodic status log."""
        counts = " ".join(f"{k}={v}" for k, v in self.stats.as_dict().items())
        return (
            f"points {counts}; pending={self.pending_points}; "
            f"spool={self.spool.points} points/{self.spool.bytes} bytes"
        )

    # -- holding (before the server is bootstrapped) -----------------------------------------------

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    def hold(self) -> None:
        """Send nothing until `release()`: every batch goes to the spool and the replayer waits
        (the storage holds the writer until InfluxDB answers and the database is ready)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._senders = [
            asyncio.create_task(self._send_loop(), name=f"writer-sender-{i}")
            for i in range(self.in_flight)
        ]
        self._tasks = [
            asyncio.create_task(self._ticker(), name="writer-ticker"),
            asyncio.create_task(self._replay_loop(), name="writer-replayer"),
            *self._senders,
        ]

    async def flush(self) -> None:
        """Wait until every accepted point is written or spooled."""
        self.queue.cut()
        await self.queue.wait_idle()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until the spool is empty too; True when it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        await self.flush()
        while len(self.spool):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self, timeout: float = 10.0) -> None:
        """Flush everything; what cannot be delivered within `timeout` s stays in the spool.
        While held (server not bootstrapped) nothing is sent: everything is spooled at once."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        self.queue.cut()
        self.queue.stop_takers(len(self._senders))
        ticker_and_replayer = self._tasks[:2]
        for task in ticker_and_replayer[:1]:
            task.cancel()  # no more cuts: everything left is cut here and below
        senders = asyncio.gather(*self._senders)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(senders), max(0.0, deadline - time.monotonic()))
        for sender in self._senders:
            if not sender.done():
                sender.cancel()  # spools its in-flight batch, see _send_loop
        await asyncio.gather(*self._senders, return_exceptions=True)
        await self.queue.close()
        remaining = deadline - time.monotonic()
        if len(self.spool) and remaining > 0 and not self.held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_spool_empty(), remaining)
        for task in ticker_and_replayer:
            task.cancel()
        await asyncio.gather(*ticker_and_replayer, return_exceptions=True)
        await self.sender.aclose()
        if len(self.spool):
            log.warning(
                "%d points wait in the spool (%s); they are sent at the next start",
                self.spool.points,
                self.spool.directory,
            )

    async def _wait_spool_empty(self) -> None:
        while len(self.spool):
            await asyncio.sleep(0.05)

    # -- background tasks ------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self.queue.cut()

    async def _send_loop(self) -> None:
        """Posts each batch once; spools a batch that fails or comes while the spool is busy."""
        queue = self.queue
        while (batch := await queue.take()) is not None:
            try:
                if self.held or queue.spool_busy:  # behind older batches: keep the order
                    await queue.reject(batch)
                    continue
                result = await self._send(batch.lines)
                if result.settled:
                    queue.accept(batch)
                else:
                    self._note_failure(result, waiting=batch.count)
                    await queue.reject(batch)
            except asyncio.CancelledError:
                queue.reject_now(batch)
                raise

    async def _replay_loop(self) -> None:
        """Delivers spooled segments oldest first; backs off with jitter while InfluxDB is down."""
        queue = self.queue
        while True:
            await self._released.wait()
            await queue.spool_ready.wait()
            await asyncio.sleep(max(0.0, self._resume_at - time.monotonic()))
            found = await queue.oldest_spooled()
            if found is None:
                continue
            segment, lines = found
            result = await self._send(lines)
            if not result.settled:
                self._note_failure(result)
                continue
            queue.accept_spooled(segment)
            self.stats.replayed += segment.points
            if self._failures:
                log.info(
                    "InfluxDB takes writes again; replaying %d spooled points",
                    self.spool.points + segment.points,
                )
                self._failures = 0
            self._notify_replayed(lines)

    async def _send(self, lines: list[str]) -> Delivery:
        result = await self.sender.send(lines)
        self.stats.written += result.written
        self.stats.rejected += result.dead_lettered
        return result

    def _notify_replayed(self, lines: list[str]) -> None:
        if self.on_replayed is None:
            return
        try:
            self.on_replayed(lines)
        except Exception:
            log.exception("on_replayed failed; the replay goes on")

    # -- alerts ----------------------------------------------------------------------------------

    def _note_failure(self, result: Delivery, waiting: int = 0) -> None:
        """Count the failure, schedule the replayer's next try, and alert at most once a minute."""
        self.stats.retried += 1
        self._failures += 1
        now = time.monotonic()
        self._resume_at = now + _backoff(self._failures, result, self.backoff_cap)
        if now - self._last_alert >= ALERT_EVERY:
            self._last_alert = now
            level = logging.ERROR if result.outcome is Outcome.HOLD else logging.WARNING
            log.log(
                level,
                "%s; %d points wait in the spool and are retried",
                result.reason,
                self.spool.points + waiting,
            )


def _backoff(attempt: int, result: Delivery, cap: float) -> float:
    """A server's Retry-After wins (up to 2 minutes); otherwise capped jittered backoff."""
    if result.retry_after is not None:
        return min(result.retry_after, 120.0)
    return jittered_backoff(attempt, base=BACKOFF_BASE, cap=cap)
