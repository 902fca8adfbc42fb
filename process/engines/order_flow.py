"""Order flow: 1-minute bars per coin and rolling CVD windows, computed from stored trades.

Every run reads the trades and liquidations of the minutes it rebuilds back from InfluxDB with
one server-side aggregation (`SUM`/`COUNT` of `notional` `GROUP BY time(1m), coin, side`) and
writes `order_flow` bars and `cvd` points. Every value is a pure function of what is stored
(trades, liquidations, `trade_gaps`), so rewriting a point gives the same measurement, tags and
time and overwrites it (idempotent).

order_flow (tag coin), one point per coin per minute, stamped at the minute's start (UTC):
- buy_notional / sell_notional: summed USD notional (px x sz) of the minute's trades by TAKER
  side; buy_count / sell_count: how many (ints); delta = buy_notional - sell_notional;
- long_liq_notional / short_liq_notional: summed notional of the minute's `liquidations` by the
  side of the position liquidated (0 when none);
- incomplete (boolean, on every bar): true when a gap recorded in `trade_gaps` for the coin
  overlaps the minute (below);
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
  buy + sell == 0 (a window holding only liquidations); incomplete (boolean, on every point):
  true when a gap of the coin overlaps [t - W, t).
- "Cumulative" means a rolling-window volume delta: every point stands alone; there is no
  session or daily reset and no running total since some origin. For an ever-growing CVD line,
  sum the bars in the dashboard: `SELECT CUMULATIVE_SUM(SUM("delta")) FROM "order_flow"
  WHERE "coin" = 'BTC' AND $timeFilter GROUP BY time(1m)`.
- A point exists when at least one of its bars exists (the coin traded, or had a liquidation,
  in the window); a window without any bar has no point.

Gaps. A `trade_gaps` point (tag coin; ints after_ms, before_ms; stamped at after_ms) says the
coin's trades with after_ms < time <= before_ms may be missing. A bar whose minute, or a CVD
point whose window, shares a millisecond with such a stretch says `incomplete` = true; all
others say false. The sums still cover only the trades stored (not rescaled or reset), and the
first window past the gap is complete again. InfluxDB 1.x merges the fields of a rewritten
point, so the flag is written on every point, false included: a rebuilt point never keeps a
stale flag. Each rebuild of older minutes reads `trade_gaps` back (a restart gets the flags
right); gaps noted with `note_gap` count at once. An outage that recorded no gap is not flagged.

Runs and late data. Every run rewrites the live bar (the current minute, as of now). The first
run in each minute also recomputes the bars from the minute `recompute_minutes` (R, default 10)
before the current one, and the CVD points at the R minute boundaries up to the current one (a
safety net for trades written without a note). Trades stored for a minute the engine no longer
reads as live (late WebSocket frames, a REST backfill of a gap, a spool replay, also one left
by a previous run) are rebuilt, whatever their age, with every CVD point whose window holds
them, by the first run after they can be read:
- `note_trades(first_ms, last_ms, mark)` for every batch handed to the writer, `mark` being
  `writer.accepted_lines` after the write. A batch of the live minute costs two comparisons;
  one of older minutes (or the live minutes of runs since) is rebuilt once `landed()` (e.g.
  `writer.landed_through`) >= mark. Likewise, when a run finds the minute over, what was noted
  for it until then is rebuilt once landed up to the highest mark, if it had not yet.
- `note_replayed(lines)` (`writer.on_replayed`; `ReplayNotes` keeps them until the engine
  exists): the minutes of the replayed `trades` and `liquidations` lines, and those the replayed
  `trade_gaps` lines overlap, are rebuilt by the next run.
- `note_gap(coin, after_ms, before_ms, mark)`: the minutes the gap overlaps are rebuilt (with
  their flags) once landed() >= mark.
Without `landed`, noted minutes wait while `backlog()` is true (else the next run takes them).
A failed run (InfluxDB down) leaves what it meant to rebuild for the first run after everything
accepted until then has landed. A run rebuilds at most `max_catchup_minutes` of noted minutes,
oldest first (the rest waits for the next runs); `settle()` rebuilds them all: call it once at
shutdown, after the writer was flushed. `recompute(start_ms, end_ms)` rewrites any range.

Exactness (measured on influxd 1.6.7): `SUM` adds a series' values left to right in ascending
time order, then adds the per-series results of a group (liquidations: backstop + market, two
values, so the order does not matter); the result is deterministic. CVD windows add the bars
with `math.fsum` (the correctly rounded sum, independent of order).

Cost: one query per run, grouped by coin and side (not one per coin). Within a minute a run
reads only the live minute; the first run of a minute reads R + 1 minutes (R + 60 after a start:
the bars the windows need are kept in memory); a noted stretch adds one query for its minutes
(and for the hour before and after it when that is not in memory), and `trade_gaps` is read
back once for each rebuild beyond the live minute. Only points whose values changed since they
were last written are written again. Run the job every 10 s (the live bar lags at most that).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from db.queries import rfc3339_ns
from db.schema import CVD, CVD_WINDOWS, LIQUIDATIONS, ORDER_FLOW, TRADE_GAPS, TRADES
from db.timestamps import NS_PER_MS
from process.engines.order_flow_parts import (
    INCOMPLETE,
    MINUTE_MS,
    MINUTE_NS,
    Bar,
    Emit,
    Minutes,
    Point,
    Range,
    ceil,
    clip,
    floor,
    groups,
    merge,
    ms_to_minutes,
    overlaps,
    replayed_minutes,
    take,
)
from process.storage_ports import PointSink, RowReader

__all__ = [
    "DEFAULT_WINDOWS",
    "READ_CHUNK_MINUTES",
    "Bar",
    "OrderFlowEngine",
    "ReplayNotes",
    "parse_window",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOWS = CVD_WINDOWS
READ_CHUNK_MINUTES = 120
"""Longest stretch one query aggregates (bounds the answer and the memory of a recompute)."""

_ORDER_FLOW = ORDER_FLOW.name
_CVD = CVD.name
_WINDOW = re.compile(r"([1-9][0-9]*)([mhd])")
_WINDOW_MINUTES = {"m": 1, "h": 60, "d": 1440}
# One statement for both measurements: their `side` values (buy/sell vs long/short) tell them
# apart; `fill(none)` leaves out empty minutes.
_QUERY = (
    'SELECT SUM("notional") AS "notional", COUNT("notional") AS "count" '
    f'FROM "{TRADES.name}", "{LIQUIDATIONS.name}" WHERE time >= $start AND time < $end '
    'GROUP BY time(1m), "coin", "side" fill(none)'
)
# Every gap that may reach into [since, ...): stamped at after_ms, so only before_ms bounds it.
_GAPS = (
    f'SELECT "after_ms", "before_ms" FROM "{TRADE_GAPS.name}" WHERE "before_ms" >= $since '
    'GROUP BY "coin"'
)


class OrderFlowEngine:
    """The periodic order-flow job (`await engine()`), `settle()`, `recompute(start_ms, end_ms)`
    and the notes of late data (`note_trades`, `note_replayed`, `note_gap`).

    `clock` returns Unix time in ms (default: this machine's clock). `landed` returns the
    writer's landed mark (`lambda: writer.landed_through`): noted minutes wait until it reaches
    their mark. Without it, `backlog` (True while accepted points may not have reached InfluxDB,
    e.g. `lambda: writer.spool.points > 0`) holds them instead; with neither they are rebuilt
    by the next run. See the module docstring.
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
        landed: Callable[[], int] | None = None,
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
        self._landed = landed
        self._lock = asyncio.Lock()
        self._minutes: Minutes | None = None  # bars kept between periodic runs
        self._last: dict[tuple[int, str, tuple[str, ...]], dict[str, Any]] = {}
        self._full_at: int | None = None  # minute of the last run that redid the whole window
        # Late data. Minutes from the horizon on are read by the next run anyway; older ones
        # are noted: `_pending` (start_ms, end_ms, mark) until landed, then `_dirty` (ns).
        now_ms = self._clock()
        self._horizon_ms = now_ms - now_ms % MINUTE_MS - recompute_minutes * MINUTE_MS
        self._marked = 0  # highest mark noted
        self._pending: list[tuple[int, int, int]] = []
        self._dirty: list[Range] = []
        # Gaps: every gap reaching into [_gaps_from, ...) as last read, plus those noted.
        self._gaps: dict[str, set[Range]] = {}
        self._noted_gaps: dict[str, set[Range]] = {}
        self._gaps_from: int | None = None  # ms
        self.runs = 0
        self.queries = 0  # order-flow reads (trades and liquidations)
        self.gap_queries = 0  # trade_gaps reads
        self.points_written = 0

    # -- notes (cheap, synchronous; call them from the event loop's thread) ---------------------

    def note_trades(self, first_ms: int, last_ms: int, mark: int) -> None:
        """A batch of trades (or liquidations) with exchange times in [first_ms, last_ms] was
        handed to the writer; `mark` = `writer.accepted_lines` after the write. Minutes the
        engine no longer reads as live are rebuilt by the first run once `landed() >= mark`."""
        if mark > self._marked:
            self._marked = mark
        if first_ms < self._horizon_ms:
            self._pending.append((first_ms, min(last_ms + 1, self._horizon_ms), mark))

    def note_replayed(self, lines: Iterable[str]) -> None:
        """A spooled segment reached InfluxDB (`writer.on_replayed`): the minutes of its
        `trades` and `liquidations` lines, and those its `trade_gaps` lines overlap, are
        rebuilt by the next run."""
        self.rebuild(replayed_minutes(lines))

    def rebuild(self, ranges: Iterable[Range]) -> None:
        """These ranges of minutes (already in InfluxDB) are rebuilt by the next run."""
        self._dirty += ranges

    def note_gap(self, coin: str, after_ms: int, before_ms: int, mark: int = 0) -> None:
        """A `trade_gaps` point was written (`mark` = `writer.accepted_lines` after it): the
        minutes it overlaps are flagged incomplete and rebuilt once `landed() >= mark`."""
        if before_ms <= after_ms:
            return
        self._noted_gaps.setdefault(coin, set()).add((after_ms, before_ms))
        self._gaps.setdefault(coin, set()).add((after_ms, before_ms))
        self._pending.append((after_ms + 1, before_ms + 1, mark))

    @property
    def waiting(self) -> int:
        """Noted stretches that wait for their mark to land."""
        return len(self._pending)

    # -- runs ----------------------------------------------------------------------------------

    async def __call__(self) -> None:
        """The live bar, the noted minutes whose data landed (at most `max_catchup_minutes`
        of them per run), and in the first run of each minute the trailing window; with the CVD
        points over them. Writes only points that changed."""
        await self._run(self._max_catchup)

    async def settle(self) -> None:
        """A run that rebuilds every noted minute whose data landed, however many: call it
        after the writer was flushed (at shutdown) so every bar is exact."""
        await self._run(None)

    async def _run(self, budget: int | None) -> None:
        async with self._lock:
            now = self._clock() * NS_PER_MS
            current = floor(now)
            current_ms = current // NS_PER_MS
            # The minutes read as live until now are final from here on: any of their trades
            # not landed yet (up to the highest mark) is rebuilt once it has.
            if self._horizon_ms < current_ms:
                self._pending.append((self._horizon_ms, current_ms, self._marked))
                self._horizon_ms = current_ms
            landed = self._landed() if self._landed is not None else None
            held = landed is None and self._backlog is not None and self._backlog()
            ready = [e for e in self._pending if _ready(e[2], landed, held)]
            if ready:
                self._pending = [e for e in self._pending if not _ready(e[2], landed, held)]
            start = current if self._full_at == current else current - self._recompute
            noted = merge([*self._dirty, *(ms_to_minutes(a, b) for a, b, _ in ready)])
            now_dirty, self._dirty = take(clip(noted, start), budget)
            ranges = merge([*now_dirty, (start, now)])
            last = self._last

            def emit(points: list[Point]) -> None:
                changed = [p for p in points if last.get(p.key) != p.fields]
                if changed:
                    self.writer.write([p.line() for p in changed])
                    self.points_written += len(changed)
                    last.update((p.key, p.fields) for p in changed)

            minutes, self._minutes = self._minutes or Minutes(), None
            keep = current - self._recompute - self._longest
            try:
                await self._sync(minutes, ranges, now, emit, keep)
            except BaseException:  # rebuilt once what was accepted until now has landed
                self._pending += [(a // NS_PER_MS, b // NS_PER_MS, self._marked) for a, b in ranges]
                raise
            minutes.prune(keep)
            self._minutes = minutes
            self._last = {
                k: fields for k, fields in last.items() if k[0] >= current - self._recompute
            }
            self._prune_gaps(keep // NS_PER_MS)
            if start <= current - self._recompute:
                self._full_at = current
            self.runs += 1

    async def recompute(self, start_ms: int, end_ms: int) -> int:
        """Rewrite the bars of every minute overlapping [start_ms, end_ms) (up to now) and every
        CVD point whose window holds one of them; returns the number of points written."""
        async with self._lock:
            now = self._clock() * NS_PER_MS
            start = floor(start_ms * NS_PER_MS)
            end = min(ceil(end_ms * NS_PER_MS), now)
            if start >= end:
                return 0
            self._minutes, self._last, self._full_at = None, {}, None
            written = 0

            def emit(points: list[Point]) -> None:
                nonlocal written
                if points:
                    self.writer.write([p.line() for p in points])
                    written += len(points)

            await self._sync(Minutes(), [(start, end)], now, emit, now)
            self.points_written += written
            log.info(
                "order flow recomputed from %s to %s: %d points",
                rfc3339_ns(start),
                rfc3339_ns(end),
                written,
            )
            return written

    async def _sync(
        self, minutes: Minutes, ranges: list[Range], now: int, emit: Emit, keep: int
    ) -> None:
        """Bars of `ranges` (sorted, disjoint, minute-aligned but for an end at `now`: the live
        bar) and every CVD point whose window holds one of them, reading chunk by chunk what
        `minutes` does not hold complete; minutes from `keep` on stay in `minutes`."""
        current = floor(now)
        for group in groups(ranges, self._longest, current):
            lo_ms = group.lo // NS_PER_MS
            live_only = not group.spans and group.ranges[0][0] >= current
            if not live_only or self._gaps_from is None or lo_ms < self._gaps_from:
                await self._read_gaps(lo_ms)
            next_t = group.spans[0][0] if group.spans else 0
            chunk_start = group.lo
            while chunk_start < group.hi:
                chunk_end = min(chunk_start + READ_CHUNK_MINUTES * MINUTE_NS, group.hi)
                for a, b in minutes.to_read(group.ranges, chunk_start, chunk_end):
                    minutes.replace(a, b, await self._read(a, b))
                emit(
                    [
                        point
                        for a, b in clip(group.ranges, chunk_end)
                        if b > chunk_start
                        for point in self._bar_points(minutes, max(a, chunk_start), b)
                    ]
                )
                top = min(floor(chunk_end), current) + MINUTE_NS
                cvd: list[Point] = []
                for t1, t2 in group.spans:
                    if max(t1, next_t) < min(t2, top):
                        cvd += self._cvd_points(minutes, max(t1, next_t), min(t2, top))
                next_t = max(next_t, top)
                emit(cvd)
                minutes.prune(min(floor(chunk_end) - self._longest, keep))
                chunk_start = chunk_end

    async def _read(self, start: int, end: int) -> list[dict[str, Any]]:
        self.queries += 1
        params = {"start": rfc3339_ns(start), "end": rfc3339_ns(end)}
        return await self.reader.rows(_QUERY, params)

    async def _read_gaps(self, since_ms: int) -> None:
        self.gap_queries += 1
        rows = await self.reader.rows(_GAPS, {"since": since_ms})
        gaps: dict[str, set[Range]] = {}
        for row in rows:
            after, before = row.get("after_ms"), row.get("before_ms")
            if row.get("coin") and isinstance(after, int) and isinstance(before, int):
                gaps.setdefault(row["coin"], set()).add((after, before))
        for coin, noted in self._noted_gaps.items():
            gaps.setdefault(coin, set()).update(noted)
        self._gaps, self._gaps_from = gaps, since_ms

    def _prune_gaps(self, before_ms: int) -> None:
        for gaps in (self._gaps, self._noted_gaps):
            for coin in list(gaps):
                gaps[coin] = {g for g in gaps[coin] if g[1] >= before_ms}
                if not gaps[coin]:
                    del gaps[coin]
        if self._gaps_from is not None:
            self._gaps_from = max(self._gaps_from, before_ms)

    def _bar_points(self, minutes: Minutes, start: int, end: int) -> list[Point]:
        gaps = self._gaps
        return [
            Point(
                minute,
                _ORDER_FLOW,
                {"coin": coin},
                bar.fields(coin in gaps and overlaps(gaps[coin], minute, minute + MINUTE_NS)),
            )
            for minute in range(start, end, MINUTE_NS)
            for coin, bar in minutes.bars.get(minute, {}).items()
        ]

    def _cvd_points(self, minutes: Minutes, first_t: int, end_t: int) -> list[Point]:
        """CVD points at the minute boundaries t in [first_t, end_t)."""
        points: list[Point] = []
        for coin, (stamps, buys, sells) in minutes.by_coin().items():
            gaps = self._gaps.get(coin)
            for t in range(first_t, end_t, MINUTE_NS):
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
                        INCOMPLETE: gaps is not None and overlaps(gaps, t - width, t),
                    }
                    points.append(Point(t, _CVD, {"coin": coin, "window": name}, fields))
        return points


class ReplayNotes:
    """`writer.on_replayed` from before the engine exists (the storage opens first, and replays
    what an earlier run left in the spool at once): keeps the replayed minutes, merged, and hands
    them to the engine given to `attach`, which gets every later segment directly."""

    def __init__(self) -> None:
        self.minutes: list[Range] = []
        self.engine: OrderFlowEngine | None = None

    def __call__(self, lines: list[str]) -> None:
        if self.engine is not None:
            self.engine.note_replayed(lines)
        else:
            self.minutes = merge([*self.minutes, *replayed_minutes(lines)])

    def attach(self, engine: OrderFlowEngine) -> None:
        engine.rebuild(self.minutes)
        self.minutes, self.engine = [], engine


def _ready(mark: int, landed: int | None, held: bool) -> bool:
    return landed >= mark if landed is not None else not held


def parse_window(name: str) -> int:
    """Minutes in a window name: `1m`, `15m`, `1h`, `1d`."""
    match = _WINDOW.fullmatch(name)
    if match is None:
        raise ValueError(f"window {name!r} is not a whole number of m, h or d (e.g. 5m, 1h)")
    return int(match[1]) * _WINDOW_MINUTES[match[2]]
