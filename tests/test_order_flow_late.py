"""Late data: trades noted with the writer's marks, spool replays, settle() and failed runs.

`MarkedWriter` plays `db.writer.InfluxWriter` with its marks: lines wait in order until `land()`
posts them to a real influxd and moves `landed_through`. The engine writes through it too, as
in the collector, so what a test reads back is what landed. Expectations come from the records
alone (tests/test_order_flow.py's `Store`).
"""

from __future__ import annotations

import timeit
from collections.abc import AsyncIterator, Iterable, Sequence

import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from db.schema import CVD, ORDER_FLOW
from process import LiquidationEvent
from process.engines.order_flow import OrderFlowEngine, ReplayNotes
from tests.test_order_flow import (
    MIN,
    NS,
    T0,
    Clock,
    FlakyReader,
    Store,
    liquidation,
    market,
    trade,
)
from utils.errors import InfluxUnavailableError
from validate import Trade


class MarkedWriter:
    """Lines are accepted in order and land (reach InfluxDB) only when `land()` says so."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lines: list[str] = []
        self.landed_through = 0

    @property
    def accepted_lines(self) -> int:
        return len(self.lines)

    def write(self, lines: Iterable[str]) -> None:
        self.lines += lines

    def land(self, through: int | None = None) -> None:
        through = len(self.lines) if through is None else through
        self.store.post(self.lines[self.landed_through : through])
        self.landed_through = through


def hand_over(
    store: Store,
    writer: MarkedWriter,
    engine: OrderFlowEngine,
    trades: Sequence[Trade],
    liqs: Sequence[LiquidationEvent] = (),
) -> None:
    """What the collector does with a batch: write it, then note it with the writer's mark."""
    store.trades += trades
    store.liquidations += liqs
    writer.write(store.builder.trades(trades) + store.builder.liquidations(liqs))
    times = [r.time_ms for r in [*trades, *liqs]]
    engine.note_trades(min(times), max(times), writer.accepted_lines)


def marked_engine(
    reader: AsyncInfluxReader, writer: MarkedWriter, clock: Clock, **kwargs: int
) -> OrderFlowEngine:
    return OrderFlowEngine(
        reader, writer, clock=clock, landed=lambda: writer.landed_through, **kwargs
    )


@pytest.fixture
def store(influxd: LocalInfluxd, influx_db: str) -> Store:
    return Store(influxd.url, influx_db)


@pytest.fixture
async def reader(influxd: LocalInfluxd, influx_db: str) -> AsyncIterator[AsyncInfluxReader]:
    async with AsyncInfluxReader(InfluxTarget(influxd.url, influx_db)) as reader:
        yield reader


async def test_a_late_trade_corrects_its_bar_in_the_first_run_after_it_landed(
    store: Store, reader: AsyncInfluxReader
) -> None:
    writer = MarkedWriter(store)
    clock = Clock(T0 + 12 * MIN + 5_000)
    engine = marked_engine(reader, writer, clock)
    trades, liqs = market(seed=11, minutes=13)
    hand_over(store, writer, engine, trades, liqs)  # reaches back past the first run's window
    writer.land()
    await engine()
    writer.land()
    assert store.stored(ORDER_FLOW) == store.bars(T0, clock.ms)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 12 * MIN)
    eth_8 = ("ETH", (T0 + 8 * MIN) * NS)
    before = store.stored(ORDER_FLOW)[eth_8]

    late = [
        trade("ETH", "sell", "2500.25", "4", T0 + 8 * MIN + 1, 11),
        trade("ETH", "buy", "2500.25", "2", T0 + 8 * MIN + 1, 12),  # same millisecond
    ]
    hand_over(store, writer, engine, late)
    clock.ms += 10_000
    await engine()  # not landed yet: the minute waits
    writer.land()
    assert engine.waiting == 1
    assert store.stored(ORDER_FLOW)[eth_8] == before
    queries = engine.queries

    clock.ms += 10_000  # the same minute: no trailing window, only what was noted
    await engine()
    writer.land()

    assert engine.waiting == 0
    assert engine.queries - queries == 2  # minute 8 and the live minute
    bars = store.stored(ORDER_FLOW)
    assert bars == store.bars(T0, clock.ms)
    assert bars[eth_8]["sell_count"] == before["sell_count"] + 1
    assert bars[eth_8]["buy_notional"] == before["buy_notional"] + 5000.5
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 12 * MIN)


