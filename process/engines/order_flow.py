"""Order flow: 1-minute bars per coin and rolling CVD windows, computed from stored trades.

Every run reads the trades and liquidations of a trailing window back from InfluxDB with one
server-side aggregation (`SUM`/`COUNT` of `notional` `GROUP BY time(1m), coin, side`) and
writes `order_flow` bars and `cvd` points. Every value is a pure function of what is stored, so
rewriting a point gives the same measurement, tags and time and overwrites it (idempotent).

order_flow (tag coin), one point per coin per minute, stamped at the minute's start (UTC):
- buy_notional / sell_notional: summed USD notional (px x sz) of the minute's trades by TAKER
  side; buy_count / sell_count: how many (ints); delta = buy_notional - sell_notional;
- long_liq_notional / short_liq_notional: summed notional of the minute's `liquidations` by the
  side of the position liquidated (0 when none);
- a minute with neither trades nor liquidations has no point (not zeros): a missing bar says
  "nothing stored", which stays true during an outage, where zeros would claim a quiet market;
- the current minute is written as it fills (a live bar) and overwritten every run until the
  minute is over.

CVD (measurement `cvd`, tags coin and window in 1m, 5m, 15m, 1h):
- A point at time t (a minute boundary) for window W covers the W / 1 min completed 1-minute
  bars ending at t: the bars stamped t - W ... t - 1 min, i.e. the trades with
  t - W <= time < t (exchange time). Points exist only at completed minute boundaries (t is at
  most the start of the current minute), so the current minute enters at the next boundary.
- buy_notional / sell_notional: taker-buy / taker-sell USD notional in the window;
  cvd = buy_notional - sell_notional (USD); buy_pct = 100 x buy / (buy + sell), left out when
  buy + sell == 0 (a window holding only liquidations).
- "Cumulative" means a rolling-window volume delta: every point stands alone; there is no
  session or daily reset and no running total since some origin. For an ever-growing CVD line,
  sum the bars in the dashboard: `SELECT CUMULATIVE_SUM(SUM("delta")) FROM "order_flow"
  WHERE "coin" = 'BTC' AND $timeFilter GROUP BY time(1m)`.
- A point exists when at least one of its bars exists (the coin traded, or had a liquidation,
  in the window); a window without any bar has no point.
- Gaps: the sums cover only the trades stored. A window overlapping a stretch recorded in
  `trade_gaps`, or an outage of the collector, undercounts; it is not flagged, rescaled or
  reset, and the first window past the gap is complete again. Trades stored later (REST
  backfill, spool replay) correct bars and points when they are recomputed (below).

Runs and late trades. Every run rewrites the live bar (the current minute, as of now). The first
run in each minute also recomputes the bars from the minute `recompute_minutes` (R, default 10)
before the current one, and the CVD points at the R minute boundaries up to the current one, so a
trade stored late but within about R minutes of its minute's end corrects its bar and the CVD
points holding it at the next minute boundary. After failed runs (InfluxDB down) the next
successful run starts at the minute of the last successful run instead (at most
`max_catchup_minutes` back); while `backlog()` says the writer's spool still holds points, that
mark stays put, so the minutes whose trades were spooled are recomputed once they have landed.
Later trades are not picked up by themselves (bars older than the window stay as written; CVD
points keep the bars they were computed from): call `recompute(start_ms, end_ms)` after a
history backfill or a replay after a restart. It rewrites every bar of the range and every CVD
point whose window holds one of them. The catch-up mark lives in memory: a restart forgets it.

Exactness (measured on influxd 1.6.7): `SUM` adds a series' values left to right in ascending
time order, then adds the per-series results of a group (liquidations: backstop + market, two
values, so the order does not matter); the result is deterministic. CVD windows add the bars
with `math.fsum` (the correctly rounded sum, independent of order).

Cost: one query per run, grouped by coin and side (not one per coin). Within a minute a run
reads only the live minute; the first run of a minute reads R + 1 minutes (R + 60 after a start
or a failed run: the bars the windows need are kept in memory). Only points whose values changed
since they were last written are written again. Run the job every 10 s (the live bar lags at
most that).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from db.queries import rfc3339_ns
from db.schema import CVD, LIQUIDATIONS, MEASUREMENTS, ORDER_FLOW, TRADES
from db.timestamps import NS_PER_MS
from process.storage_ports import PointSink, RowReader

log = logging.getLogger(__name__)

MINUTE_NS = 60 * 1_000_000_000
DEFAULT_WINDOWS = ("1m", "5m", "15m", "1h")
READ_CHUNK_MINUTES = 120
"""Longest stretch one query aggregates (bounds the answer and the memory of a recompute)."""

_ORDER_FLOW = ORDER_FLOW.name
_CVD = CVD.name
_WINDOW = re.compile(r"([1-9][0-9]*)([mhd])")
_WINDOW_MINUTES = {"m": 1, "h": 60, "d": 1440}
_SIDES = frozenset({"buy", "sell", "long", "short"})  # trades: taker side; liquidations: liquidated
# One statement for both measurements: their `side` values (buy/sell vs long/short) tell them
# apart; `fill(none)` leaves out empty minutes.
_QUERY = (
    'SELECT SUM("notional") AS "notional", COUNT("notional") AS "count" '
    f'FROM "{TRADES.name}", "{LIQUIDATIONS.name}" WHERE time >= $start AND time < $end '
    'GROUP BY time(1m), "coin", "side" fill(none)'
)


@dataclass(slots=True)
class Bar:
    """One coin's minute: taker notional (USD) and counts, liquidated notional by side."""

    buy_notional: float = 0.0
    sell_notional: float = 0.0
    buy_count: int = 0
    sell_count: int = 0
    long_liq_notional: float = 0.0
    short_liq_notional: float = 0.0

    def fields(self) -> dict[str, float | int | None]:
        return {
            "buy_notional": self.buy_notional,
            "sell_notional": self.sell_notional,
            "buy_count": self.buy_count,
            "sell_count": self.sell_count,
            "delta": self.buy_notional - self.sell_notional,
            "long_liq_notional": self.long_liq_notional,
            "short_liq_notional": self.short_liq_notional,
        }


