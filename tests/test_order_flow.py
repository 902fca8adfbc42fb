"""Order flow bars and CVD windows, computed by a real influxd and checked against plain Python.

Trades, liquidations and trade gaps are written with the real `PointBuilder`; every expectation
is computed in the test from the same input lists (the `incomplete` flag from the gaps). Most
notionals are exact binary fractions (k / 32), so their sums are exact in any order and the
comparisons are exact; one test shows the order in which the server adds arbitrary floats (left
to right in time order) and compares exactly as well.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from db.schema import CVD, ORDER_FLOW, Measurement
from process import LiquidationEvent, PointBuilder
from process.engines import order_flow
from process.engines.order_flow import OrderFlowEngine, parse_window
from process.liquidations import LiquidatedSide, Method
from tests.conftest import influxql
from utils.errors import InfluxUnavailableError
from validate import Trade

T0 = 1_717_171_200_000  # 2024-05-31T16:00:00Z, a minute boundary (ms)
MIN = 60_000  # ms
NS = 1_000_000  # ns per ms
WINDOWS = (("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60))
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
COUNTS = ("buy_count", "sell_count")
FLAG = "incomplete"  # boolean, on every bar and CVD point

Key = tuple[Any, ...]


def trade(coin: str, side: str, px: str, sz: str, time_ms: int, tid: int) -> Trade:
    return Trade(coin, side, Decimal(px), Decimal(sz), time_ms, "0x" + "0" * 64, tid, ALICE, BOB)


def liquidation(
    coin: str, side: LiquidatedSide, method: Method, px: str, sz: str, time_ms: int, tid: int
) -> LiquidationEvent:
    return LiquidationEvent(coin, side, method, Decimal(px), Decimal(sz), tid, time_ms)


@dataclass(frozen=True)
class Gap:
    """A `trade_gaps` record: trades after after_ms up to and including before_ms may be missing."""

    coin: str
    after_ms: int
    before_ms: int
    reason: str = "test"


def notional(record: Trade | LiquidationEvent) -> float:
    return float(record.px * record.sz)  # what PointBuilder stores


class Store:
    """The test's database: records go in through PointBuilder; also the engine's PointSink."""

    def __init__(self, url: str, db: str) -> None:
        self.url, self.db = url, db
        self.builder = PointBuilder()
        self.trades: list[Trade] = []
        self.liquidations: list[LiquidationEvent] = []
        self.gaps: list[Gap] = []
        self.engine_lines: list[str] = []

    def add(self, trades: Sequence[Trade] = (), liqs: Sequence[LiquidationEvent] = ()) -> None:
        self.trades += trades
        self.liquidations += liqs
        self.post(self.builder.trades(trades) + self.builder.liquidations(liqs))

    def gap(self, coin: str, after_ms: int, before_ms: int) -> None:
        """A `trade_gaps` point, as the collector writes it."""
        gap = Gap(coin, after_ms, before_ms)
        self.gaps.append(gap)
        self.post([self.builder.gap(gap)])

    def write(self, lines: Iterable[str]) -> None:
        """The engine's PointSink: straight to InfluxDB."""
        lines = list(lines)
        self.engine_lines += lines
        self.post(lines)

    def post(self, lines: list[str]) -> None:
        if lines:
            response = httpx.post(
                f"{self.url}/write",
                params={"db": self.db, "precision": "ns"},
                content="\n".join(lines).encode(),
            )
            assert response.status_code == 204, response.text

    def stored(self, m: Measurement) -> dict[Key, dict[str, Any]]:
        """(coin[, window], time ns) -> fields and the flag; floats as floats (JSON writes 2.0
        as 2)."""
        fields = [f for f in m.fields if f != FLAG]
        columns = ", ".join(f'"{c}"' for c in (*m.tags, *fields, FLAG))
        rows = influxql(self.url, f'SELECT {columns} FROM "{m.name}" ORDER BY time', self.db)
        return {
            (*(row[t] for t in m.tags), row["time"]): {
                f: row[f] if row[f] is None or f in COUNTS else float(row[f]) for f in fields
            }
            | {FLAG: row[FLAG]}
            for row in rows
        }

    def field_types(self, m: Measurement) -> dict[str, str]:
        rows = influxql(self.url, f'SHOW FIELD KEYS FROM "{m.name}"', self.db)
        return {row["fieldKey"]: row["fieldType"] for row in rows}

    # -- expectations, from the records alone --------------------------------------------------

    def missing(self, coin: str, start_ms: int, end_ms: int) -> bool:
        """May trades of `coin` with start_ms <= time < end_ms be missing? (a gap of the coin
        has after_ms < time <= before_ms for one of those times)"""
        return any(
            max(start_ms, g.after_ms + 1) < min(end_ms, g.before_ms + 1)
            for g in self.gaps
            if g.coin == coin
        )

    def bars(self, first_ms: int, now_ms: int) -> dict[Key, dict[str, Any]]:
        """Expected bars of the minutes in [first_ms, now_ms) (the last one as of now_ms)."""
        bars: dict[Key, dict[str, Any]] = {}

        def bar(coin: str, time_ms: int) -> dict[str, Any]:
            key = (coin, (time_ms - time_ms % MIN) * NS)
            zero = dict.fromkeys(ORDER_FLOW.fields, 0.0) | dict.fromkeys(COUNTS, 0)
            start = time_ms - time_ms % MIN
            return bars.setdefault(key, zero | {FLAG: self.missing(coin, start, start + MIN)})

        for t in self.trades:
            if first_ms <= t.time_ms < now_ms:
                b = bar(t.coin, t.time_ms)
                b[f"{t.side}_notional"] += notional(t)
                b[f"{t.side}_count"] += 1
        for e in self.liquidations:
            if first_ms <= e.time_ms < now_ms:
                bar(e.coin, e.time_ms)[f"{e.side}_liq_notional"] += notional(e)
        for b in bars.values():
            b["delta"] = b["buy_notional"] - b["sell_notional"]
        return bars

    def cvd(self, first_t_ms: int, last_t_ms: int) -> dict[Key, dict[str, Any]]:
        """Expected cvd points at the minute boundaries t in [first_t_ms, last_t_ms]: trades with
        t - window <= time < t; a point when the window holds any trade or liquidation."""
        points: dict[Key, dict[str, Any]] = {}
        coins = {r.coin for r in [*self.trades, *self.liquidations]}
        for t in range(first_t_ms, last_t_ms + 1, MIN):
            for name, minutes in WINDOWS:
                low = t - minutes * MIN
                for coin in coins:
                    inside = [x for x in self.trades if x.coin == coin and low <= x.time_ms < t]
                    liqs = [x for x in self.liquidations if x.coin == coin and low <= x.time_ms < t]
                    if not inside and not liqs:
                        continue
                    buy = sum(notional(x) for x in inside if x.side == "buy")
                    sell = sum(notional(x) for x in inside if x.side == "sell")
                    points[(coin, name, t * NS)] = {
                        "buy_notional": buy,
                        "sell_notional": sell,
                        "cvd": buy - sell,
                        "buy_pct": 100 * buy / (buy + sell) if buy + sell else None,
                        FLAG: self.missing(coin, low, t),
                    }
        return points


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


