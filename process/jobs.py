"""The collector's jobs: what happens to new trades, and what each periodic job fetches and writes.

Sources are injected (process/ never imports fetch/): `MarketSource` is satisfied by
`fetch.info.HyperliquidInfo`, `CoinFollower` by `fetch.ws.MarketStream`. Every job writes
through the one writer, so batching, retries and the spool apply to all of them alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from process.liquidations import LiquidationDetector, LiquidationEvent
from process.points import GapRecord, PointBuilder
from process.poll_scheduler import PollScheduler
from process.positions.book import PositionBook
from process.positions.equity import EquityUpdates, equity_line, served_equity
from process.positions.margin import rules_from_meta
from process.registry import AddressRegistry, summarize
from process.shard import Shard
from process.storage_ports import PointSink
from utils.clock import now_ms
from utils.errors import HyperfluxError
from validate import AssetCtx, ClearinghouseState, Meta, Position, Trade

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000
_ZERO = Decimal(0)


class MarketSource(Protocol):
    async def meta(self) -> Meta: ...

    async def meta_and_asset_ctxs(self) -> tuple[Meta, list[AssetCtx]]: ...

    async def clearinghouse_state(self, user: str) -> ClearinghouseState: ...


class CoinFollower(Protocol):
    async def update_coins(self, coins: Iterable[str]) -> None: ...


@dataclass
class TradeSink:
    """Every batch of new (deduplicated, validated) trades: points, liquidations, discovery.

    With `store` False (a shard that leaves market data to shard 0) trades only feed address
    discovery and the poller's hints; nothing is written.
    """

    builder: PointBuilder
    writer: PointSink
    detector: LiquidationDetector
    discover: Callable[[list[Trade], int], None] | None = None
    handed_over: Callable[[str, int, int], None] | None = None
    """Called after the writer took a coin's trades: (coin, oldest ms, newest ms)."""
    confirm_market: Callable[[LiquidationEvent], None] | None = None
    """Where market liquidations go to be confirmed (`LiquidationConfirmer.candidate`) instead
    of being written at once."""
    on_liquidation: Callable[[LiquidationEvent], None] | None = None
    """Told of every liquidation written here (backstops; market ones once confirmed)."""
    store: bool = True
    trades: int = 0
    liquidations: int = 0
    gaps: int = 0
    lag_seconds: float = 0.0  # exchange time of the newest trade to hand-over, last batch

    def __call__(self, trades: list[Trade]) -> None:
        now = now_ms()
        self.trades += len(trades)
        if self.store:
            lines = self.builder.trades(trades)
            events = self.detector.detect(trades)
            if events and self.confirm_market is not None:
                for event in events:
                    if event.method == "market":
                        self.confirm_market(event)
                events = [e for e in events if e.method != "market"]
            if events:
                lines += self.builder.liquidations(events)
                self.liquidations += len(events)
                if self.on_liquidation is not None:
                    for event in events:
                        self.on_liquidation(event)
            self.writer.write(lines)
            newest = max(t.time_ms for t in trades)
            self.lag_seconds = max(0.0, (now - newest) / 1000)
            if self.handed_over is not None:
                self._tell_handed_over(trades, newest)
        if self.discover is not None:
            self.discover(trades, now)

    def _tell_handed_over(self, trades: list[Trade], newest: int) -> None:
        assert self.handed_over is not None
        coin = trades[0].coin
        if trades[-1].coin == coin and all(t.coin == coin for t in trades):  # one frame: one coin
            self.handed_over(coin, min(t.time_ms for t in trades), newest)
            return
        spans: dict[str, tuple[int, int]] = {}
        for trade in trades:
            low, high = spans.get(trade.coin, (trade.time_ms, trade.time_ms))
            spans[trade.coin] = (min(low, trade.time_ms), max(high, trade.time_ms))
        for coin, (low, high) in spans.items():
            self.handed_over(coin, low, high)

    def gap(self, gap: GapRecord) -> None:
        self.gaps += 1
        if self.store:
            self.writer.write([self.builder.gap(gap)])


