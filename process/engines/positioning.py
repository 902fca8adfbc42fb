"""Positioning of the tracked addresses per coin (`positioning`) and market-wide (`global_metrics`).

From the latest positions (see `positions_state`) and the latest `asset_ctx` per coin:

- `long_notional`/`short_notional`: summed `size_usd` (USD at the mark of each position's poll);
  `ls_ratio` = long / short, left out when short is 0;
- `long_traders`/`short_traders` (ints): positions per side, i.e. addresses (one per coin);
- `long_avg_entry`/`short_avg_entry`: the side's average entry price, sum(|szi| x entry_px) /
  sum(|szi|) (total entry notional over total size: each position weighs by its entry
  notional), left out when the side is empty;
- `top10_share`: the 10 largest positions' share of the coin's tracked notional (1.0 with 10 or
  fewer positions);
- `funding`, `open_interest_usd` from `asset_ctx` (left out when no fresh context), and
  `tracked_share` per `positions_state.tracked_share`.

`global_metrics` sums over coins: `traders` counts distinct addresses with any open position;
`open_interest_usd` and `day_ntl_vlm` sum every coin's latest `asset_ctx` (tracked or not).
One point per coin and one global point per run, stamped at the run time.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from db.line_protocol import FieldValue
from db.schema import GLOBAL_METRICS, POSITIONING
from db.timestamps import NS_PER_MS
from process.engines.positions_state import (
    CoinContext,
    MarketSnapshot,
    PositionRow,
    SnapshotSource,
    tracked_share,
)
from process.storage_ports import PointSink

TOP_N = 10


def _ratio(long: float, short: float) -> float | None:
    return long / short if short > 0 else None


@dataclass(frozen=True, slots=True)
class CoinPositioning:
    coin: str
    long_notional: float
    short_notional: float
    long_traders: int
    short_traders: int
    long_avg_entry: float | None
    short_avg_entry: float | None
    top10_share: float | None
    funding: float | None
    open_interest_usd: float | None

    @property
    def ls_ratio(self) -> float | None:
        return _ratio(self.long_notional, self.short_notional)

    @property
    def tracked_share(self) -> float | None:
        return tracked_share(self.long_notional + self.short_notional, self.open_interest_usd)

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "long_notional": self.long_notional,
            "short_notional": self.short_notional,
            "ls_ratio": self.ls_ratio,
            "long_traders": self.long_traders,
            "short_traders": self.short_traders,
            "long_avg_entry": self.long_avg_entry,
            "short_avg_entry": self.short_avg_entry,
            "top10_share": self.top10_share,
            "funding": self.funding,
            "open_interest_usd": self.open_interest_usd,
            "tracked_share": self.tracked_share,
        }


@dataclass(frozen=True, slots=True)
class GlobalPositioning:
    long_notional: float
    short_notional: float
    traders: int
    open_interest_usd: float | None
    day_ntl_vlm: float | None

    @property
    def ls_ratio(self) -> float | None:
        return _ratio(self.long_notional, self.short_notional)

    @property
    def tracked_share(self) -> float | None:
        return tracked_share(self.long_notional + self.short_notional, self.open_interest_usd)

    def fields(self) -> dict[str, FieldValue | None]:
        return {
            "long_notional": self.long_notional,
            "short_notional": self.short_notional,
            "ls_ratio": self.ls_ratio,
            "traders": self.traders,
            "open_interest_usd": self.open_interest_usd,
            "tracked_share": self.tracked_share,
            "day_ntl_vlm": self.day_ntl_vlm,
        }


def coin_positioning(
    coin: str, positions: Sequence[PositionRow], ctx: CoinContext | None
) -> CoinPositioning:
    long_usd = short_usd = 0.0
    long_n = short_n = 0
    long_size = long_cost = short_size = short_cost = 0.0
    for p in positions:
        szi, entry = p.szi, p.entry_px
        if szi > 0:
            long_usd += p.size_usd
            long_n += 1
            if entry is not None:
                long_size += szi
                long_cost += szi * entry
        else:
            short_usd += p.size_usd
            short_n += 1
            if entry is not None:
                short_size -= szi
                short_cost -= szi * entry
    total = long_usd + short_usd
    if len(positions) <= TOP_N:
        top = 1.0 if total > 0 else None
    else:
        largest = heapq.nlargest(TOP_N, (p.size_usd for p in positions))
        top = sum(largest) / total if total > 0 else None
    return CoinPositioning(
        coin,
        long_usd,
        short_usd,
        long_n,
        short_n,
        long_cost / long_size if long_size > 0 else None,
        short_cost / short_size if short_size > 0 else None,
        top,
        ctx.funding if ctx else None,
        ctx.open_interest_usd if ctx else None,
    )


def compute_positioning(
    snapshot: MarketSnapshot,
) -> tuple[list[CoinPositioning], GlobalPositioning]:
    """Per coin with tracked positions (sorted by coin), and the market-wide totals."""
    coins = [
        coin_positioning(coin, snapshot.positions[coin], snapshot.contexts.get(coin))
        for coin in sorted(snapshot.positions)
        if snapshot.positions[coin]
    ]
    traders = {p.address for rows in snapshot.positions.values() for p in rows}
    contexts = snapshot.contexts.values()
    oi = [c.open_interest_usd for c in contexts if c.open_interest_usd is not None]
    volume = [c.day_ntl_vlm for c in contexts if c.day_ntl_vlm is not None]
    total = GlobalPositioning(
        sum(c.long_notional for c in coins),
        sum(c.short_notional for c in coins),
        len(traders),
        sum(oi) if oi else None,
        sum(volume) if volume else None,
    )
    return coins, total


def positioning_lines(
    coins: Sequence[CoinPositioning], total: GlobalPositioning, time_ms: int
) -> list[str]:
    """One `positioning` point per coin and one `global_metrics` point, at `time_ms`."""
    time_ns = time_ms * NS_PER_MS
    lines = [POSITIONING.line({"coin": c.coin}, c.fields(), time_ns) for c in coins]
    lines.append(GLOBAL_METRICS.line({}, total.fields(), time_ns))
    return lines


def largest_positions(
    positions: Mapping[str, Sequence[PositionRow]], coin: str | None = None, n: int = 20
) -> list[PositionRow]:
    """The `n` largest positions by `size_usd` (ties: by address), of one coin or all coins."""
    rows: Sequence[PositionRow]
    if coin is not None:
        rows = positions.get(coin, ())
    else:
        rows = [p for coin_rows in positions.values() for p in coin_rows]
    return heapq.nsmallest(n, rows, key=lambda p: (-p.size_usd, p.address, p.coin))


class PositioningEngine:
    """Job: every run, `positioning` per tracked coin and one `global_metrics` point."""

    def __init__(self, snapshots: SnapshotSource, writer: PointSink) -> None:
        self.snapshots = snapshots
        self.writer = writer
        self.coins = 0  # coins written by the last run

    async def __call__(self) -> None:
        snapshot = await self.snapshots.get()
        coins, total = compute_positioning(snapshot)
        self.coins = len(coins)
        if coins or snapshot.contexts:  # nothing known at all: no zeros written
            self.writer.write(positioning_lines(coins, total, snapshot.time_ms))
