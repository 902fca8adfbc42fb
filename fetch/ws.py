"""The Hyperliquid trade stream: redundant WebSocket connections, one deduplicated truth, no
silent gap.

`connections` sockets (default 1 here, 2 in the collector: A/B feeds) each subscribe the
`trades` of every coin; the first one also carries `allMids` and the optional per-coin channels
(`l2Book`, `bbo`, `activeAssetCtx`). Each connection lives in `fetch.ws_connection` (subscribe,
ping, stale detection, reconnect forever with jittered backoff); this module owns what they share:

- Dedupe on (coin, time, tid) across connections, replays and backfills: each trade is handed
  to `on_trades` once, from whichever connection brings it first.
- Coverage. A coin is covered while at least one connection's `trades` subscription is acked
  on an open socket. While it stays covered nothing can be missed: a drop of one connection
  loses nothing and costs no REST weight. When the last covering connection drops, the coin
  remembers the last trade seen (or the moment it became covered, if it had none); the first
  connection to cover it again must reach back to it: the first `trades` message of a
  subscription replays the coin's latest trades, and if its oldest trade is newer than that mark
  the stretch in between may be missing.
- Gaps. Such a stretch is *opened* at once (`on_gap_opened`: the collector keeps it on disk so
  a crash cannot forget it), then the coin is backfilled from REST `recentTrades` (the exchange
  serves only ~10 trades, so this fills only a few seconds of a busy coin), and the gap is
  *closed* (`on_gap_closed`): what the backfill could not reach back to is a `Gap` with exact
  bounds (`on_gap`): the last trade seen before, the oldest seen after.
- At start `seed_last_trade` gives each coin the newest trade already stored: a restart is a
  stretch with no covering connection like any other.
Validation failures go to the quarantine; one bad record never drops the good ones beside it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from websockets.exceptions import InvalidHandshake

from fetch.dedupe import TradeDeduper
from fetch.rate_limit import WeightBudget
from fetch.ws_connection import FeedConnection, Subscription
from utils.clock import now_ms
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
)

log = logging.getLogger(__name__)

Backfill = Callable[[str], Awaitable[list[Trade]]]
MAX_SUBSCRIPTIONS = 1000
"""Per IP, over all sockets (API.md section 4)."""
NEW_CONNECTIONS_PER_MINUTE = 27
"""Connection attempts per 60 s over all connections: the exchange allows 30 per IP."""
OUTAGE_BACKOFF_CAP = 2.0
"""Backoff cap while no connection is up: every second down may lose trades for good, so retry
soon; the attempts pacer keeps the rate within the exchange's limit."""
REDUNDANCY_BACKOFF_CAP = 5.0
"""Backoff cap while another connection carries the trades: the spare should be back soon."""
DOWN_REMINDER_EVERY = 300.0
CLOSE_CLAIM_TIMEOUT = 30.0


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
        on_gap_opened: Callable[[Gap], None] | None = None,
        on_gap_closed: Callable[[Gap], None] | None = None,
        quarantine: Quarantine | None = None,
        channels: Iterable[str] = ("allMids",),
        coin_channels: Iterable[str] = (),
        channel_coins: Iterable[str] = (),
        connections: int = 1,
        ping_interval: float = 20.0,
        pong_timeout: float = 10.0,
        stale_after: float = 60.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        messages_per_minute: int = 1500,
        dedupe_capacity: int = 50_000,
        open_timeout: float = 10.0,
        replay_wait: float = 3.0,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
    ) -> None:
        if not 1 <= connections <= 10:
            raise HyperfluxError(
                f"hl.ws_connections must be 1 to 10 (the exchange allows 10 per IP), "
                f"got {connections}"
            )
        self.ws_url = ws_url
        self.coins = list(dict.fromkeys(coins))
        self.on_trades = on_trades
        self.on_message = on_message
        self.backfill = backfill
        self.on_gap = on_gap
        self.on_gap_opened = on_gap_opened
        self.on_gap_closed = on_gap_closed
        self.quarantine = quarantine
        self.channels = tuple(channels)
        self.coin_channels = tuple(coin_channels)
        self.channel_coins = frozenset(channel_coins)  # empty: every coin gets coin_channels
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.stale_after = stale_after
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.open_timeout = open_timeout
        self.replay_wait = replay_wait
        self.max_subscriptions = max_subscriptions
        self.stats = WsStats()
        self.gaps: list[Gap] = []
        self.open_gaps: dict[tuple[str, int], Gap] = {}
        self.dedupe = TradeDeduper(dedupe_capacity)
        self.last_trade_ms: dict[str, int] = {}
        self.connections = [FeedConnection(self, i) for i in range(connections)]
        self._pacer = WeightBudget(messages_per_minute, safety_margin=0.0)
        self._connect_pacer = WeightBudget(NEW_CONNECTIONS_PER_MINUTE, safety_margin=0.0)
        self._stop = asyncio.Event()
        self._covering: dict[str, set[int]] = {}  # coin -> connections whose trades are acked
        self._covered_since: dict[str, int] = {}  # coin -> ms it became covered
        self._resume: dict[str, int] = {}  # coin -> mark the next cover must reach back to
        self._replay_timers: dict[str, asyncio.TimerHandle] = {}
        self._backfills: set[asyncio.Task[None]] = set()
        self._closing: tuple[FeedConnection, float] | None = None  # a self-initiated reconnect
        self._down_since: float | None = None  # Unix time every connection was down from
        self._down_logged = 0.0

    # -- what is subscribed -------------------------------------------------------------------

    def coin_subscriptions(self, coin: str, extras: bool = True) -> list[Subscription]:
        subs: list[Subscription] = [{"type": "trades", "coin": coin}]
        if extras and (not self.channel_coins or coin in self.channel_coins):
            subs += [{"type": channel, "coin": coin} for channel in self.coin_channels]
        return subs

    @property
    def subscriptions(self) -> list[Subscription]:
        """What the first connection subscribes (the others: only `trades`)."""
        return self.connections[0].subscriptions()

    @property
    def connected(self) -> bool:
        return any(c.connected for c in self.connections)

    @property
    def connected_count(self) -> int:
        return sum(c.connected for c in self.connections)

    @property
    def unacknowledged(self) -> list[Subscription]:
        return [sub for c in self.connections for sub in c.pending_acks.values()]

    def coins_of(self, connection: FeedConnection) -> list[str]:
        """The coins whose trades `connection` subscribes: all of them, unless the per-IP
        subscription limit leaves a further connection room for only the first ones."""
        if connection.index == 0:
            return self.coins
        room = self.max_subscriptions - len(self.subscriptions)
        room -= len(self.coins) * (connection.index - 1)
        return self.coins[: max(0, room)]

    async def update_coins(self, coins: Iterable[str]) -> None:
        """Follow the universe: subscribe new coins and unsubscribe delisted ones, live."""
        wanted = list(dict.fromkeys(coins))
        removed = [c for c in self.coins if c not in wanted]
        before = {c.index: set(self.coins_of(c)) for c in self.connections}
        self.coins = wanted
        self._check_subscription_limit()
        for coin in removed:
            self._forget(coin)
        for connection in self.connections:
            if connection.ws is None:
                continue  # its next socket subscribes the new set
            now = set(self.coins_of(connection))
            extras = connection.carries_extras
            for coin in [c for c in before[connection.index] if c not in now]:
                for sub in self.coin_subscriptions(coin, extras):
                    await connection.unsubscribe(sub)
            for coin in [c for c in self.coins_of(connection) if c not in before[connection.index]]:
                for sub in self.coin_subscriptions(coin, extras):
                    await connection.subscribe(sub)
        added = [c for c in wanted if c not in before[0]]
        if added or removed:
            log.info(
                "subscriptions: +%s -%s", ",".join(added) or "none", ",".join(removed) or "none"
            )

    def _check_subscription_limit(self) -> None:
        total = len(self.subscriptions) + len(self.coins) * (len(self.connections) - 1)
        if total > self.max_subscriptions:
            log.warning(
                "%d connections x %d coins need %d subscriptions, over the exchange's %d per IP: "
                "the further connections carry only the first coins (set hl.ws_connections lower "
                "or hl.coins to fewer coins)",
                len(self.connections),
                len(self.coins),
                total,
                self.max_subscriptions,
            )

    def _forget(self, coin: str) -> None:
        self._covering.pop(coin, None)
        self._covered_since.pop(coin, None)
        self._resume.pop(coin, None)
        timer = self._replay_timers.pop(coin, None)
        if timer is not None:
            timer.cancel()

    def seed_last_trade(self, coin: str, time_ms: int) -> None:
        """The newest trade already stored for `coin` (after a restart): the first connection
        to cover the coin must reach back to it, or the stretch is a gap."""
        self.last_trade_ms[coin] = max(time_ms, self.last_trade_ms.get(coin, 0))
        if not self._covering.get(coin):
            self._resume[coin] = self.last_trade_ms[coin]

    # -- life cycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every connection until `stop()`."""
        self._check_subscription_limit()
        await asyncio.gather(*(c.run(self._stop) for c in self.connections))

    async def stop(self) -> None:
        """Stop the connections; a backfill still waiting is abandoned and its gap recorded."""
        self._stop.set()
        for task in list(self._backfills):
            task.cancel()
        await asyncio.gather(*self._backfills, return_exceptions=True)
        for timer in self._replay_timers.values():
            timer.cancel()
        await asyncio.gather(*(c.close() for c in self.connections), return_exceptions=True)

    async def pace(self) -> None:
        """Keep client messages of every connection under the per-IP limit."""
        reservation = await self._pacer.acquire(1)
        self._pacer.settle(reservation, 1)

    async def pace_connect(self) -> None:
        """Keep connection attempts of every connection under the per-IP limit."""
        reservation = await self._connect_pacer.acquire(1)
        self._connect_pacer.settle(reservation, 1)

    def retry_cap(self) -> float:
        """The backoff cap for a connection's next attempt: 2 s while every connection is down
        (trades are being lost), 5 s while another carries the trades (the spare should be back
        soon); never above the configured cap."""
        cap = REDUNDANCY_BACKOFF_CAP if self.connected else OUTAGE_BACKOFF_CAP
        return min(self.backoff_cap, cap)

    # -- connection events (from fetch.ws_connection) ---------------------------------------------

    def connection_opened(self, connection: FeedConnection) -> None:
        self.stats.connects += 1
        if connection.connects > 1:
            self.stats.reconnects += 1
        if self._down_since is not None:
            log.info(
                "Hyperliquid WebSocket reachable again after %.0f s",
                time.time() - self._down_since,
            )
            self._down_since = None
        log.info("connected to %s (connection %s)", self.ws_url, connection.name)

    def connection_subscribed(self, connection: FeedConnection) -> None:
        if self._closing is not None and self._closing[0] is connection:
            self._closing = None
        coins = len(self.coins_of(connection))
        if coins:
            log.info("subscribed to the trades of %d coins (connection %s)", coins, connection.name)

    def connection_closed(self, connection: FeedConnection) -> None:
        now = now_ms()
        for coin, covering in self._covering.items():
            if connection.index not in covering:
                continue
            covering.discard(connection.index)
            if covering:
                continue
            mark = self.last_trade_ms.get(coin, self._covered_since.get(coin, now))
            self._resume[coin] = min(self._resume.get(coin, mark), mark)
            timer = self._replay_timers.pop(coin, None)
            if timer is not None:
                timer.cancel()

    def connection_failed(self, connection: FeedConnection, exc: BaseException) -> None:
        """One warning when the exchange becomes unreachable, a reminder every 5 minutes."""
        reason = _describe(exc)
        if self.connected or self._stop.is_set():
            log.warning("WebSocket %s: %s; reconnecting", connection.name, reason)
            return
        now = time.time()
        if self._down_since is None:
            self._down_since = self._down_logged = now
            log.warning(
                "Hyperliquid WebSocket %s unreachable (%s); retrying with backoff. Check the "
                "network, or HYPERFLUX_HL_WS_URL",
                self.ws_url,
                reason,
            )
        elif now - self._down_logged >= DOWN_REMINDER_EVERY:
            self._down_logged = now
            since = datetime.fromtimestamp(self._down_since, UTC).strftime("%H:%M:%S UTC")
            log.error(
                "Hyperliquid WebSocket %s unreachable since %s (%s); still retrying",
                self.ws_url,
                since,
                reason,
            )

    def may_close(self, connection: FeedConnection) -> bool:
        """May `connection` drop its (stale) socket? Only while no other connection is
        reconnecting by our hand (for up to 30 s): never two down at once by our doing."""
        now = time.monotonic()
        claim = self._closing
        claimed = claim is not None and claim[0] is not connection
        if claimed and now - claim[1] < CLOSE_CLAIM_TIMEOUT:  # type: ignore[index]
            return False
        self._closing = (connection, now)
        return True

    @property
    def hl_down_since(self) -> float | None:
        """Unix time since every connection has been down (None while one is up)."""
        return self._down_since

    # -- receiving -------------------------------------------------------------------------------

    def handle_frame(self, raw: str | bytes, connection: FeedConnection | None = None) -> None:
        """Parse one frame and route it. Never raises: bad input is quarantined and counted."""
        self.stats.frames += 1
        message = parse_ws_message(raw)
        if message.rejected:
            self.stats.rejected += len(message.rejected)
            if self.quarantine is not None:
                for record in message.rejected:
                    self.quarantine.add(f"ws:{message.channel}", record.reason, record.raw_text)
        if isinstance(message, Pong):
            if connection is not None:
                connection.saw_pong()
            return
        if connection is not None:
            connection.saw_data()
        if isinstance(message, TradesMessage):
            trades = message.trades
            if trades and connection is not None:
                coin = trades[0].coin
                if coin not in connection.first_trades:
                    oldest = min(t.time_ms for t in trades)
                    connection.first_trades[coin] = oldest
                    self._deliver(trades)
                    self._covered(connection, coin, oldest)
                    return
            self._deliver(trades)
        elif isinstance(message, SubscriptionAck):
            if connection is not None:
                connection.pending_acks.pop(message.key, None)  # type: ignore[call-overload]
                sub = message.subscription
                if message.method == "subscribe" and sub.get("type") == "trades":
                    self._covered(connection, str(sub.get("coin")), None)
        elif isinstance(message, ErrorMessage):
            self.stats.errors += 1
            log.warning("Hyperliquid WebSocket error: %s", message.text[:200])
        elif (
            not isinstance(message, Ignored | InvalidFrame)
            and self.on_message is not None
            and (connection is None or connection.carries_extras)
        ):
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

    # -- coverage and gaps -------------------------------------------------------------------------

    def _covered(self, connection: FeedConnection, coin: str, oldest: int | None) -> None:
        """`connection` covers `coin` (its ack arrived: `oldest` None; or its first trades
        message arrived, whose oldest trade is `oldest`)."""
        if coin not in self.coins:
            return
        covering = self._covering.setdefault(coin, set())
        if not covering:
            self._covered_since.setdefault(coin, now_ms())
        covering.add(connection.index)
        mark = self._resume.get(coin)
        if mark is None:
            return
        if oldest is None:  # acked: give the replay a moment to arrive
            if coin not in self._replay_timers:
                loop = asyncio.get_running_loop()
                self._replay_timers[coin] = loop.call_later(self.replay_wait, self._no_replay, coin)
            return
        del self._resume[coin]
        timer = self._replay_timers.pop(coin, None)
        if timer is not None:
            timer.cancel()
        if oldest > mark:
            self._open_gap(Gap(coin, mark, oldest, "the replay did not reach back"))

    def _no_replay(self, coin: str) -> None:
        """No trades message came after the ack: only REST can tell whether trades were missed."""
        self._replay_timers.pop(coin, None)
        mark = self._resume.pop(coin, None)
        if mark is not None:
            self._open_gap(Gap(coin, mark, now_ms(), "no replay"), replay=False)

    def _open_gap(self, gap: Gap, replay: bool = True) -> None:
        if self.backfill is None:
            if replay:
                self._record_gap(replace(gap, reason="no connection carried the trades"))
            return
        self.open_gaps[(gap.coin, gap.after_ms)] = gap
        if self.on_gap_opened is not None:
            self.on_gap_opened(gap)
        task = asyncio.create_task(self._backfill_gap(gap, replay), name=f"backfill-{gap.coin}")
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _backfill_gap(self, gap: Gap, replay: bool) -> None:
        """Fill what `recentTrades` still holds; what it cannot reach back to stays a gap."""
        assert self.backfill is not None
        try:
            recent = await self.backfill(gap.coin)
        except HyperfluxError as exc:
            final: Gap | None = replace(gap, reason=f"backfill failed: {exc}")
        except asyncio.CancelledError:
            self._close_gap(gap, replace(gap, reason="stopped before the backfill answered"))
            raise
        else:
            self.stats.backfilled += len(self._deliver(recent))
            oldest = min((t.time_ms for t in recent), default=None)
            if oldest is not None and oldest <= gap.after_ms:
                final = None  # the backfill reached back: nothing missing
            elif oldest is None:
                final = replace(gap, reason="recentTrades was empty") if replay else None
            else:
                before = min(oldest, gap.before_ms) if replay else oldest
                final = replace(gap, before_ms=before, reason="recentTrades did not reach back")
        self._close_gap(gap, final)

    def _close_gap(self, gap: Gap, final: Gap | None) -> None:
        self.open_gaps.pop((gap.coin, gap.after_ms), None)
        if final is not None:
            self._record_gap(final)
        if self.on_gap_closed is not None:
            self.on_gap_closed(gap)

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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidHandshake):
        return f"handshake refused ({exc})"
    return f"{type(exc).__name__}: {exc or 'connection lost'}"