@dataclass
class _Minutes:
    """Bars read so far: complete for the minutes from `first` up to `floor(end)`."""

    first: int
    end: int
    bars: dict[int, dict[str, Bar]] = field(default_factory=dict)  # minute ns -> coin -> bar

    def holds(self, first: int, until: int) -> bool:
        """True when every minute in [first, until) is known."""
        return self.first <= first and _floor(self.end) >= until

    def replace(self, start: int, end: int, rows: list[dict[str, Any]]) -> None:
        """The minutes in [start, end) become exactly what `rows` say."""
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
        self.end = end

    def prune(self, before: int) -> None:
        for minute in [m for m in self.bars if m < before]:
            del self.bars[minute]
        self.first = max(self.first, before)

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


class _Point(NamedTuple):
    time: int  # ns
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | None]

    @property
    def key(self) -> tuple[int, str, tuple[str, ...]]:
        return (self.time, self.measurement, tuple(self.tags.values()))

    def line(self) -> str:
        return MEASUREMENTS[self.measurement].line(self.tags, self.fields, self.time)


Emit = Callable[[list[_Point]], None]


class OrderFlowEngine:
    """The periodic order-flow job (`await engine()`) and `recompute(start_ms, end_ms)`.

    `clock` returns Unix time in ms (default: this machine's clock). `backlog` returns True while
    points accepted by the writer may not have reached InfluxDB yet (e.g.
    `lambda: writer.spool.points > 0`); see the module docstring.
    """

    def __init__(
        self,
        reader: RowReader,
        writer: PointSink,
        *,
        recompute_minutes: int = 10,
        windows: Iterable[str] = DEFAULT_WINDOWS,
        clock: Callable[[], int] | None = None,
        backlog: Callable[[], bool] | None = None,
        max_catchup_minutes: int = 1440,
    ) -> None:
        if recompute_minutes < 1 or max_catchup_minutes < recompute_minutes:
            raise ValueError(
                "recompute_minutes must be >= 1 and max_catchup_minutes >= recompute_minutes"
            )
        self.reader = reader
        self.writer = writer
        self.windows = tuple((name, parse_window(name) * MINUTE_NS) for name in windows)
        if not self.windows or len({name for name, _ in self.windows}) != len(self.windows):
            raise ValueError("windows must name at least one window, each once")
        self._longest = max(width for _, width in self.windows)
        self._recompute = recompute_minutes * MINUTE_NS
        self._max_catchup = max_catchup_minutes * MINUTE_NS
        self._clock = clock or (lambda: time.time_ns() // NS_PER_MS)
        self._backlog = backlog
        self._lock = asyncio.Lock()
        self._minutes: _Minutes | None = None  # bars kept between periodic runs
        self._last: dict[tuple[int, str, tuple[str, ...]], dict[str, float | int | None]] = {}
        self._full_at: int | None = None  # minute of the last run that redid the whole window
        self._synced_to: int | None = None  # catch-up mark: minute of the last good run
        self.runs = 0
        self.queries = 0
        self.points_written = 0

    async def __call__(self) -> None:
        """The live bar; in the first run of each minute also the trailing window and the CVD
        points (see the module docstring). Writes only points that changed."""
        async with self._lock:
            now = self._clock() * NS_PER_MS
            current = _floor(now)
            held = self._backlog is not None and self._backlog()
            start = current if self._full_at == current else current - self._recompute
            if self._synced_to is not None and not held:
                start = max(min(start, self._synced_to), current - self._max_catchup)
            last = self._last

            def emit(points: list[_Point]) -> None:
                changed = [p for p in points if last.get(p.key) != p.fields]
                if changed:
                    self.writer.write([p.line() for p in changed])
                    self.points_written += len(changed)
                    last.update((p.key, p.fields) for p in changed)

            minutes = self._minutes
            self._minutes = None  # only a run that completes leaves its minutes for the next
            if minutes is None or not minutes.holds(start + MINUTE_NS - self._longest, start):
                minutes = _Minutes(first=start + MINUTE_NS - self._longest, end=0)
            await self._rebuild(minutes, start, now, now, emit)
            self._minutes = minutes
            keep = current - self._recompute
            self._last = {key: fields for key, fields in last.items() if key[0] >= keep}
            if start <= current - self._recompute:
                self._full_at = current
            if not held:
                self._synced_to = current
            self.runs += 1

    async def recompute(self, start_ms: int, end_ms: int) -> int:
        """Rewrite the bars of every minute overlapping [start_ms, end_ms) (up to now) and every
        CVD point whose window holds one of them; returns the number of points written."""
        async with self._lock:
            now = self._clock() * NS_PER_MS
            start = _floor(start_ms * NS_PER_MS)
            end = min(_ceil(end_ms * NS_PER_MS), now)
            if start >= end:
                return 0
            self._minutes, self._last, self._full_at = None, {}, None
            written = 0

            def emit(points: list[_Point]) -> None:
                nonlocal written
                if points:
                    self.writer.write([p.line() for p in points])
                    written += len(points)

            first = start + MINUTE_NS - self._longest
            await self._rebuild(_Minutes(first=first, end=0), start, end, now, emit)
            self.points_written += written
            log.info(
                "order flow recomputed from %s to %s: %d points",
                rfc3339_ns(start),
                rfc3339_ns(end),
                written,
            )
            return written

    async def _rebuild(self, minutes: _Minutes, start: int, end: int, now: int, emit: Emit) -> None:
        """Bars of [start, end) and CVD points at t in [start + 1 min, last affected t].

        `start` is a minute boundary and `end` <= `now`. Reads, chunk by chunk, every minute
        from `start` (or from the first minute `minutes` does not hold yet, for the windows)
        up to the last bar any of those points needs.
        """
        last_t = min(_ceil(end) + self._longest - MINUTE_NS, _floor(now))
        read_to = max(end, last_t)
        read_from = (
            start if minutes.holds(start + MINUTE_NS - self._longest, start) else minutes.first
        )
        next_t = start + MINUTE_NS
        chunk_start = read_from
        while chunk_start < read_to:
            chunk_end = min(chunk_start + READ_CHUNK_MINUTES * MINUTE_NS, read_to)
            minutes.replace(chunk_start, chunk_end, await self._read(chunk_start, chunk_end))
            emit(self._bar_points(minutes, max(chunk_start, start), min(chunk_end, end)))
            to_t = min(_floor(chunk_end), last_t)
            if next_t <= to_t:
                emit(self._cvd_points(minutes, next_t, to_t))
                next_t = to_t + MINUTE_NS
            minutes.prune(_floor(chunk_end) - self._longest - self._recompute)
            chunk_start = chunk_end

    async def _read(self, start: int, end: int) -> list[dict[str, Any]]:
        self.queries += 1
        params = {"start": rfc3339_ns(start), "end": rfc3339_ns(end)}
        return await self.reader.rows(_QUERY, params)

    def _bar_points(self, minutes: _Minutes, start: int, end: int) -> list[_Point]:
        return [
            _Point(minute, _ORDER_FLOW, {"coin": coin}, bar.fields())
            for minute in range(start, end, MINUTE_NS)
            for coin, bar in minutes.bars.get(minute, {}).items()
        ]

    def _cvd_points(self, minutes: _Minutes, first_t: int, last_t: int) -> list[_Point]:
        points: list[_Point] = []
        for coin, (stamps, buys, sells) in minutes.by_coin().items():
            for t in range(first_t, last_t + 1, MINUTE_NS):
                hi = bisect_left(stamps, t)
                for name, width in self.windows:
                    lo = bisect_left(stamps, t - width, 0, hi)
                    if lo == hi:
                        continue
                    buy, sell = math.fsum(buys[lo:hi]), math.fsum(sells[lo:hi])
                    total = buy + sell
                    fields = {
                        "buy_notional": buy,
                        "sell_notional": sell,
                        "cvd": buy - sell,
                        "buy_pct": 100 * buy / total if total else None,
                    }
                    points.append(_Point(t, _CVD, {"coin": coin, "window": name}, fields))
        return points


def parse_window(name: str) -> int:
    """Minutes in a window name: `1m`, `15m`, `1h`, `1d`."""
    match = _WINDOW.fullmatch(name)
    if match is None:
        raise ValueError(f"window {name!r} is not a whole number of m, h or d (e.g. 5m, 1h)")
    return int(match[1]) * _WINDOW_MINUTES[match[2]]


def _floor(ns: int) -> int:
    return ns - ns % MINUTE_NS


def _ceil(ns: int) -> int:
    return -(-ns // MINUTE_NS) * MINUTE_NS
