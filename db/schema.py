"""The measurement contract (DESIGN.md): every measurement's name, tags and fields, spelled once.

Writers, named queries, engines and dashboard tests all use these definitions, so a field name
changes in one place. Tags hold only bounded sets (coin, side, method, vault, bucket, window);
addresses, trade ids and hashes are fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from db.line_protocol import FieldValue, encode_point


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: tuple[str, ...]
    fields: tuple[str, ...]
    description: str
    ints: tuple[str, ...] = ()
    """Integer fields; every other numeric field is a float."""

    @property
    def columns(self) -> tuple[str, ...]:
        """What a SELECT of every tag and field returns besides `time`."""
        return self.tags + self.fields

    def line(
        self, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None], time_ns: int
    ) -> str:
        """One point of this measurement, held to the contract: only its tags and fields, and
        one type per field forever (an integral value of a float field, e.g. the `0` of an
        empty `sum()`, is written as a float; a first int would reject every later float)."""
        if unknown := set(tags) - set(self.tags):
            raise ValueError(f"{self.name}: unknown tags {sorted(unknown)}")
        typed: dict[str, FieldValue | None] = {}
        for key, value in fields.items():
            if self.fields and key not in self.fields:
                raise ValueError(f"{self.name}: unknown field {key!r}")
            if key in self.ints:
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"{self.name}.{key} must be an int, got {value!r}")
            elif isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            typed[key] = value
        return encode_point(self.name, tags, typed, time_ns)

    def select(self) -> str:
        """`SELECT "tag", ..., "field", ... FROM "name"` (identifiers are constants, not input)."""
        columns = ", ".join(f'"{c}"' for c in self.columns)
        return f'SELECT {columns} FROM "{self.name}"'


TRADES = Measurement(
    "trades",
    tags=("coin", "side"),
    fields=("px", "sz", "notional", "tid", "buyer", "seller"),
    description="every trade; side is the taker side (buy/sell); notional in USD",
    ints=("tid",),
)
LIQUIDATIONS = Measurement(
    "liquidations",
    tags=("coin", "side", "method"),
    fields=("px", "sz", "notional", "tid", "user"),
    description="liquidations; side is the liquidated position (long/short); method "
    "backstop or market; user when known",
    ints=("tid",),
)
ASSET_CTX = Measurement(
    "asset_ctx",
    tags=("coin",),
    fields=(
        "funding",
        "open_interest",
        "open_interest_usd",
        "mark_px",
        "oracle_px",
        "mid_px",
        "premium",
        "day_ntl_vlm",
    ),
    description="asset context snapshots: hourly funding rate, open interest, prices",
)
DEPTH_BANDS_BPS = (10, 50, 100, 200)
"""book_depth's bands: USD resting within 0.1 / 0.5 / 1 / 2 % of the mid."""
BOOK_DEPTH = Measurement(
    "book_depth",
    tags=("coin",),
    fields=(
        "mid",
        "spread_bps",
        *(f"{side}_usd_{bps}bps" for bps in DEPTH_BANDS_BPS for side in ("bid", "ask")),
        *(f"imbalance_{bps}bps" for bps in DEPTH_BANDS_BPS),
        "bid_reach_bps",
        "ask_reach_bps",
    ),
    description="order-book depth from l2Book snapshots: mid, spread, USD resting on each side "
    "within each band of the mid, imbalance (bid - ask) / (bid + ask) in that band; reach: how "
    "far from the mid the snapshot's deepest level is (a band beyond it is a lower bound)",
)
BOOK_LEVELS = Measurement(
    "book_levels",
    tags=("coin", "side", "level"),
    fields=("px", "sz", "n"),
    description="the top levels of l2Book snapshots (level 0 = best); side bid/ask",
    ints=("n",),
)
BBO = Measurement(
    "bbo",
    tags=("coin",),
    fields=("bid_px", "bid_sz", "ask_px", "ask_sz", "mid", "spread_bps"),
    description="best bid and offer (WS bbo), at most one point per coin per second",
)
POSITIONS = Measurement(
    "positions",
    tags=("coin", "side"),
    fields=("address", "szi", "size_usd", "entry_px", "liq_px", "leverage", "unrealized_pnl"),
    description="positions of tracked addresses; liq_px absent when unreachable",
)
POSITION_CHANGES = Measurement(
    "position_changes",
    tags=("coin", "kind"),
    fields=("address", "szi_before", "szi_after", "px", "source", "tid"),
    description="every change of a tracked position's size: kind entry/exit/flip/increase/"
    "decrease; source trade (px = the fill's price, tid its trade) or poll (a difference the "
    "book had not seen; px = the served entry price)",
    ints=("tid",),
)
ACCOUNT_EQUITY = Measurement(
    "account_equity",
    tags=("source",),
    fields=(
        "address",
        "account_value",
        "unrealized_pnl",
        "total_ntl_pos",
        "margin_used",
        "withdrawable",
    ),
    description="tracked accounts' value (USD): source poll (as served: marginSummary, summed "
    "unrealizedPnl, withdrawable) or book (between polls, at the latest marks, at most every "
    "5 min per account that traded; no margin_used or withdrawable)",
)
WALLET_PROFILES = Measurement(
    "wallet_profiles",
    tags=("style",),  # bot | scalper | swing | mixed | unknown
    fields=(
        "address",
        "bot",
        "fills",
        "unmatched_fills",
        "round_trips",
        "wins",
        "win_rate",
        "profit_factor",
        "realized_pnl",
        "realized_pnl_24h",
        "fees",
        "gross_profit",
        "gross_loss",
        "max_drawdown",
        "avg_hold_s",
        "median_hold_s",
        "avg_pnl_pct",
        "trades_per_day",
        "fills_per_day",
        "window_start_ms",
        "window_end_ms",
        "truncated",
    ),
    description="one point per address and refresh: figures over round trips (flat to flat, "
    "FIFO) closed in the window, PnL in USDC net of fees; win_rate/profit_factor/hold/pnl_pct "
    "absent without trips (profit_factor also without a losing trip); truncated: not every "
    "fill of the window was fetched",
    ints=("fills", "unmatched_fills", "round_trips", "wins", "window_start_ms", "window_end_ms"),
)
SMART_MONEY = Measurement(
    "smart_money",
    tags=("window", "by", "rank"),  # window 24h | 7d (the profile window); by pnl | roe; 1..N
    fields=(
        "address",
        "pnl",
        "realized_pnl",
        "unrealized_pnl",
        "roe",
        "account_value",
        "win_rate",
        "round_trips",
        "style",
        "profiled_ms",
    ),
    description="the top profiled traders, written every ranking run: pnl = realized PnL net of "
    "fees of the round trips closed in the window (wallet_profiles) + the unrealized PnL of the "
    "open positions now (position book); roe = pnl / account value now; bots left out unless "
    "configured otherwise",
    ints=("round_trips", "profiled_ms"),
)
ALERTS = Measurement(
    "alerts",
    tags=("kind", "coin"),
    fields=(
        "event",
        "rule",
        "address",
        "side",
        "size_usd",
        "px",
        "liq_px",
        "distance_pct",
        "tid",
        "text",
    ),
    description="alerts raised: kind wallet (event entry/exit/flip/increase/decrease), "
    "liquidation (event backstop/market) or near_liquidation (event near); rule = the matching "
    "rules' names, comma-separated; text = the line sent to people (Grafana annotations)",
    ints=("tid",),
)
HLP_POSITIONS = Measurement(
    "hlp_positions",
    tags=("vault", "coin", "side"),
    fields=("szi", "size_usd", "entry_px", "unrealized_pnl"),
    description="positions of the HLP parent and child vaults",
)
ORDER_FLOW = Measurement(
    "order_flow",
    tags=("coin",),
    fields=(
        "buy_notional",
        "sell_notional",
        "buy_count",
        "sell_count",
        "delta",
        "long_liq_notional",
        "short_liq_notional",
        "incomplete",
    ),
    description="1-minute order-flow bars stamped at bar start (USD notional; taker side); "
    "liquidation notional per liquidated side; incomplete: overlaps a trade_gaps stretch",
    ints=("buy_count", "sell_count"),
)
CVD_WINDOWS = ("1m", "5m", "15m", "1h")
"""The rolling windows of `cvd` (its `window` tag)."""
CVD = Measurement(
    "cvd",
    tags=("coin", "window"),
    fields=("buy_notional", "sell_notional", "cvd", "buy_pct", "incomplete"),
    description="rolling taker buy/sell notional over the window ending at the point's time; "
    "cvd = buy - sell (USD), buy_pct = buy / (buy + sell) * 100; incomplete: overlaps a "
    "trade_gaps stretch",
)
LIQ_LEVELS = Measurement(
    "liq_levels",
    tags=("coin", "level"),
    fields=(
        "price",
        "long_liq_usd",
        "short_liq_usd",
        "long_count",
        "short_count",
        "long_exact_usd",
        "short_exact_usd",
    ),
    description="liquidation heatmap: USD that would be liquidated per absolute price level "
    "(level = the level's lower edge, the same price at every time; |szi| x liquidation price "
    "of the position book's tracked positions), written once a minute for the levels that "
    "changed and every hour for every non-empty level; *_exact_usd: the part from positions "
    "the book holds exactly",
    ints=("long_count", "short_count"),
)
LIQ_LEVELS_KEYFRAME_MINUTES = 60
"""Every non-empty level of `liq_levels` is written at least this often (between, only the
levels that changed): a reader that looks back this far before its window knows every level."""
LIQ_COVERAGE = Measurement(
    "liq_coverage",
    tags=("coin",),
    fields=(
        "mark_px",
        "step",
        "levels",
        "long_liq_usd",
        "short_liq_usd",
        "tracked_usd",
        "exact_usd",
        "open_interest_usd",
        "tracked_share",
        "exact_share",
    ),
    description="per coin and minute, what the heatmap covers: the mark, the level step, "
    "non-empty levels, liquidation USD within range, the tracked notional at the mark and its "
    "exact part; tracked_share = tracked notional / (2 x open interest), exact_share = exact / "
    "tracked",
    ints=("levels",),
)
LIQ_GRID = Measurement(
    "liq_grid",
    tags=("coin",),
    fields=("step", "previous_step", "anchor_px", "reason"),
    description="a coin's price-level grid chosen (reason start) or re-anchored after a large "
    "move (reason moved): levels are step apart from then on",
)
POSITIONING = Measurement(
    "positioning",
    tags=("coin",),
    fields=(
        "long_notional",
        "short_notional",
        "ls_ratio",
        "long_traders",
        "short_traders",
        "long_avg_entry",
        "short_avg_entry",
        "top10_share",
        "funding",
        "open_interest_usd",
        "tracked_share",
    ),
    description="positioning of the tracked addresses per coin: notional and trader counts per "
    "side, notional-weighted entry, share of the 10 largest positions, funding, open interest",
    ints=("long_traders", "short_traders"),
)
GLOBAL_METRICS = Measurement(
    "global_metrics",
    tags=(),
    fields=(
        "long_notional",
        "short_notional",
        "ls_ratio",
        "traders",
        "open_interest_usd",
        "tracked_share",
        "day_ntl_vlm",
    ),
    description="market-wide totals over every perp (tracked positions; exchange open interest "
    "and 24 h volume)",
    ints=("traders",),
)

