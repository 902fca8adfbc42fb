"""The Redis publisher: bus events as JSON on Redis PUBLISH channels, optionally on Streams too.

Each event (`Event.to_dict()`, compact JSON) is published on `{prefix}:{kind}:{coin}`
(`{prefix}:{kind}` when it has no coin), so a consumer picks what it wants with
`PSUBSCRIBE hyperflux:trade:*`. With `streams` on, it is also appended to the stream
`{prefix}:{kind}` (one per kind, every coin in order, `MAXLEN ~ stream_maxlen`), which a consumer
that must not miss anything reads with XREAD from its last id.

Everything waiting is sent in one pipelined round trip (no transaction). Redis is a live view,
InfluxDB the system of record: while Redis is unreachable the events are dropped and counted,
and the publisher reconnects with capped, jittered backoff. Only events whose round trip failed
or that arrived before the reconnect succeeded are dropped; an event in a round trip that Redis
executed just before dying is counted as dropped although a subscriber may have seen it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from process.bus import Event, EventBus, Subscription
from process.outputs.redis_config import RedisConfig
from utils.backoff import jittered_backoff
from utils.logging import redact, register_secret
from utils.metrics import Sample

log = logging.getLogger(__name__)

BATCH = 1000
"""Events per pipelined round trip at most (a backlog goes in several)."""
ERROR_REPORT_EVERY = 60.0
_DOWN_ERRORS = (RedisError, OSError)  # a connection error, a timeout, a broken reply


def encode(event: Event) -> str:
    """The message: `{"kind", "coin", "time_ms", "data": {...}}`, compact, decimals as strings."""
    return json.dumps(event.to_dict(), separators=(",", ":"))


class RedisPublisher:
    """One output (`process.outputs.Output`): reads its bus subscription, writes to Redis."""

    def __init__(self, config: RedisConfig, bus: EventBus) -> None:
        if config.url is None:
            raise ValueError("the redis publisher needs redis.url")
        for secret in config.secrets():  # the log filter masks it in third-party lines too
            register_secret(secret)
        self.config = config
        self._url = config.url.get_secret_value()
        self.target = config.target()
        self.subscription: Subscription = bus.subscribe(
            config.events, name="redis", buffer=config.buffer
        )
        self.published = 0
        self.dropped: Counter[str] = Counter()  # by reason: down, stop
        self.errors = 0  # commands Redis refused (e.g. an ACL or OOM error)
        self.reconnects = 0
        self.connected = False
        self._client: Redis | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._dropped_when_down = 0
        self._errors_reported_at = 0.0

    async def run(self) -> None:
        """Publish until closed; reconnect whenever Redis goes away."""
        self._task = asyncio.current_task()
        while True:
            if self._client is None and not await self._connect():
                return  # stopping while Redis is unreachable
            batch = await self._next_batch()
            if not batch:
                return  # closed and drained
            await self._send(batch)

    async def close(self, grace: float) -> None:
        """Publish what is buffered for up to `grace` seconds, then stop and disconnect."""
        self._stopping.set()
        self.subscription.close()
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.dropped["stop" if self.connected else "down"] += len(self.subscription.drain())
        self.connected = False
        await self._disconnect()
        log.info(
            "redis: %d events published, %d dropped while Redis was unreachable, "
            "%d not sent in the time given at stop",
            self.published,
            self.dropped["down"],
            self.dropped["stop"],
        )

    def samples(self) -> list[Sample]:
        dropped = "events not published to Redis: it was unreachable (down) or we stopped (stop)"
        return [
            Sample("redis_published_total", "counter", "events published to Redis", self.published),
            *(
                Sample("redis_dropped_total", "counter", dropped, self.dropped[r], {"reason": r})
                for r in ("down", "stop")
            ),
            Sample("redis_errors_total", "counter", "commands Redis refused", self.errors),
            Sample("redis_connected", "gauge", "1 while Redis is reachable", int(self.connected)),
            Sample("redis_reconnects_total", "counter", "Redis connections lost", self.reconnects),
        ]

    # --- delivery -----------------------------------------------------------------------------

    async def _next_batch(self) -> list[Event]:
        """The next events waiting (at least one, at most BATCH); [] once closed and drained."""
        try:
            batch = [await self.subscription.get()]
        except StopAsyncIteration:
            return []
        while len(batch) < BATCH and (event := self.subscription.get_nowait()) is not None:
            batch.append(event)
        return batch

    async def _send(self, batch: list[Event]) -> None:
        assert self._client is not None
        prefix, config = self.config.channel_prefix, self.config
        pipe = self._client.pipeline(transaction=False)
        for event in batch:
            message = encode(event)
            stream = f"{prefix}:{event.kind}"
            pipe.publish(f"{stream}:{event.coin}" if event.coin else stream, message)
            if config.streams:
                pipe.xadd(stream, {"data": message}, maxlen=config.stream_maxlen, approximate=True)
        try:
            results = await pipe.execute(raise_on_error=False)
        except _DOWN_ERRORS as exc:
            await self._went_down(exc)
            self.dropped["down"] += len(batch)
            return
        except asyncio.CancelledError:  # close() gave up waiting
            self.dropped["stop"] += len(batch)
            raise
        step = 2 if config.streams else 1
        refused = [result for result in results if isinstance(result, Exception)]
        self.published += sum(
            not isinstance(result, Exception) for result in results[::step]
        )  # an event is published when its PUBLISH went through
        if refused:
            self._refused(refused)

    def _refused(self, refused: list[Exception]) -> None:
        self.errors += len(refused)
        now = time.monotonic()
        if now - self._errors_reported_at >= ERROR_REPORT_EVERY:
            self._errors_reported_at = now
            log.warning(
                "redis at %s refused %d commands (%d so far), e.g. %s",
                self.target,
                len(refused),
                self.errors,
                redact(str(refused[0])),
            )

    # --- connection ---------------------------------------------------------------------------

    async def _connect(self) -> bool:
        """Connect, retrying with backoff and dropping events meanwhile; False when stopping."""
        attempt = 0
        while not self._stopping.is_set():
            client = Redis.from_url(
                self._url,
                socket_timeout=self.config.timeout,
                socket_connect_timeout=self.config.timeout,
                retry=Retry(NoBackoff(), 0),  # the backoff is ours
                client_name="hyperflux",
            )
            try:
                await client.ping()
            except _DOWN_ERRORS as exc:
                await client.aclose()
                if self._down_since is None:
                    await self._went_down(exc)
                attempt += 1
                delay = jittered_backoff(
                    attempt, base=self.config.backoff_base, cap=self.config.backoff_max
                )
                await self._drop_for(delay)
                continue
            self._client, self.connected = client, True
            self._came_back()
            return True
        return False

    async def _went_down(self, exc: BaseException) -> None:
        what = "lost" if self.connected else "unreachable"
        if self.connected:
            self.reconnects += 1
        self.connected = False
        await self._disconnect()
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._dropped_when_down = self.dropped["down"]
            log.warning(
                "redis at %s %s (%s): dropping events until it is back, InfluxDB has them",
                self.target,
                what,
                redact(f"{type(exc).__name__}: {exc}".rstrip(": ")),
            )

    def _came_back(self) -> None:
        if self._down_since is None:
            log.info(
                "publishing %s events to redis at %s (channels %s:<kind>:<coin>%s)",
                ", ".join(self.config.events),
                self.target,
                self.config.channel_prefix,
                ", streams" if self.config.streams else "",
            )
            return
        log.info(
            "redis at %s reachable again after %.1f s: %d events dropped while it was down",
            self.target,
            time.monotonic() - self._down_since,
            self.dropped["down"] - self._dropped_when_down,
        )
        self._down_since = None

    async def _drop_for(self, seconds: float) -> None:
        """Wait `seconds` (less when stopping), dropping every event that arrives meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping.is_set() and (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    await self.subscription.get()
            except (TimeoutError, StopAsyncIteration):
                break
            self.dropped["down"] += 1 + len(self.subscription.drain())
        self.dropped["down"] += len(self.subscription.drain())

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_DOWN_ERRORS):
                await client.aclose()
