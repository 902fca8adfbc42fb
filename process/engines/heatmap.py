"""The liquidation heatmap: USD that would be liquidated at each absolute price level, from the
position book's current liquidation prices.

Once a minute (`store_every_ms`; the job runs every engine interval and waits for it) the
picture is computed in memory, per coin with a mark, from every open position the book holds
(`min_size_usd` and up at the mark): the position's liquidation price (the margin formula at the
latest marks, `PositionBook.liquidation_prices`) falls in one level of the coin's grid
(`price_levels`); the level adds `|szi| x liquidation price` (the notional liquidated there,
which does not move with the mark) to its long or short side, one to the count, and the same
USD to `*_exact_usd` when the book holds the position exactly (polled, moved only by trades seen
since). Only levels within `range_pct` of the mark are kept.

Storage (`liq_levels`), right after: only the levels whose picture changed visibly since they
were last written, a USD figure moved by more than `change_pct` (10 %) of itself and by more
than `visible_pct` (10 %) of the coin's largest level (one step of a ten-colour scale); a
level that emptied is written once with zeros, then no more. Every `keyframe_every_ms` (60 min)
every non-empty level is written again with its exact figures, so a reader that looks back that
far finds every level's value (`fill(previous)` draws the rest). Recomputing once a minute
rather than every engine run keeps the cost small: the liquidation prices of an account with
several cross positions depend on every mark, so they are computed again after every mark
update (`PositionBook.liquidation_prices`). `liq_coverage` says per coin and minute
what the picture covers; `liq_grid` records each grid chosen or re-anchored, after which the old
grid's levels are written empty.

After a restart the grids and the last written levels are read back (`restore`), so the grid
does not move and unchanged levels are not written again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from db.schema import LIQ_COVERAGE, LIQ_GRID, LIQ_LEVELS, LIQ_LEVELS_KEYFRAME_MINUTES
from db.timestamps import NS_PER_MS
from process.engines.positions_state import tracked_share
from process.engines.price_levels import LevelGrid
from process.positions.book import Account, PositionBook
from process.storage_ports import PointSink, RowReader

log = logging.getLogger(__name__)

TURN_SECONDS = 0.01
"""The longest the heatmap keeps the event loop at once (trades wait meanwhile)."""
COMPUTE_CHUNK = 25
"""Accounts counted between two looks at the clock (an account with many cross positions costs
up to a millisecond)."""

_GRIDS_QUERY = (
    f'SELECT last("step") AS "step", last("anchor_px") AS "anchor_px" FROM "{LIQ_GRID.name}" '
    'GROUP BY "coin"'
)
_LEVELS_QUERY = (
    'SELECT last("long_liq_usd") AS "long_liq_usd", last("short_liq_usd") AS "short_liq_usd", '
    'last("long_count") AS "long_count", last("short_count") AS "short_count", '
    'last("long_exact_usd") AS "long_exact_usd", last("short_exact_usd") AS "short_exact_usd" '
    f'FROM "{LIQ_LEVELS.name}" WHERE time >= $start GROUP BY "coin", "level"'
)


@dataclass(frozen=True, slots=True)
class HeatmapParams:
    range_pct: float = 0.15
    min_size_usd: float = 1_000.0
    store_every_ms: int = 60_000
    keyframe_every_ms: int = LIQ_LEVELS_KEYFRAME_MINUTES * 60_000
    change_pct: float = 0.1
    visible_pct: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.range_pct < 1.0:
            raise ValueError(f"range_pct must be in (0, 1), got {self.range_pct}")
        if self.min_size_usd < 0:
            raise ValueError(f"min_size_usd must be >= 0, got {self.min_size_usd}")


@dataclass(slots=True)
class Level:
    """One level's totals: USD at the liquidation price and counts, per side."""

    long_usd: float = 0.0
    short_usd: float = 0.0
    long_count: int = 0
    short_count: int = 0
    long_exact_usd: float = 0.0
    short_exact_usd: float = 0.0

    def add(self, szi: float, usd: float, exact: bool) -> None:
        if szi > 0:
            self.long_usd += usd
            self.long_count += 1
            if exact:
                self.long_exact_usd += usd
        else:
            self.short_usd += usd
            self.short_count += 1
            if exact:
                self.short_exact_usd += usd

    def differs(self, other: Level, change_pct: float, visible_usd: float) -> bool:
        """Whether `other` (the last written) no longer shows this level: a USD figure moved
        by more than `change_pct` of itself and more than `visible_usd`."""
        pairs = (
            (self.long_usd, other.long_usd),
            (self.short_usd, other.short_usd),
            (self.long_exact_usd, other.long_exact_usd),
            (self.short_exact_usd, other.short_exact_usd),
        )
        return any(
            abs(a - b) > max(change_pct * max(abs(a), abs(b)), visible_usd) for a, b in pairs
        )

    @property
    def usd(self) -> float:
        return self.long_usd + self.short_usd

    @property
    def empty(self) -> bool:
        return self.long_count == 0 and self.short_count == 0


