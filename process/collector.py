"""The running collector: every job wired to its source, the one writer, the scheduler, metrics.

The Hyperliquid side comes in as `Sources` built by main.py (process/ does not import fetch/).
On entry: restore the timestamp slots of recent trades from InfluxDB (a replay after a restart
overwrites itself; skipped with one line while InfluxDB is unreachable), restore the address
registry and the stream state (each coin's newest durable trade, which the restarted stream
must reach back to; gaps a crash left open are recorded), subscribe the universe, start the
stream and the periodic jobs and the metrics endpoint. On exit, within `STOP_SECONDS`: stop the
jobs and the stream, flush the writer, run the order-flow engine once more over what landed,
save the stream state and the registry; the caller's storage context then flushes or spools
every point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from config import Settings
from db.queries import rfc3339_ns
from db.reader import AsyncInfluxReader
from db.storage import Storage
from process.alerts import Alert, AlertEngine
from process.bus import EventBus
from process.dex import DexJob
from process.dex.job import Rpc as DexRpc
from process.engines.heatmap import HeatmapParams, LiquidationHeatmap
from process.engines.order_flow import OrderFlowEngine, ReplayNotes
from process.engines.positioning import PositioningEngine
from process.engines.positions_state import SnapshotSource
from process.jobs import (
    AssetCtxJob,
    HlpJob,
    MarketSource,
    PositionsJob,
    TradeSink,
    UniverseJob,
)
from process.liquidation_confirm import LiquidationConfirmer
from process.liquidations import LiquidationDetector, LiquidationEvent
from process.live_channels import LiveChannels
from process.outputs import open_outputs
from process.points import GapRecord, PointBuilder
from process.poll_scheduler import PollScheduler
from process.positions.book import PositionBook, PositionChange
from process.positions.equity import EquityUpdates, book_equity
from process.positions.updates import PositionUpdates
from process.profiles import FillSource as ProfileFills
from process.profiles import ProfilesJob
from process.profiles.curation import AutoWatch, CurationRules
from process.profiles.figures import Profile
from process.profiles.rankings import SmartMoney
from process.registry import AddressRegistry
from process.scheduling import JobRunner
from process.shard import Shard
from process.stream_state import FILE_NAME as STREAM_STATE_FILE
from process.stream_state import OpenGap, StreamState
from process.watchlist import FILE_NAME as WATCHLIST_FILE
from process.watchlist import RELOAD_SECONDS as WATCHLIST_EVERY
from process.watchlist import Watchlist
from utils.clock import now_ms
from utils.errors import HyperfluxError
from utils.metrics import MetricsServer, Sample, status_line
from utils.quarantine import Quarantine
from validate import AssetCtx, Trade, WsMessage

log = logging.getLogger(__name__)

HEALTH_EVERY = 30.0
REGISTRY_FLUSH_EVERY = 5.0
STATE_FLUSH_EVERY = 2.0
STOP_SECONDS = 1.2
"""What the collector's own stop may take; the storage's close gets the rest of the 2 s."""
EXPIRE_EVERY = 3600.0
UNIVERSE_CHECK_EVERY = 60.0
STATUS_FIELDS = (
    "trades_total",
    "liquidations_total",
    "market_liquidation_candidates_total",
    "points_written_total",
    "points_spooled_total",
    "spool_points",
    "trade_lag_seconds",
    "positions_polled_total",
    "addresses_tracked",
    "book_polls_total",
    "book_polls_drift_total",
    "position_changes_total",
    "quarantined_total",
    "ws_reconnects_total",
    "ws_connected",
    "hl_reachable",
    "hl_weight_last_60s",
)


class Stream(Protocol):
    """What the collector needs of the WebSocket supervisor (`fetch.ws.MarketStream`)."""

    @property
    def connected(self) -> bool: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...

    async def update_coins(self, coins: Iterable[str]) -> None: ...

    def seed_last_trade(self, coin: str, time_ms: int) -> None: ...


TradeHandler = Callable[[list[Trade]], None]
GapHandler = Callable[[GapRecord], None]
MessageHandler = Callable[[WsMessage], None]


@dataclass(frozen=True)
class StreamHandlers:
    """Where the stream's trades and gaps go (see `fetch.ws.MarketStream`)."""

    on_trades: TradeHandler
    on_gap: GapHandler  # a stretch that stays missing: written to trade_gaps
    on_gap_opened: GapHandler  # a stretch being backfilled: kept on disk meanwhile
    on_gap_closed: GapHandler  # its backfill answered
    on_message: MessageHandler | None = None  # the optional channels: l2Book, bbo, activeAssetCtx


