"""One WebSocket connection of a `MarketStream` (fetch/ws.py): connect, subscribe, keep alive.

A connection knows its socket, what it subscribed on it and which acks are outstanding, and it
reconnects forever with capped, jittered backoff. Everything it receives goes to its stream,
which owns what the connections share: the trade dedupe, which coins are covered, gaps,
backfill, statistics, the message pacer.

- Subscriptions are sent once per socket and matched to acks on their parsed content (the
  server echoes a normalised subscription).
- `{"method":"ping"}` every `ping_interval` s (the server drops a socket after 60 s of client
  silence); a socket is stale when a pong is late or when nothing but pongs arrived for
  `stale_after` s. Closing a stale socket is *our* doing, so the stream allows it only while
  another connection carries the trades (or none does anyway): two connections are never both
  down by our own hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, InvalidURI, WebSocketException

from utils.backoff import jittered_backoff
from utils.errors import HyperfluxError
from validate import subscription_key

if TYPE_CHECKING:
    from fetch.ws import MarketStream

log = logging.getLogger("fetch.ws")

Subscription = dict[str, Any]
HEALTHY_AFTER = 60.0
"""A socket that lived this long resets the backoff."""


class FeedConnection:
    def __init__(self, stream: MarketStream, index: int) -> None:
        self.stream = stream
        self.index = index
        self.name = "ABCDEFGHIJ"[index] if index < 10 else str(index)
        self.ws: ClientConnection | None = None
        self.connects = 0
        self.subscribed = False  # every subscription of the current socket sent
        self.pending_acks: dict[str, Subscription] = {}
        self.sent: set[str] = set()  # subscriptions sent on the current socket
        self.first_trades: dict[str, int] = {}  # coin -> oldest trade of its first message
        self._last_data = 0.0
        self._ping_sent: float | None = None  # when the unanswered ping went out
        self._last_ping = 0.0

    @property
    def connected(self) -> bool:
        return self.ws is not None

    @property
    def carries_extras(self) -> bool:
        """The first connection also carries allMids and the per-coin extras (books, ...);
        the others carry only trades, so no other message arrives twice."""
        return self.index == 0

    def subscriptions(self) -> list[Subscription]:
        stream, extras = self.stream, self.carries_extras
        coins = stream.coins if extras else stream.coins_of(self)
        subs = [s for coin in coins for s in stream.coin_subscriptions(coin, extras)]
        if self.carries_extras:
            subs += [{"type": channel} for channel in stream.channels]
        return subs

    # -- life cycle -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, stream, and reconnect until `stop` is set."""
        attempt = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._connect_and_stream()
            except (OSError, TimeoutError, WebSocketException) as exc:
                if isinstance(exc, InvalidURI):
                    raise HyperfluxError(
                        f"HYPERFLUX_HL_WS_URL is not a WebSocket URL: {exc}"
                    ) from None
                self.stream.connection_failed(self, exc)
            if stop.is_set():
                break
            healthy = time.monotonic() - started > HEALTHY_AFTER
            attempt = 1 if healthy else attempt + 1
            stream = self.stream
            delay = jittered_backoff(attempt, base=stream.backoff_base, cap=stream.retry_cap())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def _connect_and_stream(self) -> None:
        stream = self.stream
        await stream.pace_connect()
        async with connect(
            stream.ws_url,
            open_timeout=stream.open_timeout,
            ping_interval=None,  # Hyperliquid counts only its JSON ping as activity
            close_timeout=1,
            max_size=32 * 1024 * 1024,
        ) as ws:
            self.ws = ws
            self.connects += 1
            self._last_data = time.monotonic()
            self._ping_sent = None
            self._last_ping = 0.0
            self.pending_acks.clear()
            self.sent.clear()
            self.first_trades.clear()
            self.subscribed = False
            stream.connection_opened(self)
            helpers = [
                asyncio.create_task(self._keepalive(ws), name=f"ws-keepalive-{self.name}"),
                asyncio.create_task(self._subscribe_all(), name=f"ws-subscribe-{self.name}"),
            ]
            try:
                while True:
                    try:
                        # bytes, not str: no UTF-8 decoding here, and pydantic parses bytes
                        # faster (~0.35 us a trade)
                        raw = await ws.recv(decode=False)
                    except ConnectionClosedOK:
                        break
                    stream.handle_frame(raw, self)
                    # recv() returns queued frames without suspending: in a flood this loop
                    # would keep the event loop for a dozen frames, and the writer's posts
                    # (several turns each) would leave InfluxDB idle meanwhile
                    await asyncio.sleep(0)
            finally:
                self.ws = None
                self.subscribed = False
                stream.connection_closed(self)
                for task in helpers:
                    task.cancel()
                results = await asyncio.gather(*helpers, return_exceptions=True)
                for result in results:
                    if isinstance(result, Exception) and not isinstance(result, WebSocketException):
                        log.error("WebSocket helper failed: %r", result)

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None:
            return
        await self.stream.pace()
        await ws.send(json.dumps(message, separators=(",", ":")))

    async def subscribe(self, subscription: Subscription) -> None:
        """Subscribe once per socket (the initial pass and `update_coins` may overlap)."""
        key = subscription_key(subscription)
        if key in self.sent:
            return
        self.sent.add(key)
        self.pending_acks[key] = subscription
        await self.send({"method": "subscribe", "subscription": subscription})

    async def unsubscribe(self, subscription: Subscription) -> None:
        self.sent.discard(subscription_key(subscription))
        await self.send({"method": "unsubscribe", "subscription": subscription})

    async def _subscribe_all(self) -> None:
        for subscription in self.subscriptions():
            await self.subscribe(subscription)
        self.subscribed = True
        self.stream.connection_subscribed(self)

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping on time; close the socket when a pong is late or only pongs arrive."""
        stream = self.stream
        while True:
            await asyncio.sleep(min(1.0, stream.ping_interval / 4))
            now = time.monotonic()
            if self._ping_sent is not None and now - self._ping_sent > stream.pong_timeout:
                reason = f"no pong within {stream.pong_timeout:.0f} s"
            elif now - self._last_data > stream.stale_after:
                reason = f"no data for {stream.stale_after:.0f} s"
            else:
                if self._ping_sent is None and now - self._last_ping >= stream.ping_interval:
                    self._ping_sent = now
                    self._last_ping = now
                    await self.send({"method": "ping"})
                continue
            if not stream.may_close(self):
                continue  # another connection is reconnecting: keep this one until it is back
            stream.stats.stale += 1
            log.warning("WebSocket %s stale (%s); reconnecting", self.name, reason)
            await ws.close()
            return

    # -- receiving -------------------------------------------------------------------------------

    def saw_data(self) -> None:
        self._last_data = time.monotonic()

    def saw_pong(self) -> None:
        self._ping_sent = None
