"""Points per day of the liquidation heatmap and of the position book's series, and the
heatmap's cost, at the issue's scale.

A position book of `positions` open cross positions (100k) over `coins` coins (200; coin
popularity Zipf, prices log-uniform from 0.001 to 100k USD, sizes Pareto from 100 USD, each
account's cash set so its liquidation price lies 2-60 % from the mark) is moved by a trade flow
of `trade_rate` trades a second (35) between tracked accounts (each party, 4 times in 5, one that
holds the coin already: traders keep to their markets), on a virtual clock, while marks
move by a random walk (0.05 % a step, every `engine_s`). `LiquidationHeatmap` runs every
`engine_s` (10 s) and computes and stores once a minute as in the app; the run lasts `minutes`
after a warm-up of one keyframe interval, and the lines written per measurement are scaled to a
day. `store_run_ms` is the wall time of one compute + store (the event loop is busy that long).
For comparison, the relative-bucket heatmap it replaced wrote 50 points per coin every 10 s.
The same run counts what the book writes: `position_changes` (one point per party per trade)
and `positions` between polls (`PositionUpdates`, run every second as in the app: at most one
point per position per 5 s); `trades` is the trade rate, `asset_ctx` one point per coin per
asset-context poll (10 s). Polls' own `positions` points are not counted (the budget's 378 polls
a minute write ~1 point each, and one `account_equity` point: ~0.5 M a day each). The other
engines are not run; their ceiling by cadence is reported next to the measured figures.

`python -m bench.heatmap_volume --minutes 60` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from collections import Counter
from decimal import Decimal

from bench.freshness import events_in_second
from process.engines.heatmap import HeatmapParams, LiquidationHeatmap
from process.engines.order_flow import DEFAULT_WINDOWS
from process.points import PointBuilder
from process.positions.book import Account, BookPosition, PositionBook, PositionChange, to_units
from process.positions.margin import MarginRule
from process.positions.updates import PositionUpdates
from validate import Trade

T0_MS = 1_800_000_000_000
DAY_S = 86_400
OLD_BUCKETS = 50
ASSET_CTX_EVERY_S = 10


class _Counter:
    """A point sink that counts lines per measurement."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def write(self, lines: list[str]) -> None:
        for line in lines:
            self.counts[line.split(",", 1)[0]] += 1


def _world(
    rng: random.Random, positions: int, coins: int
) -> tuple[PositionBook, list[str], list[float], dict[str, Decimal], dict[str, list[str]]]:
    names = [f"C{i:03d}" for i in range(coins)]
    popularity = [1.0 / (i + 1) for i in range(coins)]
    marks = {
        name: Decimal(f"{math.exp(rng.uniform(math.log(0.001), math.log(100_000))):.5g}")
        for name in names
    }
    book = PositionBook()
    book.set_market(marks, {name: MarginRule.flat(20) for name in names})
    holders: dict[str, list[str]] = {name: [] for name in names}
    for i in range(positions):
        coin = rng.choices(names, popularity)[0]
        holders[coin].append(f"0x{i:040x}")
        mark = marks[coin]
        usd = min(100 * rng.paretovariate(1.2), 50_000_000)
        szi = Decimal(f"{usd / float(mark):.6g}") * (1 if rng.random() < 0.5 else -1)
        distance = rng.uniform(0.02, 0.6)
        side = 1 if szi > 0 else -1
        liq = float(mark) * (1 - side * distance)
        rate = 1 / 40
        cash = -side * liq * abs(float(szi)) * (1 - side * rate)  # equity = maintenance at liq
        book.accounts[f"0x{i:040x}"] = Account(
            positions={coin: BookPosition(to_units(szi), float(mark), "cross", 10, None, 20)},
            cross_raw_usd=round(cash, 6),
            snapshot_ms=0,
        )
    return book, names, popularity, marks, holders


def _party(rng: random.Random, holders: list[str], everyone: list[str]) -> str:
    return rng.choice(holders) if holders and rng.random() < 0.8 else rng.choice(everyone)


def run(
    positions: int = 100_000,
    coins: int = 200,
    trade_rate: float = 35.0,
    minutes: int = 60,
    engine_s: int = 10,
    seed: int = 1,
    params: HeatmapParams | None = None,
) -> dict[str, object]:
    params = params or HeatmapParams()
    return asyncio.run(_run(positions, coins, trade_rate, minutes, engine_s, seed, params))


