"""The `incomplete` flag: bars and CVD windows that overlap a recorded `trade_gaps` stretch.

A gap (after_ms, before_ms] says trades with after_ms < time <= before_ms may be missing. The
expected flags come from the recorded gaps alone (`Store.missing`); a few are spelled out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from db.schema import CVD, ORDER_FLOW
from process.engines.order_flow import OrderFlowEngine
from tests.conftest import influxql
from tests.test_order_flow import FLAG, MIN, NS, T0, Clock, Gap, Store, market, trade
from tests.test_order_flow_late import MarkedWriter, marked_engine


@pytest.fixture
def store(influxd: LocalInfluxd, influx_db: str) -> Store:
    return Store(influxd.url, influx_db)


@pytest.fixture
async def reader(influxd: LocalInfluxd, influx_db: str) -> AsyncIterator[AsyncInfluxReader]:
    async with AsyncInfluxReader(InfluxTarget(influxd.url, influx_db)) as reader:
        yield reader


COINS = ("BTC", "ETH", "SOL", "kPEPE")


def every_minute(store: Store, minutes: int) -> None:
    """The market plus one trade of each coin in each minute, so every minute has its bars."""
    trades, liqs = market(seed=21, minutes=minutes, coins=COINS)
    extra = [
        trade(coin, "buy", "100.5", "2", T0 + m * MIN + 30_000, 500 + 10 * m + i)
        for m in range(minutes)
        for i, coin in enumerate(COINS)
    ]
    store.add([*trades, *extra], liqs)


def flagged(stored: dict, coin: str, window: str | None = None) -> set[int]:
    return {m for m, flag in flags(stored, coin, window).items() if flag}


def flags(stored: dict, coin: str, window: str | None = None) -> dict[int, bool]:
    """minute (from T0) -> incomplete, of one coin's bars (or CVD points of one window)."""
    return {
        key[-1] // NS // MIN - T0 // MIN: fields[FLAG]
        for key, fields in stored.items()
        if key[0] == coin and (window is None or key[1] == window)
    }


async def test_bars_and_windows_overlapping_a_gap_say_incomplete_and_the_others_say_not(
    store: Store, reader: AsyncInfluxReader
) -> None:
    every_minute(store, 20)
    store.gap("BTC", T0 + 4 * MIN - 1, T0 + 4 * MIN)  # only the trades at exactly 4:00.000
    store.gap("ETH", T0 + 6 * MIN + 10_000, T0 + 8 * MIN + 5_000)  # minutes 6, 7 and 8
    store.gap("SOL", T0 + 9 * MIN - 1, T0 + 9 * MIN - 1)  # empty: nothing may be missing
    store.gap("kPEPE", T0 + 11 * MIN + 5, T0 + 12 * MIN - 1)  # minute 11 up to its last ms
    store.gap("BTC", T0 - 90 * MIN, T0 - 80 * MIN)  # long before
    clock = Clock(T0 + 19 * MIN + 30_000)
    engine = OrderFlowEngine(reader, store, clock=clock, recompute_minutes=19)

    await engine()

    bars, cvd = store.stored(ORDER_FLOW), store.stored(CVD)
    assert bars == store.bars(T0, clock.ms)
    assert cvd == store.cvd(T0 + MIN, T0 + 19 * MIN)
    assert flagged(bars, "BTC") == {4}  # not minute 3, whose last ms is the gap's after_ms
    assert flagged(cvd, "BTC", "1m") == {5}
    assert flagged(cvd, "BTC", "5m") == {5, 6, 7, 8, 9}
    assert flagged(cvd, "BTC", "1h") == set(range(5, 20))  # [t - 1h, t) holds 4:00.000
    assert flagged(bars, "ETH") == {6, 7, 8}
    assert flagged(cvd, "ETH", "1m") == {7, 8, 9}
    assert flagged(cvd, "ETH", "5m") == set(range(7, 14))
    assert flagged(bars, "SOL") == set() and flagged(cvd, "SOL", "1h") == set()
    assert flagged(bars, "kPEPE") == {11}
    assert flagged(cvd, "kPEPE", "1m") == {12}
    assert len(flags(bars, "BTC")) == 20 and len(flags(cvd, "SOL", "1h")) == 19


