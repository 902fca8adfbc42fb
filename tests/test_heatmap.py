"""Liquidation heatmap: positions written as the positions job writes them, the engine run with a
fixed clock, every bucket of every coin read back from a real influxd and checked exactly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.reader import AsyncInfluxReader
from process import PointBuilder
from process.engines.heatmap import HeatmapEngine, HeatmapParams, bucket_edges
from process.engines.positions_state import SnapshotSource
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


@pytest.fixture
def target(influxd: LocalInfluxd, influx_db: str) -> Iterator[InfluxTarget]:
    yield InfluxTarget(influxd.url, influx_db)


async def run_engines(target: InfluxTarget, *engines: type, now: int = NOW, **kwargs: Any) -> None:
    """Run the engine classes on one shared snapshot source and write what they produce."""
    out = Lines([])
    async with AsyncInfluxReader(target) as reader:
        snapshots = SnapshotSource(reader, clock=lambda: now)
        for engine in engines:
            await engine(snapshots, out, **kwargs)()
    write(target.url, target.db, out.lines)


@dataclass(frozen=True)
class Case:
    """A tracked position as its latest poll shows it, and whether the heatmap must count it."""

    name: str
    coin: str
    szi: str
    usd: str
    liq: str | None
    counted: bool
    bucket: str | None = None  # the bucket the edge rule puts it in, written out by hand


# BTC: mid 1000 -> range [850, 1150), 50 buckets of exactly 6 USD: edge i = 850 + 6 i.
# DOGE: mid 100 -> high = 100 * 1.15 = 114.99999999999999 in floats (not 115).
# ETH: midPx null -> the mark (2000) is the mid: edges 1700 + 12 i.
CASES = [
    Case("on_inner_edge", "BTC", "5", "5000", "856", True, "01"),
    Case("same_bucket", "BTC", "1.5", "1500.25", "857", True, "01"),
    Case("at_range_low", "BTC", "2.5", "2500.5", "850", True, "00"),
    Case("exactly_min_size", "BTC", "-1", "1000", "1149.5", True, "49"),
    Case("below_min_size", "BTC", "-1", "999.75", "1100", False),
    Case("at_range_high", "BTC", "-4", "4000", "1150", False),
    Case("below_range", "BTC", "3", "3000", "849.75", False),
    Case("no_liq_px", "BTC", "7", "7000", None, False),
    Case("at_mid", "BTC", "2", "2000", "1000", True, "25"),
    Case("short_below_mid", "BTC", "-1.5", "1500", "900", True, "08"),
    Case("eth_mark_as_mid", "ETH", "5", "10000", "1800", True, "08"),
    Case("doge_at_float_high", "DOGE", "-20", "2000", "114.99999999999999", False),
    Case("doge_at_115", "DOGE", "-10", "1000", "115", False),
    Case("doge_just_inside", "DOGE", "-30", "3000", "114.99999999999997", True, "49"),
    Case("sol_no_asset_ctx", "SOL", "100", "15000", "120", False),
]


async def test_every_bucket_of_every_coin_is_exact(target: InfluxTarget) -> None:
    builder = PointBuilder()
    lines: list[str] = []
    polled = NOW - 2 * MINUTE
    for case in CASES:
        p = pos(case.coin, case.szi, case.usd, case.liq)
        lines += builder.positions(addr(case.name), state(p), polled)

    # the latest poll wins; older polls, stale and closed positions do not count
    t1, t2 = NOW - 9 * MINUTE, NOW - 4 * MINUTE
    lines += builder.positions(addr("repolled"), state(pos("BTC", "1", "1000", "860")), t1)
    lines += builder.positions(addr("repolled"), state(pos("BTC", "2", "2000", "880")), t2)
    lines += builder.positions(addr("closed"), state(pos("BTC", "6", "6000", "900")), t1)
    lines += builder.positions(addr("closed"), state(), t2, closed=[("BTC", "long")])
    lines += builder.positions(addr("flip"), state(pos("BTC", "8", "8000", "870")), t1)
    flip = state(pos("BTC", "-3.5", "3500", "1120"))  # long -> short in one poll: two series
    lines += builder.positions(addr("flip"), flip, t2, closed=[("BTC", "long")])
    lines += builder.positions(addr("flip_up"), state(pos("BTC", "-2", "2000", "1130")), t1)
    flip_up = state(pos("BTC", "2.5", "2500", "874"))  # and short -> long
    lines += builder.positions(addr("flip_up"), flip_up, t2, closed=[("BTC", "short")])
    stale = state(pos("BTC", "9", "9000", "950"))
    lines += builder.positions(addr("stale"), stale, NOW - CUTOFF - 1)
    at_cutoff = state(pos("BTC", "1.25", "1250", "950"))
    lines += builder.positions(addr("at_cutoff"), at_cutoff, NOW - CUTOFF)
    lines += builder.positions(addr("future"), state(pos("BTC", "1", "5000", "950")), NOW + 1)

    lines += builder.asset_ctxs([ctx("BTC", "990", "990")], NOW - MINUTE)  # older mid: ignored
    lines += builder.asset_ctxs(
        [ctx("BTC", "1001", "1000"), ctx("ETH", "2000", None, oi="50"), ctx("DOGE", "100", "100")],
        NOW - 10_000,
    )
    lines += builder.asset_ctxs([ctx("AVAX", "20", "20")], NOW - 10_000)  # nothing tracked
    write(target.url, target.db, lines)

    await run_engines(target, HeatmapEngine)

    # what counts, assigned to buckets here by scanning the edges (inclusive low, exclusive high)
    counted = [(c.coin, float(c.szi) > 0, float(c.usd), float(c.liq)) for c in CASES if c.counted]
    counted += [
        ("BTC", True, 2000.0, 880.0),  # repolled: its latest poll
        ("BTC", False, 3500.0, 1120.0),  # flip: once, as the short
        ("BTC", True, 2500.0, 874.0),  # flip_up: once, as the long
        ("BTC", True, 1250.0, 950.0),  # polled exactly at the cutoff: still fresh
    ]
    tracked = {
        "BTC": sum(float(c.usd) for c in CASES if c.coin == "BTC") + 2000 + 3500 + 2500 + 1250,
        "ETH": 10000.0,
        "DOGE": 6000.0,
    }
    mids = {"BTC": 1000.0, "ETH": 2000.0, "DOGE": 100.0}
    oi_usd = {"BTC": 1000 * 1001.0, "ETH": 50 * 2000.0, "DOGE": 1000 * 100.0}

    rows = influxql(target.url, 'SELECT * FROM "liq_heatmap"', target.db)
    assert {row["time"] for row in rows} == {NOW * 10**6}
    assert {(row["coin"], row["bucket"]) for row in rows} == {
        (coin, f"{i:02d}") for coin in mids for i in range(50)
    }
    for coin, mid in mids.items():
        low, high = mid * (1 - 0.15), mid * (1 + 0.15)
        edges = [low + (high - low) * i / 50 for i in range(50)] + [high]
        buckets = sorted(
            (row for row in rows if row["coin"] == coin), key=lambda row: row["bucket"]
        )
        for i, row in enumerate(buckets):
            inside = [c for c in counted if c[0] == coin and edges[i] <= c[3] < edges[i + 1]]
            assert row == {
                "time": NOW * 10**6,
                "coin": coin,
                "bucket": f"{i:02d}",
                "price_low": edges[i],
                "price_high": edges[i + 1],
                "long_liq_usd": sum(c[2] for c in inside if c[1]),
                "short_liq_usd": sum(c[2] for c in inside if not c[1]),
                "long_count": sum(1 for c in inside if c[1]),
                "short_count": sum(1 for c in inside if not c[1]),
                "mid_px": mid,
                "tracked_oi_usd": tracked[coin],
                "open_interest_usd": oi_usd[coin],
                "tracked_share": tracked[coin] / (2 * oi_usd[coin]),
            }, (coin, i)

    # the edge rule written out by hand, bucket by bucket
    by_key = {(row["coin"], row["bucket"]): row for row in rows}
    assert by_key["BTC", "01"]["long_liq_usd"] == 6500.25 and by_key["BTC", "01"]["long_count"] == 2
    assert by_key["BTC", "00"]["long_liq_usd"] == 2500.5 and by_key["BTC", "00"]["price_low"] == 850
    assert (
        by_key["BTC", "49"]["short_liq_usd"] == 1000 and by_key["BTC", "49"]["price_high"] == 1150
    )
    assert by_key["BTC", "25"]["long_liq_usd"] == 2000 and by_key["BTC", "25"]["price_low"] == 1000
    assert by_key["BTC", "05"]["long_liq_usd"] == 2000  # repolled
    assert by_key["BTC", "16"]["long_liq_usd"] == 1250  # at the cutoff (950 in [946, 952))
    assert by_key["BTC", "45"]["short_liq_usd"] == 3500 and by_key["BTC", "45"]["long_count"] == 0
    assert by_key["BTC", "04"]["long_liq_usd"] == 2500 and by_key["BTC", "04"]["short_count"] == 0
    assert by_key["BTC", "08"]["short_liq_usd"] == 1500
    assert by_key["ETH", "08"]["long_liq_usd"] == 10000 and by_key["ETH", "08"]["mid_px"] == 2000
    assert (
        by_key["DOGE", "49"]["short_liq_usd"] == 3000 and by_key["DOGE", "49"]["short_count"] == 1
    )
    assert sum(row["long_count"] + row["short_count"] for row in rows) == len(counted)
    for case in CASES:
        if case.bucket is not None:
            row = by_key[case.coin, case.bucket]
            assert row["price_low"] <= float(case.liq) < row["price_high"], case  # type: ignore[arg-type]


async def test_configurable_buckets_and_unknown_open_interest(target: InfluxTarget) -> None:
    builder = PointBuilder()
    lines = builder.positions(addr("a"), state(pos("BTC", "1", "500", "1100")), NOW - MINUTE)
    lines += builder.positions(addr("b"), state(pos("BTC", "-1", "700", "1250")), NOW - MINUTE)
    lines += builder.asset_ctxs([ctx("BTC", "1000", "1000", oi="0")], NOW - 1000)
    # an asset context older than 5 minutes is no mid price: no heatmap for ETH
    lines += builder.positions(addr("c"), state(pos("ETH", "1", "5000", "1900")), NOW - MINUTE)
    lines += builder.asset_ctxs([ctx("ETH", "2000", "2000")], NOW - 5 * MINUTE - 1)
    write(target.url, target.db, lines)

    await run_engines(target, HeatmapEngine, buckets=4, range_pct=0.5, min_size_usd=0.0)

    rows = influxql(target.url, 'SELECT * FROM "liq_heatmap"', target.db)
    assert {row["coin"] for row in rows} == {"BTC"}
    rows.sort(key=lambda row: row["bucket"])
    assert [(row["bucket"], row["price_low"], row["price_high"]) for row in rows] == [
        ("00", 500.0, 750.0),
        ("01", 750.0, 1000.0),
        ("02", 1000.0, 1250.0),
        ("03", 1250.0, 1500.0),
    ]
    assert [(row["long_liq_usd"], row["short_liq_usd"]) for row in rows] == [
        (0.0, 0.0),
        (0.0, 0.0),
        (500.0, 0.0),
        (0.0, 700.0),
    ]
    assert {row["open_interest_usd"] for row in rows} == {0.0}
    assert {row.get("tracked_share") for row in rows} == {None}  # open interest 0: no share


def test_edges_are_contiguous_and_parameters_are_checked() -> None:
    edges = bucket_edges(84981.0, 50, 0.15)
    assert len(edges) == 51 and edges == sorted(set(edges))
    assert edges[0] == 84981.0 * (1 - 0.15) and edges[-1] == 84981.0 * (1 + 0.15)
    for bad in ({"buckets": 0}, {"range_pct": 1.0}, {"range_pct": 0.0}, {"min_size_usd": -1.0}):
        with pytest.raises(ValueError):
            HeatmapParams(**bad)  # type: ignore[arg-type]