@dataclass(slots=True)
class CoinPicture:
    """One coin's heatmap now."""

    coin: str
    mark: float
    grid: LevelGrid
    levels: dict[int, Level] = field(default_factory=dict)
    tracked_usd: float = 0.0  # |szi| x mark of every open position of the coin in the book
    exact_usd: float = 0.0

    @property
    def long_usd(self) -> float:
        return sum(level.long_usd for level in self.levels.values())

    @property
    def short_usd(self) -> float:
        return sum(level.short_usd for level in self.levels.values())


def compute(
    book: PositionBook, grids: Mapping[str, LevelGrid], params: HeatmapParams
) -> dict[str, CoinPicture]:
    """Every coin's picture from the book's positions, on the given grids (a coin without a
    grid or a mark is left out)."""
    pictures = empty_pictures(book, grids)
    add_accounts(book, book.accounts.values(), pictures, params)
    return pictures


def empty_pictures(book: PositionBook, grids: Mapping[str, LevelGrid]) -> dict[str, CoinPicture]:
    """A picture per coin with a grid and a mark, no level yet."""
    pictures: dict[str, CoinPicture] = {}
    for coin, grid in grids.items():
        mark = book.marks.get(coin)
        if mark is not None and mark > 0:
            pictures[coin] = CoinPicture(coin, float(mark), grid)
    return pictures


def add_accounts(
    book: PositionBook,
    accounts: Iterable[Account],
    pictures: Mapping[str, CoinPicture],
    params: HeatmapParams,
) -> None:
    """Count the positions of `accounts` in `pictures`."""
    min_size, range_pct = params.min_size_usd, params.range_pct
    for account in accounts:
        positions = account.positions
        if not positions:
            continue
        liquidation_prices: dict[str, Decimal | None] | None = None
        for coin, position in positions.items():
            picture = pictures.get(coin)
            if picture is None:
                continue
            mark = picture.mark
            szi = position.szi_float
            size = abs(szi)
            notional = size * mark
            exact = account.exact(coin)
            picture.tracked_usd += notional
            if exact:
                picture.exact_usd += notional
            if notional < min_size:
                continue
            if liquidation_prices is None:
                liquidation_prices = book.liquidation_prices(account)
            liq = liquidation_prices.get(coin)
            if liq is None:
                continue
            liq_px = float(liq)
            if not mark * (1 - range_pct) <= liq_px <= mark * (1 + range_pct):
                continue
            index = picture.grid.level(liq_px)
            level = picture.levels.get(index)
            if level is None:
                level = picture.levels[index] = Level()
            level.add(szi, size * liq_px, exact)