async def _run(
    positions: int,
    coins: int,
    trade_rate: float,
    minutes: int,
    engine_s: int,
    seed: int,
    params: HeatmapParams,
) -> dict[str, object]:
    rng = random.Random(seed)
    book, names, popularity, marks, holders = _world(rng, positions, coins)
    addresses = list(book.accounts)
    clock_ms = T0_MS
    sink = _Counter()
    engine = LiquidationHeatmap(book, sink, clock=lambda: clock_ms, params=params)
    builder = PointBuilder()
    updates = PositionUpdates(book, builder, sink, clock=lambda: clock_ms)

    def changed(change: PositionChange) -> None:
        updates.changed(change)
        line = builder.position_change(change)
        if line is not None:
            sink.write([line])

    book.on_change = changed
    warmup_min = engine.params.keyframe_every_ms // 60_000
    steps = (warmup_min + minutes) * 60 // engine_s
    run_seconds: list[float] = []
    longest_block = 0.0
    counted: Counter[str] = Counter()
    for step in range(steps):
        before = Counter(sink.counts)
        for second in range(engine_s):
            clock_ms = T0_MS + (step * engine_s + second) * 1000
            book.apply_trades(_trades(rng, names, popularity, marks, holders, addresses,
                                      trade_rate, clock_ms, step * engine_s + second))  # fmt: skip
            await updates()
        clock_ms = T0_MS + (step + 1) * engine_s * 1000
        for coin in names:
            marks[coin] = Decimal(f"{float(marks[coin]) * math.exp(rng.gauss(0, 0.0005)):.5g}")
        book.set_market(marks, book.rules)
        watch = _LoopWatch()
        watcher = asyncio.create_task(watch.run())
        await asyncio.sleep(0)
        started = time.perf_counter()
        await engine()
        elapsed = time.perf_counter() - started
        watcher.cancel()
        if engine.latest_ms == clock_ms:
            run_seconds.append(elapsed)
            longest_block = max(longest_block, watch.longest)
        if step * engine_s >= warmup_min * 60:
            counted.update(sink.counts - before)
    scale = DAY_S / (minutes * 60)
    per_day = {name: round(n * scale) for name, n in sorted(counted.items())}
    heatmap = {name: n for name, n in per_day.items() if name.startswith("liq_")}
    per_day["trades"] = round(trade_rate * DAY_S)
    per_day["asset_ctx"] = coins * DAY_S // ASSET_CTX_EVERY_S
    minutes_a_day = DAY_S // 60
    by_cadence = {  # not run here: at most what each engine's cadence allows
        "order_flow": coins * minutes_a_day,  # a bar per coin and minute with trades
        "cvd": len(DEFAULT_WINDOWS) * coins * minutes_a_day,  # per window, coin and minute
        "positioning": coins * DAY_S // engine_s,  # every coin, every engine run
        "global_metrics": DAY_S // engine_s,
    }
    levels = sum(len(p.levels) for p in engine.latest.values())
    return {
        "positions": positions,
        "coins": coins,
        "trade_rate": trade_rate,
        "minutes_measured": minutes,
        "points_per_day": dict(sorted(per_day.items())),
        "points_per_day_at_most_by_cadence": by_cadence,
        "heatmap_points_per_day": sum(heatmap.values()),
        "previous_heatmap_points_per_day": coins * OLD_BUCKETS * DAY_S // engine_s,
        "non_empty_levels": levels,
        "store_run_ms_median": round(sorted(run_seconds)[len(run_seconds) // 2] * 1000, 1),
        "store_run_ms_max": round(max(run_seconds) * 1000, 1),
        "event_loop_block_ms_max": round(longest_block * 1000, 1),
    }


def _trades(
    rng: random.Random,
    names: list[str],
    popularity: list[float],
    marks: dict[str, Decimal],
    holders: dict[str, list[str]],
    addresses: list[str],
    trade_rate: float,
    clock_ms: int,
    second: int,
) -> list[Trade]:
    """The trades of one second (`trade_rate` on average, spread evenly)."""
    count = events_in_second(second, trade_rate)
    batch = []
    for n in range(count):
        coin = rng.choices(names, popularity)[0]
        buyer = _party(rng, holders[coin], addresses)
        seller = _party(rng, holders[coin], addresses)
        if buyer == seller:
            continue
        mark = marks[coin]
        sz = Decimal(f"{rng.uniform(100, 5_000) / float(mark):.4g}")
        batch.append(
            Trade(
                coin=coin,
                side="buy",
                px=mark,
                sz=sz,
                time_ms=clock_ms,
                hash="0x0",
                tid=second * 1000 + n + 1,
                buyer=buyer,
                seller=seller,
            )
        )
    return batch


class _LoopWatch:
    """The longest stretch the event loop did not come back to this task, while it runs."""

    def __init__(self) -> None:
        self.longest = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--coins", type=int, default=200)
    parser.add_argument("--trade-rate", type=float, default=35.0)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--change-pct", type=float, default=HeatmapParams().change_pct)
    parser.add_argument("--visible-pct", type=float, default=HeatmapParams().visible_pct)
    args = parser.parse_args()
    params = HeatmapParams(change_pct=args.change_pct, visible_pct=args.visible_pct)
    figures = run(args.positions, args.coins, args.trade_rate, args.minutes, params=params)
    print(json.dumps({"params": str(params), **figures}, indent=2))


if __name__ == "__main__":
    main()
