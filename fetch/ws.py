"""The Hyperliquid WebSocket supervisor: subscribe, keep alive, reconnect forever, lose no trade.

One connection carries every subscription: `trades` for each coin, `allMids`, and optional
per-coin channels (`l2Book`, `bbo`, `activeAssetCtx`). The supervisor
- subscribes within the per-IP limits (messages paced under 2000/min, pings included) and
  matches acks on their parsed content (the server echoes a normalised subscription);
- sends `{"method":"ping"}` every `ping_interval` s (the server drops a socket after 60 s of
  client silence) and treats a socket as stale when a pong is late or when nothing but pongs
  arrived for `stale_after` s;
- reconnects forever with capped, jittered backoff and resubscribes everything;
- drops trades it already delivered (the first `trades` message after a subscribe replays recent
  trades; backfill overlaps the stream), keyed on (coin, time, tid);
- after every (re)connect backfills from REST `recentTrades` each coin whose replay on subscribe
  did not reach back to the last trade seen before the drop, and records a `Gap` where the
  backfill did not reach back either, so users can see it.
Validation failures go to the quarantine; one bad record never drops the good ones beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidURI,
    WebSocketException,
)

from fetch.dedupe import TradeDeduper
from fetch.rate_limit import WeightBudget
from utils.backoff import jittered_backoff
from utils.errors import HyperfluxError
from utils.quarantine import Quarantine
from validate import (
    ErrorMessage,
    Ignored,
    InvalidFrame,
    Pong,
    SubscriptionAck,
    Trade,
    TradesMessage,
    WsMessage,
    parse_ws_message,
    subscription_key,
)

log = logging.getLogger(__name__)

Backfill = Callable[[str], Awaitable[list[Trade]]]
Subscription = dict[str, Any]


@dataclass
class WsStats:
    connects: int = 0
    reconnects: int = 0
    frames: int = 0
    trades: int = 0  # distinct trades delivered, live and backfilled
    duplicates: int = 0  # replayed or overlapping trades dropped
    backfilled: int = 0  # trades recovered from recentTrades
    rejected: int = 0  # records quarantined
    errors: int = 0  # error frames from the server
    stale: int = 0  # connections dropped for silence or a late pong


@dataclass(frozen=True)
class Gap:
    """Trades of `coin` after `after_ms` up to and including `before_ms` may be missing."""

    coin: str
    after_ms: int
    before_ms: int
    reason: str


class MarketStream:
    def __init__(
        self,
        ws_url: str,
        coins: Iterable[str],
        *,
        on_trades: Callable[[list[Trade]], None],
        on_message: Callable[[WsMessage], None] | None = None,
        backfill: Backfill | None = None,
        on_gap: Callable[[Gap], None] | None = None,
        quarantine: Quarantine | None = None,
        channels: Iterable[str] = ("allMids",),
        coin_channels: Iterable[str] = (),
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        stale_after: float = 60.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        messages_per_minute: int = 1500,
        dedupe_capacity: int = 50_000,
        open_timeout: float = 10.0,
        replay_wait: float = 3.0,
    ) -> None:
        self.ws_url = ws_url
        self.coins = list(dict.fromkeys(coins))
        self.on_trades = on_trades
        self.on_message = on_message
        self.backfill = backfill
        self.on_gap = on_gap
        self.quarantine = quarantine
        self.channels = tuple(channels)
        self.coin_channels = tuple(coin_channels)
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.stale_after = stale_after
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.open_timeout = open_timeout
        self.replay_wait = replay_wait
        self.stats = WsStats()
        self.gaps: list[Gap] = []
        self.dedupe = TradeDeduper(dedupe_capacity)
        self.last_trade_ms: dict[str, int] = {}
        self._pacer = WeightBudget(messages_per_minute, safety_margin=0.0)
        self._pending_acks: dict[str, Subscription] = {}
        self._sent: set[str] = set()  # subscriptions sent on the current connection
        self._replay_oldest: dict[str, int] = {}  # coin -> oldest trade of its first message
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._last_data = 0.0
        self._ping_sent: float | None = None  # when the unanswered ping went out
        self._last_ping = 0.0

    # -- what is subscribed -------------------------------------------------------------------

    def coin_subscriptions(self, coin: str) -> list[Subscription]:
        return [{"type": "trades", "coin": coin}] + [
            {"type": channel, "coin": coin} for channel in self.coin_channels
        ]

    @property
    def subscriptions(self) -> list[Subscription]:
        subs = [s for coin in self.coins for s in self.coin_subscriptions(coin)]
        return subs + [{"type": channel} for channel in self.channels]

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def unacknowledged(self) -> list[Subscription]:
        return list(self._pending_acks.values())

    async def update_coins(self, coins: Iterable[str]) -> None:
        """Follow the universe: subscribe new coins and unsubscribe delisted ones, live."""
        wanted = list(dict.fromkeys(coins))
        added = [c for c in wanted if c not in self.coins]
        removed = [c for c in self.coins if c not in wanted]
        self.coins = wanted
        if self._ws is None:
            return  # the next connection subscribes the new set
        for coin in removed:
            for sub in self.coin_subscriptions(coin):
                self._sent.discard(subscription_key(sub))
                await self._send({"method": "unsubscribe", "subscription": sub})
        for coin in added:
            for sub in self.coin_subscriptions(coin):
                await self._subscribe(sub)
        if added or removed:
            log.info(
                "subscriptions: +%s -%s", ",".join(added) or "none", ",".join(removed) or "none"
            )

    def seed_last_trade(self, coin: str, time_ms: int) -> None:
        """The newest trade already stored for `coin` (after a restart), for gap detection."""
        self.last_trade_ms[coin] = max(time_ms, self.last_trade_ms.get(coin, 0))

    # -- life cycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stream, and reconnect until `stop()`."""
        attempt = 0
        down_since: float | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self._connect_and_stream()
            except (OSError, TimeoutError, WebSocketException) as exc:
                if isinstance(exc, InvalidURI):
                    raise HyperfluxError(
                        f"HYPERFLUX_HL_WS_URL is not a WebSocket URL: {exc}"
                    ) from None
                down_for = time.monotonic() - (down_since or started)
                level = logging.ERROR if down_for > 60 else logging.WARNING
                log.log(level, "Hyperliquid WebSocket %s: %s", self.ws_url, _describe(exc))
            if self._stop.is_set():
                break
            healthy = time.monotonic() - started > 60
            if healthy or down_since is None:
                down_since = time.monotonic()
            attempt = 1 if healthy else attempt + 1
            delay = jittered_backoff(attempt, base=self.backoff_base, cap=self.backoff_cap)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def stop(self) -> None:
        self._stop.set()
        if self._ws is not None:
            await self._ws.close()

    async def _connect_and_stream(self) -> None:
        async with connect(
            self.ws_url,
            open_timeout=self.open_timeout,
            ping_interval=None,  # Hyperliquid counts only its JSON ping as activity
            close_timeout=2,
            max_size=32 * 1024 * 1024,
        ) as ws:
            self._ws = ws
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            log.info("connected to %s (connection %d)", self.ws_url, self.stats.connects)
            self._last_data = time.monotonic()
            self._ping_sent = None
            self._last_ping = 0.0
            self._pending_acks.clear()
            self._sent.clear()
            self._replay_oldest.clear()
            last_seen = dict(self.last_trade_ms)
            helpers = [
                asyncio.create_task(self._keepalive(ws), name="ws-keepalive"),
                asyncio.create_task(self._subscribe_and_backfill(last_seen), name="ws-subscribe"),
            ]
            try:
                while True:
                    try:
                        # bytes, not str: no UTF-8 decoding here, and pydantic parses bytes
                        # faster (~0.35 us a trade)
                        raw = await ws.recv(decode=False)
                    except ConnectionClosedOK:
                        break
                    self.handle_frame(raw)
                    # recv() returns queued frames without suspending: in a flood this loop
                    # would keep the event loop for a dozen frames, and the writer's posts
                    # (several turns each) would leave InfluxDB idle meanwhile
                    await asyncio.sleep(0)
            finally:
                self._ws = None
                for task in helpers:
                    task.cancel()
                results = await asyncio.gather(*helpers, return_exceptions=True)
                for result in results:
                    if isinstance(result, Exception) and not isinstance(result, WebSocketException):
                        log.error("WebSocket helper failed: %r", result)

    # -- sending ---------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        reservation = await self._pacer.acquire(1)
        self._pacer.settle(reservation, 1)
        await ws.send(_dumps(message))

    async def _subscribe(self, subscription: Subscription) -> None:
        """Subscribe once per connection (the initial pass and `update_coins` may overlap)."""
        key = subscription_key(subscription)
        if key in self._sent:
            return
        self._sent.add(key)
        self._pending_acks[key] = subscription
        await self._send({"method": "subscribe", "subscription": subscription})

    async def _subscribe_and_backfill(self, last_seen: dict[str, int]) -> None:
        """Subscribe everything, then backfill over REST the coins the replay did not cover.

        The first `trades` message of a subscription replays the coin's latest trades; when its
        oldest trade is no newer than the last one seen before the drop, nothing was missed and
        the coin costs no REST weight. Only the others (busy coins, long drops) are fetched; a
        coin never seen before (nothing to be missing relative to) has only its replay.
        """
        for subscription in self.subscriptions:
            await self._subscribe(subscription)
        if self.coins:
            log.info("subscribed to the trades of %d coins", len(self.coins))
        if self.backfill is None:
            return
        waiting = [c for c in self.coins if c in last_seen]
        deadline = time.monotonic() + self.replay_wait
        while any(c not in self._replay_oldest for c in waiting) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for coin in waiting:
            seen = last_seen[coin]
            if self._replay_oldest.get(coin, seen + 1) <= seen:
                continue  # the replay reached back to the last trade seen
            await self._backfill_coin(coin, seen)

    async def _backfill_coin(self, coin: str, last_seen_ms: int) -> None:
        assert self.backfill is not None
        try:
            recent = await self.backfill(coin)
        except HyperfluxError as exc:
            self._record_gap(Gap(coin, last_seen_ms, _now_ms(), f"backfill failed: {exc}"))
            return
        fresh = self._deliver(recent)
        self.stats.backfilled += len(fresh)
        if recent:
            oldest = min(t.time_ms for t in recent)
            if oldest > last_seen_ms:
                self._record_gap(Gap(coin, last_seen_ms, oldest, "recentTrades did not reach back"))

    def _record_gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        log.warning(
            "possible gap in %s trades from %d to %d ms (%s)",
            gap.coin,
            gap.after_ms,
            gap.before_ms,
            gap.reason,
        )
        if self.on_gap is not None:
            self.on_gap(gap)

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping on time; close the socket when a pong is late or only pongs arrive."""
        while True:
            await asyncio.sleep(min(1.0, self.ping_interval / 4))
            now = time.monotonic()
            if self._ping_sent is not None and now - self._ping_sent > self.pong_timeout:
                reason = f"no pong within {self.pong_timeout:.0f} s"
            elif now - self._last_data > self.stale_after:
                reason = f"no data for {self.stale_after:.0f} s"
            else:
                if self._ping_sent is None and now - self._last_ping >= self.ping_interval:
                    self._ping_sent = now
                    self._last_ping = now
                    await self._send({"method": "ping"})
                continue
            self.stats.stale += 1
            log.warning("WebSocket stale (%s); reconnecting", reason)
            await ws.close()
            return

    # -- receiving -------------------------------------------------------------------------------

    def handle_frame(self, raw: str | bytes) -> None:
        """Parse one frame and route it. Never raises: bad input is quarantined and counted."""
        self.stats.frames += 1
        message = parse_ws_message(raw)
        if message.rejected:
            self.stats.rejected += len(message.rejected)
            if self.quarantine is not None:
                for record in message.rejected:
                    self.quarantine.add(f"ws:{message.channel}", record.reason, record.raw_text)
        if isinstance(message, Pong):
            self._ping_sent = None
            return
        self._last_data = time.monotonic()
        if isinstance(message, TradesMessage):
            trades = message.trades
            if trades and trades[0].coin not in self._replay_oldest:
                self._replay_oldest[trades[0].coin] = min(t.time_ms for t in trades)
            self._deliver(trades)
        elif isinstance(message, SubscriptionAck):
            self._pending_acks.pop(message.key, None)
        elif isinstance(message, ErrorMessage):
            self.stats.errors += 1
            log.warning("Hyperliquid WebSocket error: %s", message.text[:200])
        elif not isinstance(message, Ignored | InvalidFrame) and self.on_message is not None:
            try:
                self.on_message(message)
            except Exception:
                log.exception("handling a %s message failed; the stream goes on", message.channel)

    def _deliver(self, trades: list[Trade]) -> list[Trade]:
        fresh = self.dedupe.fresh(trades)
        self.stats.duplicates = self.dedupe.duplicates
        if not fresh:
            return fresh
        self.stats.trades += len(fresh)
        last = self.last_trade_ms
        for trade in fresh:
            if trade.time_ms > last.get(trade.coin, 0):
                last[trade.coin] = trade.time_ms
        try:
            self.on_trades(fresh)
        except Exception:
            log.exception("handling %d trades failed; the stream goes on", len(fresh))
        return fresh


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidHandshake):
        return f"handshake refused ({exc}); retrying"
    return f"{type(exc).__name__}: {exc or 'connection lost'}; reconnecting"
