"""An account's fills over a time window, paged through `userFillsByTime`.

The exchange answers at most 2000 fills per call, oldest first, both bounds inclusive: the next
page starts at the newest fill's millisecond (fills seen twice there are dropped by key). Each
page reserves a full page's weight (20 + 2000 / 20 = 120; the unused part is refunded when the
answer settles), so the estimate is never exceeded. After `max_pages` full pages the window is
cut at the last page's newest millisecond (its fills there may be incomplete, so they are left
out) and marked truncated. The exchange keeps only an account's newest 10 000 fills: an account
with more in the window is served from the oldest it still has.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from validate import Fill

PAGE_FILLS = 2000
"""Fills per `userFillsByTime` answer at most (API.md 2.7)."""
REACHABLE_FILLS = 10_000
"""Newest fills of an account the exchange serves at all."""


class FillSource(Protocol):
    """`fetch.info.HyperliquidInfo` on the profiles lane (`budget.lane(Priority.PROFILES)`)."""

    async def user_fills_by_time(
        self, user: str, start_ms: int, end_ms: int, items_estimate: int = ...
    ) -> list[Fill]: ...


@dataclass(frozen=True, slots=True)
class FillWindow:
    """The fills of [start_ms, end_ms], oldest first, each once; `weight`: what the pages cost
    (20 + ceil(fills / 20) each)."""

    fills: list[Fill]
    start_ms: int
    end_ms: int
    pages: int
    weight: int
    truncated: bool


def page_weight(fills: int) -> int:
    """REST weight of one `userFillsByTime` answer holding `fills` fills."""
    return 20 + math.ceil(fills / 20)


def fill_key(fill: Fill) -> Hashable:
    """Identity of a fill: its trade id, or its order, time, price and size without one."""
    if fill.tid is not None:
        return fill.coin, fill.tid
    return fill.hash, fill.oid, fill.time_ms, fill.px, fill.sz


async def fetch_window(
    source: FillSource,
    user: str,
    start_ms: int,
    end_ms: int,
    *,
    max_pages: int = REACHABLE_FILLS // PAGE_FILLS,
    page_size: int = PAGE_FILLS,
) -> FillWindow:
    """Every fill of `user` in [start_ms, end_ms], paging forward by time (see the module
    docstring). Errors of the source (`HyperfluxError`) propagate."""
    seen: dict[Hashable, Fill] = {}
    cursor, pages, weight, truncated, covered_end = start_ms, 0, 0, False, end_ms
    while True:
        page = await source.user_fills_by_time(user, cursor, end_ms, items_estimate=page_size)
        pages += 1
        weight += page_weight(len(page))
        for fill in page:
            seen.setdefault(fill_key(fill), fill)
        if len(page) < page_size:
            break
        newest = max(f.time_ms for f in page)
        if pages >= max_pages:
            truncated, covered_end = True, newest - 1
            break
        if newest <= cursor:  # a whole page inside one millisecond: step over it
            truncated = True
            newest = cursor + 1
        cursor = newest
        if cursor > end_ms:
            break
    fills = sorted((f for f in seen.values() if f.time_ms <= covered_end), key=lambda f: f.time_ms)
    return FillWindow(fills, start_ms, covered_end, pages, weight, truncated)
