"""Historical records -> points: candles and funding settlements (DESIGN.md measurement contract).

A point's identity is measurement + tags + time, and both records carry their own exchange time
(a candle's open time, a settlement's time), so writing the same record again overwrites the
stored point with identical values: backfills can be re-run and can overlap freely.
"""

from __future__ import annotations

from collections.abc import Iterable

from db.line_protocol import encode_point
from db.schema import CANDLES, FUNDING
from db.timestamps import NS_PER_MS
from validate import Candle, FundingRate
from validate.market import CANDLE_INTERVAL_MS

INTERVAL_MS = CANDLE_INTERVAL_MS
"""candleSnapshot intervals and their length in ms (`1M`, a calendar month on the exchange, as
its shortest 28 days: only used to size request windows, where shorter is the safe side)."""


def candle_lines(candles: Iterable[Candle]) -> list[str]:
    """`candles,coin=..,interval=..` points stamped at each candle's open time.

    open/high/low/close/volume are floats (volume in base units), trade_count an integer.
    """
    name = CANDLES.name
    return [
        encode_point(
            name,
            {"coin": c.coin, "interval": c.interval},
            {
                "open": float(c.open),
                "high": float(c.high),
                "low": float(c.low),
                "close": float(c.close),
                "volume": float(c.volume),
                "trade_count": c.trade_count,
            },
            c.open_ms * NS_PER_MS,
        )
        for c in candles
    ]


def funding_lines(rates: Iterable[FundingRate]) -> list[str]:
    """`funding,coin=..` points stamped at the settlement time: `rate` (fraction per period,
    positive: longs pay shorts) and `premium` when the exchange sent one."""
    name = FUNDING.name
    return [
        encode_point(
            name,
            {"coin": r.coin},
            {
                "rate": float(r.funding_rate),
                "premium": None if r.premium is None else float(r.premium),
            },
            r.time_ms * NS_PER_MS,
        )
        for r in rates
    ]
