"""`LiveFeed`: the collector's live pipeline without InfluxDB, for the library API and `tail`.

Its own WebSocket connection(s) (`fetch.ws.MarketStream`: dedupe, gap backfill from
`recentTrades`), its own REST client under its own small weight budget, and the collector's
processing code: `LiquidationDetector` (backstops: a liquidator vault as taker), the
`PositionBook` moved by every trade and reconciled by `clearinghouseState` polls of the addresses
seen trading (market liquidations are inferred from it), `LiquidationConfirmer` (a market
candidate counts only once the victim's own fills carry a market `liquidation`), `LiveChannels`
(l2Book, bbo, activeAssetCtx) and the alert matching of `process.alerts`. What it learns goes
to its own `EventBus` (the same `Event`s the collector publishes); nothing is written anywhere.

REST weight: the exchange allows 1200 per minute per IP, shared with a collector running on the
same host, so the feed spends at most `weight_budget` (default 300) per minute: start-up
(`metaAndAssetCtxs` 20, HLP vault discovery ~20 per vault, once), gap backfills first, then
confirmations of market liquidations (~21 each), then position polls (2 each) with what is left
up to `positions_share`.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import math
from collections.abc import Callable, Coroutine, Iterable
from decimal import Decimal
from typing import Any

from fetch.hlp import KNOWN_LIQUIDATORS, discover_hlp
from fetch.info import HyperliquidInfo
from fetch.rate_limit import Priority, WeightBudget
from fetch.rest import InfoClient
from fetch.ws import Gap, MarketStream
from process.alerts.alert import Alert
from process.alerts.dedup import RecentKeys
from process.alerts.match import Matcher
from process.alerts.rules import AlertsConfig, NearLiquidationRule
from process.alerts.zone import NearLiquidationWatch
from process.bus import KINDS, EventBus, EventKind, Subscription
from process.liquidation_confirm import LiquidationConfirmer
from process.liquidations import LiquidationDetector, LiquidationEvent
from process.live_channels import LiveChannels
from process.points import PointBuilder
from process.poll_scheduler import PollScheduler
from process.positions.book import PositionBook, PositionChange
from process.positions.margin import rules_from_meta
from process.registry import summarize
from utils.clock import now_ms
from utils.errors import HyperfluxError
from validate import Trade

log = logging.getLogger(__name__)

MAINNET_API_URL = "https://api.hyperliquid.xyz"
MAINNET_WS_URL = "wss://api.hyperliquid.xyz/ws"
DEFAULT_WEIGHT_BUDGET = 300
"""REST weight per minute: a quarter of the IP's 1200, leaving the rest to a collector."""
CLOSE_SECONDS = 1.0


class UnknownCoinError(HyperfluxError):
    """A coin that is not a listed perp."""


class _Discard:
    """A `PointSink` that keeps nothing: process/ classes that also write get this here."""

    def write(self, lines: Iterable[str]) -> None:
        return None


DISCARD = _Discard()