@dataclass
class AssetCtxJob:
    """Every `asset_ctx` interval: funding, open interest and prices of every perp."""

    source: MarketSource
    builder: PointBuilder
    writer: PointSink
    book: PositionBook | None = None  # gets the marks and margin rules of every poll
    on_ctxs: Callable[[list[AssetCtx], int], None] | None = None  # (contexts, poll time ms)
    marks: dict[str, float] = field(default_factory=dict)
    open_interest_usd: dict[str, float] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)

    async def __call__(self) -> None:
        meta, ctxs = await self.source.meta_and_asset_ctxs()
        polled_ms = now_ms()
        self.writer.write(self.builder.asset_ctxs(ctxs, polled_ms))
        if self.on_ctxs is not None:
            self.on_ctxs(ctxs, polled_ms)
        self.marks = {c.coin: float(c.mark_px) for c in ctxs}
        self.open_interest_usd = {c.coin: float(c.open_interest_usd) for c in ctxs}
        self.listed = [a.name for a in meta.universe if not a.is_delisted]
        if self.book is not None:
            self.book.set_market({c.coin: c.mark_px for c in ctxs}, rules_from_meta(meta))
            hour_ms = now_ms() // HOUR_MS * HOUR_MS  # the settlement this poll follows
            self.book.apply_funding({c.coin: (c.funding, c.oracle_px) for c in ctxs}, hour_ms)


@dataclass
class UniverseJob:
    """Every `refresh_every` s: new listings join the trade subscriptions, delisted coins leave.

    Call it often (every minute): it refreshes only when the last refresh is that old, so a
    failed first refresh (Hyperliquid unreachable at start) is retried soon.
    """

    source: MarketSource
    stream: CoinFollower
    configured: list[str]
    refresh_every: float = 3600.0
    coins: list[str] = field(default_factory=list)
    refreshed_at: float | None = None  # monotonic time of the last successful refresh

    async def __call__(self) -> None:
        if self.refreshed_at is not None and (
            time.monotonic() - self.refreshed_at < self.refresh_every
        ):
            return
        meta = await self.source.meta()
        self.refreshed_at = time.monotonic()
        listed = [a.name for a in meta.universe if not a.is_delisted]
        wanted = [c for c in self.configured if c in listed] if self.configured else listed
        missing = sorted(set(self.configured) - set(listed))
        if missing:
            log.warning("configured coins not listed as perps (ignored): %s", ", ".join(missing))
        if wanted != self.coins:
            self.coins = wanted
            await self.stream.update_coins(wanted)


@dataclass
class HlpJob:
    """Every minute: the positions and equity of the HLP parent and child vaults."""

    source: MarketSource
    builder: PointBuilder
    writer: PointSink
    vaults: Callable[[], Mapping[str, str]]  # address -> name
    held: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    async def __call__(self) -> None:
        failures = []
        for address, name in self.vaults().items():
            try:
                state = await self.source.clearinghouse_state(address)
            except HyperfluxError as exc:
                failures.append(f"{name}: {exc}")
                continue
            held = _held(state.positions)
            closed = self.held.get(address, set()) - held
            self.held[address] = held
            self.writer.write(self.builder.hlp(name, state, now_ms(), closed=closed))
        if failures:
            raise HyperfluxError(f"HLP vaults not read: {'; '.join(failures)}")


