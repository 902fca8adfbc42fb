"""The liquidation heatmap: absolute price levels, totals per level equal to the margin formula
applied to the book independently, only changed levels stored, grids kept across a restart
(read back from a real influxd) and re-anchored after a large move."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal as D

import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from process.engines.heatmap import HeatmapParams, LiquidationHeatmap
from process.engines.price_levels import LevelGrid, choose_step
from process.positions.book import PositionBook, positions_for_margin, to_decimal
from process.positions.margin import MarginRule, account_margin
from tests.conftest import influxql
from tests.test_points import write
from tests.test_position_book import ALICE, BOB, CAROL, T0, state, trade

DAVE = "0x" + "d" * 40
RULES = {"BTC": MarginRule.flat(40), "ETH": MarginRule.flat(25)}
MARKS = {"BTC": D("85000"), "ETH": D("2700")}
MINUTE = 60_000
PARAMS = HeatmapParams(range_pct=0.3)  # every position of `a_book` is within range


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines += lines

    def take(self, measurement: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        """(tags, fields) of the lines of `measurement` written since the last take."""
        out = []
        for line in self.lines:
            key, fields, _ = line.split(" ")
            name, *tags = key.split(",")
            if name == measurement:
                out.append(
                    (
                        dict(t.split("=", 1) for t in tags),
                        dict(f.split("=", 1) for f in fields.split(",")),
                    )
                )
        return out

    def clear(self) -> None:
        self.lines = []


class Clock:
    def __init__(self) -> None:
        self.now = T0 + MINUTE

    def __call__(self) -> int:
        return self.now


def a_book() -> PositionBook:
    """Longs and shorts of BTC and ETH, cross (one and two positions) and isolated."""
    book = PositionBook()
    book.reconcile(ALICE, state(T0, "-75000.0", {"BTC": ("1", "80000")}), T0)
    book.reconcile(BOB, state(T0, "99000.0", {"BTC": ("-1", "84000")}), T0)
    book.reconcile(
        CAROL, state(T0, "-51500.0", {"BTC": ("0.5", "83000"), "ETH": ("5", "2600")}), T0
    )
    book.reconcile(
        DAVE, state(T0, "5000.0", {"ETH": ("-10", "2750")}, {"ETH": "29000.0"}), T0
    )  # isolated short
    book.set_market(MARKS, RULES)
    return book


def expected_levels(book: PositionBook, grids: dict[str, LevelGrid], range_pct: float) -> dict:
    """(coin, level) -> [long usd, short usd, long n, short n, long exact, short exact], by the
    margin formula applied to every account directly."""
    out: dict = defaultdict(lambda: [0.0, 0.0, 0, 0, 0.0, 0.0])
    for account in book.accounts.values():
        margin = account_margin(
            positions_for_margin(account.positions), to_decimal(account.cross_raw_usd), MARKS, RULES
        )
        for p in margin.positions:
            if p.liquidation_px is None:
                continue
            mark = float(MARKS[p.coin])
            liq = float(p.liquidation_px)
            if not mark * (1 - range_pct) <= liq <= mark * (1 + range_pct):
                continue
            usd = abs(float(p.szi)) * liq
            row = out[(p.coin, grids[p.coin].level(liq))]
            side = 0 if p.szi > 0 else 1
            row[side] += usd
            row[2 + side] += 1
            if account.exact(p.coin):
                row[4 + side] += usd
    return dict(out)


def test_steps_are_round_and_levels_hold_their_lower_edge() -> None:
    assert [str(choose_step(p)) for p in (85_000, 2_700, 121.3, 35.2, 0.0122)] == [
        "5E+2",
        "1E+1",
        "0.5",
        "0.2",
        "0.00005",
    ]
    grid = LevelGrid.around(85_000)
    assert grid.level(84_500) == 169 and grid.level(84_999.99) == 169  # an edge: level above
    assert grid.label(169) == "84500" and grid.price(169) == 84_500.0
    small = LevelGrid.around(0.0122)
    assert small.level(0.0122) == 244  # 0.0122 / 0.00005 is 243.99999999999997 in floats
    assert small.label(244) == "0.01220" and small.level(0.012249999) == 244
    assert grid.keeps(85_000 * 2.5) and not grid.keeps(85_000 * 2.6)
    assert grid.keeps(85_000 / 2.5) and not grid.keeps(85_000 / 2.6)
    with pytest.raises(ValueError, match="positive price"):
        choose_step(0)


async def test_every_level_equals_the_margin_formula_applied_to_the_book() -> None:
    book, sink, clock = a_book(), Lines(), Clock()
    book.note_gap("ETH", T0, T0 + 10)  # ETH positions are estimates now
    engine = LiquidationHeatmap(
        book, sink, clock=clock, open_interest=lambda: {"BTC": 1e6}, params=PARAMS
    )
    await engine()
    expected = expected_levels(book, engine.grids, PARAMS.range_pct)
    assert len(expected) == 5  # every position is within range, each in its own level
    got = {
        (coin, index): [
            level.long_usd,
            level.short_usd,
            level.long_count,
            level.short_count,
            level.long_exact_usd,
            level.short_exact_usd,
        ]
        for coin, picture in engine.latest.items()
        for index, level in picture.levels.items()
    }
    assert got.keys() == expected.keys()
    for key, row in expected.items():
        assert got[key] == pytest.approx(row, rel=1e-12)
    stored = {(tags["coin"], tags["level"]) for tags, _ in sink.take("liq_levels")}
    assert stored == {(c, engine.grids[c].label(i)) for c, i in expected}
    coverage = {tags["coin"]: fields for tags, fields in sink.take("liq_coverage")}
    btc = coverage["BTC"]
    assert float(btc["tracked_usd"]) == (1 + 1 + 0.5) * 85_000
    assert float(btc["tracked_share"]) == 2.5 * 85_000 / 2e6
    assert float(btc["exact_share"]) == 1.0 and float(coverage["ETH"]["exact_share"]) == 0.0
    assert "open_interest_usd" not in coverage["ETH"]  # unknown: left out, not zero
    grids = {tags["coin"]: fields for tags, fields in sink.take("liq_grid")}
    assert grids["BTC"]["step"] == "500.0" and grids["BTC"]["reason"] == '"start"'


async def test_only_levels_that_changed_are_stored_and_an_emptied_level_once() -> None:
    book, sink, clock = a_book(), Lines(), Clock()
    engine = LiquidationHeatmap(book, sink, clock=clock, params=PARAMS)
    await engine()
    first = len(sink.take("liq_levels"))
    assert first == 5
    sink.clear()
    clock.now += 10_000
    await engine()  # computed, not stored: a store is once a minute
    assert sink.lines == []
    clock.now += MINUTE
    await engine()
    assert sink.take("liq_levels") == []  # nothing changed: no level written
    assert len(sink.take("liq_coverage")) == 2
    sink.clear()
    book.apply_trades([trade(ALICE, BOB, "0.5", "85000", T0 + 2 * MINUTE)])  # both move
    clock.now += MINUTE
    await engine()
    written = sink.take("liq_levels")
    assert {tags["coin"] for tags, _ in written} == {"BTC"}
    assert 2 <= len(written) <= 4  # the levels Alice and Bob left and reached
    sink.clear()
    book.apply_trades([trade(CAROL, ALICE, "1.5", "85000", T0 + 3 * MINUTE)])  # Alice closes
    clock.now += MINUTE
    await engine()
    emptied = [f for _, f in sink.take("liq_levels") if f["long_count"] == "0i"]
    assert len(emptied) >= 1
    sink.clear()
    clock.now += MINUTE
    await engine()
    assert sink.take("liq_levels") == []  # an empty level is not written again
    clock.now += 60 * MINUTE
    await engine()  # a keyframe: every non-empty level again
    assert len(sink.take("liq_levels")) == sum(len(p.levels) for p in engine.latest.values())


async def test_a_large_move_reanchors_the_grid_and_empties_the_old_levels() -> None:
    book, sink, clock = a_book(), Lines(), Clock()
    engine = LiquidationHeatmap(book, sink, clock=clock, params=PARAMS)
    await engine()
    old_btc = {t["level"] for t, _ in sink.take("liq_levels") if t["coin"] == "BTC"}
    sink.clear()
    book.set_market({"BTC": D("250000"), "ETH": D("2700")}, RULES)  # BTC x2.9
    clock.now += MINUTE
    await engine()
    [(tags, fields)] = sink.take("liq_grid")
    assert tags == {"coin": "BTC"} and fields["reason"] == '"moved"'
    assert (fields["previous_step"], fields["step"]) == ("500.0", "1000.0")
    zeroed = {t["level"] for t, f in sink.take("liq_levels") if f["long_count"] == "0i"}
    assert old_btc <= zeroed  # the old grid's levels end; BTC's positions are out of range now
    assert engine.latest["BTC"].levels == {}


@pytest.fixture
def target(influxd: LocalInfluxd, influx_db: str) -> Iterator[InfluxTarget]:
    yield InfluxTarget(url=influxd.url, db=influx_db)


async def test_a_restart_keeps_the_grids_and_writes_no_unchanged_level(
    target: InfluxTarget,
) -> None:
    book, sink, clock = a_book(), Lines(), Clock()
    engine = LiquidationHeatmap(book, sink, clock=clock, params=PARAMS)
    await engine()
    write(target.url, target.db, sink.lines)
    rows = influxql(
        target.url,
        'SELECT "long_liq_usd", "short_liq_usd", "price" FROM "liq_levels" GROUP BY "level"',
        target.db,
    )
    assert len(rows) == 5
    assert all(float(r["level"]) == r["price"] for r in rows)  # the tag is the price
    restarted_sink = Lines()
    reader = AsyncInfluxReader(target)
    try:
        restarted = LiquidationHeatmap(
            book, restarted_sink, clock=clock, reader=reader, params=PARAMS
        )
        clock.now += MINUTE
        await restarted()
    finally:
        await reader.aclose()
    assert restarted.grids == engine.grids  # step and anchor price
    assert restarted_sink.take("liq_grid") == [] and restarted_sink.take("liq_levels") == []


async def test_accounts_flagged_as_bots_can_be_left_out() -> None:
    book = a_book()
    everyone = LiquidationHeatmap(book, Lines(), clock=Clock(), params=PARAMS)
    no_bob = LiquidationHeatmap(
        book, Lines(), clock=Clock(), params=PARAMS, exclude=lambda a: a == BOB
    )
    await everyone()
    await no_bob()
    btc_all, btc = everyone.latest["BTC"], no_bob.latest["BTC"]
    shorts = sum(level.short_count for level in btc_all.levels.values())
    assert shorts == 1 and sum(level.short_count for level in btc.levels.values()) == 0
    longs = sum(level.long_usd for level in btc.levels.values())
    assert longs == sum(level.long_usd for level in btc_all.levels.values()) > 0  # the rest kept