async def test_an_old_late_trade_corrects_its_bar_and_every_window_over_it(
    store: Store, reader: AsyncInfluxReader
) -> None:
    writer = MarkedWriter(store)
    clock = Clock(T0 + 5 * 60 * MIN + 30_000)  # 5 h later
    engine = marked_engine(reader, writer, clock)
    trades, liqs = market(seed=12, minutes=20, coins=("BTC", "HYPE"))
    store.add(trades, liqs)
    await engine.recompute(T0, T0 + 20 * MIN)  # the bars as written back then
    writer.land()
    late = [trade("HYPE", "buy", "30.5", "8", T0 + 7 * MIN + 59_999, 99)]
    hand_over(store, writer, engine, late)
    hype_7 = ("HYPE", (T0 + 7 * MIN) * NS)
    before = store.stored(ORDER_FLOW).get(hype_7)
    await engine()  # not landed: nothing to rebuild yet
    writer.land()
    assert store.stored(ORDER_FLOW).get(hype_7) == before

    clock.ms += 10_000
    await engine()
    writer.land()

    assert engine.waiting == 0
    assert store.stored(ORDER_FLOW) == store.bars(T0, T0 + 20 * MIN)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 79 * MIN)  # 1h windows reach minute 79


async def test_a_minute_that_ends_before_its_last_trades_land_is_rebuilt_once_they_do(
    store: Store, reader: AsyncInfluxReader
) -> None:
    writer = MarkedWriter(store)
    clock = Clock(T0 + 9 * MIN + 50_000)
    engine = marked_engine(reader, writer, clock)
    trades, liqs = market(seed=13, minutes=9)
    hand_over(store, writer, engine, trades, liqs)
    writer.land()
    await engine()
    writer.land()
    live = [trade("BTC", "buy", "60000.5", "0.5", T0 + 9 * MIN + 55_000, 31)]
    hand_over(store, writer, engine, live)  # the live minute: nothing to note
    assert engine.waiting == 0

    clock.ms = T0 + 10 * MIN + 5_000
    await engine()  # minute 9 is over, its last trade has not landed
    assert engine.waiting == 1
    writer.land()  # the trade, then the bar computed without it
    btc_9 = ("BTC", (T0 + 9 * MIN) * NS)
    assert store.stored(ORDER_FLOW).get(btc_9) == store.bars(T0, T0 + 9 * MIN + 55_000).get(btc_9)

    clock.ms += 10_000
    await engine()
    writer.land()

    assert store.stored(ORDER_FLOW) == store.bars(T0, clock.ms)
    assert store.stored(ORDER_FLOW)[btc_9] != store.bars(T0, T0 + 9 * MIN + 55_000).get(btc_9)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 10 * MIN)


