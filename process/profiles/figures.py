"""A wallet's profile: figures over its closed round trips in one window of fills.

Every figure is over round trips closed in the window (`round_trips.py`), with PnL net of
fees; a trip is a win when its net PnL is above zero.

- win rate: wins / round trips (None without trips);
- profit factor: gross profit / gross loss, the sums of the winning and (minus) the losing
  trips' net PnL (None without a losing trip: it would be infinite);
- average and median hold (close - open), average PnL % (per trip, unweighted);
- realized PnL of the last 24 h: the net PnL of the trips closed in the window's last day;
- max drawdown: the largest fall, in USDC, of the cumulative net PnL (trips in close order,
  starting from 0) below its running peak;
- trades and fills per day: over the window covered (`start_ms`..`end_ms`);
- style and bot flag: `style.py`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from process.profiles.round_trips import RoundTrip, match_round_trips
from process.profiles.style import Style, Thresholds, classify, is_bot
from validate import Fill

DAY_MS = 86_400_000
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Profile:
    """One address's figures over the fills of [start_ms, end_ms] (see the module docstring).

    `fills`: perp fills in the window; `unmatched_fills`: those in no closed round trip (a
    position open at either end, or cut by missing fills); `truncated`: not every fill of the
    window was fetched (more than the pages allowed: `end_ms` is then earlier than asked).
    """

    address: str
    start_ms: int
    end_ms: int
    fills: int
    unmatched_fills: int
    round_trips: int
    wins: int
    realized_pnl: Decimal
    realized_pnl_24h: Decimal
    fees: Decimal
    gross_profit: Decimal
    gross_loss: Decimal
    max_drawdown: Decimal
    win_rate: float | None
    profit_factor: float | None
    avg_hold_s: float | None
    median_hold_s: float | None
    avg_pnl_pct: float | None
    trades_per_day: float
    fills_per_day: float
    style: Style
    bot: bool
    truncated: bool = False


def max_drawdown(pnls: Iterable[Decimal]) -> Decimal:
    """Largest fall of the running sum of `pnls` (from 0) below its running peak."""
    total = peak = worst = _ZERO
    for pnl in pnls:
        total += pnl
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return worst


def profile_of(
    address: str,
    fills: Sequence[Fill],
    start_ms: int,
    end_ms: int,
    thresholds: Thresholds | None = None,
    *,
    truncated: bool = False,
) -> Profile:
    """The profile of `address` from its fills of [start_ms, end_ms] (deduplicated)."""
    thresholds = thresholds or Thresholds()
    matched = match_round_trips(fills)
    return figures(
        address,
        matched.trips,
        matched.fills,
        matched.unmatched_fills,
        start_ms,
        end_ms,
        thresholds,
        truncated=truncated,
    )


def figures(
    address: str,
    trips: Sequence[RoundTrip],
    fills: int,
    unmatched_fills: int,
    start_ms: int,
    end_ms: int,
    thresholds: Thresholds,
    *,
    truncated: bool = False,
) -> Profile:
    """The profile from round trips already matched (sorted by close time)."""
    days = max(end_ms - start_ms, 1) / DAY_MS
    nets = [t.net_pnl for t in trips]
    gross_profit = sum((p for p in nets if p > 0), _ZERO)
    gross_loss = -sum((p for p in nets if p < 0), _ZERO)
    holds = [t.hold_ms / 1000 for t in trips]
    trades_per_day = len(trips) / days
    fills_per_day = fills / days
    median_hold = statistics.median(holds) if holds else None
    bot = is_bot(fills_per_day, trades_per_day, [t.open_ms for t in trips], thresholds)
    wins = sum(1 for p in nets if p > 0)
    return Profile(
        address=address,
        start_ms=start_ms,
        end_ms=end_ms,
        fills=fills,
        unmatched_fills=unmatched_fills,
        round_trips=len(trips),
        wins=wins,
        realized_pnl=sum(nets, _ZERO),
        realized_pnl_24h=sum((t.net_pnl for t in trips if t.close_ms >= end_ms - DAY_MS), _ZERO),
        fees=sum((t.fees for t in trips), _ZERO),
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        max_drawdown=max_drawdown(nets),
        win_rate=wins / len(trips) if trips else None,
        profit_factor=float(gross_profit / gross_loss) if gross_loss else None,
        avg_hold_s=statistics.fmean(holds) if holds else None,
        median_hold_s=median_hold,
        avg_pnl_pct=statistics.fmean(t.pnl_pct for t in trips) if trips else None,
        trades_per_day=trades_per_day,
        fills_per_day=fills_per_day,
        style=classify(bot, len(trips), median_hold, trades_per_day, thresholds),
        bot=bot,
        truncated=truncated,
    )