class FlakyReader:
    """The real reader, or an outage when `down`."""

    def __init__(self, reader: AsyncInfluxReader) -> None:
        self.reader = reader
        self.down = False

    async def rows(self, influxql: str, params: Any = None) -> list[dict[str, Any]]:
        if self.down:
            raise InfluxUnavailableError("InfluxDB at test is not reachable (connection refused)")
        return await self.reader.rows(influxql, params)


@pytest.fixture
def store(influxd: LocalInfluxd, influx_db: str) -> Store:
    return Store(influxd.url, influx_db)


@pytest.fixture
async def reader(influxd: LocalInfluxd, influx_db: str) -> AsyncIterator[AsyncInfluxReader]:
    async with AsyncInfluxReader(InfluxTarget(influxd.url, influx_db)) as reader:
        yield reader


def market(seed: int, minutes: int, coins: Sequence[str] = ("BTC", "ETH", "SOL", "kPEPE")):
    """Trades and liquidations over `minutes` from T0 with notionals k / 32 (exact sums):
    some minutes empty per coin, bursts of trades in one millisecond (same side and not)."""
    rng = random.Random(seed)
    tids = iter(range(1_000, 10**9, 7))
    trades: list[Trade] = []
    liqs: list[LiquidationEvent] = []
    for minute in range(minutes):
        for coin in coins:
            if rng.random() < 0.25:
                continue  # an empty minute for this coin
            for _ in range(rng.randrange(1, 6)):
                time_ms = T0 + minute * MIN + rng.randrange(MIN)
                for _ in range(rng.choice((1, 1, 3))):  # 3 trades in one millisecond
                    px = str(Decimal(rng.randrange(4, 400_000)) / 4)
                    sz = str(Decimal(rng.randrange(1, 4_000)) / 8)
                    side = rng.choice(("buy", "sell"))
                    trades.append(trade(coin, side, px, sz, time_ms, next(tids)))
            if rng.random() < 0.3:
                time_ms = T0 + minute * MIN + rng.randrange(MIN)
                side: LiquidatedSide = rng.choice(("long", "short"))
                method: Method = rng.choice(("backstop", "market"))
                liqs.append(liquidation(coin, side, method, "1000.5", "0.25", time_ms, next(tids)))
    return trades, liqs


