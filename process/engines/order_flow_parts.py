"""The pieces of the order-flow engine (process/engines/order_flow.py) that hold no I/O: bars,
the minutes read so far, points, minute ranges, replayed lines and recorded gaps."""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from db.schema import CVD, LIQUIDATIONS, ORDER_FLOW, TRADE_GAPS, TRADES, Measurement

MINUTE_MS = 60_000
MINUTE_NS = MINUTE_MS * 1_000_000
INCOMPLETE = "incomplete"
"""The boolean field every bar and CVD point carries: its minute or window overlaps a gap."""

Range = tuple[int, int]  # [start, end) in ns (or ms where said)

_SIDES = frozenset({"buy", "sell", "long", "short"})  # trades: taker side; liquidations: liquidated
_REPLAYED = (f"{TRADES.name},", f"{LIQUIDATIONS.name},")
_GAP_LINE = f"{TRADE_GAPS.name},"
_GAP_FIELDS = re.compile(r" after_ms=(-?[0-9]+)i,before_ms=(-?[0-9]+)i")  # as PointBuilder.gap


def _flagged(measurement: Measurement) -> Measurement:
    """`measurement` with the `incomplete` field, whether or not db/schema.py declares it yet."""
    if INCOMPLETE in measurement.fields:
        return measurement
    return dataclasses.replace(measurement, fields=(*measurement.fields, INCOMPLETE))


SCHEMAS = {m.name: m for m in (_flagged(ORDER_FLOW), _flagged(CVD))}


@dataclass(slots=True)
class Bar:
    """One coin's minute: taker notional (USD) and counts, liquidated notional by side."""

    buy_notional: float = 0.0
    sell_notional: float = 0.0
    buy_count: int = 0
    sell_count: int = 0
    long_liq_notional: float = 0.0
    short_liq_notional: float = 0.0

    def fields(self, incomplete: bool) -> dict[str, float | int | bool | None]:
        return {
            "buy_notional": self.buy_notional,
            "sell_notional": self.sell_notional,
            "buy_count": self.buy_count,
            "sell_count": self.sell_count,
            "delta": self.buy_notional - self.sell_notional,
            "long_liq_notional": self.long_liq_notional,
            "short_liq_notional": self.short_liq_notional,
            INCOMPLETE: incomplete,
        }


@dataclass
class Minutes:
    """Bars read so far; `known` holds the minutes read after their end (complete)."""

    bars: dict[int, dict[str, Bar]] = field(default_factory=dict)  # minute ns -> coin -> bar
    known: set[int] = field(default_factory=set)

    def replace(self, start: int, end: int, rows: list[dict[str, Any]]) -> None:
        """The minutes in [start, end) (start a minute boundary) become what `rows` say."""
        for minute in [m for m in self.bars if start <= m < end]:
            del self.bars[minute]
        for row in rows:
            coin = row.get("coin")
            side = row.get("side")
            if not coin or side not in _SIDES:
                continue
            coins = self.bars.setdefault(int(row["time"]), {})
            bar = coins.get(coin)
            if bar is None:
                bar = coins[coin] = Bar()
            total = float(row["notional"])  # JSON may carry 2.0 as 2
            if side == "buy":
                bar.buy_notional, bar.buy_count = total, int(row["count"])
            elif side == "sell":
                bar.sell_notional, bar.sell_count = total, int(row["count"])
            elif side == "long":
                bar.long_liq_notional = total
            else:
                bar.short_liq_notional = total
        self.known.update(range(start, floor(end), MINUTE_NS))
        self.known.discard(floor(end))  # a minute read before its end is not complete

    def prune(self, before: int) -> None:
        for minute in [m for m in self.bars if m < before]:
            del self.bars[minute]
        self.known = {m for m in self.known if m >= before}

    def to_read(self, dirty: list[Range], start: int, end: int) -> list[Range]:
        """Stretches of [start, end) to (re)read: minutes in `dirty` (sorted, disjoint) and
        minutes not known complete."""
        starts = [a for a, _ in dirty]
        runs: list[list[int]] = []
        for minute in range(start, end, MINUTE_NS):
            i = bisect_right(starts, minute) - 1
            if minute in self.known and not (i >= 0 and minute < dirty[i][1]):
                continue
            if runs and runs[-1][1] == minute:
                runs[-1][1] = min(minute + MINUTE_NS, end)
            else:
                runs.append([minute, min(minute + MINUTE_NS, end)])
        return [(a, b) for a, b in runs]

    def by_coin(self) -> dict[str, tuple[list[int], list[float], list[float]]]:
        """coin -> (minutes ascending, buy notional, sell notional) of its bars."""
        series: dict[str, tuple[list[int], list[float], list[float]]] = {}
        for minute in sorted(self.bars):
            for coin, bar in self.bars[minute].items():
                minutes, buys, sells = series.setdefault(coin, ([], [], []))
                minutes.append(minute)
                buys.append(bar.buy_notional)
                sells.append(bar.sell_notional)
        return series


