"""Reading back: named queries and raw InfluxQL against a real influxd, bound params only."""

from __future__ import annotations

import asyncio
import time

import httpx
import pandas as pd
import pytest

from db.client import InfluxTarget
from db.local_server import LocalInfluxd
from db.queries import QUERIES, check_read_only, parse_time
from db.reader import AsyncInfluxReader, InfluxReader, raw_query, read_from_influx
from tests.conftest import influxql
from utils.errors import InfluxQueryError, InfluxUnavailableError
from utils.net import free_port

NOW_NS = time.time_ns() // 1_000_000 * 1_000_000  # whole milliseconds, like Hyperliquid
HOUR_NS = 3_600 * 10**9
# Two distinct trades in one millisecond, one an hour ago, one five hours ago (outside 2 h).
T1 = NOW_NS - 60 * 10**9
T2 = T1 + 1  # the next nanosecond slot of the same millisecond
T3 = NOW_NS - HOUR_NS
T_OLD = NOW_NS - 5 * HOUR_NS
LINES = f"""\
trades,coin=BTC,side=buy px=100.5,sz=2,notional=201,tid=11i,buyer="0xaa",seller="0xbb" {T3}
trades,coin=BTC,side=sell px=101,sz=0.5,notional=50.5,tid=12i,buyer="0xcc",seller="0xdd" {T1}
trades,coin=BTC,side=buy px=101.25,sz=1,notional=101.25,tid=13i,buyer="0xee",seller="0xff" {T2}
trades,coin=BTC,side=buy px=90,sz=1,notional=90,tid=10i,buyer="0x01",seller="0x02" {T_OLD}
trades,coin=ETH,side=sell px=3000,sz=1,notional=3000,tid=14i,buyer="0x03",seller="0x04" {T1}
asset_ctx,coin=BTC funding=0.0001,open_interest=1000,mark_px=101 {T1}
"""
POINTS = 6


@pytest.fixture
def target(influxd: LocalInfluxd, influx_db: str) -> InfluxTarget:
    """A database holding the points above, written by hand over POST /write."""
    response = httpx.post(
        f"{influxd.url}/write", params={"db": influx_db, "precision": "ns"}, content=LINES
    )
    assert response.status_code == 204, response.text
    return InfluxTarget(url=influxd.url, db=influx_db)


def _utc(*epoch_ns: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(epoch_ns), unit="ns", utc=True), name="time")


def _count(target: InfluxTarget) -> int:
    rows = influxql(target.url, "SELECT count(*) FROM trades, asset_ctx", target.db)
    return sum(row.get("count_px") or row.get("count_funding") or 0 for row in rows)


def _expected_btc_trades() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "coin": ["BTC", "BTC", "BTC"],
            "side": ["buy", "sell", "buy"],
            "px": [100.5, 101.0, 101.25],
            "sz": [2.0, 0.5, 1.0],
            "notional": [201.0, 50.5, 101.25],
            "tid": [11, 12, 13],
            "buyer": ["0xaa", "0xcc", "0xee"],
            "seller": ["0xbb", "0xdd", "0xff"],
        },
        index=_utc(T3, T1, T2),
    )


def test_trades_come_back_exactly_with_a_utc_nanosecond_index(target: InfluxTarget) -> None:
    frame = read_from_influx("trades", target=target, asset="BTC", hours=2)

    pd.testing.assert_frame_equal(frame, _expected_btc_trades(), check_dtype=False)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "time"
    assert frame.index[1].value == T1 and frame.index[2].value == T2  # same ms, both kept


def test_the_window_is_a_bound_lower_time_limit(target: InfluxTarget) -> None:
    assert list(read_from_influx("trades", target=target, asset="BTC", hours=0.5).tid) == [12, 13]
    assert list(read_from_influx("trades", target=target, asset="BTC", hours=24).tid) == [
        10,
        11,
        12,
        13,
    ]
    assert len(read_from_influx("trades", target=target, asset="BTC")) == 4  # default 24 h


def test_missing_fields_are_null_columns(target: InfluxTarget) -> None:
    frame = read_from_influx("asset_ctx", target=target, asset="BTC", hours=1)

    assert list(frame.columns) == list(QUERIES["asset_ctx"].columns)
    assert frame.iloc[0][["coin", "funding", "open_interest", "mark_px"]].tolist() == [
        "BTC",
        0.0001,
        1000,
        101,
    ]
    assert frame[["mid_px", "premium", "day_ntl_vlm"]].isna().all().all()


def test_an_empty_result_keeps_the_declared_columns(target: InfluxTarget) -> None:
    frame = read_from_influx("trades", target=target, asset="ETH", hours=0.001)  # 3.6 s

    assert frame.empty
    assert list(frame.columns) == list(QUERIES["trades"].columns)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert (frame.index.name, str(frame.index.tz)) == ("time", "UTC")


