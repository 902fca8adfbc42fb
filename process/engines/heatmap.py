"""Liquidation heatmap: an ESTIMATE of the USD notional that would be liquidated per price bucket.

Built only from the tracked addresses' latest positions (see `positions_state`), so it shows
where the *tracked* liquidation prices sit, not the whole market's: `tracked_share` says how much
of the open interest the tracked positions cover. A position's `liq_px` comes from its last poll
and moves with funding, margin and the account's other positions.

Per coin with a mid price and at least one tracked position, every run writes all `buckets`
buckets (zeros included) over [mid x (1 - range_pct), mid x (1 + range_pct)):

- edges: `low = mid * (1 - range_pct)`, `high = mid * (1 + range_pct)`, edge i =
  `low + (high - low) * i / buckets` for 0 < i < buckets; bucket i covers [edge i, edge i+1):
  a liquidation price exactly on an inner edge belongs to the bucket above it, one exactly at
  `low` to bucket 0, and one at or above `high` (or below `low`) to no bucket;
- positions with `size_usd >= min_size_usd` and a liquidation price count in the bucket holding
  it, whatever their side (longs normally liquidate below the mid, shorts above);
- `long_liq_usd`/`short_liq_usd`: summed `size_usd`; `long_count`/`short_count`: positions;
- `tracked_oi_usd`: summed `size_usd` of every tracked open position of the coin (all sizes,
  with or without a liquidation price); `open_interest_usd` from `asset_ctx`; `tracked_share`
  per `positions_state.tracked_share` (both left out when the open interest is unknown).

Points: tags coin and bucket ("00".."49", zero-padded to sort), stamped at the run time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from db.schema import LIQ_HEATMAP
from db.timestamps import NS_PER_MS
from process.engines.positions_state import (
    CoinContext,
    MarketSnapshot,
    PositionRow,
    SnapshotSource,
    tracked_share,
)
from process.storage_ports import PointSink


@dataclass(frozen=True, slots=True)
class HeatmapParams:
    """Bucket count, half-width of the range as a fraction of the mid, minimum position size."""

    buckets: int = 50
    range_pct: float = 0.15
    min_size_usd: float = 1_000.0

    def __post_init__(self) -> None:
        if self.buckets < 1:
            raise ValueError(f"buckets must be >= 1, got {self.buckets}")
        if not 0.0 < self.range_pct < 1.0:
            raise ValueError(f"range_pct must be in (0, 1), got {self.range_pct}")
        if self.min_size_usd < 0:
            raise ValueError(f"min_size_usd must be >= 0, got {self.min_size_usd}")


@dataclass(slots=True)
class CoinHeatmap:
    """One coin's buckets: `edges` has buckets + 1 prices, bucket i is [edges[i], edges[i+1])."""

    coin: str
    mid_px: float
    edges: list[float]
    long_usd: list[float]
    short_usd: list[float]
    long_count: list[int]
    short_count: list[int]
    tracked_oi_usd: float
    open_interest_usd: float | None

    @property
    def tracked_share(self) -> float | None:
        return tracked_share(self.tracked_oi_usd, self.open_interest_usd)


def bucket_edges(mid_px: float, buckets: int, range_pct: float) -> list[float]:
    """The buckets + 1 edges around `mid_px` (see the module docstring for the exact rule)."""
    low = mid_px * (1.0 - range_pct)
    high = mid_px * (1.0 + range_pct)
    width = high - low
    return [low, *(low + width * i / buckets for i in range(1, buckets)), high]


def coin_heatmap(
    coin: str,
    positions: Sequence[PositionRow],
    ctx: CoinContext,
    params: HeatmapParams,
) -> CoinHeatmap | None:
    """The heatmap of one coin around `ctx.mid_px`; None without a positive mid price."""
    mid = ctx.mid_px
    if mid is None or mid <= 0:
        return None
    n = params.buckets
    edges = bucket_edges(mid, n, params.range_pct)
    low, high = edges[0], edges[n]
    min_size = params.min_size_usd
    long_usd, short_usd = [0.0] * n, [0.0] * n
    long_count, short_count = [0] * n, [0] * n
    tracked = 0.0
    for p in positions:
        size = p.size_usd
        tracked += size
        liq = p.liq_px
        if liq is None or size < min_size or not low <= liq < high:
            continue
        i = bisect_right(edges, liq, 1, n) - 1
        if p.szi > 0:
            long_usd[i] += size
            long_count[i] += 1
        else:
            short_usd[i] += size
            short_count[i] += 1
    return CoinHeatmap(
        coin,
        mid,
        edges,
        long_usd,
        short_usd,
        long_count,
        short_count,
        tracked,
        ctx.open_interest_usd,
    )


def compute_heatmaps(snapshot: MarketSnapshot, params: HeatmapParams) -> list[CoinHeatmap]:
    """Heatmaps of every coin with tracked positions and a fresh mid price, sorted by coin.

    A coin without tracked positions gets none: zeros there would mean "nothing to liquidate"
    when the truth is "nothing known".
    """
    out = []
    contexts = snapshot.contexts
    for coin in sorted(snapshot.positions):
        ctx = contexts.get(coin)
        if ctx is None:
            continue
        heatmap = coin_heatmap(coin, snapshot.positions[coin], ctx, params)
        if heatmap is not None:
            out.append(heatmap)
    return out


def heatmap_lines(heatmaps: Sequence[CoinHeatmap], time_ms: int) -> list[str]:
    """`liq_heatmap` points: one per coin and bucket, all stamped at `time_ms`."""
    time_ns = time_ms * NS_PER_MS
    lines = []
    for h in heatmaps:
        n = len(h.long_usd)
        width = max(2, len(str(n - 1)))
        share = h.tracked_share
        for i in range(n):
            fields = {
                "price_low": h.edges[i],
                "price_high": h.edges[i + 1],
                "long_liq_usd": h.long_usd[i],
                "short_liq_usd": h.short_usd[i],
                "long_count": h.long_count[i],
                "short_count": h.short_count[i],
                "mid_px": h.mid_px,
                "tracked_oi_usd": h.tracked_oi_usd,
                "open_interest_usd": h.open_interest_usd,
                "tracked_share": share,
            }
            tags = {"coin": h.coin, "bucket": f"{i:0{width}d}"}
            lines.append(LIQ_HEATMAP.line(tags, fields, time_ns))
    return lines


class HeatmapEngine:
    """Job: every run, the liquidation heatmap ESTIMATE of every tracked coin.

    `snapshots` is shared with the positioning engine so a run loads positions once.
    """

    def __init__(
        self,
        snapshots: SnapshotSource,
        writer: PointSink,
        *,
        buckets: int = 50,
        range_pct: float = 0.15,
        min_size_usd: float = 1_000.0,
    ) -> None:
        self.snapshots = snapshots
        self.writer = writer
        self.params = HeatmapParams(buckets, range_pct, min_size_usd)
        self.coins = 0  # coins written by the last run

    async def __call__(self) -> None:
        snapshot = await self.snapshots.get()
        heatmaps = compute_heatmaps(snapshot, self.params)
        self.coins = len(heatmaps)
        if heatmaps:
            self.writer.write(heatmap_lines(heatmaps, snapshot.time_ms))