async def test_bars_and_every_cvd_window_equal_sums_of_the_trades(
    store: Store, reader: AsyncInfluxReader
) -> None:
    trades, liqs = market(seed=1, minutes=75)
    future = trade("BTC", "buy", "100", "1", T0 + 74 * MIN + 50_000, 7)  # after "now"
    store.add([*trades, future], liqs)
    now = T0 + 74 * MIN + 30_000  # 30 s into minute 74
    engine = OrderFlowEngine(reader, store, recompute_minutes=74, clock=Clock(now))

    await engine()

    bars = store.stored(ORDER_FLOW)
    assert bars == store.bars(T0, now)  # minute 74 is the live bar, as of now
    counted = sum(b["buy_count"] + b["sell_count"] for b in bars.values())
    assert counted == sum(t.time_ms < now for t in trades)
    assert Counter((t.coin, t.time_ms) for t in trades).most_common(1)[0][1] >= 3  # same ms
    # CVD at the 74 completed minute boundaries after T0 (the 1h window reaches back to T0)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 74 * MIN)
    assert store.field_types(ORDER_FLOW) == dict.fromkeys(ORDER_FLOW.fields, "float") | {
        "buy_count": "integer",
        "sell_count": "integer",
        FLAG: "boolean",
    }
    assert store.field_types(CVD) == dict.fromkeys(CVD.fields, "float") | {FLAG: "boolean"}