class PositionPoller:
    """Polls the addresses seen trading (never-polled first, then the largest sqrt(notional) x
    age: `PollScheduler`) and reconciles them in the book. Nothing is persisted."""

    def __init__(
        self,
        info: HyperliquidInfo,
        book: PositionBook,
        polls_per_minute: float,
        skip: Iterable[str] = (),
    ) -> None:
        self.info = info
        self.book = book
        self.scheduler = PollScheduler(rate_per_min=max(polls_per_minute, 1.0))
        self.batch = max(1, math.ceil(polls_per_minute / 60)) + 1
        self.skip = frozenset(skip)
        self.polls = 0
        self.failures = 0

    def watch(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            self.scheduler.add(address.lower())

    def discover(self, trades: list[Trade]) -> None:
        now = now_ms()
        traded: dict[str, Decimal] = {}
        for trade in trades:
            notional = trade.px * trade.sz
            for address in (trade.buyer, trade.seller):
                traded[address] = traded.get(address, Decimal(0)) + notional
        for address, notional in traded.items():
            if address in self.skip:
                continue
            self.scheduler.add(address)
            self.scheduler.note_traded(address, now, float(notional))  # ranks a new one too

    async def run(self) -> None:
        """A batch a second (the budget's lane paces it further), as the collector's job."""
        while True:
            started = asyncio.get_running_loop().time()
            self.book.settle_checks(now_ms())
            addresses = self.scheduler.next_batch(now_ms(), self.batch)
            if addresses:
                await asyncio.gather(*(self._poll(a) for a in addresses))
            await asyncio.sleep(max(0.0, started + 1.0 - asyncio.get_running_loop().time()))

    async def _poll(self, address: str) -> None:
        self.book.polling(address)
        try:
            state = await self.info.clearinghouse_state(address)
        except HyperfluxError as exc:
            self.book.poll_failed(address)
            self.failures += 1
            self.scheduler.note_failed(address, now_ms())
            log.debug("positions of %s not read: %s", address, exc)
            return
        except BaseException:
            self.scheduler.release(address)
            self.book.poll_failed(address)
            raise
        polled = now_ms()
        self.book.reconcile(address, state, polled)
        summary = summarize(state)
        self.scheduler.note_polled(address, polled, summary.notional_usd, summary.min_liq_distance)
        self.polls += 1


class LiveFeed:
    """Hyperliquid, live, as typed events on `self.bus`; use as an async context manager.

    `coins`: the perps whose trades and liquidations are published (None: every listed perp).
    `channels`: extra per-coin WebSocket channels for those coins (`l2Book`, `bbo`,
    `activeAssetCtx`). `track_positions`: keep a position book of the addresses seen trading
    (REST polls) so that market liquidations can be inferred and confirmed; without it only
    backstops are found. The book must see every fill of the accounts it tracks, so with it the
    stream carries the trades of every perp, and every mark is refreshed from REST each
    `marks_every` seconds (weight 20). `alerts`: rules evaluated on the feed (their webhook
    targets are not called: the collector delivers those). `on_liquidation` is called for every
    liquidation of `coins`, before it is published (backstops at once, market ones confirmed).
    """

    def __init__(
        self,
        api_url: str = MAINNET_API_URL,
        ws_url: str = MAINNET_WS_URL,
        coins: Iterable[str] | None = None,
        *,
        channels: Iterable[str] = (),
        track_positions: bool = True,
        weight_budget: int = DEFAULT_WEIGHT_BUDGET,
        positions_share: float = 0.6,
        connections: int = 1,
        liquidators: Iterable[str] = KNOWN_LIQUIDATORS,
        discover_vaults: bool = True,
        alerts: AlertsConfig | None = None,
        on_liquidation: Callable[[LiquidationEvent], None] | None = None,
        confirm_every: float = 1.0,
        marks_every: float = 20.0,
    ) -> None:
        if weight_budget < 40:
            raise HyperfluxError(
                f"weight_budget must be at least 40 per minute, got {weight_budget}"
            )
        self.api_url, self.ws_url = api_url, ws_url
        self.wanted = None if coins is None else list(dict.fromkeys(coins))
        self.coins: list[str] = []
        self._followed: frozenset[str] = frozenset()
        self.listed: list[str] = []
        self.channels = tuple(channels)
        if track_positions and coins is not None and "activeAssetCtx" not in self.channels:
            self.channels += ("activeAssetCtx",)  # live marks of the coins followed
        self.track_positions = track_positions
        self.positions_share = positions_share
        self.connections = connections
        self.liquidators = frozenset(a.lower() for a in liquidators)
        self.discover_vaults = discover_vaults
        self.on_liquidation = on_liquidation
        self.confirm_every = confirm_every
        self.marks_every = marks_every
        self.bus = EventBus()
        self.book = PositionBook(on_change=self._position_changed)
        self.budget = WeightBudget(weight_budget, safety_margin=0.0)
        self.client = InfoClient(api_url, budget=self.budget, max_attempts=3)
        lane = self.budget.lane
        self.market_info = HyperliquidInfo(self.client, budget=lane(Priority.MARKET))
        self.backfill_info = HyperliquidInfo(self.client, budget=lane(Priority.BACKFILL))
        self.confirm_info = HyperliquidInfo(self.client, budget=lane(Priority.PROFILES))
        positions_lane = lane(Priority.POSITIONS, cap=positions_share)
        self.poller = PositionPoller(
            HyperliquidInfo(self.client, budget=positions_lane), self.book, positions_lane.limit / 2
        )
        self.detector = LiquidationDetector(
            self.liquidators,
            self.book.views if track_positions else None,
            mark=lambda coin: self.book.marks.get(coin),
        )
        self.confirmer = LiquidationConfirmer(
            self.confirm_info, PointBuilder(), DISCARD, on_confirmed=self._liquidation
        )
        self.live = LiveChannels(PointBuilder(), DISCARD, self.bus, book=self.book, store=False)
        self.alerts = alerts if alerts is not None and alerts.enabled else None
        self.matcher: Matcher | None = None
        self.zone: NearLiquidationWatch | None = None
        if self.alerts is not None:
            self.matcher = Matcher(self.alerts)
            near = [r for r in self.alerts.rules if isinstance(r, NearLiquidationRule)]
            self.zone = NearLiquidationWatch(near, self.matcher.targets)
        self._alerted = RecentKeys()
        self.stream: MarketStream | None = None
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []

    # -- life cycle --------------------------------------------------------------------------

    async def __aenter__(self) -> LiveFeed:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Read the universe and the margin rules, find the liquidator vaults, connect."""
        meta, ctxs = await self.market_info.meta_and_asset_ctxs()
        self.listed = [a.name for a in meta.universe if not a.is_delisted]
        self.coins = self.listed if self.wanted is None else self.check_coins(self.wanted)
        self._followed = frozenset(self.coins)
        self.book.set_market({c.coin: c.mark_px for c in ctxs}, rules_from_meta(meta))
        if self.discover_vaults:
            vaults = await discover_hlp(self.market_info, known_liquidators=tuple(self.liquidators))
            self.liquidators = vaults.liquidators
            self.detector.update_liquidators(vaults.liquidators)
            self.poller.skip = frozenset(vaults.addresses)
        self.poller.skip |= self.liquidators
        if self.matcher is not None:
            self.poller.watch(self.matcher.watched)
        self.stream = MarketStream(
            self.ws_url,
            self.listed if self.track_positions else self.coins,
            on_trades=self._trades,
            on_message=self.live,
            backfill=self.backfill_info.recent_trades,
            on_gap=self._gap,
            channels=(),
            coin_channels=self.channels,
            channel_coins=self.coins,
            connections=self.connections,
        )
        self._spawn(self.stream.run(), "stream")
        self._spawn(self._confirm(), "confirm")
        if self.track_positions:
            self._spawn(self.poller.run(), "positions")
            self._spawn(self._refresh_marks(), "marks")
        if self.zone is not None and self.zone.rules:
            self._spawn(self._check_zone(), "near-liquidation")

    async def close(self) -> None:
        """Stop within about a second; every subscription's iteration then ends."""
        if self.stream is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stream.stop(), CLOSE_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for subscription in self._subscriptions:
            subscription.close()
        await self.client.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(self._guard(coroutine, name), name=f"feed-{name}"))

    async def _guard(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the live feed's %s task failed", name)

    # -- what is followed ---------------------------------------------------------------------

    def check_coins(self, coins: Iterable[str]) -> list[str]:
        """`coins` if every one is a listed perp; else `UnknownCoinError` naming the closest."""
        coins = list(dict.fromkeys(coins))
        for coin in coins:
            if coin not in self.listed:
                close = difflib.get_close_matches(coin, self.listed, n=1) or [
                    c for c in self.listed if c.lower() == coin.lower()
                ]
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise UnknownCoinError(f"{coin!r} is not a listed perp{hint}")
        return coins

    async def follow(self, coins: Iterable[str] | None) -> list[str]:
        """Add `coins` (None: those followed) to what the feed follows; returns them. (The extra
        channels stay with the coins followed from the start.)"""
        if coins is None:
            return self.coins
        wanted = self.check_coins(coins)
        added = [c for c in wanted if c not in self.coins]
        self.coins = [*self.coins, *added]
        self._followed = frozenset(self.coins)
        if added and self.stream is not None and not self.track_positions:
            await self.stream.update_coins(self.coins)
        return wanted

    def subscribe(
        self,
        kinds: Iterable[EventKind] = KINDS,
        coins: Iterable[str] | None = None,
        buffer: int = 10_000,
    ) -> Subscription:
        """Events of `kinds` (and `coins`) from now on; the iteration ends when the feed closes.
        A consumer slower than the feed loses the oldest waiting events (`dropped`)."""
        subscription = self.bus.subscribe(kinds, coins, name="library", buffer=buffer)
        self._subscriptions.append(subscription)
        return subscription

    async def wait_subscribed(self, timeout: float = 10.0) -> None:
        """Until every subscription is acknowledged on an open socket."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.stream is None or not self.stream.connected or self.stream.unacknowledged:
            if loop.time() > deadline:
                raise HyperfluxError(f"not subscribed at {self.ws_url} within {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def recent_trades(self, coin: str) -> list[Trade]:
        """REST `recentTrades` of `coin` (about 10 trades; weight ~21)."""
        return await self.market_info.recent_trades(coin)

    # -- the stream ---------------------------------------------------------------------------

    def _trades(self, trades: list[Trade]) -> None:
        followed = self._followed
        self.bus.publish_trades(t for t in trades if t.coin in followed)
        for event in self.detector.detect(trades):  # before the book applies these trades
            if event.method == "market":
                self.confirmer.candidate(event)
            else:
                self._liquidation(event)
        if self.track_positions:
            self.book.apply_trades(trades)
            self.poller.discover(trades)

    def _liquidation(self, event: LiquidationEvent) -> None:
        if event.coin not in self._followed:
            return
        if self.on_liquidation is not None:
            self.on_liquidation(event)
        self.bus.publish("liquidation", event.coin, event.time_ms, event)
        if self.matcher is not None:
            self._alert(self.matcher.liquidation(event))

    def _position_changed(self, change: PositionChange) -> None:
        self.bus.publish("position_change", change.coin, change.time_ms, change)
        if self.matcher is not None:
            self._alert(self.matcher.position_changed(change))

    def _alert(self, alert: Alert | None) -> None:
        if alert is not None and self._alerted.add(alert.key):
            self.bus.publish("alert", alert.coin, alert.time_ms, alert)

    def _gap(self, gap: Gap) -> None:
        self.scheduler.note_estimated(self.book.note_gap(gap.coin, gap.after_ms, gap.before_ms))
        self.bus.publish("gap", gap.coin, gap.before_ms, gap)

    async def _confirm(self) -> None:
        while True:
            await asyncio.sleep(self.confirm_every)
            try:
                await self.confirmer()
            except HyperfluxError as exc:
                log.debug("%s", exc)

    async def _refresh_marks(self) -> None:
        """Every coin's mark (REST, weight 20): a cross account's liquidation price depends on
        the marks of all its positions, also in coins without a live `activeAssetCtx`."""
        while True:
            await asyncio.sleep(self.marks_every)
            try:
                meta, ctxs = await self.market_info.meta_and_asset_ctxs()
            except HyperfluxError as exc:
                log.debug("marks not refreshed: %s", exc)
                continue
            marks = {c.coin: c.mark_px for c in ctxs}
            self.book.set_market({**self.book.marks, **marks}, rules_from_meta(meta))

    async def _check_zone(self) -> None:
        assert self.zone is not None and self.alerts is not None
        while True:
            await asyncio.sleep(self.alerts.near_liquidation_interval)
            for alert in self.zone.check(self.book, now_ms()):
                self._alert(alert)
