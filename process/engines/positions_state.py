"""The latest tracked positions and asset contexts, read back from InfluxDB for the engines.

`address` is a field of `positions`, not a tag, so InfluxQL cannot `GROUP BY` it: the points of
the last `cutoff_ms` (default 20 min) are read, grouped by the `coin`/`side` tags, and reduced
here to the latest point per (address, coin):

- the later poll wins (the millisecond of the point's time: the poll time, see
  `process.points`); within one poll an open point beats a closing one: a flip from long to
  short writes the new short and the closing point of the long in the same millisecond, on two
  series (side tags), usually at the very same nanosecond slot, so time alone cannot order them;
- a latest point with `szi` = 0 is a closed position: the (address, coin) has no position;
- a position whose latest point is older than `now - cutoff` is stale and left out; the window is
  `now_ms - cutoff_ms <= poll time <= now_ms`, both ends inclusive.

Every shard writes its positions to the same database, so reading them back sees every shard's
addresses (an in-memory state fed by one process's positions job would only see its own).
`LatestPositions` keeps the reduced state between runs and reads only what arrived since the
last run (with an overlap for late writes), plus a full rebuild every `full_every_ms` for points
that came back from the writer's spool after a long outage.

Open interest counts every contract once (total longs = total shorts = open interest: the usual
convention, assumed for Hyperliquid's `openInterest`), while the tracked notional sums both
sides, so `tracked_share` compares the tracked notional with `OPEN_INTEREST_SIDES` x open
interest: 1.0 would mean every position is tracked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from db.queries import rfc3339_ns
from db.schema import ASSET_CTX, POSITIONS
from db.timestamps import NS_PER_MS
from process.storage_ports import RowReader
from utils.clock import now_ms

DEFAULT_CUTOFF_MS = 20 * 60_000
DEFAULT_CTX_MAX_AGE_MS = 5 * 60_000
OPEN_INTEREST_SIDES = 2

_POSITIONS_QUERY = (
    f'SELECT "address", "szi", "size_usd", "entry_px", "liq_px" FROM "{POSITIONS.name}" '
    'WHERE time >= $start AND time < $end GROUP BY "coin", "side"'
)
_CTX_QUERY = (
    f'SELECT "funding", "open_interest_usd", "mark_px", "mid_px", "day_ntl_vlm" '
    f'FROM "{ASSET_CTX.name}" WHERE time >= $start AND time < $end '
    'GROUP BY "coin" ORDER BY time DESC LIMIT 1'
)


class PositionRow(NamedTuple):
    """One open position of a tracked address as last polled. `size_usd` is its absolute value
    at the mark of that poll; `liq_px` None when no liquidation price is reachable."""

    address: str
    coin: str
    side: str  # "long" or "short"
    szi: float  # signed size in base units
    size_usd: float
    entry_px: float | None
    liq_px: float | None
    time_ns: int


class CoinContext(NamedTuple):
    """The latest `asset_ctx` of a coin. `mid_px` is the book mid, else the mark price."""

    coin: str
    mid_px: float | None
    open_interest_usd: float | None
    funding: float | None
    day_ntl_vlm: float | None
    time_ns: int


def tracked_share(tracked_usd: float, open_interest_usd: float | None) -> float | None:
    """Tracked notional (both sides) / (`OPEN_INTEREST_SIDES` x open interest); None if unknown."""
    if not open_interest_usd or open_interest_usd <= 0:
        return None
    return tracked_usd / (OPEN_INTEREST_SIDES * open_interest_usd)


def _window(start_ms: int, end_ms: int) -> dict[str, str]:
    """`time >= $start AND time < $end` covering whole milliseconds start_ms..end_ms."""
    return {"start": rfc3339_ns(start_ms * NS_PER_MS), "end": rfc3339_ns((end_ms + 1) * NS_PER_MS)}


class LatestPositions:
    """The latest position per (address, coin), reduced from `positions` points.

    `refresh(reader, now_ms)` reads the points since the previous refresh (minus `overlap_ms`,
    for points written late), or the whole cutoff window on the first call and every
    `full_every_ms`; windows are read in slices of `slice_ms` so one answer stays small. Reading
    a point twice is harmless. Not safe for concurrent refreshes (see `SnapshotSource`).
    """

    def __init__(
        self,
        cutoff_ms: int = DEFAULT_CUTOFF_MS,
        *,
        overlap_ms: int = 60_000,
        full_every_ms: int = 600_000,
        slice_ms: int = 60_000,
    ) -> None:
        if min(cutoff_ms, overlap_ms, full_every_ms, slice_ms) <= 0:
            raise ValueError("cutoff_ms, overlap_ms, full_every_ms and slice_ms must be positive")
        self.cutoff_ms = cutoff_ms
        self.overlap_ms = overlap_ms
        self.full_every_ms = full_every_ms
        self.slice_ms = slice_ms
        self._state: dict[tuple[str, str], PositionRow] = {}  # szi 0: closed
        self._loaded_ms: int | None = None  # `now_ms` of the last successful refresh
        self._full_ms = 0  # `now_ms` of the last full rebuild
        self.rows_read = 0  # rows read by the last refresh

    async def refresh(self, reader: RowReader, now_ms: int) -> dict[str, list[PositionRow]]:
        """Read what is new and return the open, fresh positions by coin."""
        loaded = self._loaded_ms
        full = loaded is None or now_ms < loaded or now_ms - self._full_ms >= self.full_every_ms
        start_ms = now_ms - self.cutoff_ms
        state = {} if full else self._state
        if not full and loaded is not None:
            start_ms = max(start_ms, loaded - self.overlap_ms)
        self.rows_read = 0
        slice_start = start_ms
        while slice_start <= now_ms:
            slice_end = min(slice_start + self.slice_ms, now_ms)
            rows = await reader.rows(_POSITIONS_QUERY, _window(slice_start, slice_end))
            self.rows_read += len(rows)
            reduce_rows(rows, state)
            slice_start = slice_end + 1
        if full:
            self._state = state
            self._full_ms = now_ms
        self._loaded_ms = now_ms
        return self.by_coin(now_ms)

    def by_coin(self, now_ms: int) -> dict[str, list[PositionRow]]:
        """Open positions polled within the cutoff, by coin; older entries are forgotten (an
        older point read again later is stale as well, so nothing can come back)."""
        oldest_ns = (now_ms - self.cutoff_ms) * NS_PER_MS
        out: dict[str, list[PositionRow]] = {}
        expired = []
        for key, row in self._state.items():
            if row.time_ns < oldest_ns:
                expired.append(key)
            elif row.szi != 0:
                rows = out.get(row.coin)
                if rows is None:
                    out[row.coin] = [row]
                else:
                    rows.append(row)
        for key in expired:
            del self._state[key]
        return out


def reduce_rows(
    rows: Iterable[Mapping[str, Any]], state: dict[tuple[str, str], PositionRow]
) -> None:
    """Fold `positions` rows (`time` in ns, `coin`/`side` tags merged in) into `state`.

    The later poll millisecond wins; within one poll an open point wins over a closing one (the
    flip rule); otherwise the row already held stays. Closing points stay in `state` with
    `szi` 0, so an older open point read again cannot bring the position back.
    """
    get = state.get
    for r in rows:
        address = r["address"]
        szi = r["szi"]
        if address is None or szi is None:
            continue
        time_ns = r["time"]
        coin = r["coin"]
        key = (address, coin)
        old = get(key)
        if old is not None:
            old_ms, new_ms = old.time_ns // NS_PER_MS, time_ns // NS_PER_MS
            if old_ms > new_ms or (old_ms == new_ms and (old.szi != 0 or szi == 0)):
                continue
        state[key] = PositionRow(
            address,
            coin,
            r["side"],
            szi,
            r["size_usd"] or 0.0,
            r["entry_px"],
            r["liq_px"],
            time_ns,
        )


async def load_latest_positions(
    reader: RowReader, now_ms: int, cutoff_ms: int = DEFAULT_CUTOFF_MS
) -> dict[str, list[PositionRow]]:
    """Every tracked address's latest open position per coin, polled within `cutoff_ms`."""
    return await LatestPositions(cutoff_ms).refresh(reader, now_ms)