@pytest.mark.parametrize(
    "hostile",
    [
        "BTC' OR 1=1",
        "BTC' OR '1'='1",
        'BTC"; DROP DATABASE x',
        "BTC; DROP DATABASE x",
        "\\",
        "BTC\\",
        "' OR coin =~ /.*/ --",
        "BTC\u00e9\u2603\U0001f4a5",
        "BTC\x00",
        "$asset",
    ],
)
def test_injection_attempts_return_nothing_and_change_nothing(
    target: InfluxTarget, hostile: str
) -> None:
    """A hostile asset is only ever a value: it matches no coin (one line says so)."""
    drop = hostile.replace(" x", f' "{target.db}"')
    for asset in (hostile, drop):
        with pytest.raises(InfluxQueryError) as err:
            read_from_influx("trades", target=target, asset=asset, hours=24)
        assert str(err.value).startswith(f"query 'trades': unknown asset {asset!r}")
        assert "\n" not in str(err.value)
    assert raw_query('SELECT * FROM "trades" WHERE "coin" = $c', {"c": hostile}, target).empty

    assert target.db in [row["name"] for row in influxql(target.url, "SHOW DATABASES")]
    assert _count(target) == POINTS


def test_typed_parameter_objects_are_refused(target: InfluxTarget) -> None:
    # influxd 1.x would read {"identifier": "coin"} as the column itself: "coin" = coin.
    for value in ({"identifier": "coin"}, {"regex": ".*"}, ["BTC"], None, float("nan")):
        with pytest.raises(InfluxQueryError, match="parameter 'c' must be"):
            raw_query('SELECT * FROM "trades" WHERE "coin" = $c', {"c": value}, target)
    with pytest.raises(InfluxQueryError, match="must be a str, got dict"):
        read_from_influx("trades", target=target, asset={"identifier": "coin"})


@pytest.mark.parametrize(
    "statement",
    [
        "DROP DATABASE x",
        "drop database x",
        "SELECT * FROM trades; DROP DATABASE x",
        "SELECT * FROM trades;DROP DATABASE x;",
        "SHOW DATABASES; DROP DATABASE x",
        "SELECT * INTO trades_copy FROM trades",
        'SELECT * INTO "x"."autogen"."y" FROM trades GROUP BY *',
        'select*into"y"from trades',
        "-- comment\nDROP DATABASE x",
        "/* SELECT */ DROP DATABASE x",
        "DELETE FROM trades",
        "CREATE USER u WITH PASSWORD 'p' WITH ALL PRIVILEGES",
        "GRANT ALL TO u",
        "KILL QUERY 1",
        "ALTER RETENTION POLICY autogen ON x DURATION 1h",
        "SELECTED * FROM trades",
        "",
        " ; ",
    ],
)
def test_only_one_read_statement_is_allowed(target: InfluxTarget, statement: str) -> None:
    statement = statement.replace(" x", f' "{target.db}"')
    with pytest.raises(InfluxQueryError) as err:
        raw_query(statement, target=target)
    assert "\n" not in str(err.value)
    assert _count(target) == POINTS


def test_read_statements_pass_the_check() -> None:
    assert check_read_only("  SELECT * FROM trades ; ") == "SELECT * FROM trades"
    assert check_read_only("show measurements") == "show measurements"
    assert check_read_only("SELECT mean(px) FROM trades GROUP BY time(1m)").startswith("SELECT")


def test_raw_query_select_and_show(target: InfluxTarget) -> None:
    frame = raw_query(
        'SELECT sum("notional") AS usd FROM "trades" WHERE time >= $start GROUP BY "coin"',
        {"start": "1970-01-01T00:00:00Z"},
        target,
    )
    assert frame.sort_values("coin")[["coin", "usd"]].values.tolist() == [
        ["BTC", 442.75],
        ["ETH", 3000.0],
    ]
    assert (frame.index == pd.Timestamp(0, tz="UTC")).all()

    whole = raw_query(
        'SELECT "sz", "tid", "px" FROM "trades" WHERE "coin" = \'ETH\'', target=target
    )
    assert whole["sz"].dtype == "float64" and whole["px"].dtype == "float64"  # sent as 1, 3000
    assert (whole["sz"].iloc[0], whole["px"].iloc[0]) == (1.0, 3000.0)
    assert whole["tid"].dtype == "int64"  # an int field stays an int

    shown = raw_query("SHOW MEASUREMENTS", target=target)
    assert list(shown["name"]) == ["asset_ctx", "trades"]
    assert not isinstance(shown.index, pd.DatetimeIndex)


def test_rows_from_several_measurements_keep_their_name(target: InfluxTarget) -> None:
    frame = raw_query(
        'SELECT "px", "mark_px" FROM "trades", "asset_ctx" WHERE "coin" = $c', {"c": "BTC"}, target
    )
    assert sorted(frame["_measurement"].unique()) == ["asset_ctx", "trades"]


