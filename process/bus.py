"""One in-process event bus: what the collector learns, live, for any consumer that wants it.

The collector publishes typed events (`Event`: kind, coin, time, the record itself); consumers
(the Redis publisher, the library API, tests) subscribe by kind and coin and read at their own
pace. Publishing never waits and never fails: each subscription has a bounded buffer, and when a
slow consumer lets it fill, the *oldest* event waiting is dropped (a live view wants the newest)
and counted. Drops are reported per subscription (`samples()`, a warning at most once a minute);
InfluxDB stays the system of record.

Publishing an event of a kind nobody subscribed costs one set lookup, so the trade path pays
nothing while there is no consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import fields, is_dataclass
from decimal import Decimal
from typing import Any, Literal, NamedTuple, get_args

from utils.metrics import Sample

log = logging.getLogger(__name__)

EventKind = Literal[
    "trade", "liquidation", "asset_ctx", "book", "bbo", "position_change", "alert", "gap"
]
KINDS: tuple[EventKind, ...] = get_args(EventKind)
DEFAULT_BUFFER = 10_000
DROP_REPORT_EVERY = 60.0


class Event(NamedTuple):
    """One thing the collector learned. `data` is the record as the collector holds it:

    - trade: `validate.Trade`; liquidation: `process.liquidations.LiquidationEvent`
    - asset_ctx: `validate.AssetCtx` (or a dict of its fields); book: `validate.L2Book`;
      bbo: `validate.Bbo`
    - position_change: `process.positions.book.PositionChange`; alert: `process.alerts.Alert`
    - gap: a `process.points.GapRecord` (a stretch of a coin's trades that stays missing)
    """

    kind: EventKind
    coin: str | None
    time_ms: int
    data: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {"kind", "coin", "time_ms", "data": {...}} (decimals as strings, exact)."""
        return {
            "kind": self.kind,
            "coin": self.coin,
            "time_ms": self.time_ms,
            "data": jsonable(self.data),
        }


def jsonable(value: Any) -> Any:
    """Records (dataclasses, named tuples), decimals and tuples as JSON-ready values. Decimals
    become strings so that no digit is lost; properties such as `notional` are not included."""
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # a NamedTuple
        return {key: jsonable(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    return str(value)


class Subscription:
    """A consumer's bounded buffer of events: `async for event in subscription`, or `get()`.

    Not thread-safe: publish and consume on the collector's event loop.
    """

    def __init__(
        self,
        bus: EventBus,
        name: str,
        kinds: frozenset[EventKind],
        coins: frozenset[str] | None,
        buffer: int,
    ) -> None:
        self.bus = bus
        self.name = name
        self.kinds = kinds
        self.coins = coins
        self.buffer = buffer
        self.received = 0  # events that matched, dropped ones included
        self.dropped = 0  # oldest events discarded because the buffer was full
        self.closed = False
        self._queue: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._dropped_reported = 0
        self._reported_at = 0.0

    def offer(self, event: Event) -> None:
        if self.closed or (self.coins is not None and event.coin not in self.coins):
            return
        self.received += 1
        queue = self._queue
        if len(queue) >= self.buffer:
            queue.popleft()
            self.dropped += 1
            self._report_drops()
        queue.append(event)
        if not self._ready.is_set():  # set() wakes waiters: once per batch is enough
            self._ready.set()

    def _report_drops(self) -> None:
        now = time.monotonic()
        if now - self._reported_at < DROP_REPORT_EVERY:
            return
        log.warning(
            "event consumer %s is too slow: %d events dropped so far (buffer %d); "
            "InfluxDB still has them",
            self.name,
            self.dropped,
            self.buffer,
        )
        self._reported_at = now

    @property
    def pending(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> Event | None:
        """The oldest waiting event, or None."""
        if not self._queue:
            self._ready.clear()
            return None
        return self._queue.popleft()

    def drain(self) -> list[Event]:
        """Every waiting event, oldest first."""
        events = list(self._queue)
        self._queue.clear()
        self._ready.clear()
        return events

    async def get(self) -> Event:
        """The next event; raises `StopAsyncIteration` once closed and drained."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self.closed:
                raise StopAsyncIteration
            await self._ready.wait()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def close(self) -> None:
        """Stop receiving; a reader gets what is still buffered, then the iteration ends."""
        if not self.closed:
            self.closed = True
            self.bus.unsubscribe(self)
            self._ready.set()


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._by_kind: dict[EventKind, tuple[Subscription, ...]] = {}
        self.published = 0

    def subscribe(
        self,
        kinds: Iterable[EventKind] = KINDS,
        coins: Iterable[str] | None = None,
        *,
        name: str = "consumer",
        buffer: int = DEFAULT_BUFFER,
    ) -> Subscription:
        """Events of `kinds` (default all), of `coins` only if given (events without a coin,
        such as account-wide ones, are then excluded), at most `buffer` waiting."""
        wanted = frozenset(kinds)
        if unknown := wanted - set(KINDS):
            raise ValueError(f"unknown event kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        subscription = Subscription(
            self, name, wanted, None if coins is None else frozenset(coins), buffer
        )
        self._subscriptions.append(subscription)
        self._index()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
            self._index()

    def _index(self) -> None:
        self._by_kind = {
            kind: subs
            for kind in KINDS
            if (subs := tuple(s for s in self._subscriptions if kind in s.kinds))
        }

    def wants(self, kind: EventKind) -> bool:
        """Whether any consumer takes `kind` (skip building events nobody reads)."""
        return kind in self._by_kind

    def publish(self, kind: EventKind, coin: str | None, time_ms: int, data: Any) -> None:
        subscribers = self._by_kind.get(kind)
        if not subscribers:
            return
        event = Event(kind, coin, time_ms, data)
        self.published += 1
        for subscription in subscribers:
            subscription.offer(event)

    def publish_trades(self, trades: Iterable[Any]) -> None:
        """Trades (`validate.Trade`), each its own event."""
        subscribers = self._by_kind.get("trade")
        if not subscribers:
            return
        for trade in trades:
            event = Event("trade", trade.coin, trade.time_ms, trade)
            self.published += 1
            for subscription in subscribers:
                subscription.offer(event)

    def samples(self) -> list[Sample]:
        out = [Sample("events_published_total", "counter", "events on the bus", self.published)]
        for sub in self._subscriptions:
            labels = {"consumer": sub.name}
            out += [
                Sample(
                    "event_consumer_dropped_total",
                    "counter",
                    "events dropped: the consumer was too slow",
                    sub.dropped,
                    labels,
                ),
                Sample(
                    "event_consumer_pending",
                    "gauge",
                    "events waiting for the consumer",
                    sub.pending,
                    labels,
                ),
            ]
        return out
