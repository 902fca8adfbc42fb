"""The position book's parts: `margin` turns positions, cash and marks into liquidation prices."""

from process.positions.margin import (
    MAX_LIQUIDATION_PX,
    AccountMargin,
    MarginPosition,
    MarginRule,
    PositionMargin,
    Tier,
    account_margin,
    liquidation_price,
    rules_from_meta,
)

__all__ = [
    "MAX_LIQUIDATION_PX",
    "AccountMargin",
    "MarginPosition",
    "MarginRule",
    "PositionMargin",
    "Tier",
    "account_margin",
    "liquidation_price",
    "rules_from_meta",
]