def test_unknown_query_lists_the_available_names(target: InfluxTarget) -> None:
    with pytest.raises(InfluxQueryError) as err:
        read_from_influx("tradez", target=target)
    assert str(err.value) == f"unknown query 'tradez'; available: {', '.join(sorted(QUERIES))}"
    assert "trades" in QUERIES and "whales" in QUERIES


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "missing required parameter 'asset'"),
        ({"asset": "BTC", "coin": "BTC"}, "unknown parameter coin"),
        ({"asset": "BTC", "hours": "24"}, "parameter 'hours' must be a float, got str '24'"),
        ({"asset": "BTC", "hours": True}, "parameter 'hours' must be a float, got bool True"),
        ({"asset": "BTC", "hours": -1}, "parameter 'hours' must be >= 1e-06, got -1.0"),
        (
            {"asset": "BTC", "hours": float("inf")},
            "parameter 'hours' must be a finite number, got inf",
        ),
        ({"asset": 7}, "parameter 'asset' must be a str, got int 7"),
        ({"asset": ""}, "parameter 'asset' must be 1 to 100 characters, got 0"),
    ],
)
def test_bad_parameters_say_what_is_allowed(params: dict, problem: str) -> None:
    with pytest.raises(InfluxQueryError) as err:
        read_from_influx("trades", target=InfluxTarget(url="http://unused", db="x"), **params)
    assert str(err.value) == (
        f"query 'trades': {problem}; allowed: trades(asset: str (required), hours: float = 24.0, "
        "start: time (optional), end: time (optional), limit: int = 1000000)"
    )


def test_without_a_target_the_configuration_is_used(
    target: InfluxTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYPERFLUX_INFLUX_URL", target.url)
    monkeypatch.setenv("HYPERFLUX_INFLUX_DB", target.db)
    assert list(read_from_influx("trades", asset="BTC", hours=2).tid) == [11, 12, 13]
    assert raw_query("SHOW MEASUREMENTS").shape == (2, 1)


def test_unreachable_server_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(InfluxUnavailableError) as err:
        read_from_influx("trades", target=InfluxTarget(url=url, db="x"), asset="BTC")
    assert str(err.value) == (
        f"InfluxDB at {url} is not reachable (connection refused): "
        "start it, or set HYPERFLUX_INFLUX_URL"
    )


def test_server_errors_surface_as_query_errors(target: InfluxTarget) -> None:
    with pytest.raises(InfluxQueryError, match="database not found"):
        raw_query("SELECT * FROM trades", target=InfluxTarget(url=target.url, db="nope"))
    with pytest.raises(InfluxQueryError, match="error parsing query"):
        raw_query("SELECT FROM", target=target)


def test_sync_reader_works_inside_a_running_loop(target: InfluxTarget) -> None:
    async def notebook_cell() -> pd.DataFrame:
        return read_from_influx("trades", target=target, asset="BTC", hours=2)

    frame = asyncio.run(notebook_cell())
    pd.testing.assert_frame_equal(frame, _expected_btc_trades(), check_dtype=False)


async def test_async_reader_gives_the_same_results(target: InfluxTarget) -> None:
    with InfluxReader(target) as sync_reader:
        expected = sync_reader.named("trades", asset="BTC", hours=2)
        expected_rows = sync_reader.rows(
            'SELECT "px" FROM "trades" WHERE "coin" = $c', {"c": "ETH"}
        )

    async with AsyncInfluxReader(target) as reader:
        frame = await reader.named("trades", asset="BTC", hours=2)
        rows = await reader.rows('SELECT "px" FROM "trades" WHERE "coin" = $c', {"c": "ETH"})
        with pytest.raises(InfluxQueryError, match="only read statements"):
            await reader.frame(f'DROP DATABASE "{target.db}"')

    pd.testing.assert_frame_equal(frame, expected)
    pd.testing.assert_frame_equal(frame, _expected_btc_trades(), check_dtype=False)
    assert rows == expected_rows == [{"time": T1, "px": 3000, "_measurement": "trades"}]
    assert _count(target) == POINTS


def test_window_times_are_utc_instants() -> None:
    noon = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
    same = [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00Z",
        "2024-05-01 12:00:00",  # no offset: UTC
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T07:00:00-0500",
        pd.Timestamp("2024-05-01T12:00:00Z"),
        pd.Timestamp("2024-05-01T12:00:00").to_pydatetime(),  # naive: UTC
    ]
    assert {parse_time(value) for value in same} == {noon}
    assert parse_time("2024-05-01") == noon - 12 * HOUR_NS
    assert parse_time("2024-05-01T12:00:00.000000007Z") == noon + 7
    assert parse_time(pd.Timestamp(noon + 7, tz="UTC")) == noon + 7
    for bad, problem in [
        ("2024-13-01", "is not a valid time"),
        ("1500-01-01", "outside InfluxDB's time range"),
        ("now", "must be a time like"),
        (1714564800, "must be a time like"),
    ]:
        with pytest.raises(ValueError, match=problem):
            parse_time(bad)