class Point(NamedTuple):
    time: int  # ns
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | bool | None]

    @property
    def key(self) -> tuple[int, str, tuple[str, ...]]:
        return (self.time, self.measurement, tuple(self.tags.values()))

    def line(self) -> str:
        return SCHEMAS[self.measurement].line(self.tags, self.fields, self.time)


Emit = Callable[[list[Point]], None]


@dataclass
class Group:
    """Minutes rebuilt together: bars of `ranges`, CVD points at t in `spans` (half-open, ns),
    reading what they need from [lo, hi)."""

    lo: int
    hi: int
    ranges: list[Range]
    spans: list[Range]


def groups(ranges: list[Range], longest: int, current: int) -> list[Group]:
    """The work for sorted, disjoint bar ranges: a CVD point at t needs the bars of
    [t - longest, t); a bar at m is in the points at m + 1 min ... m + longest (up to current)."""
    out: list[Group] = []
    for a, b in ranges:
        t1, t2 = a + MINUTE_NS, min(ceil(b) - MINUTE_NS + longest, current)
        spans = [(t1, t2 + MINUTE_NS)] if t1 <= t2 else []
        lo = t1 - longest if spans else a
        hi = max(b, t2)
        if out and lo <= out[-1].hi:
            group = out[-1]
            group.hi = max(group.hi, hi)
            group.ranges.append((a, b))
            group.spans = merge([*group.spans, *spans])
        else:
            out.append(Group(lo, hi, [(a, b)], spans))
    return out


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint ranges covering the same points (touching ones joined, empty dropped)."""
    out: list[Range] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def clip(ranges: Iterable[Range], end: int) -> list[Range]:
    return [(a, min(b, end)) for a, b in ranges if a < end]


def take(ranges: list[Range], budget: int | None) -> tuple[list[Range], list[Range]]:
    """The oldest `budget` ns of sorted minute ranges, and the rest (all when budget is None)."""
    if budget is None:
        return ranges, []
    taken: list[Range] = []
    for i, (a, b) in enumerate(ranges):
        if budget <= 0:
            return taken, ranges[i:]
        if b - a > budget:
            taken.append((a, a + budget))
            return taken, [(a + budget, b), *ranges[i + 1 :]]
        taken.append((a, b))
        budget -= b - a
    return taken, []


def ms_to_minutes(start_ms: int, end_ms: int) -> Range:
    """The minutes (ns) overlapping [start_ms, end_ms)."""
    return floor(start_ms * 1_000_000), ceil(end_ms * 1_000_000)


def replayed_minutes(lines: Iterable[str]) -> list[Range]:
    """Minutes (ns) of the `trades` and `liquidations` points among line-protocol lines (the
    timestamp is the last space-separated token) and those `trade_gaps` points overlap; other
    lines and unparsable ones are skipped."""
    minutes: set[int] = set()
    gaps: list[Range] = []
    for line in lines:
        if line.startswith(_REPLAYED):
            try:
                stamp = int(line[line.rindex(" ") + 1 :])
            except ValueError:
                continue
            minutes.add(floor(stamp))
        elif line.startswith(_GAP_LINE) and (match := _GAP_FIELDS.search(line)):
            gaps.append(ms_to_minutes(int(match[1]) + 1, int(match[2]) + 1))
    return merge([*((m, m + MINUTE_NS) for m in minutes), *gaps])


def overlaps(gaps: Iterable[Range], start_ns: int, end_ns: int) -> bool:
    """Does a gap (after_ms, before_ms] (trades after after_ms up to and including before_ms may
    be missing) share a millisecond with [start_ns, end_ns)?"""
    lo, hi = start_ns // 1_000_000, end_ns // 1_000_000 - 1
    return any(max(after + 1, lo) <= min(before, hi) for after, before in gaps)


def floor(ns: int) -> int:
    return ns - ns % MINUTE_NS


def ceil(ns: int) -> int:
    return -(-ns // MINUTE_NS) * MINUTE_NS
