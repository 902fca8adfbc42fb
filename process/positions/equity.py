"""`account_equity`: each tracked account's value over time, from its polls and, between them,
from the position book.

A poll writes what the exchange served (`source=poll`): `marginSummary.accountValue`, the sum of
the positions' `unrealizedPnl`, `totalMarginUsed`, `totalNtlPos` and `withdrawable`. Between
polls an account that traded is written from the book (`source=book`) at most once per
`min_interval_ms` (5 min by default: a busy trader's equity moves with every fill, and one point
a minute per account would outgrow the trades themselves): cash plus every position at the
latest mark, as `accountValue` is made (cross raw USD + each szi x mark + each isolated
position's raw USD), the unrealized PnL against the book's entry prices and the notional; the
margin used and the withdrawable amount are left out (the book does not track them).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import NamedTuple

from db.line_protocol import encode_point
from db.schema import ACCOUNT_EQUITY
from db.timestamps import TimestampAllocator
from process.positions.book import Account, PositionBook, PositionChange, to_decimal
from process.storage_ports import PointSink
from utils.metrics import Sample
from validate import ClearinghouseState

MIN_INTERVAL_MS = 300_000
_NAME = ACCOUNT_EQUITY.name


class Equity(NamedTuple):
    account_value: Decimal
    unrealized_pnl: Decimal
    total_ntl_pos: Decimal
    margin_used: Decimal | None = None
    withdrawable: Decimal | None = None


def served_equity(state: ClearinghouseState) -> Equity:
    summary = state.margin_summary
    return Equity(
        summary.account_value,
        sum((p.unrealized_pnl for p in state.positions), Decimal(0)),
        summary.total_ntl_pos,
        summary.total_margin_used,
        state.withdrawable,
    )


def book_equity(account: Account, marks: Mapping[str, Decimal]) -> Equity | None:
    """The account at `marks`; None while a position's coin has no mark. (In Decimal, as the
    served figures: the book's float cash and prices are taken at their shortest decimal.)"""
    value = to_decimal(account.cross_raw_usd)
    pnl = notional = Decimal(0)
    for coin, position in account.positions.items():
        mark = marks.get(coin)
        if mark is None:
            return None
        szi = position.szi
        value += szi * mark
        if position.leverage_type == "isolated" and position.raw_usd is not None:
            value += to_decimal(position.raw_usd)
        if position.entry_px is not None:
            pnl += szi * (mark - to_decimal(position.entry_px))
        notional += abs(szi) * mark
    return Equity(value, pnl, notional)


def equity_line(
    allocator: TimestampAllocator, address: str, equity: Equity, source: str, time_ms: int
) -> str:
    """One `account_equity` point (its nanosecond slot from the process's allocator)."""
    fields: dict[str, object] = {
        "address": address,
        "account_value": float(equity.account_value),
        "unrealized_pnl": float(equity.unrealized_pnl),
        "total_ntl_pos": float(equity.total_ntl_pos),
    }
    if equity.margin_used is not None:
        fields["margin_used"] = float(equity.margin_used)
    if equity.withdrawable is not None:
        fields["withdrawable"] = float(equity.withdrawable)
    time_ns = allocator.allocate((_NAME, source), time_ms, address)
    return encode_point(_NAME, {"source": source}, fields, time_ns)


class EquityUpdates:
    """Job: `source=book` points of the accounts that traded, at most one per account per
    `min_interval_ms`; `changed` is fed every position change (`PositionBook.on_change`)."""

    def __init__(
        self,
        book: PositionBook,
        writer: PointSink,
        allocator: TimestampAllocator,
        *,
        min_interval_ms: int = MIN_INTERVAL_MS,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.book = book
        self.writer = writer
        self.allocator = allocator
        self.min_interval_ms = min_interval_ms
        self.clock = clock
        self.points = 0
        self.values: dict[str, float] = {}  # address -> its latest account value, either source
        self._moved: set[str] = set()
        self._written_at: dict[str, int] = {}

    def changed(self, change: PositionChange) -> None:
        if change.source == "trade":
            self._moved.add(change.address)

    def polled(self, address: str, time_ms: int, account_value: float) -> None:
        """A poll wrote the account's served equity: the next book point waits an interval."""
        self._written_at[address] = time_ms
        self.values[address] = account_value
        self._moved.discard(address)

    def forget(self, address: str) -> None:
        self.values.pop(address, None)
        self._written_at.pop(address, None)
        self._moved.discard(address)

    def largest(self, n: int) -> list[str]:
        """The `n` accounts of the largest value (wallet profiles go to them first)."""
        return heapq.nlargest(n, self.values, key=self.values.__getitem__)

    async def __call__(self) -> None:
        now = self.clock()
        lines: list[str] = []
        marks = self.book.marks
        for address in list(self._moved):
            if now - self._written_at.get(address, 0) < self.min_interval_ms:
                continue
            self._moved.discard(address)
            account = self.book.accounts.get(address)
            equity = None if account is None else book_equity(account, marks)
            if equity is None:
                continue
            lines.append(equity_line(self.allocator, address, equity, "book", now))
            self._written_at[address] = now
            self.values[address] = float(equity.account_value)
        if len(self._written_at) > 4 * len(self.book) + 10_000:
            cutoff = now - self.min_interval_ms
            self._written_at = {a: t for a, t in self._written_at.items() if t > cutoff}
        if lines:
            self.points += len(lines)
            self.writer.write(lines)

    def samples(self) -> list[Sample]:
        return [
            Sample(
                "equity_updates_total",
                "counter",
                "account_equity points written from the book between polls",
                self.points,
            )
        ]