HLP_EQUITY = Measurement(
    "hlp_equity",
    tags=("vault",),
    fields=("account_value", "total_ntl_pos", "total_margin_used", "withdrawable"),
    description="account value of the HLP parent and child vaults (USD)",
)
CANDLES = Measurement(
    "candles",
    tags=("coin", "interval"),
    fields=("open", "high", "low", "close", "volume", "trade_count"),
    description="OHLCV candles stamped at their open time; volume in base units",
    ints=("trade_count",),
)
FUNDING = Measurement(
    "funding",
    tags=("coin",),
    fields=("rate", "premium"),
    description="settled hourly funding rates (fraction per hour; positive: longs pay shorts)",
)
TRADE_GAPS = Measurement(
    "trade_gaps",
    tags=("coin",),
    fields=("after_ms", "before_ms", "reason"),
    description="stretches of the trade stream that may be missing (after a reconnect)",
    ints=("after_ms", "before_ms"),
)
PIPELINE_HEALTH = Measurement(
    "pipeline_health",
    tags=("component",),
    fields=(),  # counters and gauges by name; see utils/metrics.py
    description="the collector's own counters, for the Pipeline health dashboard",
)
DEX_POOLS = Measurement(
    "dex_pools",
    tags=("pool", "dex"),
    fields=(
        "block",
        "reserve0",
        "reserve1",
        "price0",
        "price1",
        "liquidity",
        "tick",
        "fee",
        "token0",
        "token1",
    ),
    description="HyperEVM DEX pool state read at a block `confirmations` behind the head, "
    "stamped at that block's time: reserves in token units (V3/Algebra: the pool's token "
    "balances), price0 = token1 per token0 and price1 = token0 per token1 (decimals applied), "
    "liquidity (V2: LP token supply; V3/Algebra: in-range liquidity), tick and fee (hundredths "
    "of a bip) of V3/Algebra pools",
    ints=("block", "tick", "fee"),
)
DEX_SWAPS = Measurement(
    "dex_swaps",
    tags=("pool", "dex", "side"),
    fields=(
        "amount0_in",
        "amount1_in",
        "amount0_out",
        "amount1_out",
        "volume0",
        "volume1",
        "price",
        "price_after",
        "sender",
        "recipient",
        "tx_hash",
        "log_index",
        "block",
    ),
    description="every swap of a followed HyperEVM pool, once, stamped at its block's time plus "
    "(block mod 1000) ms plus the log index in ns: amounts into and out of the pool in token "
    "units, volume0/volume1 = in + out per token, price = token1 per token0 of the swap, "
    "price_after = the pool's price after it; side buy = token0 left the pool (bought), sell = "
    "token0 went in",
    ints=("log_index", "block"),
)
DEX_LIQUIDITY = Measurement(
    "dex_liquidity",
    tags=("pool", "dex", "kind"),
    fields=(
        "amount0",
        "amount1",
        "liquidity",
        "tick_lower",
        "tick_upper",
        "owner",
        "tx_hash",
        "log_index",
        "block",
    ),
    description="liquidity added (kind mint) or removed (burn) in a followed HyperEVM pool, "
    "stamped like dex_swaps: amounts in token units; liquidity and ticks of V3/Algebra positions",
    ints=("tick_lower", "tick_upper", "log_index", "block"),
)
DEX_SCANS = Measurement(
    "dex_scans",
    tags=("pool", "dex"),
    fields=("from_block", "to_block", "block_hash", "swaps", "events"),
    description="progress of the HyperEVM log scan: every log of a pool from from_block to "
    "to_block (inclusive) is stored; written after them, at to_block's time; a restart resumes "
    "after the highest to_block",
    ints=("from_block", "to_block", "swaps", "events"),
)

MEASUREMENTS = {
    m.name: m
    for m in (
        TRADES,
        LIQUIDATIONS,
        ASSET_CTX,
        BOOK_DEPTH,
        BOOK_LEVELS,
        BBO,
        POSITIONS,
        POSITION_CHANGES,
        ACCOUNT_EQUITY,
        WALLET_PROFILES,
        SMART_MONEY,
        ALERTS,
        HLP_POSITIONS,
        HLP_EQUITY,
        ORDER_FLOW,
        CVD,
        LIQ_LEVELS,
        LIQ_COVERAGE,
        LIQ_GRID,
        POSITIONING,
        GLOBAL_METRICS,
        CANDLES,
        FUNDING,
        TRADE_GAPS,
        PIPELINE_HEALTH,
        DEX_POOLS,
        DEX_SWAPS,
        DEX_LIQUIDITY,
        DEX_SCANS,
    )
}
