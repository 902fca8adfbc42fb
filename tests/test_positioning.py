"""Positioning and global metrics from a known set of tracked positions, and the latest-positions
state they are computed from (full load, incremental refresh, late writes, expiry)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from process import PointBuilder
from process.engines.positioning import PositioningEngine, largest_positions
from process.engines.positions_state import (
    LatestPositions,
    PositionRow,
    SnapshotSource,
    load_latest_positions,
)
from tests.conftest import influxql
from validate import AssetCtx, ClearinghouseState, parse_clearinghouse_state

NOW = 1_717_171_717_000  # ms: the engines' injected clock
MINUTE = 60_000
CUTOFF = 20 * MINUTE
SUMMARY = {"accountValue": "1", "totalNtlPos": "1", "totalRawUsd": "1", "totalMarginUsed": "0"}


def addr(name: str) -> str:
    return "0x" + name.encode().hex().ljust(40, "0")


def pos(coin: str, szi: str, usd: str, liq: str | None = None, entry: str = "1000") -> dict:
    """One `assetPositions[i].position` of `clearinghouseState` (wire format)."""
    return {
        "coin": coin,
        "szi": szi,
        "leverage": {"type": "cross", "value": 10},
        "entryPx": entry,
        "positionValue": usd,
        "unrealizedPnl": "0",
        "marginUsed": "0",
        "liquidationPx": liq,
    }


def state(*positions: dict) -> ClearinghouseState:
    raw = {
        "marginSummary": SUMMARY,
        "crossMarginSummary": SUMMARY,
        "withdrawable": "0",
        "assetPositions": [{"type": "oneWay", "position": p} for p in positions],
    }
    parsed, rejected = parse_clearinghouse_state(raw)
    assert parsed is not None and not rejected
    return parsed


def ctx(
    coin: str,
    mark: str,
    mid: str | None,
    oi: str = "1000",
    vlm: str = "0",
    funding: str = "0.0000125",
) -> AssetCtx:
    d = Decimal
    return AssetCtx(
        coin=coin,
        funding=d(funding),
        open_interest=d(oi),
        oracle_px=d(mark),
        mark_px=d(mark),
        prev_day_px=d(mark),
        day_ntl_vlm=d(vlm),
        premium=None,
        mid_px=None if mid is None else d(mid),
    )


def write(url: str, db: str, lines: Iterable[str]) -> None:
    body = "\n".join(lines).encode()
    response = httpx.post(f"{url}/write", params={"db": db, "precision": "ns"}, content=body)
    assert response.status_code == 204, response.text


@dataclass
class Lines:
    """The writer as engines see it: lines handed over, here kept for the test to post."""

    lines: list[str]

    def write(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)


async def run_engines(target: InfluxTarget, *engines: type, now: int = NOW, **kwargs: Any) -> None:
    """Run the engine classes on one shared snapshot source and write what they produce."""
    out = Lines([])
    async with AsyncInfluxReader(target) as reader:
        snapshots = SnapshotSource(reader, clock=lambda: now)
        for engine in engines:
            await engine(snapshots, out, **kwargs)()
    write(target.url, target.db, out.lines)


NS = NOW * 10**6


@pytest.fixture
def target(influxd: LocalInfluxd, influx_db: str) -> Iterator[InfluxTarget]:
    yield InfluxTarget(influxd.url, influx_db)


def known_set() -> list[str]:
    builder = PointBuilder()
    polled = NOW - 3 * MINUTE
    lines = builder.positions(
        addr("alice"),
        state(pos("BTC", "5", "5000", "800", entry="950"), pos("ETH", "1", "2000", entry="1900")),
        polled,
    )
    lines += builder.positions(addr("bob"), state(pos("BTC", "2.5", "2500", entry="1010")), polled)
    lines += builder.positions(addr("carol"), state(pos("BTC", "-1", "1000", entry="1100")), polled)
    lines += builder.positions(addr("dave"), state(pos("BTC", "-0.5", "500", entry="1040")), polled)
    lines += builder.positions(addr("erin"), state(pos("ETH", "3", "6000", entry="2100")), polled)
    for k in range(1, 13):  # SOL: odd k long, even k short, k x 1000 USD; no asset_ctx
        szi = str(k if k % 2 else -k)
        lines += builder.positions(
            addr(f"s{k}"), state(pos("SOL", szi, f"{k}000", entry="100")), polled
        )
    # not counted: a closed position, a stale one
    lines += builder.positions(addr("frank"), state(pos("BTC", "9", "9000")), NOW - 10 * MINUTE)
    lines += builder.positions(addr("frank"), state(), polled, closed=[("BTC", "long")])
    lines += builder.positions(addr("gone"), state(pos("ETH", "9", "9000")), NOW - CUTOFF - 1)
    lines += builder.asset_ctxs(
        [
            ctx("BTC", "1000", "1000", oi="2000", vlm="5000000", funding="0.0000125"),
            ctx("ETH", "2000", "2000", oi="100", vlm="300000", funding="-0.0001"),
            ctx("AVAX", "20", "20", oi="10", vlm="1000"),  # nothing tracked: only in the totals
        ],
        NOW - 5_000,
    )
    return lines


async def test_per_coin_and_global_figures_are_exact(target: InfluxTarget) -> None:
    write(target.url, target.db, known_set())

    await run_engines(target, PositioningEngine)

    rows = {
        row["coin"]: row for row in influxql(target.url, 'SELECT * FROM "positioning"', target.db)
    }
    sol_long = sum(k * 1000.0 for k in range(1, 13, 2))
    sol_short = sum(k * 1000.0 for k in range(2, 13, 2))
    assert rows == {
        "BTC": {
            "time": NS,
            "coin": "BTC",
            "long_notional": 7500.0,
            "short_notional": 1500.0,
            "ls_ratio": 5.0,
            "long_traders": 2,
            "short_traders": 2,
            "long_avg_entry": (5 * 950 + 2.5 * 1010) / 7.5,  # 970
            "short_avg_entry": (1 * 1100 + 0.5 * 1040) / 1.5,  # 1080
            "top10_share": 1.0,
            "funding": 0.0000125,
            "open_interest_usd": 2_000_000.0,
            "tracked_share": 9000 / (2 * 2_000_000),
        },
        "ETH": {
            "time": NS,
            "coin": "ETH",
            "long_notional": 8000.0,
            "short_notional": 0.0,
            "ls_ratio": None,  # no shorts: no ratio
            "long_traders": 2,
            "short_traders": 0,
            "long_avg_entry": (1 * 1900 + 3 * 2100) / 4,
            "short_avg_entry": None,
            "top10_share": 1.0,
            "funding": -0.0001,
            "open_interest_usd": 200_000.0,
            "tracked_share": 8000 / (2 * 200_000),
        },
        "SOL": {
            "time": NS,
            "coin": "SOL",
            "long_notional": sol_long,
            "short_notional": sol_short,
            "ls_ratio": sol_long / sol_short,
            "long_traders": 6,
            "short_traders": 6,
            "long_avg_entry": 100.0,
            "short_avg_entry": 100.0,
            "top10_share": sum(k * 1000.0 for k in range(3, 13)) / (sol_long + sol_short),
            "funding": None,  # no asset_ctx
            "open_interest_usd": None,
            "tracked_share": None,
        },
    }
    field_types = {
        row["fieldKey"]: row["fieldType"]
        for row in influxql(target.url, 'SHOW FIELD KEYS FROM "positioning"', target.db)
    }
    assert field_types["long_traders"] == field_types["short_traders"] == "integer"

    [total] = influxql(target.url, 'SELECT * FROM "global_metrics"', target.db)
    long_usd, short_usd = 7500 + 8000 + sol_long, 1500 + sol_short
    oi = 2_000_000.0 + 200_000.0 + 200.0
    assert total == {
        "time": NS,
        "long_notional": long_usd,
        "short_notional": short_usd,
        "ls_ratio": long_usd / short_usd,
        "traders": 5 + 12,  # alice holds BTC and ETH: counted once; frank closed, gone stale
        "open_interest_usd": oi,
        "tracked_share": (long_usd + short_usd) / (2 * oi),
        "day_ntl_vlm": 5_000_000.0 + 300_000.0 + 1000.0,
    }


class CountingReader:
    def __init__(self, reader: AsyncInfluxReader) -> None:
        self.reader, self.calls = reader, 0

    async def rows(self, influxql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        self.calls += 1
        return await self.reader.rows(influxql, params)


async def test_a_snapshot_is_loaded_once_per_run_then_only_what_is_new(
    target: InfluxTarget,
) -> None:
    write(target.url, target.db, known_set())
    clock = [NOW]
    out = Lines([])
    async with AsyncInfluxReader(target) as reader:
        counting = CountingReader(reader)
        snapshots = SnapshotSource(counting, clock=lambda: clock[0], max_age_ms=5_000)
        positioning = PositioningEngine(snapshots, out)
        await positioning()
        first = counting.calls  # slices of the 20-minute window, then the asset contexts
        await snapshots.get()
        assert counting.calls == first  # a second reader within the run shares the load
        clock[0] += 10_000  # the next run loads again, only what is new: fewer slices
        await positioning()
        assert 2 <= counting.calls - first < first
    assert positioning.coins == 3


def rows_of(positions: Mapping[str, Sequence[PositionRow]]) -> dict[tuple[str, str], tuple]:
    return {
        (p.address, p.coin): (p.side, p.szi, p.size_usd, p.liq_px)
        for v in positions.values()
        for p in v
    }


async def test_incremental_refresh_equals_a_full_load(target: InfluxTarget) -> None:
    builder = PointBuilder()
    write(target.url, target.db, known_set())
    state_ = LatestPositions(CUTOFF, overlap_ms=MINUTE, full_every_ms=60 * MINUTE)
    async with AsyncInfluxReader(target) as reader:
        first = await state_.refresh(reader, NOW)
        assert rows_of(first) == rows_of(await load_latest_positions(reader, NOW))
        assert len(rows_of(first)) == 5 + 12 + 1  # alice twice
        full_rows = state_.rows_read

        # after the refresh: a flip, a close, a new position, and a late write inside the overlap
        later = NOW + 10_000
        flip = state(pos("BTC", "-2", "2000", "1200"))
        lines = builder.positions(addr("bob"), flip, later, closed=[("BTC", "long")])
        lines += builder.positions(addr("carol"), state(), later, closed=[("BTC", "short")])
        lines += builder.positions(addr("new"), state(pos("ETH", "1", "2000")), later)
        lines += builder.positions(addr("late"), state(pos("ETH", "-1", "2000")), NOW - 30_000)
        write(target.url, target.db, lines)

        second = await state_.refresh(reader, later + 1)
        assert state_.rows_read < full_rows
        assert rows_of(second) == rows_of(await load_latest_positions(reader, later + 1))
        got = rows_of(second)
        assert got[addr("bob"), "BTC"] == ("short", -2.0, 2000.0, 1200.0)
        assert (addr("carol"), "BTC") not in got
        assert (addr("new"), "ETH") in got and (addr("late"), "ETH") in got

        # 21 minutes on, nothing polled since: everything is stale
        assert await state_.refresh(reader, NOW + 21 * MINUTE) == {}


def test_largest_positions() -> None:
    def row(address: str, coin: str, usd: float) -> PositionRow:
        return PositionRow(address, coin, "long", 1.0, usd, None, None, 0)

    positions = {
        "BTC": [row("a", "BTC", 10.0), row("b", "BTC", 30.0), row("c", "BTC", 20.0)],
        "ETH": [row("a", "ETH", 25.0), row("d", "ETH", 30.0)],
    }
    assert [(p.address, p.coin) for p in largest_positions(positions, n=3)] == [
        ("b", "BTC"),
        ("d", "ETH"),
        ("a", "ETH"),
    ]
    assert [p.address for p in largest_positions(positions, coin="BTC")] == ["b", "c", "a"]
    assert largest_positions(positions, coin="SOL") == []
