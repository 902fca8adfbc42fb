"""`positions` points between polls: what InfluxDB holds is current within seconds.

Polls write every position they see. Between polls the book moves positions with each trade;
this writes the moved ones from the book, at most one point per position per `min_interval_ms`
(default 5 s: a trader who fills 50 times a second is one point every 5 s, not 250). A flip or
an exit also writes the closing point of the side left (szi 0, as a poll writes it), so the last
point of a series still tells whether the position is open.

Values at the book's latest mark: `size_usd` = |szi| x mark, `unrealized_pnl` = szi x (mark -
entry), the liquidation price from the margin formula. Without a mark yet (no asset-context
poll on this instance) nothing is written: the poll's point stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

from process.points import PointBuilder
from process.positions.book import PositionBook, PositionChange, to_decimal
from process.storage_ports import PointSink
from utils.metrics import Sample

MIN_INTERVAL_MS = 5_000


class Values(NamedTuple):
    szi: Decimal
    size_usd: Decimal
    entry_px: float | None
    liq_px: Decimal | None
    leverage: Decimal | None
    unrealized_pnl: Decimal


class PositionUpdates:
    def __init__(
        self,
        book: PositionBook,
        builder: PointBuilder,
        writer: PointSink,
        *,
        min_interval_ms: int = MIN_INTERVAL_MS,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.book = book
        self.builder = builder
        self.writer = writer
        self.min_interval_ms = min_interval_ms
        self.clock = clock
        self.points = 0
        self._moved: dict[tuple[str, str], str | None] = {}  # -> side written last (None: flat)
        self._written_at: dict[tuple[str, str], int] = {}

    def samples(self) -> list[Sample]:
        return [
            Sample(
                "position_updates_total",
                "counter",
                "positions points written from the book between polls",
                self.points,
            )
        ]

    def changed(self, change: PositionChange) -> None:
        """A trade moved a position (`PositionBook.on_change`); polls write their own points."""
        if change.source != "trade":
            return
        key = (change.address, change.coin)
        if key not in self._moved:
            self._moved[key] = _side(change.szi_before)

    async def __call__(self) -> None:
        """Write the moved positions whose last point is `min_interval_ms` old."""
        now = self.clock()
        lines: list[str] = []
        for key, side_before in list(self._moved.items()):
            if now - self._written_at.get(key, 0) < self.min_interval_ms:
                continue
            written = self._lines(key, side_before, now)
            if written is None:
                continue
            lines += written
            self._written_at[key] = now
            del self._moved[key]
        if lines:
            self.points += len(lines)
            self.writer.write(lines)
        self._forget_old(now)

    def _lines(self, key: tuple[str, str], side_before: str | None, now: int) -> list[str] | None:
        address, coin = key
        account = self.book.accounts.get(address)
        mark = self.book.marks.get(coin)
        if mark is None or account is None:
            return None
        position = account.positions.get(coin)
        side = None if position is None else _side(position.units)
        out: list[str] = []
        if side_before is not None and side_before != side:  # exit or flip: close the old side
            out.append(self.builder.position_now(address, coin, side_before, None, now) or "")
        if position is not None and side is not None:
            szi, entry = position.szi, position.entry_px
            values = Values(
                szi,
                abs(szi) * mark,
                entry,
                self.book.liquidation_prices(account).get(coin),
                None if position.leverage is None else Decimal(position.leverage),
                szi * (mark - to_decimal(entry)) if entry is not None else Decimal(0),
            )
            out.append(self.builder.position_now(address, coin, side, values, now) or "")
        return [line for line in out if line]

    def _forget_old(self, now: int) -> None:
        """Write times older than the interval no longer throttle anything."""
        if len(self._written_at) > 4 * len(self._moved) + 10_000:
            cutoff = now - self.min_interval_ms
            self._written_at = {k: t for k, t in self._written_at.items() if t > cutoff}


def _side(szi: Decimal | int) -> str | None:
    return "long" if szi > 0 else "short" if szi < 0 else None