async def test_a_gap_recorded_later_flips_the_flags_in_the_first_run_after_it_landed(
    store: Store, reader: AsyncInfluxReader
) -> None:
    every_minute(store, 12)
    writer = MarkedWriter(store)
    clock = Clock(T0 + 11 * MIN + 20_000)
    engine = marked_engine(reader, writer, clock, recompute_minutes=11)
    await engine()
    writer.land()
    assert not any(f[FLAG] for f in store.stored(ORDER_FLOW).values())
    assert not any(f[FLAG] for f in store.stored(CVD).values())

    after, before = T0 + 2 * MIN + 10_000, T0 + 3 * MIN + 30_000
    store.gaps.append(gap := Gap("BTC", after, before))
    writer.write([store.builder.gap(gap)])  # as the collector writes it...
    engine.note_gap("BTC", after, before, writer.accepted_lines)  # ...and notes it
    clock.ms += 10_000
    await engine()  # not landed yet
    assert not any(f[FLAG] for f in store.stored(ORDER_FLOW).values())
    writer.land()

    clock.ms += 10_000  # the same minute: no trailing window
    await engine()
    writer.land()

    bars, cvd = store.stored(ORDER_FLOW), store.stored(CVD)
    assert bars == store.bars(T0, clock.ms)
    assert cvd == store.cvd(T0 + MIN, T0 + 11 * MIN)
    assert flagged(bars, "BTC") == {2, 3}
    assert flagged(cvd, "BTC", "1m") == {3, 4}
    assert flagged(cvd, "BTC", "5m") == set(range(3, 9))
    assert not any(f[FLAG] for k, f in bars.items() if k[0] != "BTC")


async def test_a_restart_reads_the_gaps_back_and_a_rebuilt_bar_drops_a_stale_flag(
    store: Store, reader: AsyncInfluxReader
) -> None:
    every_minute(store, 30)
    clock = Clock(T0 + 6 * 60 * MIN)  # hours later: old bars
    store.gap("BTC", T0 + 10 * MIN + 1, T0 + 12 * MIN + 7)  # minutes 10, 11 and 12
    await OrderFlowEngine(reader, store, clock=clock).recompute(T0, T0 + 30 * MIN)
    bars = store.stored(ORDER_FLOW)
    assert bars == store.bars(T0, T0 + 30 * MIN)
    assert flagged(bars, "BTC") == {10, 11, 12}
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 89 * MIN)

    influxql(store.url, 'DELETE FROM "trade_gaps"', store.db)  # the gap is gone (retention)
    store.gaps.clear()
    restarted = OrderFlowEngine(reader, store, clock=clock)
    restarted.note_replayed(store.builder.trades([t for t in store.trades if t.coin == "BTC"]))
    await restarted()

    assert store.stored(ORDER_FLOW) == store.bars(T0, T0 + 30 * MIN)  # false written over true
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 89 * MIN)
    assert not any(f[FLAG] for f in store.stored(CVD).values())


async def test_a_noted_gap_of_old_minutes_is_read_back_with_them(
    store: Store, reader: AsyncInfluxReader
) -> None:
    every_minute(store, 15)
    clock = Clock(T0 + 3 * 60 * MIN)
    engine = OrderFlowEngine(reader, store, clock=clock)
    await engine.recompute(T0, T0 + 15 * MIN)
    await engine()
    store.gap("ETH", T0 + 5 * MIN - 10, T0 + 5 * MIN + 10)  # minutes 4 and 5
    engine.note_gap("ETH", T0 + 5 * MIN - 10, T0 + 5 * MIN + 10)

    clock.ms += 10_000
    await engine()

    bars = store.stored(ORDER_FLOW)
    assert bars == store.bars(T0, T0 + 15 * MIN)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 74 * MIN)
    assert flagged(bars, "ETH") == {4, 5}
    assert flagged(store.stored(CVD), "ETH", "1m") == {5, 6}


async def test_a_replayed_gap_flags_minutes_whose_trades_had_landed_before(
    store: Store, reader: AsyncInfluxReader
) -> None:
    every_minute(store, 15)
    clock = Clock(T0 + 14 * MIN + 30_000)
    engine = OrderFlowEngine(reader, store, clock=clock, recompute_minutes=14)
    await engine()  # gaps read: none yet
    gap = Gap("SOL", T0 + 2 * MIN + 59_000, T0 + 3 * MIN + 1)  # spooled by an earlier run
    store.gaps.append(gap)
    segment = [store.builder.gap(gap)]
    store.post(segment)  # replayed...
    engine.note_replayed(segment)  # ...and noted

    clock.ms += 10_000
    await engine()

    bars, cvd = store.stored(ORDER_FLOW), store.stored(CVD)
    assert bars == store.bars(T0, clock.ms)
    assert cvd == store.cvd(T0 + MIN, T0 + 14 * MIN)
    assert flagged(bars, "SOL") == {2, 3}
    assert flagged(cvd, "SOL", "15m") == set(range(3, 15))
