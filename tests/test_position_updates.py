"""`positions` points between polls: moved positions from the book, at most one per position
per interval, closing points for a side left, values at the latest mark."""

from __future__ import annotations

from decimal import Decimal as D

from db.local_server import LocalInfluxd
from db.schema import POSITIONS
from process.points import PointBuilder
from process.positions.book import PositionBook, to_decimal
from process.positions.margin import MarginRule
from process.positions.updates import PositionUpdates
from tests.test_points import select, write
from tests.test_position_book import ALICE, BOB, T0, state, trade


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)


async def test_moved_positions_are_written_at_most_every_interval_with_values_at_the_mark(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    now = [T0]
    book = PositionBook()
    sink = Lines()
    updates = PositionUpdates(
        book, PointBuilder(), sink, min_interval_ms=5_000, clock=lambda: now[0]
    )
    book.on_change = updates.changed
    book.reconcile(ALICE, state(T0, "10000.0", {}), T0)
    book.set_market({"BTC": D("100")}, {"BTC": MarginRule.flat(20)})

    book.apply_trades([trade(ALICE, BOB, "2", "90", T0 + 1)])  # Alice opens long 2 @ 90
    now[0] = T0 + 1_000
    await updates()
    book.apply_trades([trade(ALICE, BOB, "1", "120", T0 + 1_500)])  # increase: 3 @ 100
    now[0] = T0 + 2_000
    await updates()  # within 5 s of the last point: nothing yet
    assert len(sink.lines) == 1
    book.apply_trades([trade(BOB, ALICE, "4", "100", T0 + 3_000, "sell")])  # flip to short 1
    now[0] = T0 + 6_000
    await updates()  # the long closes, the short opens
    now[0] = T0 + 20_000
    await updates()  # nothing moved since
    assert len(sink.lines) == 3 and updates.points == 3

    write(influxd.url, influx_db, sink.lines)
    rows = sorted(select(influxd.url, influx_db, POSITIONS), key=lambda r: (r["time"], r["side"]))
    cash = to_decimal(book.accounts[ALICE].cross_raw_usd)
    liq_short = cash / (1 * (1 + D(1) / 40))  # short 1: equity = cash - p = p / 40
    assert [
        (
            r["time"] // 10**6,
            r["side"],
            r["szi"],
            r["size_usd"],
            r.get("entry_px"),
            r["unrealized_pnl"],
        )
        for r in rows
    ] == [
        (T0 + 1_000, "long", 2.0, 200.0, 90.0, 20.0),
        (T0 + 6_000, "long", 0.0, 0.0, None, 0.0),
        (T0 + 6_000, "short", -1.0, 100.0, 100.0, 0.0),
    ]
    assert rows[2]["liq_px"] == float(liq_short)
    assert {r["address"] for r in rows} == {ALICE}


async def test_nothing_is_written_without_a_mark_and_polls_write_their_own() -> None:
    book = PositionBook()
    sink = Lines()
    updates = PositionUpdates(book, PointBuilder(), sink, clock=lambda: T0 + 60_000)
    book.on_change = updates.changed
    book.reconcile(ALICE, state(T0, "10000.0", {}), T0)
    book.apply_trades([trade(ALICE, BOB, "2", "90", T0 + 1)])
    await updates()
    assert sink.lines == []  # no mark on this instance yet: the position waits
    book.reconcile(BOB, state(T0, "10000.0", {}), T0)
    book.reconcile(BOB, state(T0 + 5, "10000.0", {"BTC": ("1", "50")}), T0 + 5)  # a poll's change
    assert len(book.settle_checks()) == 1
    book.set_market({"BTC": D("100")}, {"BTC": MarginRule.flat(20)})
    await updates()
    assert len(sink.lines) == 1 and ALICE in sink.lines[0]
