"""Every named query against a real influxd: the columns users rely on, and the reductions."""

from __future__ import annotations

import time

import httpx
import pytest

from db import InfluxTarget, read_from_influx
from db.line_protocol import encode_point
from db.queries import QUERIES
from db.schema import MEASUREMENTS
from tests.conftest import influxql

REQUIRED = {
    "latest_positions",
    "asset_history",
    "global_metrics",
    "trades",
    "order_flow",
    "cvd",
    "liq_heatmap",
    "liquidations",
    "hlp_positions",
    "whales",
    "funding",
}
TAG_VALUES = {"coin": "BTC", "window": "5m", "interval": "1h", "side": "long", "vault": "HLP"}


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
    frame = read_from_influx(name, target=InfluxTarget(influxd.url, influx_db), **params)
    assert len(frame) == 1, frame
    assert list(frame.columns[: len(query.columns)]) == list(query.columns)
    assert str(frame.index.tz) == "UTC"
    for column in query.columns:
        if column in query.ints:
            assert frame[column].dtype.kind == "i", column
        elif column not in MEASUREMENTS.get(name, MEASUREMENTS["trades"]).tags:
            assert frame[column].dtype.kind in "fO", (column, frame[column].dtype)


def positions_line(address: str, coin: str, side: str, szi: float, usd: float, time_ns: int) -> str:
    fields = {"address": address, "szi": szi, "size_usd": usd, "entry_px": 100.0}
    return encode_point("positions", {"coin": coin, "side": side}, fields, time_ns)


def test_latest_positions_and_whales_reduce_to_each_address_latest_poll(influxd, influx_db):
    now_ms = time.time_ns() // 1_000_000
    ms = 1_000_000
    a, b, c = ("0x" + ch * 40 for ch in "abc")
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
        ],
    )
    target = InfluxTarget(influxd.url, influx_db)
    latest = read_from_influx("latest_positions", target=target, asset="BTC", minutes=20)
    assert list(zip(latest["address"], latest["szi"], strict=True)) == [(b, -3.0), (a, 2.0)]
    whales = read_from_influx("whales", target=target, asset="BTC", n=1)
    assert list(whales["address"]) == [b]


def test_liq_heatmap_returns_only_the_newest_snapshot(influxd, influx_db):
    now = time.time_ns()
    lines = [
        encode_point(
            "liq_heatmap", {"coin": "BTC", "bucket": f"{i:02d}"}, {"price_low": i * 1.0}, t
        )
        for t in (now - 20 * 10**9, now - 10 * 10**9)
        for i in range(50)
    ]
    write(influxd.url, influx_db, lines)
    target = InfluxTarget(influxd.url, influx_db)
    frame = read_from_influx("liq_heatmap", target=target, asset="BTC")
    assert len(frame) == 50
    assert frame.index.nunique() == 1
    assert sorted(frame["bucket"]) == [f"{i:02d}" for i in range(50)]


def test_hostile_asset_values_return_nothing_and_change_nothing(influxd, influx_db):
    now = time.time_ns()
    write(influxd.url, influx_db, [sample_point(m, now - 10**9) for m in MEASUREMENTS])
    target = InfluxTarget(influxd.url, influx_db)
    hostile_values = ("BTC' OR 1=1", 'BTC" OR "coin" =~ /.*/', 'BTC"; DROP DATABASE x', "$asset")
    for hostile in hostile_values:
        for name in ("trades", "whales", "cvd", "liq_heatmap"):
            assert read_from_influx(name, target=target, asset=hostile).empty
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