async def test_the_server_adds_a_minute_left_to_right_in_time_order(
    store: Store, reader: AsyncInfluxReader
) -> None:
    # magnitudes from 1e-4 to 1e11: the order of addition changes the last bits
    rng = random.Random(3)
    trades = []
    for tid in range(400):
        px = rng.choice(["123456789.123", "0.000123", "84981.7", "3.3"])
        time_ms = T0 + tid % 3 * MIN + rng.randrange(MIN)
        trades.append(trade("BTC", "buy", px, str(rng.randrange(1, 1000) / 10), time_ms, tid))
    lines = store.builder.trades(trades)
    stamp = {t.tid: int(line.rsplit(" ", 1)[1]) for t, line in zip(trades, lines, strict=True)}
    store.add(trades[:200])
    store.add(trades[200:])  # a second write: points of one minute arrive in two batches
    engine = OrderFlowEngine(reader, store, clock=Clock(T0 + 3 * MIN))

    await engine()

    bars = store.stored(ORDER_FLOW)
    differs = 0
    for minute in range(3):
        mine = sorted((stamp[t.tid], notional(t)) for t in trades if t.tid % 3 == minute)
        left_to_right = 0.0
        for _, value in mine:
            left_to_right += value
        assert bars[("BTC", (T0 + minute * MIN) * NS)]["buy_notional"] == left_to_right
        differs += left_to_right != math.fsum(v for _, v in mine)
    assert differs  # the check above would catch another order
    cvd = store.stored(CVD)[("BTC", "5m", (T0 + 3 * MIN) * NS)]
    assert cvd["buy_notional"] == math.fsum(
        bars[("BTC", (T0 + m * MIN) * NS)]["buy_notional"] for m in range(3)
    )


async def test_late_trades_correct_their_bar_within_the_window_and_recompute_fixes_older_ones(
    store: Store, reader: AsyncInfluxReader
) -> None:
    trades, liqs = market(seed=2, minutes=13)
    store.add([*trades, trade("ETH", "buy", "2500.25", "1", T0 + 8 * MIN + 500, 10)], liqs)
    clock = Clock(T0 + 12 * MIN + 5_000)
    engine = OrderFlowEngine(reader, store, recompute_minutes=10, clock=clock)
    await engine()  # bars of minutes 2..12, cvd at 3..12
    eth_8 = ("ETH", (T0 + 8 * MIN) * NS)
    before = store.stored(ORDER_FLOW)[eth_8]
    store.add(
        [
            trade("ETH", "sell", "2500.25", "4", T0 + 8 * MIN + 1, 11),  # inside the window
            trade("ETH", "buy", "2500.25", "2", T0 + 8 * MIN + 1, 12),  # same millisecond
        ]
    )

    clock.ms += MIN  # the first run of the next minute redoes the window
    await engine()

    after = store.stored(ORDER_FLOW)
    assert after == store.bars(T0 + 2 * MIN, clock.ms)
    assert after[eth_8]["sell_count"] == before["sell_count"] + 1
    assert after[eth_8]["buy_notional"] == before["buy_notional"] + 5000.5
    assert store.stored(CVD) == store.cvd(T0 + 3 * MIN, T0 + 13 * MIN)

    store.add([trade("SOL", "buy", "150.5", "8", T0 + 1 * MIN + 7, 13)])  # before the window
    clock.ms += MIN
    await engine()
    assert ("SOL", (T0 + MIN) * NS) not in store.stored(ORDER_FLOW)  # not picked up

    written = await engine.recompute(T0 + MIN + 30_000, T0 + MIN + 30_001)

    assert written > 0
    assert store.stored(ORDER_FLOW) == store.bars(T0 + MIN, clock.ms)
    assert store.stored(CVD) == store.cvd(T0 + 2 * MIN, T0 + 14 * MIN)


async def test_running_again_leaves_the_same_points(
    store: Store, reader: AsyncInfluxReader
) -> None:
    trades, liqs = market(seed=4, minutes=20)
    store.add(trades, liqs)
    clock = Clock(T0 + 19 * MIN + 20_000)
    engine = OrderFlowEngine(reader, store, recompute_minutes=15, clock=clock)
    await engine()
    bars, cvd, lines = store.stored(ORDER_FLOW), store.stored(CVD), len(store.engine_lines)

    await engine()  # nothing changed: nothing is written again
    assert len(store.engine_lines) == lines
    await OrderFlowEngine(reader, store, recompute_minutes=15, clock=clock)()  # rewrites all
    assert len(store.engine_lines) == 2 * lines
    await engine.recompute(T0 + 4 * MIN, clock.ms)  # the same bars and points

    assert store.stored(ORDER_FLOW) == bars
    assert store.stored(CVD) == cvd
    assert bars == store.bars(T0 + 4 * MIN, clock.ms)
    assert cvd == store.cvd(T0 + 5 * MIN, T0 + 19 * MIN)


