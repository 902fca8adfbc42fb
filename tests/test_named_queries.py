"""Every named query against a real influxd: the columns users rely on, and the reductions."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from db import InfluxTarget, read_from_influx
from db.line_protocol import encode_point
from db.queries import QUERIES
from db.schema import LIQ_COVERAGE, LIQ_LEVELS, MEASUREMENTS
from tests.conftest import influxql
from utils.errors import InfluxQueryError

REQUIRED = {
    "latest_positions",
    "asset_history",
    "global_metrics",
    "trades",
    "order_flow",
    "cvd",
    "liq_heatmap",
    "liq_levels",
    "liq_coverage",
    "liquidations",
    "hlp_positions",
    "whales",
    "funding",
}
TAG_VALUES = {
    "coin": "BTC",
    "window": "5m",
    "interval": "1h",
    "side": "long",
    "vault": "HLP",
    "by": "pnl",
    "rank": "1",
}
WHO = "0x" + "ab" * 20


def write(url: str, db: str, lines: list[str]) -> None:
    response = httpx.post(
        f"{url}/write", params={"db": db, "precision": "ns"}, content="\n".join(lines)
    )
    assert response.status_code == 204, response.text


def sample_point(name: str, time_ns: int) -> str:
    """One point of a measurement with every tag and field of the contract."""
    measurement = MEASUREMENTS[name]
    tags = {tag: TAG_VALUES.get(tag, "07") for tag in measurement.tags}
    fields: dict[str, object] = {}
    for field in measurement.fields:
        if field in measurement.ints:
            fields[field] = 3
        elif field in ("address", "buyer", "seller", "user", "reason"):
            fields[field] = "0x" + "ab" * 20
        else:
            fields[field] = 2.0
    if name == "pipeline_health":
        fields = {"trades_total": 1.0}
    return encode_point(name, tags, fields, time_ns)


def test_every_required_query_is_registered():
    assert set(QUERIES) >= REQUIRED


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_named_query_returns_its_columns_with_a_utc_index(influxd, influx_db, name):
    now = time.time_ns()
    write(influxd.url, influx_db, [sample_point(m, now - 10**9) for m in MEASUREMENTS])
    query = QUERIES[name]
    params = {"asset": "BTC"} if any(p.name == "asset" for p in query.params) else {}
    if any(p.name == "pool" for p in query.params):  # the HyperEVM pools' queries
        params["pool"] = "07"
    params |= {"window": "5m"} if name == "smart_money" else {}
    params |= {"address": WHO.upper().replace("0X", "0x")} if name == "wallet" else {}
    frame = read_from_influx(name, target=InfluxTarget(influxd.url, influx_db), **params)
    if name == "wallet":  # one point of each measurement about the address
        assert sorted(frame["_measurement"]) == sorted(
            ("account_equity", "position_changes", "positions", "smart_money", "wallet_profiles")
        )
        return
    assert len(frame) == 1, frame
    assert list(frame.columns[: len(query.columns)]) == list(query.columns)
    assert str(frame.index.tz) == "UTC"
    for column in query.columns:
        if column in query.ints:
            assert frame[column].dtype.kind == "i", column
        elif column not in MEASUREMENTS.get(name, MEASUREMENTS["trades"]).tags:
            assert frame[column].dtype.kind in "fOb", (column, frame[column].dtype)


def positions_line(address: str, coin: str, side: str, szi: float, usd: float, time_ns: int) -> str:
    fields = {"address": address, "szi": szi, "size_usd": usd, "entry_px": 100.0}
    return encode_point("positions", {"coin": coin, "side": side}, fields, time_ns)


def test_latest_positions_and_whales_reduce_to_each_address_latest_poll(influxd, influx_db):
    now_ms = time.time_ns() // 1_000_000
    ms = 1_000_000
    a, b, c, d = ("0x" + ch * 40 for ch in "abcd")
    write(
        influxd.url,
        influx_db,
        [
            positions_line(a, "BTC", "long", 1.0, 5_000.0, (now_ms - 60_000) * ms),
            positions_line(a, "BTC", "long", 2.0, 10_000.0, (now_ms - 30_000) * ms),  # latest
            positions_line(b, "BTC", "long", 0.0, 0.0, (now_ms - 20_000) * ms + 7),  # flip: close
            positions_line(b, "BTC", "short", -3.0, 30_000.0, (now_ms - 20_000) * ms + 1),
            positions_line(c, "BTC", "short", -1.0, 1_000.0, (now_ms - 50_000) * ms),
            positions_line(c, "BTC", "short", 0.0, 0.0, (now_ms - 10_000) * ms),  # closed
            positions_line(c, "BTC", "long", 9.0, 90_000.0, (now_ms - 3_600_000) * ms),  # stale
            positions_line(
                a, "ETH", "short", -5.0, 15_000.0, (now_ms - 30_000) * ms + 1
            ),  # a's poll
            positions_line(d, "ETH", "long", 4.0, 12_000.0, (now_ms - 40_000) * ms),
        ],
    )
    target = InfluxTarget(influxd.url, influx_db)
    latest = read_from_influx("latest_positions", target=target, asset="BTC", minutes=20)
    assert list(zip(latest["address"], latest["szi"], strict=True)) == [(b, -3.0), (a, 2.0)]
    whales = read_from_influx("whales", target=target, asset="BTC", n=1)
    assert list(whales["address"]) == [b]
    every = read_from_influx("latest_positions", target=target, minutes=20)  # cross-market
    assert list(zip(every["address"], every["coin"], every["szi"], strict=True)) == [
        (b, "BTC", -3.0),
        (a, "ETH", -5.0),
        (d, "ETH", 4.0),
        (a, "BTC", 2.0),
    ]
    assert list(read_from_influx("whales", target=target, n=2)["coin"]) == ["BTC", "ETH"]
    with pytest.raises(InfluxQueryError, match="closest known coin: 'BTC'"):
        read_from_influx("whales", target=target, asset="btc")


def level_line(level: str, minutes_ago: float, long_usd: float, short_usd: float, **kw) -> str:
    """A `liq_levels` point of BTC (or `coin`) as the heatmap engine writes it."""
    long_count = kw.get("long_count", 1 if long_usd else 0)
    short_count = kw.get("short_count", 1 if short_usd else 0)
    fields = {
        "price": float(level),
        "long_liq_usd": long_usd,
        "short_liq_usd": short_usd,
        "long_count": long_count,
        "short_count": short_count,
        "long_exact_usd": long_usd / 2,
        "short_exact_usd": short_usd / 2,
    }
    tags = {"coin": kw.get("coin", "BTC"), "level": level}
    return LIQ_LEVELS.line(tags, fields, time.time_ns() - round(minutes_ago * 60e9))


def test_liq_heatmap_returns_each_level_newest_value_without_the_empty_ones(influxd, influx_db):
    """Levels are written when they change and all again every hour (keyframe): the newest
    picture is each level's latest point in the last 61 min, an emptied level (its zero point)
    left out, in price order (not the tags' string order)."""
    lines = [
        level_line("84500", 55, 1_000.0, 0.0),  # keyframe
        level_line("84500", 2, 1_500.0, 0.0, long_count=2),  # changed since: this one
        level_line("100000", 55, 0.0, 7_000.0, short_count=3),  # unchanged since the keyframe
        level_line("90000", 55, 0.0, 2_000.0),
        level_line("90000", 1, 0.0, 0.0),  # emptied
        level_line("85000", 55, 0.0, 0.0),  # an empty point
        level_line("9500", 55, 500.0, 0.0),
        level_line("80000", 70, 9_000.0, 0.0),  # older than any keyframe: not in the picture
        level_line("84500", 1, 99.0, 0.0, coin="ETH"),  # another coin
    ]
    write(influxd.url, influx_db, lines)
    target = InfluxTarget(influxd.url, influx_db)
    frame = read_from_influx("liq_heatmap", target=target, asset="BTC")
    assert list(frame.columns) == ["level", *LIQ_LEVELS.fields]
    assert list(frame["level"]) == ["9500", "84500", "100000"]
    assert list(frame["price"]) == [9_500.0, 84_500.0, 100_000.0]
    assert list(frame["long_liq_usd"]) == [500.0, 1_500.0, 0.0]
    assert list(frame["short_liq_usd"]) == [0.0, 0.0, 7_000.0]
    assert list(frame["long_count"]) == [1, 2, 0] and frame["long_count"].dtype.kind == "i"
    assert list(frame["short_count"]) == [0, 0, 3]
    assert list(frame["long_exact_usd"]) == [250.0, 750.0, 0.0]
    assert list(frame["short_exact_usd"]) == [0.0, 0.0, 3_500.0]
    now = pd.Timestamp.now(tz="UTC")
    ages = (now - frame.index).total_seconds() / 60  # each level's own latest point
    assert list(ages.round()) == [55, 2, 55]
    shorter = read_from_influx("liq_heatmap", target=target, asset="BTC", minutes=5)
    assert list(shorter["level"]) == ["84500"]


def test_liq_levels_starts_a_keyframe_interval_before_the_window(influxd, influx_db):
    """Every level has a point in the 61 min before the window, to carry forward from its start."""
    lines = [
        level_line("84500", 130, 1_000.0, 0.0),  # before the window's keyframe interval
        level_line("85000", 115, 2_000.0, 0.0),  # within it: the value at the window's start
        level_line("85000", 30, 2_500.0, 0.0),
        level_line("84500", 10, 0.0, 0.0),
    ]
    write(influxd.url, influx_db, lines)
    target = InfluxTarget(influxd.url, influx_db)
    frame = read_from_influx("liq_levels", target=target, asset="BTC", hours=1)
    assert list(frame.columns) == list(LIQ_LEVELS.columns)
    assert list(zip(frame["level"], frame["long_liq_usd"], strict=True)) == [
        ("85000", 2_000.0),
        ("85000", 2_500.0),
        ("84500", 0.0),
    ]
    wide = frame.pivot_table(index=frame.index, columns="level", values="long_liq_usd").ffill()
    assert list(wide.iloc[-1]) == [0.0, 2_500.0]


def test_liq_coverage_reads_one_coin(influxd, influx_db):
    fields = {"mark_px": 85_000.0, "step": 500.0, "levels": 12, "tracked_share": 0.2}
    write(
        influxd.url,
        influx_db,
        [
            LIQ_COVERAGE.line({"coin": coin}, fields, time.time_ns() - minutes * 60 * 10**9)
            for coin in ("BTC", "ETH")
            for minutes in (1, 2, 3)
        ],
    )
    target = InfluxTarget(influxd.url, influx_db)
    frame = read_from_influx("liq_coverage", target=target, asset="BTC", hours=1)
    assert list(frame["coin"]) == ["BTC"] * 3
    assert list(frame["levels"]) == [12] * 3 and frame["levels"].dtype.kind == "i"
    assert frame["open_interest_usd"].isna().all()  # not written: NaN, the column still there


def test_hostile_asset_values_return_nothing_and_change_nothing(influxd, influx_db):
    now = time.time_ns()
    write(influxd.url, influx_db, [sample_point(m, now - 10**9) for m in MEASUREMENTS])
    target = InfluxTarget(influxd.url, influx_db)
    hostile_values = ("BTC' OR 1=1", 'BTC" OR "coin" =~ /.*/', 'BTC"; DROP DATABASE x', "$asset")
    for hostile in hostile_values:
        for name in ("trades", "whales", "cvd", "liq_heatmap"):
            with pytest.raises(
                InfluxQueryError, match=r"unknown asset .*closest known coin: 'BTC'"
            ):
                read_from_influx(name, target=target, asset=hostile)
    assert influxql(influxd.url, 'SELECT COUNT("tid") FROM "trades"', influx_db)[0]["count"] == 1


def test_schema_lines_keep_one_type_per_field():
    from db.schema import GLOBAL_METRICS, TRADES

    line = GLOBAL_METRICS.line({}, {"long_notional": 0, "traders": 0, "ls_ratio": None}, 1)
    assert line == "global_metrics long_notional=0.0,traders=0i 1"
    with pytest.raises(ValueError, match="unknown field 'long'"):
        GLOBAL_METRICS.line({}, {"long": 1.0}, 1)
    with pytest.raises(ValueError, match="tid must be an int"):
        TRADES.line({"coin": "BTC"}, {"tid": 1.5}, 1)
    with pytest.raises(ValueError, match="unknown tags"):
        TRADES.line({"address": "0x1"}, {"px": 1.0}, 1)