class LiquidationHeatmap:
    """Job: every run the heatmap in memory (`latest`), stored as the module docstring says."""

    def __init__(
        self,
        book: PositionBook,
        writer: PointSink,
        *,
        open_interest: Callable[[], Mapping[str, float]] = dict,
        reader: RowReader | None = None,
        params: HeatmapParams | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // NS_PER_MS,
        exclude: Callable[[str], bool] | None = None,
    ) -> None:
        """`exclude(address)`: accounts left out (e.g. those profiled as bots)."""
        self.book = book
        self.exclude = exclude
        self.writer = writer
        self.open_interest = open_interest
        self.reader = reader
        self.params = params or HeatmapParams()
        self.clock = clock
        self.grids: dict[str, LevelGrid] = {}
        self.latest: dict[str, CoinPicture] = {}
        self.latest_ms: int | None = None  # when `latest` was computed
        self.points = 0  # written since start, all three measurements
        self._written: dict[tuple[str, int], Level] = {}  # the last written non-empty levels
        self._pending: list[str] = []  # grid changes and emptied grids, written at the next store
        self._stored_ms: int | None = None
        self._keyframe_ms: int | None = None
        self._restored = reader is None

    async def __call__(self) -> None:
        now = self.clock()
        if not self._restored:
            await self.restore(now)
        self._update_grids(now)
        if self._stored_ms is None or now - self._stored_ms >= self.params.store_every_ms:
            turns = _Turns()
            self.latest, self.latest_ms = await self._compute(turns), now
            await self.store(now, turns)

    async def _compute(self, turns: _Turns) -> dict[str, CoinPicture]:
        """`compute`, giving the event loop its turn every `TURN_SECONDS` (trades keep moving
        the book meanwhile: the picture spans that second or so)."""
        pictures = empty_pictures(self.book, self.grids)
        exclude = self.exclude
        if exclude is None:
            accounts = list(self.book.accounts.values())
        else:
            accounts = [a for address, a in self.book.accounts.items() if not exclude(address)]
        for start in range(0, len(accounts), COMPUTE_CHUNK):
            add_accounts(self.book, accounts[start : start + COMPUTE_CHUNK], pictures, self.params)
            await turns.take()
        return pictures

    async def restore(self, now_ms: int) -> None:
        """The grids and the last written levels from InfluxDB (once; a failure is logged and
        the engine starts afresh: a keyframe writes every level again)."""
        assert self.reader is not None
        self._restored = True
        look_back = self.params.keyframe_every_ms + 2 * self.params.store_every_ms
        start = (now_ms - look_back) * NS_PER_MS
        try:
            grids = await self.reader.rows(_GRIDS_QUERY)
            levels = await self.reader.rows(_LEVELS_QUERY, {"start": start})
        except Exception as exc:
            log.warning("heatmap: previous grids not read (%s); choosing them again", exc)
            return
        for row in grids:
            if row.get("step") and row.get("anchor_px"):
                step = Decimal(repr(float(row["step"]))).normalize()
                self.grids[row["coin"]] = LevelGrid(step, float(row["anchor_px"]))
        for row in levels:
            grid = self.grids.get(row["coin"])
            if grid is None:
                continue
            level = Level(
                float(row.get("long_liq_usd") or 0.0),
                float(row.get("short_liq_usd") or 0.0),
                int(row.get("long_count") or 0),
                int(row.get("short_count") or 0),
                float(row.get("long_exact_usd") or 0.0),
                float(row.get("short_exact_usd") or 0.0),
            )
            if not level.empty:
                self._written[(row["coin"], grid.level(float(row["level"])))] = level
        self._keyframe_ms = now_ms  # what was restored is at most a keyframe interval old

    def _update_grids(self, now_ms: int) -> None:
        for coin, mark in self.book.marks.items():
            if mark <= 0:
                continue
            price = float(mark)
            grid = self.grids.get(coin)
            if grid is not None and grid.keeps(price):
                continue
            new = LevelGrid.around(price)
            self.grids[coin] = new
            fields: dict[str, Any] = {
                "step": float(new.step),
                "anchor_px": price,
                "reason": "start" if grid is None else "moved",
            }
            if grid is not None:
                fields["previous_step"] = float(grid.step)
                self._empty_levels_of(coin, grid, now_ms)
            self._pending.append(LIQ_GRID.line({"coin": coin}, fields, now_ms * NS_PER_MS))

    def _empty_levels_of(self, coin: str, grid: LevelGrid, now_ms: int) -> None:
        """The old grid's written levels end with a zero point."""
        for key in [key for key in self._written if key[0] == coin]:
            del self._written[key]
            self._pending.append(_level_line(coin, grid, key[1], Level(), now_ms))

    async def store(self, now_ms: int, turns: _Turns) -> None:
        """Write what changed since the last store (every level at a keyframe)."""
        params = self.params
        keyframe = self._keyframe_ms is None or now_ms - self._keyframe_ms >= (
            params.keyframe_every_ms
        )
        lines, self._pending = self._pending, []
        written = self._written
        seen: set[tuple[str, int]] = set()
        interest = self.open_interest()
        for coin, picture in self.latest.items():
            grid = picture.grid
            visible = params.visible_pct * max(
                (lv.usd for lv in picture.levels.values()), default=0
            )
            for index, level in picture.levels.items():
                key = (coin, index)
                last = written.get(key)
                if keyframe or level.differs(last or _EMPTY, params.change_pct, visible):
                    lines.append(_level_line(coin, grid, index, level, now_ms))
                    written[key] = level
                if key in written:
                    seen.add(key)
            lines.append(_coverage_line(picture, interest.get(coin), now_ms))
            await turns.take()
        for key in [key for key in written if key not in seen]:  # emptied since last written
            del written[key]
            grid = self.grids.get(key[0])
            if grid is not None:
                lines.append(_level_line(key[0], grid, key[1], Level(), now_ms))
        if keyframe:
            self._keyframe_ms = now_ms
        if written:  # until the first levels (positions and marks known), try every run
            self._stored_ms = now_ms
        if lines:
            self.points += len(lines)
            self.writer.write(lines)