@dataclass
class Sources:
    info: MarketSource  # market data: the REST budget's market lane
    positions_info: MarketSource  # the positions lane
    hlp_info: MarketSource  # the HLP lane
    profiles_info: ProfileFills  # the profiles lane: wallet profiles, liquidation confirmations
    vaults: Mapping[str, str]  # HLP parent and children: address -> name
    liquidators: frozenset[str]
    open_stream: Callable[[StreamHandlers, bool], Stream]  # (handlers, backfill)
    samples: Callable[[], list[Sample]]  # the fetch side's figures
    quarantined: Callable[[], int]
    rest_polls_per_minute: float  # clearinghouseState calls the positions share allows
    quarantine: Quarantine | None = None  # where malformed input goes (default: a new one)
    evm_rpc: DexRpc | None = None  # the HyperEVM node (the `evm` settings), None: no DEX job


class Collector:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        sources: Sources,
        replays: ReplayNotes | None = None,
        bus: EventBus | None = None,
    ) -> None:
        """`replays` collected the minutes of spooled points replayed before the engines
        existed (the storage replays what an earlier run left at once): pass the storage's
        `on_replayed`. `bus` carries what is learned to live consumers (default: a new one)."""
        self.settings = settings
        self.bus = bus or EventBus()
        self.replays = replays or ReplayNotes()
        self.storage = storage
        self.sources = sources
        self.writer = storage.writer
        self.shard = Shard.parse(settings.jobs_shard)
        mode = settings.jobs_market_data
        self.market_data = mode == "on" or (mode == "auto" and self.shard.is_primary)
        self.builder = PointBuilder()
        self.registry = AddressRegistry(settings.data_dir / "addresses.sqlite")
        self.watchlist = Watchlist(settings.data_dir / WATCHLIST_FILE, settings.watchlist)
        self.watched: frozenset[str] = frozenset()
        self.book = PositionBook(on_change=self._position_changed)
        self.alerts = AlertEngine(settings.alerts, self.writer, on_alert=self._alerted)
        self.position_changes = 0
        self.position_updates = PositionUpdates(
            self.book,
            self.builder,
            self.writer,
            min_interval_ms=round(settings.jobs_position_update_interval * 1000),
        )
        self.equity_updates = EquityUpdates(
            self.book,
            self.writer,
            self.builder.allocator,
            min_interval_ms=round(settings.jobs_equity_update_interval * 1000),
        )
        self.positions = PositionsJob(
            sources.positions_info,
            self.builder,
            self.writer,
            self.registry,
            PollScheduler(
                rate_per_min=sources.rest_polls_per_minute, states=self.registry.by_address
            ),
            self.shard,
            skip=frozenset(sources.vaults),
            batch=max(1, math.ceil(sources.rest_polls_per_minute / 60)) + 1,
            book=self.book,
            equity=self.equity_updates,
        )
        self.detector = LiquidationDetector(
            sources.liquidators, self.book.views, mark=lambda coin: self.book.marks.get(coin)
        )
        writer = self.writer
        self.state = StreamState(
            settings.data_dir / STREAM_STATE_FILE,
            accepted=lambda: writer.accepted_lines,
            durable=lambda: writer.durable_through,
        )
        self.confirmer = LiquidationConfirmer(
            sources.profiles_info, self.builder, self.writer, on_confirmed=self._confirmed
        )
        self.sink = TradeSink(
            self.builder,
            self.writer,
            self.detector,
            discover=self._traded,
            handed_over=self._handed_over,
            confirm_market=self.confirmer.candidate,
            on_liquidation=self._liquidation,
            store=self.market_data,
        )
        self.auto_watch = AutoWatch(
            self.watchlist,
            CurationRules(
                max_wallets=settings.profiles_watch_max,
                min_trades=settings.profiles_watch_min_trades,
                min_win_rate=settings.profiles_watch_min_win_rate,
                min_profit_factor=settings.profiles_watch_min_profit_factor,
            ),
        )
        self.smart_money = SmartMoney(
            self.writer,
            self._account_now,
            window_ms=round(settings.profiles_window_days * 86_400_000),
            top=settings.profiles_rank_top,
            include_bots=settings.profiles_rank_bots == "on",
        )
        self.profiles = ProfilesJob(
            sources.profiles_info,
            self.writer,
            priority=self._profile_priority,
            window_ms=round(settings.profiles_window_days * 86_400_000),
            refresh_ms=round(settings.profiles_refresh_hours * 3_600_000),
            per_run=settings.profiles_per_run,
            max_weight_per_run=settings.profiles_max_weight_per_run,
            allocator=self.builder.allocator,
            on_profile=self._profiled,
        )
        self.asset_ctx = AssetCtxJob(
            sources.info, self.builder, self.writer, self.book, on_ctxs=self._asset_ctxs
        )
        self.live = LiveChannels(
            self.builder,
            self.writer,
            self.bus,
            book=self.book,
            book_interval_ms=round(settings.hl_book_interval * 1000),
            book_levels=settings.hl_book_levels,
            store=self.market_data,
        )
        self.outputs = open_outputs(settings, self.bus)
        self._output_tasks: list[asyncio.Task[None]] = []
        self.hlp = HlpJob(sources.hlp_info, self.builder, self.writer, lambda: sources.vaults)
        self.order_flow: OrderFlowEngine | None = None
        self.dex: DexJob | None = None
        self._last_trades: dict[str, int] = {}
        self.stream: Stream | None = None
        self.universe: UniverseJob | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._alerts_task: asyncio.Task[None] | None = None
        self.reader: AsyncInfluxReader | None = None
        self.runner = JobRunner()
        self.metrics = MetricsServer(self.samples, settings.metrics_port)

    def describe(self) -> str:
        what = "market data and positions" if self.market_data else "positions only"
        return f"shard {self.shard}, {what}, {len(self.registry)} known addresses"

    async def __aenter__(self) -> Collector:
        try:
            await self._start()
        except BaseException:  # e.g. cancelled by a signal during start-up: undo what started
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self.positions.restore()
        await self._reload_watchlist()
        await self._restore_trade_slots()
        if self.settings.profiles_enabled == "on":
            await self._restore_profiles()
        runner = self.runner
        # Every shard follows the trade stream: it is how addresses are discovered. Only the
        # shard that stores market data backfills it (recentTrades costs REST weight).
        handlers = StreamHandlers(
            self._trades, self._gap_recorded, self._gap_opened, self.state.gap_closed, self.live
        )
        self.stream = self.sources.open_stream(handlers, self.market_data)
        configured = list(self.settings.coins)
        self.universe = UniverseJob(
            self.sources.info,
            self.stream,
            configured,
            refresh_every=self.settings.jobs_universe_interval,
            coins=configured,
        )
        await self.stream.update_coins(configured)  # empty: the universe job fills it in
        if self.market_data:
            self._add_engines()  # before the stream: every trade and gap is noted to them
            self._add_dex()
        await self._seed_stream()
        self._stream_task = asyncio.create_task(self._run_stream(), name="trade-stream")
        self._alerts_task = asyncio.create_task(self.alerts.run(), name="alerts")
        self._output_tasks = [
            asyncio.create_task(output.run(), name=f"output-{i}")
            for i, output in enumerate(self.outputs)
        ]
        if self.alerts.checks_book:
            interval = self.settings.alerts.near_liquidation_interval
            runner.add("alerts_near_liquidation", self._check_near_liquidation, interval)
        runner.add("universe", self.universe, UNIVERSE_CHECK_EVERY)
        runner.add("watchlist", self._reload_watchlist, WATCHLIST_EVERY, start_now=False)
        if self.market_data:
            runner.add("asset_ctx", self.asset_ctx, self.settings.jobs_asset_ctx_interval)
            runner.add("hlp", self.hlp, self.settings.jobs_hlp_interval)
            runner.add("liquidation_confirm", self.confirmer, 1.0, start_now=False)
        runner.add("positions", self.positions, 1.0)
        runner.add("position_updates", self.position_updates, 1.0, start_now=False)
        runner.add("equity_updates", self.equity_updates, 5.0, start_now=False)
        if self.settings.profiles_enabled == "on":
            runner.add("profiles", self.profiles, self.settings.profiles_interval, start_now=False)
            every = self.settings.profiles_rank_interval
            runner.add("smart_money", self.smart_money, every, start_now=False)
        runner.add("registry_flush", self._flush_registry, REGISTRY_FLUSH_EVERY, start_now=False)
        runner.add("state_flush", self._flush_state, STATE_FLUSH_EVERY, start_now=False)
        runner.add("expire", self._expire, EXPIRE_EVERY)
        runner.add("health", self._health, HEALTH_EVERY, start_now=False)
        runner.start()
        self.metrics.start()

    async def __aexit__(self, *exc: object) -> None:
        deadline = time.monotonic() + STOP_SECONDS

        def left(share: float = 1.0) -> float:
            return max(0.05, (deadline - time.monotonic()) * share)

        await self.runner.shutdown(grace=left(0.3))
        if self.dex is not None:
            await _within(self.dex.close(), left(0.1))
        if self.stream is not None:
            await _within(self.stream.stop(), left(0.5))  # open gaps are recorded here
        if self._stream_task is not None:
            self._stream_task.cancel()
            await asyncio.gather(self._stream_task, return_exceptions=True)
        self.book.settle_checks()  # no trade arrives any more: the open drift checks end here
        if self._alerts_task is not None:  # the alerts raised until now: a short grace
            await self.alerts.close(grace=left(0.2))
            await self._alerts_task
        if self.outputs:  # live consumers: what is buffered, briefly
            grace = left(0.2)
            await asyncio.gather(*(o.close(grace) for o in self.outputs), return_exceptions=True)
            await asyncio.gather(*self._output_tasks, return_exceptions=True)
        if self.order_flow is not None:  # bars exact at shutdown: over everything that landed
            await _within(self.writer.flush(), left(0.5))
            try:
                await _within(self.order_flow.settle(), left())
            except HyperfluxError as exc:  # InfluxDB down at stop: the bars are redone later
                log.warning("order flow not recomputed at stop: %s", exc)
        await _within(self.writer.flush(), left())
        self.state.flush()
        self.registry.flush()
        self.registry.close()
        if self.reader is not None:
            await self.reader.aclose()
        self.metrics.stop()
        log.info("status at stop: %s", status_line(self.samples(), STATUS_FIELDS))

    def _add_engines(self) -> None:
        """The engines write derived measurements where market data is stored (shard 0): order
        flow and positioning from windows read back from InfluxDB (positioning over every
        shard's positions), the heatmap from this process's position book."""
        settings, writer = self.settings, self.writer
        self.reader = AsyncInfluxReader(self.storage.target)
        every = settings.engines_interval
        order_flow = OrderFlowEngine(
            self.reader,
            writer,
            recompute_minutes=settings.engines_order_flow_recompute_minutes,
            landed=lambda: writer.landed_through,
        )
        self.replays.attach(order_flow)
        snapshots = SnapshotSource(
            self.reader, cutoff_ms=round(settings.engines_positions_cutoff_minutes * 60_000)
        )
        heatmap = LiquidationHeatmap(
            self.book,
            writer,
            open_interest=lambda: self.asset_ctx.open_interest_usd,
            reader=self.reader,
            exclude=self.profiles.is_bot if settings.engines_heatmap_exclude_bots == "on" else None,
            params=HeatmapParams(
                range_pct=settings.engines_heatmap_range,
                min_size_usd=settings.engines_heatmap_min_size_usd,
                store_every_ms=round(settings.engines_heatmap_store_interval * 1000),
            ),
        )
        self.order_flow = order_flow
        self.runner.add("order_flow", order_flow, every)
        self.runner.add("heatmap", heatmap, every)
        self.runner.add("positioning", PositioningEngine(snapshots, writer), every)

    def _add_dex(self) -> None:
        """HyperEVM pools (opt-in: the `evm` settings), where market data is stored."""
        evm, rpc = self.settings.evm, self.sources.evm_rpc
        if not evm.enabled or rpc is None:
            return
        self.reader = self.reader or AsyncInfluxReader(self.storage.target)
        quarantine = self.sources.quarantine or Quarantine(self.settings.quarantine_dir)
        self.dex = DexJob(evm, self.writer, self.reader, quarantine, rpc)
        self.runner.add("evm_dex", self.dex, evm.poll_interval)

    async def _run_stream(self) -> None:
        assert self.stream is not None
        while True:  # the stream reconnects by itself; this only survives a bug in it
            try:
                await self.stream.run()
                return
            except Exception:
                log.exception("the trade stream failed; restarting it in 5 s")
                await asyncio.sleep(5)

    async def _restore_trade_slots(self) -> None:
        """After a restart: the timestamp slots of the trades InfluxDB holds for the allocator's
        window (a replayed trade then overwrites itself), and each coin's newest stored trade
        (what the stream must reach back to when the stream state file is missing)."""
        allocator = self.builder.allocator
        start = rfc3339_ns((now_ms() - allocator.window_ms) * 1_000_000)
        try:
            async with AsyncInfluxReader(self.storage.target) as reader:
                recent = await reader.rows(
                    'SELECT "tid", "coin", "side" FROM "trades" WHERE time >= $start',
                    {"start": start},
                )
                newest = await reader.rows('SELECT LAST("tid") FROM "trades" GROUP BY "coin"')
        except HyperfluxError as exc:
            log.warning(
                "recent trades not read back (%s): a trade replayed after this restart may be "
                "stored a second time with another timestamp",
                exc,
            )
            return
        for row in recent:
            allocator.seed(("trades", row["coin"], row["side"]), row["time"], row["tid"])
        self._last_trades = {row["coin"]: row["time"] // 1_000_000 for row in newest}
        if recent:
            log.info("restored the timestamp slots of %d recent trades", len(recent))

    async def _restore_profiles(self) -> None:
        """The latest wallet profiles (rankings, and when each is due again)."""
        query, params = self.smart_money.restore_query()
        try:
            async with AsyncInfluxReader(self.storage.target) as reader:
                rows = await reader.rows(query, params)
        except HyperfluxError as exc:
            log.warning("wallet profiles not read back (%s): they are refreshed anew", exc)
            return
        for standing in self.smart_money.restore(rows):
            self.profiles.resume(standing.address, standing.profiled_ms, standing.bot)

    async def _reload_watchlist(self) -> None:
        """The watchlist file may have changed (`main.py watch add|remove`)."""
        watched = await asyncio.to_thread(self.watchlist.addresses)
        if watched != self.watched:
            log.info("watching %d addresses", len(watched))
            self.watched = watched
            self.positions.watch(watched)
            self.alerts.set_watchlist(watched)

    def _profiled(self, profile: Profile) -> None:
        self.smart_money.profiled(profile)
        self.auto_watch.profiled(profile)

    def _profile_priority(self) -> list[str]:
        """Watched addresses first, then the largest accounts."""
        largest = self.equity_updates.largest(self.settings.profiles_top_addresses)
        return list(dict.fromkeys((*sorted(self.watched), *largest)))

    def _account_now(self, address: str) -> tuple[Decimal, Decimal] | None:
        """(account value, unrealized PnL) from the book at the latest marks."""
        account = self.book.accounts.get(address)
        equity = None if account is None else book_equity(account, self.book.marks)
        return None if equity is None else (equity.account_value, equity.unrealized_pnl)

    async def _seed_stream(self) -> None:
        """Each coin's newest durable trade (stream state; InfluxDB's newest stored trade when
        there is no state file): the stream must reach back to it. Gaps a crash left open are
        recorded as they were."""
        assert self.stream is not None
        durable, left_open = self.state.load()
        if not self.market_data:
            return
        for gap in left_open:
            reason = f"{gap.reason}; the collector stopped before its backfill answered"
            self._gap_recorded(replace(gap, reason=reason))
        for coin, time_ms in (durable or self._last_trades).items():
            self.stream.seed_last_trade(coin, time_ms)

    def _trades(self, trades: list[Trade]) -> None:
        self.sink(trades)
        if self.market_data:  # shards without market data would publish the same trades
            self.bus.publish_trades(trades)

    def _traded(self, trades: list[Trade], time_ms: int) -> None:
        """New trades: they move the positions the book tracks, and their traders join the
        poll set."""
        self.book.apply_trades(trades)
        self.positions.discover(trades, time_ms)

    def _confirmed(self, event: LiquidationEvent) -> None:
        self.sink.liquidations += 1
        self._liquidation(event)

    def _liquidation(self, event: LiquidationEvent) -> None:
        """A liquidation written (backstop at once, market once confirmed)."""
        self.alerts.liquidation(event)
        self.bus.publish("liquidation", event.coin, event.time_ms, event)

    def _alerted(self, alert: Alert) -> None:
        self.bus.publish("alert", alert.coin, alert.time_ms, alert)

    def _asset_ctxs(self, ctxs: list[AssetCtx], time_ms: int) -> None:
        if self.bus.wants("asset_ctx"):
            for ctx in ctxs:
                self.bus.publish("asset_ctx", ctx.coin, time_ms, ctx)

    async def _check_near_liquidation(self) -> None:
        self.alerts.check_book(self.book, now_ms())

    def _position_changed(self, change: PositionChange) -> None:
        self.position_changes += 1
        self.position_updates.changed(change)
        self.equity_updates.changed(change)
        self.alerts.position_changed(change)
        self.bus.publish("position_change", change.coin, change.time_ms, change)
        line = self.builder.position_change(change)
        if line is not None:
            self.writer.write([line])

    def _handed_over(self, coin: str, oldest_ms: int, newest_ms: int) -> None:
        self.state.handed_over(coin, newest_ms)
        if self.order_flow is not None:  # a late trade rewrites its bar once it has landed
            self.order_flow.note_trades(oldest_ms, newest_ms, self.writer.accepted_lines)

    def _gap_opened(self, gap: GapRecord) -> None:
        if self.market_data:
            self.state.gap_opened(OpenGap(gap.coin, gap.after_ms, gap.before_ms, gap.reason))

    def _gap_recorded(self, gap: GapRecord) -> None:
        self.sink.gap(gap)
        if self.market_data:
            self.bus.publish("gap", gap.coin, gap.before_ms, gap)
        self.positions.note_gap(gap.coin, gap.after_ms, gap.before_ms)  # estimates now
        if self.order_flow is not None:  # the bars over it say they are incomplete
            mark = self.writer.accepted_lines
            self.order_flow.note_gap(gap.coin, gap.after_ms, gap.before_ms, mark)

    async def _flush_state(self) -> None:
        self.state.flush()

    async def _flush_registry(self) -> None:
        self.registry.flush()

    async def _expire(self) -> None:
        gone = self.positions.expire(round(self.settings.jobs_inactive_days * 86_400_000))
        if gone:
            log.info("%d inactive addresses left the poll set", gone)

    async def _health(self) -> None:
        samples = self.samples()
        log.info("status: %s", status_line(samples, STATUS_FIELDS))
        self.writer.write(self.builder.health(samples, now_ms()))

    def samples(self) -> list[Sample]:
        writer, stats, positions = self.writer, self.writer.stats, self.positions
        quarantined = self.sources.quarantined()
        out = [
            Sample("trades_total", "counter", "trades handed to the writer", self.sink.trades),
            Sample("liquidations_total", "counter", "liquidations found", self.sink.liquidations),
            Sample("trade_gaps_total", "counter", "trade gaps recorded", self.sink.gaps),
            Sample(
                "trade_lag_seconds",
                "gauge",
                "exchange time of the newest trade to its hand-over to the writer",
                self.sink.lag_seconds,
            ),
            Sample("points_written_total", "counter", "points InfluxDB took", stats.written),
            Sample("points_spooled_total", "counter", "points put in the spool", stats.spooled),
            Sample("points_replayed_total", "counter", "points replayed", stats.replayed),
            Sample("points_rejected_total", "counter", "points dead-lettered", stats.rejected),
            Sample("points_dropped_total", "counter", "points lost: spool full", stats.dropped),
            Sample("write_retries_total", "counter", "failed deliveries", stats.retried),
            Sample("spool_points", "gauge", "points waiting in the spool", writer.spool.points),
            Sample("spool_bytes", "gauge", "bytes in the spool", writer.spool.bytes),
            Sample("pending_points", "gauge", "points not yet sent", writer.pending_points),
            Sample("positions_polled_total", "counter", "positions polls", positions.polls),
            Sample("positions_failed_total", "counter", "failed polls", positions.failures),
            Sample("addresses_tracked", "gauge", "addresses in the poll set", len(self.registry)),
            Sample("addresses_watched", "gauge", "addresses on the watchlist", len(self.watched)),
            Sample("position_changes_total", "counter", "position changes", self.position_changes),
            Sample("quarantined_total", "counter", "records failing validation", quarantined),
            Sample(
                "hl_reachable",
                "gauge",
                "1 while Hyperliquid answers (a WebSocket is open)",
                float(self.stream is not None and self.stream.connected),
            ),
        ]
        out += self.book.samples() + self.position_updates.samples() + self.confirmer.samples()
        out += self.equity_updates.samples() + self.profiles.samples() + self.alerts.samples()
        out += self.bus.samples() + self.live.samples() + self.smart_money.samples()
        out += [sample for output in self.outputs for sample in output.samples()]
        if self.dex is not None:
            out += self.dex.samples()
        return out + self.sources.samples() + self.runner.samples()


async def _within(awaitable: Awaitable[object], seconds: float) -> None:
    """Await with a time limit; a stop must not hang on a slow server."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(awaitable, seconds)
