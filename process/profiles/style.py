"""Trading style and the bot flag, from hold times and frequency (thresholds documented here).

Bot (checked first; `style` is then "bot"):
- at least `bot_fills_per_day` fills a day (default 1000: a fill every ~90 s around the
  clock), whatever the rhythm; or
- at least `bot_min_round_trips` round trips (20), at least `bot_trades_per_day` a day (24),
  opened at regular intervals: the coefficient of variation (stdev / mean) of the time between
  consecutive trip openings at most `bot_max_interval_cv` (0.5). People trade in bursts
  (CV around 1 or more); a scheduled strategy fires like a clock (CV near 0).

Otherwise, by the *median* hold time (one long position does not make a scalper a swing
trader) and round trips a day:
- "unknown": fewer than `min_round_trips` (3) round trips;
- "scalper": median hold under `scalper_hold_s` (1 h) and at least `scalper_trades_per_day` (2);
- "swing": median hold at least `swing_hold_s` (1 day) and at most `swing_max_trades_per_day`
  (2);
- "mixed": anything else.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Style = Literal["bot", "scalper", "swing", "mixed", "unknown"]
STYLES: tuple[Style, ...] = ("bot", "scalper", "swing", "mixed", "unknown")
"""Every value of the `style` tag."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the styles and the bot flag begin (see the module docstring)."""

    min_round_trips: int = 3
    scalper_hold_s: float = 3600.0
    scalper_trades_per_day: float = 2.0
    swing_hold_s: float = 86_400.0
    swing_max_trades_per_day: float = 2.0
    bot_fills_per_day: float = 1000.0
    bot_min_round_trips: int = 20
    bot_trades_per_day: float = 24.0
    bot_max_interval_cv: float = 0.5


def interval_cv(times_ms: Sequence[int]) -> float | None:
    """Coefficient of variation of the gaps between consecutive times (None: under 2 gaps;
    0.0 when every time is the same)."""
    ordered = sorted(times_ms)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    if len(gaps) < 2:
        return None
    mean = statistics.fmean(gaps)
    return 0.0 if mean == 0 else statistics.pstdev(gaps) / mean


def is_bot(
    fills_per_day: float,
    trades_per_day: float,
    open_times_ms: Sequence[int],
    thresholds: Thresholds,
) -> bool:
    """Very high frequency, or frequent trips opened at regular intervals."""
    if fills_per_day >= thresholds.bot_fills_per_day:
        return True
    if (
        len(open_times_ms) < thresholds.bot_min_round_trips
        or trades_per_day < thresholds.bot_trades_per_day
    ):
        return False
    cv = interval_cv(open_times_ms)
    return cv is not None and cv <= thresholds.bot_max_interval_cv


def classify(
    bot: bool,
    round_trips: int,
    median_hold_s: float | None,
    trades_per_day: float,
    thresholds: Thresholds,
) -> Style:
    """The style tag (see the module docstring)."""
    if bot:
        return "bot"
    if round_trips < thresholds.min_round_trips or median_hold_s is None:
        return "unknown"
    if (
        median_hold_s < thresholds.scalper_hold_s
        and trades_per_day >= thresholds.scalper_trades_per_day
    ):
        return "scalper"
    if (
        median_hold_s >= thresholds.swing_hold_s
        and trades_per_day <= thresholds.swing_max_trades_per_day
    ):
        return "swing"
    return "mixed"
