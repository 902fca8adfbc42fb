"""Wire helpers: Hyperliquid-style decimal strings, compact JSON and millisecond clocks."""

from __future__ import annotations

import json
import math
import time
from typing import Any

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
dumps = _encoder.encode


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the only use of the wall clock)."""
    return int(time.time() * 1000)


def fmt(x: float, decimals: int) -> str:
    """`x` with at most `decimals` decimals, trailing zeros stripped but one kept (84981.0)."""
    s = f"{x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0")
        if s[-1] == ".":
            s += "0"
    else:
        s += ".0"
    return "0.0" if s == "-0.0" else s


def sig(x: float, digits: int) -> str:
    """`x` with `digits` significant digits, never in exponent notation."""
    if x == 0 or not math.isfinite(x):
        return "0.0"
    return fmt(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def price_decimals(px: float, sz_decimals: int) -> int:
    """Perp price precision: 5 significant figures, at most 6 - szDecimals decimals."""
    if px <= 0:
        return 6 - sz_decimals
    return max(0, min(6 - sz_decimals, 4 - math.floor(math.log10(px))))


def frame(channel: str, data: Any) -> str:
    """A server push `{"channel":..., "data":...}` serialized once for every recipient."""
    return dumps({"channel": channel, "data": data})