async def load_contexts(
    reader: RowReader, now_ms: int, max_age_ms: int = DEFAULT_CTX_MAX_AGE_MS
) -> dict[str, CoinContext]:
    """The latest `asset_ctx` per coin within `max_age_ms` (one point per coin, server-side)."""
    rows = await reader.rows(_CTX_QUERY, _window(now_ms - max_age_ms, now_ms))
    out: dict[str, CoinContext] = {}
    for r in rows:
        mid = r["mid_px"] if r["mid_px"] is not None else r["mark_px"]
        out[r["coin"]] = CoinContext(
            r["coin"], mid, r["open_interest_usd"], r["funding"], r["day_ntl_vlm"], r["time"]
        )
    return out


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """What the engines compute from: positions and contexts as of `time_ms`."""

    time_ms: int
    positions: dict[str, list[PositionRow]]
    contexts: dict[str, CoinContext]


class SnapshotSource:
    """One load of positions and contexts shared by the engines of a run.

    `get()` returns the snapshot loaded less than `max_age_ms` ago (by `clock`), else loads a new
    one; concurrent callers wait for the same load. `clock` returns Unix ms (injectable).
    """

    def __init__(
        self,
        reader: RowReader,
        *,
        cutoff_ms: int = DEFAULT_CUTOFF_MS,
        ctx_max_age_ms: int = DEFAULT_CTX_MAX_AGE_MS,
        max_age_ms: int = 5_000,
        clock: Callable[[], int] = now_ms,
        positions: LatestPositions | None = None,
    ) -> None:
        self.reader = reader
        self.ctx_max_age_ms = ctx_max_age_ms
        self.max_age_ms = max_age_ms
        self.clock = clock
        self.positions = positions or LatestPositions(cutoff_ms)
        self._snapshot: MarketSnapshot | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> MarketSnapshot:
        async with self._lock:
            now = self.clock()
            cached = self._snapshot
            if cached is not None and 0 <= now - cached.time_ms < self.max_age_ms:
                return cached
            positions = await self.positions.refresh(self.reader, now)
            contexts = await load_contexts(self.reader, now, self.ctx_max_age_ms)
            self._snapshot = MarketSnapshot(now, positions, contexts)
            return self._snapshot
