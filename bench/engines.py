"""The positioning engine: compute time for 10k / 100k / 1M tracked positions, and the time to
load the latest positions back from a real influxd (the heatmap's cost and volume, from the
position book: `bench.heatmap_volume`).

Synthetic market: `coins` perps with Zipf-like popularity (coin k holds a share ~ 1/k of the
positions), sizes Pareto(alpha 1.2) from $100 capped at $500M, ~1.5 positions per address, 60 %
long, liquidation prices 1-60 % beyond the mid on the losing side (10 % have none).

- `positioning_s`: seconds per run of the pure compute (`compute`) and of compute
  plus line-protocol encoding (`with_lines`), median of `rounds`, from an in-memory snapshot.
- `load_s`: the positions written as one poll each, spread over the 20-minute window, then read
  back: `full` (a cold `LatestPositions.refresh`: every point of the window, 1-minute slices),
  `full_one_query` (the same in one query) and `incremental` (the next run 10 s later, after the
  10 s of new polls the same poll rate brings: what a warm engine pays every run).

`python -m bench.engines [--sizes 10000 100000 1000000] [--load 10000 100000]` prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from db.client import InfluxTarget
from db.line_protocol import encode_point
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from process.engines.positioning import compute_positioning, positioning_lines
from process.engines.positions_state import (
    DEFAULT_CUTOFF_MS,
    CoinContext,
    LatestPositions,
    MarketSnapshot,
    PositionRow,
)

NOW_MS = 1_760_000_000_000
NS_PER_MS = 1_000_000
BATCH = 5000


def synthetic(count: int, coins: int = 200, seed: int = 7) -> MarketSnapshot:
    """`count` open positions polled within the last 20 minutes, and a context per coin."""
    rng = random.Random(seed)
    names = [f"C{k:03d}" for k in range(coins)]
    mids = {name: math.exp(rng.uniform(math.log(0.01), math.log(100_000))) for name in names}
    weights = [1 / (k + 1) for k in range(coins)]
    chosen = rng.choices(names, weights, k=count)
    addresses = max(1, int(count / 1.5))
    taken: set[tuple[str, str]] = set()
    positions: dict[str, list[PositionRow]] = {name: [] for name in names}
    for i, coin in enumerate(chosen):
        address = f"0x{rng.randrange(addresses):040x}"
        if (address, coin) in taken:  # one position per address and coin
            address = f"0x{addresses + i:040x}"
        taken.add((address, coin))
        mid = mids[coin]
        usd = min(100.0 * rng.paretovariate(1.2), 5e8)
        long = rng.random() < 0.6
        distance = rng.uniform(0.01, 0.6)
        liq = None if rng.random() < 0.1 else mid * (1 - distance if long else 1 + distance)
        entry = mid * rng.uniform(0.9, 1.1)
        szi = usd / mid if long else -usd / mid
        polled_ms = NOW_MS - rng.randrange(DEFAULT_CUTOFF_MS)
        side = "long" if long else "short"
        row = PositionRow(address, coin, side, szi, usd, entry, liq, polled_ms * NS_PER_MS + i)
        positions[coin].append(row)
    contexts = {
        name: CoinContext(name, mids[name], 1e6 + 1e9 * weights[k], 1e-5, 1e7, NOW_MS * NS_PER_MS)
        for k, name in enumerate(names)
    }
    return MarketSnapshot(NOW_MS, {c: rows for c, rows in positions.items() if rows}, contexts)


def _median_time(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


def compute_times(snapshot: MarketSnapshot, rounds: int) -> dict:
    def positioning_with_lines() -> None:
        positioning_lines(*compute_positioning(snapshot), snapshot.time_ms)

    return {
        "compute": _median_time(lambda: compute_positioning(snapshot), rounds),
        "with_lines": _median_time(positioning_with_lines, rounds),
    }


def position_lines(rows: Sequence[PositionRow], shift_ms: int = 0) -> list[str]:
    """The `positions` points the positions job would have written for these rows."""
    return [
        encode_point(
            "positions",
            {"coin": p.coin, "side": p.side},
            {
                "address": p.address,
                "szi": p.szi,
                "size_usd": p.size_usd,
                "entry_px": p.entry_px,
                "liq_px": p.liq_px,
                "leverage": 10.0,
                "unrealized_pnl": 0.0,
            },
            p.time_ns + shift_ms * NS_PER_MS,
        )
        for p in rows
    ]


def _post(client: httpx.Client, db: str, lines: list[str]) -> None:
    for start in range(0, len(lines), BATCH):
        body = "\n".join(lines[start : start + BATCH]).encode()
        client.post("/write", params={"db": db, "precision": "ns"}, content=body).raise_for_status()


async def _load(target: InfluxTarget, rows: list[PositionRow], client: httpx.Client) -> dict:
    async with AsyncInfluxReader(target) as reader:
        started = time.perf_counter()
        state = LatestPositions()
        loaded = await state.refresh(reader, NOW_MS)
        full = time.perf_counter() - started
        assert sum(len(v) for v in loaded.values()) == len(rows), "load lost positions"

        started = time.perf_counter()
        await LatestPositions(slice_ms=DEFAULT_CUTOFF_MS).refresh(reader, NOW_MS)
        one_query = time.perf_counter() - started

        # 10 s later: the polls of those 10 s (the same rate: count / 20 min) arrive
        fresh = len(rows) * 10_000 // DEFAULT_CUTOFF_MS
        _post(client, target.db, position_lines(rows[:fresh], shift_ms=DEFAULT_CUTOFF_MS))
        started = time.perf_counter()
        await state.refresh(reader, NOW_MS + 10_000)
        incremental = time.perf_counter() - started
        rows_incremental = state.rows_read
    return {
        "full": round(full, 4),
        "full_one_query": round(one_query, 4),
        "incremental": round(incremental, 4),
        "incremental_rows_read": rows_incremental,
    }


def load_times(snapshots: dict[int, MarketSnapshot]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hyperflux-bench-") as tmp:
        server = LocalInfluxd(Path(tmp) / "influxd")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for count, snapshot in snapshots.items():
                    db = f"engines{count}"
                    client.post("/query", data={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
                    rows = [p for v in snapshot.positions.values() for p in v]
                    rows.sort(key=lambda p: p.time_ns)
                    started = time.perf_counter()
                    _post(client, db, position_lines(rows))
                    written = time.perf_counter() - started
                    result = asyncio.run(_load(InfluxTarget(server.url, db), rows, client))
                    out[str(count)] = {"write": round(written, 3), **result}
        finally:
            server.stop()
    return out


def run(
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000),
    load_sizes: Sequence[int] = (10_000, 100_000),
    rounds: int = 3,
) -> dict:
    """{"positioning_s": {size: {...}}, "load_s": {...}} in seconds."""
    positioning_s = {}
    snapshots = {}
    for count in sorted(set(sizes) | set(load_sizes)):
        snapshot = synthetic(count)
        if count in sizes:
            positioning_s[str(count)] = compute_times(snapshot, rounds)
        if count in load_sizes:
            snapshots[count] = snapshot
    return {
        "positioning_s": positioning_s,
        "load_s": load_times(snapshots) if snapshots else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="engine compute and load times (seconds)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--load", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.sizes, args.load, args.rounds), indent=2))


if __name__ == "__main__":
    main()