_EMPTY = Level()


class _Turns:
    """Hands the event loop a turn once `TURN_SECONDS` have passed since the last one."""

    def __init__(self) -> None:
        self.since = time.perf_counter()

    async def take(self) -> None:
        if time.perf_counter() - self.since >= TURN_SECONDS:
            await asyncio.sleep(0)
            self.since = time.perf_counter()


def _level_line(coin: str, grid: LevelGrid, index: int, level: Level, now_ms: int) -> str:
    fields = {
        "price": grid.price(index),
        "long_liq_usd": level.long_usd,
        "short_liq_usd": level.short_usd,
        "long_count": level.long_count,
        "short_count": level.short_count,
        "long_exact_usd": level.long_exact_usd,
        "short_exact_usd": level.short_exact_usd,
    }
    tags = {"coin": coin, "level": grid.label(index)}
    return LIQ_LEVELS.line(tags, fields, now_ms * NS_PER_MS)


def _coverage_line(picture: CoinPicture, open_interest_usd: float | None, now_ms: int) -> str:
    tracked = picture.tracked_usd
    fields = {
        "mark_px": picture.mark,
        "step": float(picture.grid.step),
        "levels": len(picture.levels),
        "long_liq_usd": picture.long_usd,
        "short_liq_usd": picture.short_usd,
        "tracked_usd": tracked,
        "exact_usd": picture.exact_usd,
        "open_interest_usd": open_interest_usd,
        "tracked_share": tracked_share(tracked, open_interest_usd),
        "exact_share": picture.exact_usd / tracked if tracked > 0 else None,
    }
    return LIQ_COVERAGE.line({"coin": picture.coin}, fields, now_ms * NS_PER_MS)
