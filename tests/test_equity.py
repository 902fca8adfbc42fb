"""`account_equity`: every poll's served figures, and between polls the book's estimate of the
accounts that traded, at most once per account per interval; read back from a real influxd."""

from __future__ import annotations

from decimal import Decimal as D

from db.timestamps import TimestampAllocator
from process.positions.book import MAKER_FEE, TAKER_FEE, PositionBook
from process.positions.equity import EquityUpdates, book_equity, equity_line, served_equity
from process.positions.margin import MarginRule
from tests.conftest import influxql
from tests.test_points import write
from tests.test_position_book import ALICE, BOB, T0, state, trade


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines += lines


def test_the_book_values_an_account_as_account_value_is_made() -> None:
    book = PositionBook()
    book.reconcile(ALICE, state(T0, "1000.0", {"ETH": ("2", "100")}, {"ETH": "-150.0"}), T0)
    book.reconcile(BOB, state(T0, "5000.0", {}), T0)
    book.apply_trades([trade(ALICE, BOB, "1", "200", T0 + 1, coin="BTC")])  # Alice takes 1 BTC
    marks = {"BTC": D("210"), "ETH": D("120")}
    equity = book_equity(book.accounts[ALICE], marks)
    assert equity is not None
    cross_cash = D("1000.0") - 200 - 200 * TAKER_FEE
    isolated = D("-150.0") + 2 * 120  # the isolated ETH position's raw USD + szi x mark
    assert equity.account_value == cross_cash + 210 + isolated
    assert equity.unrealized_pnl == 1 * (210 - 200) + 2 * (120 - 100)
    assert equity.total_ntl_pos == 210 + 2 * 120
    assert equity.margin_used is None and equity.withdrawable is None
    bob = book_equity(book.accounts[BOB], marks)
    assert bob is not None and bob.account_value == D("5000.0") + 200 - 200 * MAKER_FEE - 210
    assert book_equity(book.accounts[ALICE], {"BTC": D("210")}) is None  # no ETH mark yet


async def test_points_between_polls_at_most_once_per_interval_and_as_read_back(
    influxd, influx_db
) -> None:
    book = PositionBook()
    clock = [T0 + 1_000]
    sink = Lines()
    allocator = TimestampAllocator()
    updates = EquityUpdates(book, sink, allocator, min_interval_ms=300_000, clock=lambda: clock[0])
    book.on_change = updates.changed
    served = state(T0, "1000.0", {"BTC": ("1", "100")})
    book.reconcile(ALICE, served, T0)
    book.reconcile(BOB, state(T0, "1000.0", {}), T0)
    book.set_market({"BTC": D("110")}, {"BTC": MarginRule.flat(20)})
    sink.write([equity_line(allocator, ALICE, served_equity(served), "poll", T0)])
    updates.polled(ALICE, T0, 1000.0)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])
    await updates()
    assert len(sink.lines) == 2  # Bob's book point; Alice's waits: her poll was just written
    clock[0] += 300_000
    await updates()
    assert len(sink.lines) == 3  # Alice now
    book.apply_trades([trade(ALICE, BOB, "1", "100", clock[0] - 5)])
    await updates()
    assert len(sink.lines) == 4 and BOB in sink.lines[-1]  # Alice was written just now
    write(influxd.url, influx_db, sink.lines)
    rows = influxql(
        influxd.url,
        'SELECT "address", "account_value", "unrealized_pnl", "withdrawable" '
        'FROM "account_equity" GROUP BY "source" ORDER BY time',
        influx_db,
    )
    by = {(r["source"], r["address"]): r for r in rows}
    assert by[("poll", ALICE)]["account_value"] == 1000.0
    assert by[("poll", ALICE)]["withdrawable"] == 1000.0
    alice = by[("book", ALICE)]
    cash = 1000.0 - 100 - 100 * float(TAKER_FEE)
    assert alice["account_value"] == cash + 2 * 110  # two BTC long at the mark
    assert alice["unrealized_pnl"] == 2 * (110 - 100)
    assert alice["withdrawable"] is None
    assert updates.points == 3
