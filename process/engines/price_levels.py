"""Absolute price levels for the liquidation heatmap: a level is the same price at every time.

A coin's grid is a step chosen once from its price: the 1-2-2.5-5 x 10^k value nearest to
`width` (0.5 %) of the price, so levels sit on round numbers (BTC at 85,000: every 500 USD;
kPEPE at 0.0122: every 0.00005). Level `i` covers [i x step, (i + 1) x step): a price exactly
on an edge belongs to the level above it. The grid stays while the price stays within `MOVE`
(2.5x) of the price it was chosen at, either way (a level then stays between about 0.2 % and
1.5 % of the price); past that it is re-anchored at the price then, and the heatmap records the
change.

The level's tag is its lower edge written with the step's decimals ("84500", "0.01220"), so a
tag sorts and reads as a price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

WIDTH = 0.005
"""A level's width as a fraction of the price when the grid is chosen."""
MOVE = 2.5
"""The grid is kept while the price stays within this factor of its anchor."""
_MANTISSAS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
_EDGE_TOLERANCE = 1e-9
"""Relative: a price this close to an edge is on it (float quotients such as 0.0122 / 0.00005
= 243.99999999999997)."""


def choose_step(price: float, width: float = WIDTH) -> Decimal:
    """The round step nearest (in log terms) to `width` x `price`."""
    if not price > 0 or not math.isfinite(price):
        raise ValueError(f"a grid needs a positive price, got {price}")
    ideal = price * width
    exponent = math.floor(math.log10(ideal))
    scale = Decimal(10) ** exponent
    target = math.log(ideal)
    return min(
        (m * scale for m in _MANTISSAS), key=lambda step: abs(math.log(float(step)) - target)
    ).normalize()


@dataclass(frozen=True, slots=True)
class LevelGrid:
    """The levels of one coin: `step` apart, chosen at `anchor_px`."""

    step: Decimal
    anchor_px: float

    @classmethod
    def around(cls, price: float) -> LevelGrid:
        return cls(choose_step(price), price)

    def keeps(self, price: float) -> bool:
        """Whether a level is still a sensible width at `price`."""
        return self.anchor_px / MOVE <= price <= self.anchor_px * MOVE

    def level(self, price: float) -> int:
        """The index of the level holding `price`."""
        quotient = price / float(self.step)
        nearest = round(quotient)
        if abs(quotient - nearest) <= _EDGE_TOLERANCE * max(1.0, abs(quotient)):
            return nearest
        return math.floor(quotient)

    def price(self, level: int) -> float:
        """The level's lower edge."""
        return float(level * self.step)

    def label(self, level: int) -> str:
        """The level's tag: its lower edge with the step's decimals."""
        exponent = self.step.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return f"{level * self.step:.{places}f}"