async def test_within_a_minute_a_run_reads_and_rewrites_only_the_live_bar(
    store: Store, reader: AsyncInfluxReader
) -> None:
    trades, liqs = market(seed=7, minutes=9)
    store.add(trades, liqs)
    clock = Clock(T0 + 9 * MIN + 1_000)
    engine = OrderFlowEngine(reader, store, clock=clock)
    await engine()
    written = len(store.engine_lines)
    eth_5 = ("ETH", (T0 + 5 * MIN) * NS)
    stale = store.stored(ORDER_FLOW).get(eth_5)
    store.add(
        [
            trade("BTC", "sell", "60000.5", "0.5", T0 + 9 * MIN + 2_000, 21),  # the live minute
            trade("ETH", "buy", "3000", "1", T0 + 5 * MIN, 22),  # late, inside the window
        ]
    )

    clock.ms += 10_000
    await engine()

    assert engine.queries == 2
    assert [line.split(" ")[0] for line in store.engine_lines[written:]] == ["order_flow,coin=BTC"]
    assert store.stored(ORDER_FLOW)[("BTC", (T0 + 9 * MIN) * NS)]["sell_notional"] == 30000.25
    assert store.stored(ORDER_FLOW).get(eth_5) == stale  # until the next minute starts

    clock.ms = T0 + 10 * MIN
    await engine()

    assert store.stored(ORDER_FLOW) == store.bars(T0, clock.ms)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 10 * MIN)


async def test_empty_minutes_have_no_bar_and_a_window_without_trades_has_no_buy_pct(
    store: Store, reader: AsyncInfluxReader
) -> None:
    store.add(
        [
            trade("BTC", "buy", "100", "3", T0 + 10, 1),
            trade("BTC", "sell", "100", "1", T0 + 10, 2),
        ],
        [liquidation("ETH", "long", "backstop", "2000", "0.5", T0 + 3 * MIN + 5, 3)],
    )
    engine = OrderFlowEngine(reader, store, clock=Clock(T0 + 5 * MIN))

    await engine()

    assert store.stored(ORDER_FLOW) == {
        ("BTC", T0 * NS): {
            "buy_notional": 300.0,
            "sell_notional": 100.0,
            "buy_count": 1,
            "sell_count": 1,
            "delta": 200.0,
            "long_liq_notional": 0.0,
            "short_liq_notional": 0.0,
            FLAG: False,
        },
        ("ETH", (T0 + 3 * MIN) * NS): {
            "buy_notional": 0.0,
            "sell_notional": 0.0,
            "buy_count": 0,
            "sell_count": 0,
            "delta": 0.0,
            "long_liq_notional": 1000.0,
            "short_liq_notional": 0.0,
            FLAG: False,
        },
    }  # minutes 1, 2 and 4 had nothing: no bar
    cvd = store.stored(CVD)
    assert cvd[("BTC", "1m", (T0 + MIN) * NS)] == {
        "buy_notional": 300.0,
        "sell_notional": 100.0,
        "cvd": 200.0,
        "buy_pct": 75.0,
        FLAG: False,
    }
    assert ("BTC", "1m", (T0 + 2 * MIN) * NS) not in cvd  # no bar in the window: no point
    assert cvd[("BTC", "5m", (T0 + 5 * MIN) * NS)]["cvd"] == 200.0
    assert cvd[("ETH", "1m", (T0 + 4 * MIN) * NS)] == {
        "buy_notional": 0.0,
        "sell_notional": 0.0,
        "cvd": 0.0,
        "buy_pct": None,  # buy + sell == 0: left out
        FLAG: False,
    }
    assert cvd == store.cvd(T0 + MIN, T0 + 5 * MIN)


