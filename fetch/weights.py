"""Rate-limit weights of Hyperliquid `POST /info` requests (API.md §4), and what to reserve.

The exchange allows 1200 weight per minute per IP. A request costs a base weight by its `type`;
some types cost extra per item *returned* (+1 per 20 items, +1 per 60 candles). The extra is
only known after the response, so a caller reserves an upper bound before the call
(`reserve_weight`) and settles the true weight (`request_weight`) afterwards. The rounding of
the extra is not documented: `ceil` keeps us on the safe side (45 fills cost 20 + 3).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, TypeGuard

from validate.market import CANDLE_INTERVAL_MS

LIMIT_PER_MINUTE = 1200
"""Weight the exchange accepts per IP in any 60 s (REST info and exchange combined)."""

DEFAULT_WEIGHT = 20
"""Base weight of every info type not listed in `BASE_WEIGHTS`."""

BASE_WEIGHTS: Mapping[str, int] = {
    "l2Book": 2,
    "allMids": 2,
    "clearinghouseState": 2,
    "orderStatus": 2,
    "spotClearinghouseState": 2,
    "exchangeStatus": 2,
    "userRole": 60,
}

_PER_20 = (
    "recentTrades",
    "historicalOrders",
    "userFills",
    "userFillsByTime",
    "fundingHistory",
    "userFunding",
    "nonUserFundingUpdates",
    "twapHistory",
    "userTwapSliceFills",
    "userTwapSliceFillsByTime",
    "delegatorHistory",
    "delegatorRewards",
    "validatorStats",
)
ITEMS_PER_EXTRA: Mapping[str, int] = {**dict.fromkeys(_PER_20, 20), "candleSnapshot": 60}
"""Types that cost +1 weight per this many items returned."""

MAX_CANDLES = 5000
"""The exchange keeps only the newest 5000 candles per coin and interval."""

DEFAULT_MAX_ITEMS: Mapping[str, int] = {
    # Unconfirmed page sizes: assume the largest page any info type is documented to return.
    "recentTrades": 2000,
    "twapHistory": 2000,
    "delegatorHistory": 2000,
    "delegatorRewards": 2000,
    "validatorStats": 2000,
    # Documented: newest 2000 (userFills, historicalOrders), <= 2000 per page (ByTime).
    "historicalOrders": 2000,
    "userFills": 2000,
    "userFillsByTime": 2000,
    "userTwapSliceFills": 2000,
    "userTwapSliceFillsByTime": 2000,
    # Documented time-range queries: <= 500 rows per page.
    "fundingHistory": 500,
    "userFunding": 500,
    "nonUserFundingUpdates": 500,
    "candleSnapshot": MAX_CANDLES,
}
"""Upper bound on items returned per request, used when a caller gives no estimate.

Over-reserving is cheap (the unused part is refunded when the request settles, usually within a
second); under-reserving eats into the budget's safety margin.
"""

INTERVAL_MS = CANDLE_INTERVAL_MS


def base_weight(info_type: str) -> int:
    """Weight of one request of `info_type` before any per-item extra."""
    return BASE_WEIGHTS.get(info_type, DEFAULT_WEIGHT)


def extra_weight(info_type: str, items: int) -> int:
    """Extra weight for `items` returned: ceil(items / 20) or ceil(candles / 60); else 0."""
    per = ITEMS_PER_EXTRA.get(info_type)
    if per is None or items <= 0:
        return 0
    return math.ceil(items / per)


def request_weight(info_type: str, items: int = 0) -> int:
    """True weight of a request that returned `items` items."""
    return base_weight(info_type) + extra_weight(info_type, items)


def has_item_extra(info_type: str) -> bool:
    """Whether the weight of `info_type` depends on the number of items returned."""
    return info_type in ITEMS_PER_EXTRA


def estimate_items(
    payload: Mapping[str, Any],
    *,
    max_items: Mapping[str, int] | None = None,
    now_ms: int | None = None,
) -> int:
    """Upper bound on the items `payload` can return (0 for types without a per-item extra).

    candleSnapshot: candles overlapping [startTime, endTime] (endTime defaults to now), capped
    at 5000. Other types: `max_items[type]`, else `DEFAULT_MAX_ITEMS[type]`.
    """
    info_type = str(payload.get("type"))
    if not has_item_extra(info_type):
        return 0
    limits = {**DEFAULT_MAX_ITEMS, **(max_items or {})}
    cap = limits.get(info_type, 2000)
    if info_type == "candleSnapshot":
        return min(cap, _candle_count(payload.get("req"), now_ms))
    return cap


def reserve_weight(
    payload: Mapping[str, Any],
    *,
    items_estimate: int | None = None,
    max_items: Mapping[str, int] | None = None,
    now_ms: int | None = None,
) -> int:
    """Weight to reserve before sending `payload`: base + extra for the estimated items.

    `items_estimate` (from a caller that knows better, e.g. a narrow time range) replaces the
    default upper bound.
    """
    info_type = str(payload.get("type"))
    if items_estimate is None:
        items_estimate = estimate_items(payload, max_items=max_items, now_ms=now_ms)
    return request_weight(info_type, items_estimate)


def _candle_count(req: object, now_ms: int | None) -> int:
    if not isinstance(req, Mapping):
        return MAX_CANDLES
    interval = INTERVAL_MS.get(str(req.get("interval")))
    start, end = req.get("startTime"), req.get("endTime")
    if end is None:
        end = int(time.time() * 1000) if now_ms is None else now_ms
    if interval is None or not _is_int(start) or not _is_int(end):
        return MAX_CANDLES
    if end < start:
        return 0
    # Opens in [start, end], plus the candle already open at `start` (alignment is unknown).
    return (end - start) // interval + 2


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
