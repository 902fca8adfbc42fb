"""The one way points reach InfluxDB: batch, send, sort the answer, lose nothing that was accepted.

Producers call `write()` with line-protocol lines (synchronous, cheap). Lines are cut into batches
by size (`batch_size`) and time (`flush_interval`). Sender tasks post each batch once (`in_flight`
requests at a time, so InfluxDB parses one batch while the answer to another waits for the busy
event loop); a batch
that cannot be delivered now (server down, slow, overloaded, credentials refused, database
missing) goes to the on-disk spool, and while the spool holds anything every new batch joins it
there, so the replayer delivers everything oldest first, backing off with jitter between tries.

How InfluxDB answers are sorted (DESIGN.md):
- 2xx: written.
- 400 (partial write, parse error, field type conflict): the good lines are kept; the batch is
  bisected to find the refused lines, which go to the dead-letter files under `data/`.
- 401/403: held in the spool and alerted; retried slowly until the credentials work.
- 404 database not found: `on_database_missing` (bootstrap) creates it, then the batch is retried.
- 413 body too large: the batch is split in halves until it fits.
- 429, 5xx, timeouts, connection errors: spooled and retried with capped, jittered backoff that
  honours Retry-After.

Memory is bounded: when more than `max_pending` points wait in memory for a sender (InfluxDB
takes points slower than they come, e.g. through a long liquidation cascade), the oldest queued
batches go to the spool instead, and the replayer delivers them from there. Nothing is dropped
for it. One spool thread appends in the order batches are handed over, so the spool stays
oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from enum import Enum

import httpx

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.spool import Spool
from utils.backoff import jittered_backoff, parse_retry_after

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
ALERT_EVERY = 60.0
MAX_SPLIT_DEPTH = 16
_DROPPED = re.compile(r"dropped=(\d+)")


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


class Outcome(Enum):
    OK = "ok"
    RETRY = "retry"  # transient: back off and try again
    HOLD = "hold"  # needs a human (credentials, missing bucket): keep and retry slowly


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None


DELIVERED = Delivery(Outcome.OK)


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
    ) -> None:
        self.target = target
        self.spool = spool
        self.dead_letters = dead_letters
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_database_missing = on_database_missing
        self.backoff_cap = backoff_cap
        self.in_flight = in_flight
        self.max_pending = max_pending
        self.stats = WriterStats()
        self._buffer: list[str] = []
        self._queued_points = 0
        self._queue: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._senders: list[asyncio.Task[None]] = []
        self._sending = 0  # batches taken by a sender and not yet written or spooled
        self._spooling = 0  # points handed to the spool thread, not yet on disk
        self._spool_thread = ThreadPoolExecutor(1, thread_name_prefix="writer-spool")
        self._overflows: set[asyncio.Task[None]] = set()
        self._last_overflow_alert = 0.0
        self._spool_ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_alert = 0.0
        self._failures = 0  # consecutive failed deliveries
        self._resume_at = 0.0  # monotonic time before which the replayer does not try
        self._closed = False

    # -- producer side -------------------------------------------------------------------------

    def write(self, lines: Iterable[str]) -> None:
        """Accept lines (no trailing newlines). Never blocks; delivery happens in the background."""
        if self._closed:
            raise RuntimeError("write() after close(): the writer no longer accepts points")
        buffer = self._buffer
        buffer.extend(lines)
        while len(buffer) >= self.batch_size:
            self._enqueue(buffer[: self.batch_size])
            del buffer[: self.batch_size]

    def _cut(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._enqueue(batch)

    def _enqueue(self, batch: list[str]) -> None:
        self._idle.clear()
        self._queued_points += len(batch)
        self._queue.put_nowait(batch)
        while self._queued_points > self.max_pending and self._queue.qsize() > 1:
            self._overflow(self._dequeue_nowait())  # type: ignore[arg-type]

    def _overflow(self, batch: list[str]) -> None:
        """Too much waits in memory: the oldest queued batch goes to the spool (in the spool
        thread, in order), and the replayer delivers it."""
        now = time.monotonic()
        if now - self._last_overflow_alert >= ALERT_EVERY:
            self._last_overflow_alert = now
            log.warning(
                "InfluxDB takes points slower than they come: over %d wait in memory, so the "
                "oldest batches go to the spool (%s) and are written from there",
                self.max_pending,
                self.spool.directory,
            )
        task = asyncio.create_task(self._spool(batch), name="writer-overflow")
        self._overflows.add(task)
        task.add_done_callback(self._overflows.discard)

    def _dequeue_nowait(self) -> list[str] | None:
        batch = self._queue.get_nowait()
        if batch:
            self._queued_points -= len(batch)
        return batch

    def status(self) -> str:
        """One line for the periodic status log."""
        counts = " ".join(f"{k}={v}" for k, v in self.stats.as_dict().items())
        return (
            f"points {counts}; pending={self.pending_points}; "
            f"spool={self.spool.points} points/{self.spool.bytes} bytes"
        )

    def _set_idle_if_done(self) -> None:
        if self._queue.empty() and self._sending == 0 and self._spooling == 0:
            self._idle.set()

    @property
    def pending_points(self) -> int:
        """Points accepted but not yet written or spooled (buffer, queued batches, batches on
        their way to the spool)."""
        return len(self._buffer) + self._queued_points + self._spooling

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = self.target.async_client()
        if len(self.spool):
            self._spool_ready.set()
        self._senders = [
            asyncio.create_task(self._sender(), name=f"writer-sender-{i}")
            for i in range(self.in_flight)
        ]
        self._tasks = [
            asyncio.create_task(self._ticker(), name="writer-ticker"),
            asyncio.create_task(self._replayer(), name="writer-replayer"),
            *self._senders,
        ]

    async def flush(self) -> None:
        """Wait until every accepted point is written or spooled."""
        self._cut()
        await self._idle.wait()

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
        """Flush everything; what cannot be delivered within `timeout` s stays in the spool."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        self._cut()
        for _ in self._senders:
            self._queue.put_nowait(None)
        ticker, replayer = self._tasks[:2]
        ticker.cancel()
        senders = asyncio.gather(*self._senders)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(senders), max(0.0, deadline - time.monotonic()))
        for sender in self._senders:
            if not sender.done():
                sender.cancel()  # spools its in-flight batch, see _sender
        await asyncio.gather(*self._senders, return_exceptions=True)
        await asyncio.gather(*self._overflows, return_exceptions=True)
        self._spool_leftovers()
        remaining = deadline - time.monotonic()
        if len(self.spool) and remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_spool_empty(), remaining)
        replayer.cancel()
        await asyncio.gather(ticker, replayer, return_exceptions=True)
        self._spool_thread.shutdown(wait=True)
        if self._client is not None:
            await self._client.aclose()
        if len(self.spool):
            log.warning(
                "%d points wait in the spool (%s); they are sent at the next start",
                self.spool.points,
                self.spool.directory,
            )

    async def _wait_spool_empty(self) -> None:
        while len(self.spool):
            await asyncio.sleep(0.05)

    def _spool_leftovers(self) -> None:
        while not self._queue.empty():
            batch = self._dequeue_nowait()
            if batch:
                self._spool_sync(batch)
        self._idle.set()

    # -- background tasks ------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            self._cut()

    async def _sender(self) -> None:
        """Posts each batch once; spools a batch that fails or comes while the spool is busy."""
        while True:
            batch = await self._queue.get()
            if batch is None:
                return
            self._queued_points -= len(batch)
            self._sending += 1
            try:
                if len(self.spool) or self._spooling:  # behind older batches: keep the order
                    await self._spool(batch)
                else:
                    result = await self._deliver(batch)
                    if result.outcome is not Outcome.OK:
                        self._note_failure(result, held=len(batch))
                        await self._spool(batch)
            except asyncio.CancelledError:
                self._spool_sync(batch)
                raise
            finally:
                self._sending -= 1
            self._set_idle_if_done()

    async def _replayer(self) -> None:
        """Delivers spooled segments oldest first; backs off with jitter while InfluxDB is down."""
        while True:
            await self._spool_ready.wait()
            await asyncio.sleep(max(0.0, self._resume_at - time.monotonic()))
            segment = self.spool.oldest()
            if segment is None:
                self._spool_ready.clear()
                continue
            try:
                body = await asyncio.to_thread(self.spool.read, segment)
            except FileNotFoundError:  # dropped by the full-spool policy meanwhile
                continue
            lines = body.decode("utf-8").split("\n")
            result = await self._deliver(lines)
            if result.outcome is Outcome.OK:
                self.spool.remove(segment)
                self.stats.replayed += segment.points
                if self._failures:
                    log.info(
                        "InfluxDB takes writes again; replaying %d spooled points",
                        self.spool.points + segment.points,
                    )
                    self._failures = 0
            else:
                self._note_failure(result)

    # -- delivery --------------------------------------------------------------------------------

    async def _deliver(
        self, lines: list[str], depth: int = 0, *, created_db: bool = False
    ) -> Delivery:
        """Send lines; handles 400 (bisect, dead-letter), 404 (create db) and 413 (split) itself."""
        assert self._client is not None
        body = "\n".join(lines).encode("utf-8")
        if self.target.gzip:
            body = gzip.compress(body, compresslevel=1)
        try:
            response = await self._client.post(
                "/write",
                params=self.target.write_params(),
                content=body,
                headers=self.target.write_headers(),
            )
        except httpx.RemoteProtocolError as exc:
            if await self._answers_ping():
                # influxd echoes a refused line in a header; a control character in it makes the
                # answer unreadable. The batch, not the server, is the problem: find the line.
                message = f"unreadable answer to a write, likely a refused line ({exc})"
                return await self._handle_rejected(lines, message, depth)
            return Delivery(Outcome.RETRY, f"InfluxDB unreachable ({type(exc).__name__})")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return Delivery(Outcome.RETRY, f"InfluxDB unreachable ({type(exc).__name__})")
        status = response.status_code
        if status < 300:
            self.stats.written += len(lines)
            return DELIVERED
        message = _error_text(response)
        if status == 400:
            return await self._handle_rejected(lines, message, depth)
        if status == 413 and len(lines) > 1:
            return await self._split(lines, depth)
        if status == 413:
            self.stats.rejected += self.dead_letters.add(lines, f"413: {message}")
            return DELIVERED
        if status == 404 and "database not found" in message:
            can_create = self.on_database_missing is not None and not created_db
            if can_create and await self.on_database_missing():  # type: ignore[misc]
                return await self._deliver(lines, depth, created_db=True)
            return Delivery(Outcome.HOLD, f"database missing: {message}")
        if status in (401, 403):
            return Delivery(
                Outcome.HOLD,
                f"InfluxDB refused the credentials ({status}): set HYPERFLUX_INFLUX_USERNAME "
                "and HYPERFLUX_INFLUX_PASSWORD",
            )
        reason = f"InfluxDB answered {status}: {message}"
        return Delivery(
            Outcome.RETRY, reason, parse_retry_after(response.headers.get("Retry-After"))
        )

    async def _answers_ping(self) -> bool:
        assert self._client is not None
        try:
            return (await self._client.get("/ping")).status_code < 300
        except httpx.HTTPError:
            return False

    async def _split(self, lines: list[str], depth: int) -> Delivery:
        middle = len(lines) // 2
        for half in (lines[:middle], lines[middle:]):
            result = await self._deliver(half, depth + 1)
            if result.outcome is not Outcome.OK:
                return result
        return DELIVERED

    async def _handle_rejected(self, lines: list[str], message: str, depth: int) -> Delivery:
        """A 400: the server kept what it could; find the refused lines by bisection.

        Sending a good line again is harmless (same identity, same values), so halves are simply
        re-sent until each refused line stands alone; those go to the dead-letter files.
        """
        if depth == 0:
            log.warning("InfluxDB refused part of a batch (dead-lettered): %s", message)
        if len(lines) == 1 or depth >= MAX_SPLIT_DEPTH or _all_dropped(message, len(lines)):
            self.stats.rejected += self.dead_letters.add(lines, message)
            return DELIVERED
        return await self._split(lines, depth)

    # -- spool and alerts --------------------------------------------------------------------------

    async def _spool(self, batch: list[str]) -> None:
        """Append in the one spool thread (appends keep the order they were handed over in)."""
        self._spooling += len(batch)
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._spool_thread, self._append_to_spool, batch
            )
        finally:
            self._spooling -= len(batch)
        self._spool_ready.set()
        self._set_idle_if_done()

    def _spool_sync(self, batch: list[str]) -> None:
        self._append_to_spool(batch)
        self._spool_ready.set()

    def _append_to_spool(self, batch: list[str]) -> None:
        """Runs in a worker thread: touches no asyncio object."""
        if self.spool.append("\n".join(batch).encode("utf-8"), len(batch)):
            self.stats.spooled += len(batch)
        self.stats.dropped = self.spool.dropped_points

    def _note_failure(self, result: Delivery, held: int = 0) -> None:
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
                self.spool.points + held,
            )


def _backoff(attempt: int, result: Delivery, cap: float) -> float:
    """A server's Retry-After wins (up to 2 minutes); otherwise capped jittered backoff."""
    if result.retry_after is not None:
        return min(result.retry_after, 120.0)
    return jittered_backoff(attempt, base=BACKOFF_BASE, cap=cap)


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text)).strip()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase


def _all_dropped(message: str, count: int) -> bool:
    """InfluxDB says `dropped=N`; when every line was dropped there is nothing left to find."""
    match = _DROPPED.search(message)
    return match is not None and int(match[1]) == count