async def test_failed_runs_are_caught_up_and_a_backlog_holds_the_mark(
    store: Store, reader: AsyncInfluxReader
) -> None:
    trades, liqs = market(seed=5, minutes=45)
    store.add(trades, liqs)
    flaky = FlakyReader(reader)
    spooled = True
    clock = Clock(T0 + 5 * MIN)
    engine = OrderFlowEngine(flaky, store, clock=clock, backlog=lambda: spooled)
    spooled = False
    await engine()  # bars from T0 - 5 min: everything up to minute 5
    flaky.down = True
    clock.ms = T0 + 30 * MIN
    with pytest.raises(InfluxUnavailableError):
        await engine()
    flaky.down = False
    spooled = True  # the writer is still replaying its spool
    clock.ms = T0 + 40 * MIN + 1

    await engine()  # the trailing 10 minutes only
    minutes = {k[1] // NS // MIN - T0 // MIN for k in store.stored(ORDER_FLOW)}
    assert not minutes & set(range(5, 30))  # they wait until the spool is empty
    assert minutes >= set(range(5)) | set(range(30, 40))
    spooled = False
    clock.ms += 20_000
    await engine()  # caught up from the last good run's minute

    assert store.stored(ORDER_FLOW) == store.bars(T0, clock.ms)
    assert store.stored(CVD) == store.cvd(T0 + MIN, T0 + 40 * MIN)


async def test_recompute_of_an_old_range_in_chunks(
    store: Store, reader: AsyncInfluxReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(order_flow, "READ_CHUNK_MINUTES", 7)
    trades, liqs = market(seed=6, minutes=100, coins=("BTC", "HYPE"))
    store.add(trades, liqs)
    engine = OrderFlowEngine(reader, store, clock=Clock(T0 + 5 * 60 * MIN))  # 5 h later

    written = await engine.recompute(T0 + 20 * MIN, T0 + 30 * MIN)

    assert engine.queries == math.ceil((89 - (20 + 1 - 60)) / 7)  # 7 minutes at a time
    assert store.stored(ORDER_FLOW) == store.bars(T0 + 20 * MIN, T0 + 30 * MIN)
    assert store.stored(CVD) == store.cvd(T0 + 21 * MIN, T0 + 89 * MIN)
    assert written == len(store.engine_lines)


async def test_two_hundred_coins_take_one_query_per_run(
    store: Store, reader: AsyncInfluxReader
) -> None:
    coins = [f"COIN{i}" for i in range(200)]
    lines = [
        f"trades,coin={coin},side={('buy', 'sell')[i % 2]} notional={i % 7 + 0.5},tid={i}i "
        f"{(T0 + minute * MIN + i) * NS}"
        for minute in range(75)
        for i, coin in enumerate(coins)
    ]
    store.post(lines)
    clock = Clock(T0 + 74 * MIN + 30_000)
    engine = OrderFlowEngine(reader, store, clock=clock)

    started = time.perf_counter()
    await engine()
    first = time.perf_counter() - started
    clock.ms += 10_000
    started = time.perf_counter()
    await engine()
    second = time.perf_counter() - started

    assert engine.queries == 2
    bars = store.stored(ORDER_FLOW)
    assert len(bars) == 200 * 11  # minutes 64..74
    assert len(store.stored(CVD)) == 200 * 4 * 10
    print(f"200 coins: first run {first * 1000:.0f} ms, next run {second * 1000:.0f} ms")


@pytest.mark.parametrize("name", ["90s", "0m", "1.5h", "h", "5 m"])
def test_window_names_are_whole_minutes_hours_or_days(name: str) -> None:
    with pytest.raises(ValueError):
        parse_window(name)


def test_engine_settings_are_checked() -> None:
    assert [parse_window(w) for w in ("1m", "5m", "15m", "1h", "1d")] == [1, 5, 15, 60, 1440]
    with pytest.raises(ValueError):
        OrderFlowEngine(None, None, windows=("1m", "1m"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OrderFlowEngine(None, None, recompute_minutes=0)  # type: ignore[arg-type]
