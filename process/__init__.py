"""Records -> points, and what is derived from records (liquidations, engines).

`PointBuilder` is the one place validated records become line-protocol points;
`LiquidationDetector` finds liquidations in the trade stream.
"""

from process.liquidations import LiquidationDetector, LiquidationEvent, PositionView
from process.points import GapRecord, PointBuilder

__all__ = [
    "GapRecord",
    "LiquidationDetector",
    "LiquidationEvent",
    "PointBuilder",
    "PositionView",
]
