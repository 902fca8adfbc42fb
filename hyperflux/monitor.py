"""`LiquidationMonitor`: Hyperliquid liquidations (and trades) as an async Python API.

Built on `hyperflux.live.LiveFeed` (its own WebSocket and a small REST budget, no InfluxDB);
history comes from InfluxDB through `read_from_influx`, which a running collector fills.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fetch.hlp import KNOWN_LIQUIDATORS
from hyperflux.live import DEFAULT_WEIGHT_BUDGET, MAINNET_API_URL, MAINNET_WS_URL, LiveFeed
from process.liquidations import LiquidatedSide, LiquidationEvent
from utils.clock import now_ms
from utils.errors import HyperfluxError
from validate import Trade

DEFAULT_HISTORY = 100_000
"""Liquidations kept in memory for `get_liquidations_by_timeframe`."""


@dataclass(frozen=True)
class Totals:
    """Liquidations of one side: how many, and their notional (px x sz) in USD."""

    count: int = 0
    usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class LiquidationStatistics:
    """Since `since_ms` (the monitor's start): per coin, per side of the position liquidated
    ("long"/"short"), and per method ("backstop"/"market"); USD = px x sz of each trade."""

    since_ms: int
    by_coin: dict[str, dict[LiquidatedSide, Totals]] = field(default_factory=dict)
    by_method: dict[str, Totals] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(t.count for sides in self.by_coin.values() for t in sides.values())

    @property
    def usd(self) -> Decimal:
        return sum((t.usd for sides in self.by_coin.values() for t in sides.values()), Decimal(0))


class LiquidationMonitor:
    """Liquidations on Hyperliquid, live; use as an async context manager.

    Backstop liquidations (a liquidator vault takes the position over as the taker) are
    yielded as they trade. Market liquidations (the victim's order sent into the book) have no
    flag on the public tape: the monitor keeps a position book of the addresses it sees trading
    (REST polls within `weight_budget`), flags a taker cutting a position at or past the
    liquidation price the book computes, and yields it only once the victim's own fills confirm
    it (a second or two later). Those of accounts not polled yet are missed.

    The monitor spends at most `weight_budget` REST weight per minute (default 300 of the
    1200 per IP, leaving room for a collector on the same host) and one WebSocket connection.
    """

    def __init__(
        self,
        api_url: str = MAINNET_API_URL,
        ws_url: str = MAINNET_WS_URL,
        coins: Iterable[str] | None = None,
        *,
        weight_budget: int = DEFAULT_WEIGHT_BUDGET,
        track_positions: bool = True,
        liquidators: Iterable[str] = KNOWN_LIQUIDATORS,
        discover_vaults: bool = True,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        """`coins`: perps to follow from the start (None: every listed perp; the iterators add
        the coins they are asked for). `liquidators`: vault addresses counted as the backstop
        counterparty beside those HLP discovery finds."""
        self.feed = LiveFeed(
            api_url,
            ws_url,
            coins,
            track_positions=track_positions,
            weight_budget=weight_budget,
            liquidators=liquidators,
            discover_vaults=discover_vaults,
            on_liquidation=self._record,
        )
        self._since_ms = now_ms()
        self._recent: deque[LiquidationEvent] = deque(maxlen=history)
        self._totals: dict[tuple[str, LiquidatedSide], Totals] = {}
        self._methods: dict[str, Totals] = {}

    async def __aenter__(self) -> LiquidationMonitor:
        await self.feed.__aenter__()
        self._since_ms = now_ms()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.feed.close()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the WebSocket subscriptions are acknowledged."""
        await self.feed.wait_subscribed(timeout)

    async def scan_recent_liquidations(
        self, coins: Iterable[str] | None = None
    ) -> list[LiquidationEvent]:
        """The backstop liquidations among each coin's latest trades, as REST tells now.

        Hyperliquid's `recentTrades` serves only about the last 10 trades of a coin (no paging),
        so this sees seconds of a busy coin; market liquidations cannot be told from such a
        snapshot. Costs ~21 weight per coin (default: the coins followed), paced by the budget.
        """
        wanted = self.feed.coins if coins is None else self.feed.check_coins(coins)
        batches = await asyncio.gather(*(self.feed.recent_trades(c) for c in wanted))
        found = self.feed.detector.detect(t for batch in batches for t in batch)
        return [event for event in found if event.method == "backstop"]

    async def monitor_realtime(
        self, coins: Iterable[str] | None = None
    ) -> AsyncIterator[LiquidationEvent]:
        """Every liquidation from now on (of `coins`, default every coin followed), each once:
        backstops as they trade, market ones once confirmed. Ends when the monitor closes."""
        async for event in self._events("liquidation", coins):
            yield event

    async def trades(self, coins: Iterable[str] | None = None) -> AsyncIterator[Trade]:
        """Every trade from now on (of `coins`), deduplicated, as `validate.Trade`."""
        async for trade in self._events("trade", coins):
            yield trade

    async def _events(self, kind: Any, coins: Iterable[str] | None) -> AsyncIterator[Any]:
        wanted = None if coins is None else list(coins)
        subscription = self.feed.subscribe([kind], wanted)
        try:
            await self.feed.follow(wanted)
            async for event in subscription:
                yield event.data
        finally:
            subscription.close()

    def get_statistics(self) -> LiquidationStatistics:
        """Counts and USD of the liquidations seen since the monitor started."""
        by_coin: dict[str, dict[LiquidatedSide, Totals]] = {}
        for (coin, side), totals in sorted(self._totals.items()):
            by_coin.setdefault(coin, {})[side] = totals
        return LiquidationStatistics(self._since_ms, by_coin, dict(self._methods))

    def get_liquidations_by_timeframe(self, seconds: float) -> list[LiquidationEvent]:
        """The liquidations seen whose trade time is within the last `seconds`, oldest first
        (at most the newest `history` are kept)."""
        if seconds < 0:
            raise HyperfluxError(f"seconds must be >= 0, got {seconds}")
        cutoff = now_ms() - seconds * 1000
        return sorted((e for e in self._recent if e.time_ms >= cutoff), key=lambda e: e.time_ms)

    @staticmethod
    def history(name: str = "liquidations", **params: Any) -> Any:
        """Stored history from InfluxDB (a DataFrame): `read_from_influx(name, **params)`, e.g.
        `history("liquidations", asset="BTC", hours=24)`. Needs a collector's database."""
        from db import read_from_influx  # pandas: only when history is asked for

        return read_from_influx(name, **params)

    def _record(self, event: LiquidationEvent) -> None:
        self._recent.append(event)
        key = (event.coin, event.side)
        totals = self._totals.get(key, Totals())
        self._totals[key] = Totals(totals.count + 1, totals.usd + event.notional)
        method = self._methods.get(event.method, Totals())
        self._methods[event.method] = Totals(method.count + 1, method.usd + event.notional)