async def test_a_replayed_segment_corrects_its_minutes_on_the_next_run_even_after_a_restart(
    store: Store, reader: AsyncInfluxReader
) -> None:
    clock = Clock(T0 + 3 * 60 * MIN + 10_000)
    trades, liqs = market(seed=14, minutes=20)
    spooled_trades = [t for t in trades if t.time_ms // MIN - T0 // MIN in (3, 15)]
    spooled_liqs = [liquidation("SOL", "short", "market", "150.25", "4", T0 + 10 * MIN + 1, 5)]
    store.add([t for t in trades if t not in spooled_trades], liqs)
    await OrderFlowEngine(reader, store, clock=clock).recompute(T0, T0 + 20 * MIN)
    segment = store.builder.trades(spooled_trades) + store.builder.liquidations(spooled_liqs)
    store.trades += spooled_trades
    store.liquidations += spooled_liqs
    assert store.stored(ORDER_FLOW) != store.bars(T0, T0 + 20 * MIN)  # without the spool
    store.post(segment)  # the replay lands...
    other = [f"asset_ctx,coin=BTC funding=0.0001 {(T0 + 40 * MIN) * NS}", "trades,coin=BTC x"]

    replays = ReplayNotes()  # the writer replays before the collector built the engine...
    replays([*other, *segment[:3]])
    replays(segment[3:])
    engine = OrderFlowEngine(reader, store, clock=clock)  # ...of a later run of the collector
    replays.attach(engine)
    written = len(store.engine_lines)
    await engine()

    assert store.stored(ORDER_FLOW) == store.bars(T0, T0 + 20 * MIN)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 79 * MIN)
    rebuilt = {
        int(line.rsplit(" ", 1)[1]) // NS // MIN - T0 // MIN
        for line in store.engine_lines[written:]
        if line.startswith("order_flow,")
    }
    assert rebuilt == {3, 10, 15}  # only the replayed minutes


async def test_settle_rebuilds_every_landed_minute_that_runs_leave_for_later(
    store: Store, reader: AsyncInfluxReader
) -> None:
    clock = Clock(T0 + 2 * 60 * MIN)
    trades, _ = market(seed=15, minutes=40, coins=("BTC",))
    late = [t for t in trades if t.time_ms // MIN - T0 // MIN in (3, 20, 37)]
    store.add([t for t in trades if t not in late])
    engine = OrderFlowEngine(reader, store, clock=clock, recompute_minutes=1, max_catchup_minutes=1)
    await engine.recompute(T0, T0 + 40 * MIN)
    store.add(late)
    engine.note_replayed(store.builder.trades(late))

    await engine()  # one minute per run: minute 3
    bars = store.stored(ORDER_FLOW)
    expected = store.bars(T0, T0 + 40 * MIN)
    assert {k for k in expected if bars.get(k) != expected[k]} == {
        ("BTC", (T0 + m * MIN) * NS) for m in (20, 37)
    }

    await engine.settle()

    assert store.stored(ORDER_FLOW) == expected
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 99 * MIN)


async def test_a_failed_run_keeps_the_minutes_it_meant_to_rebuild(
    store: Store, reader: AsyncInfluxReader
) -> None:
    writer = MarkedWriter(store)
    flaky = FlakyReader(reader)
    clock = Clock(T0 + 30 * MIN + 1_000)
    engine = marked_engine(flaky, writer, clock)  # type: ignore[arg-type]
    trades, liqs = market(seed=16, minutes=30)
    store.add(trades, liqs)
    await engine.recompute(T0, clock.ms)
    writer.land()
    hand_over(store, writer, engine, [trade("BTC", "sell", "70000", "0.25", T0 + 2 * MIN, 41)])
    writer.land()
    flaky.down = True
    clock.ms += 10_000
    with pytest.raises(InfluxUnavailableError):
        await engine()
    assert store.stored(ORDER_FLOW) != store.bars(T0, clock.ms)
    flaky.down = False

    clock.ms += 10_000
    await engine()
    writer.land()

    assert engine.waiting == 0
    assert store.stored(ORDER_FLOW) == store.bars(T0, clock.ms)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 30 * MIN)


def test_noting_a_batch_of_the_live_minute_costs_well_under_a_microsecond() -> None:
    now = T0 + 5 * MIN + 1_000
    engine = OrderFlowEngine(None, None, clock=Clock(now))  # type: ignore[arg-type]
    engine._horizon_ms = T0 + 5 * MIN  # as after a run in minute 5
    note = engine.note_trades
    calls = 100_000
    best = min(
        timeit.repeat(lambda: note(now, now + 7, 123_456), number=calls, repeat=5)
    )  # includes the lambda's own call
    print(f"note_trades: {best / calls * 1e9:.0f} ns per batch")
    assert best / calls < 1e-6
    assert engine.waiting == 0
    note(now - MIN, now, 123_457)  # a late one is kept
    assert engine.waiting == 1