@dataclass
class PositionsJob:
    """Polls the addresses the scheduler picks, under its share of the REST budget.

    One way per poll: pick (`scheduler.next_batch`) -> fetch -> `book.reconcile` -> the
    address's state records it once (`registry.record_poll`, or `record_failure`: a failing
    address backs off) -> `scheduler.reschedule` -> points, written as soon as the answer
    arrives (partial results are kept). The scheduler shares the registry's states
    (`PollScheduler(states=registry.by_address)`): one object per address.
    """

    source: MarketSource
    builder: PointBuilder
    writer: PointSink
    registry: AddressRegistry
    scheduler: PollScheduler
    shard: Shard
    skip: frozenset[str] = frozenset()
    batch: int = 8
    book: PositionBook | None = None  # reconciled with every poll
    equity: EquityUpdates | None = None  # told of every poll's account_equity point
    polls: int = 0
    failures: int = 0
    watched: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.scheduler.states is not self.registry.by_address:
            raise ValueError("the poll scheduler must share the registry's address states")

    def restore(self) -> None:
        """Schedule every address the registry kept from earlier runs (by its kept state)."""
        for address in self.registry.addresses():
            self.scheduler.add(address)

    def discover(self, trades: list[Trade], time_ms: int) -> None:
        """Traders of this shard join the registry and the schedule; a trade is a hint that
        the trader's position changed by its notional (the poller moves it up)."""
        traded: dict[str, Decimal] = {}
        get = traded.get
        for trade in trades:
            notional = trade.px * trade.sz  # Decimal: float() of it costs 3x the product
            buyer, seller = trade.buyer, trade.seller
            traded[buyer] = get(buyer, _ZERO) + notional
            traded[seller] = get(seller, _ZERO) + notional
        for address in self.skip.intersection(traded):
            del traded[address]
        if self.shard.count > 1:
            owns = self.shard.owns
            traded = {address: n for address, n in traded.items() if owns(address)}
        new = self.registry.observe(traded, time_ms)
        for address, notional in traded.items():
            self.scheduler.note_traded(address, time_ms, float(notional))
        for address in new:  # ranked for its first poll by what it traded
            self.scheduler.add(address)

    def watch(self, addresses: frozenset[str]) -> None:
        """Watched addresses (this shard's): in the registry, polled with priority, never
        expired."""
        if self.shard.count > 1:
            addresses = frozenset(a for a in addresses if self.shard.owns(a))
        self.registry.observe(addresses - self.watched, now_ms())
        self.scheduler.watch(addresses)
        self.watched = addresses

    def note_gap(self, coin: str, after_ms: int, before_ms: int) -> None:
        """Trades of `coin` in (after_ms, before_ms] may be missing: the book's accounts hold
        estimates of it until their next poll, and those holding it weigh `ESTIMATED_BOOST`
        times more until then (`note_estimated`)."""
        if self.book is not None:
            self.scheduler.note_estimated(self.book.note_gap(coin, after_ms, before_ms))

    def expire(self, inactive_ms: int) -> int:
        gone = self.registry.expire_addresses(now_ms(), inactive_ms, keep=self.watched)
        for address in gone:  # gone from the shared states: its queue items are stale
            if self.book is not None:
                self.book.forget(address)
            if self.equity is not None:
                self.equity.forget(address)
        return len(gone)

    async def __call__(self) -> None:
        if self.book is not None:
            self.book.settle_checks(now_ms())
        addresses = self.scheduler.next_batch(now_ms(), self.batch)
        if addresses:
            await asyncio.gather(*(self._poll(a) for a in addresses))

    async def _poll(self, address: str) -> None:
        try:
            await self._poll_once(address)
        finally:  # whatever failed on the way, nothing is left waiting for this poll (both
            self.scheduler.release(address)  # are no-ops after a recorded poll or failure)
            if self.book is not None:
                self.book.poll_failed(address)

    async def _poll_once(self, address: str) -> None:
        if self.book is not None:
            self.book.polling(address)
        try:
            state = await self.source.clearinghouse_state(address)
        except HyperfluxError as exc:
            self.failures += 1
            if address in self.registry:  # not expired meanwhile
                self.registry.record_failure(address, now_ms())
                self.scheduler.reschedule(address)
            log.debug("positions of %s not read: %s", address, exc)
            return
        if address not in self.registry:  # expired while its poll was on its way
            return
        polled = now_ms()
        if self.book is not None:
            self.book.reconcile(address, state, polled)
        summary = summarize(state)
        closed = self.registry.record_poll(
            address,
            polled,
            notional_usd=summary.notional_usd,
            min_liq_distance=summary.min_liq_distance,
            positions=summary.positions,
        )
        self.scheduler.reschedule(address)
        self.polls += 1
        lines = self.builder.positions(address, state, polled, closed=closed)
        equity = served_equity(state)
        lines.append(equity_line(self.builder.allocator, address, equity, "poll", polled))
        if self.equity is not None:
            self.equity.polled(address, polled, float(equity.account_value))
        self.writer.write(lines)


def _held(positions: Iterable[Position]) -> set[tuple[str, str]]:
    return {(p.coin, "long" if p.szi > 0 else "short") for p in positions if p.szi != 0}
