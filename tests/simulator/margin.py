"""The exchange's margin formulas (API.md 5.4), written for the simulator alone.

The simulator is the oracle the collector is tested against, so this code shares nothing with
the collector's own version: plain floats, one function per formula.

- maintenance fraction `l = 1 / (2 * maxLeverage)` (`mmf` in the code): the first margin
  tier only, the higher tiers of `meta.marginTables` are not applied;
- cross, position i with the other marks fixed:
  `liq_i = -side_i * C / (|szi_i| * (1 - side_i * l_i))`,
  `C = totalRawUsd_cross + sum over j != i of |szi_j| * mark_j * (side_j - l_j)`;
- isolated: `liq = -side * rawUsd / (|szi| * (1 - side * l))`;
- no liquidation price (null) when the result is <= 0 or > 1e15.

Both are the price where equity equals maintenance margin:
`rawUsd + sum(szi_j * mark_j) == sum(|szi_j| * mark_j * l_j)`.
"""

from __future__ import annotations

from collections.abc import Iterable

LIQ_PX_MAX = 1e15


def maintenance_fraction(max_leverage: int) -> float:
    return 1.0 / (2 * max_leverage)


def reachable(px: float) -> float | None:
    """`px` if a mark can reach it (0 < px <= 1e15), else None (served as null; NaN too)."""
    return px if 0.0 < px <= LIQ_PX_MAX else None


def isolated_liquidation_px(raw_usd: float, szi: float, mmf: float) -> float | None:
    side = 1.0 if szi > 0 else -1.0
    return reachable(-side * raw_usd / (abs(szi) * (1.0 - side * mmf)))


def cross_constant(raw_usd: float, others: Iterable[tuple[float, float, float]]) -> float:
    """`C` of the cross formula: the cross raw USD plus, for every other cross position
    `(szi, mark, mmf)`, its equity above its maintenance margin at its mark."""
    c = raw_usd
    for szi, mark, mmf in others:
        c += abs(szi) * mark * ((1.0 if szi > 0 else -1.0) - mmf)
    return c


def cross_liquidation_px(c: float, szi: float, mmf: float) -> float | None:
    side = 1.0 if szi > 0 else -1.0
    return reachable(-side * c / (abs(szi) * (1.0 - side * mmf)))
