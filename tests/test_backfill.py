"""Backfilling candles and funding from the simulator into a real influxd: exact, idempotent."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.queries import CANDLE_INTERVALS, QUERIES
from db.reader import read_from_influx
from db.schema import CANDLES, FUNDING
from db.spool import Spool
from db.writer import InfluxWriter
from fetch.info import HyperliquidInfo
from fetch.rest import InfoClient
from process.backfill import BackfillArgumentError, BackfillReport, backfill, check_interval
from process.history import INTERVAL_MS, candle_lines, funding_lines
from tests.conftest import influxql
from utils.errors import HyperfluxError
from utils.progress import ProgressBar
from validate import Candle, FundingRate, parse_candles, parse_funding_history

QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False}
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def make_writer(url: str, db: str, data_dir: Path) -> InfluxWriter:
    return InfluxWriter(
        InfluxTarget(url, db),
        Spool(data_dir / "spool"),
        DeadLetters(data_dir / "dead_letter"),
        flush_interval=60,
    )


def stored(url: str, db: str, measurement: str, coin: str) -> list[dict]:
    """Every point of one coin, oldest first, with ns times (the test's own oracle)."""
    return influxql(url, f'SELECT * FROM "{measurement}" WHERE "coin" = \'{coin}\'', db)


def everything(url: str, db: str) -> list[dict]:
    return influxql(url, 'SELECT * FROM "candles"', db) + influxql(
        url, 'SELECT * FROM "funding"', db
    )


def closed_hours(now_ms: int, days: int) -> list[int]:
    """Open times of the closed 1h candles of the last `days`, start aligned down to the hour."""
    return list(range((now_ms - days * DAY) // HOUR * HOUR, now_ms // HOUR * HOUR, HOUR))


def candle_row(c: Candle) -> dict:
    return {
        "time": c.open_ms * 1_000_000,
        "coin": c.coin,
        "interval": c.interval,
        "open": float(c.open),
        "high": float(c.high),
        "low": float(c.low),
        "close": float(c.close),
        "volume": float(c.volume),
        "trade_count": c.trade_count,
    }


def funding_row(r: FundingRate) -> dict:
    premium = None if r.premium is None else float(r.premium)
    return {
        "time": r.time_ms * 1_000_000,
        "coin": r.coin,
        "rate": float(r.funding_rate),
        "premium": premium,
    }


class BrokenCandlesFor:
    """The real source, except that candle requests for `coin` are refused by the server (422)."""

    def __init__(self, info: HyperliquidInfo, coin: str) -> None:
        self.info = info
        self.coin = coin

    async def candles(self, coin: str, interval: str, start_ms: int, end_ms: int) -> list[Candle]:
        if coin == self.coin:
            interval = "7h"  # not an interval: the simulator answers 422, like the exchange
        return await self.info.candles(coin, interval, start_ms, end_ms)

    async def funding_history(
        self, coin: str, start_ms: int, end_ms: int | None = None
    ) -> list[FundingRate]:
        return await self.info.funding_history(coin, start_ms, end_ms)


async def test_two_coins_two_days_land_exactly_as_served(simulator, influxd, influx_db, data_dir):
    sim = await simulator(seed=1, **QUIET)
    now = int(time.time() * 1000)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    async with InfoClient(sim.url) as client:
        info = HyperliquidInfo(client)
        report = await backfill(info, writer, ["BTC", "ETH"], 2, now_ms=now)
        # Oracle: one direct fetch of each window, the still-open candle left out.
        direct_candles = {
            coin: [
                c for c in await info.candles(coin, "1h", now - 2 * DAY, now) if c.close_ms < now
            ]
            for coin in ("BTC", "ETH")
        }
        direct_funding = {
            coin: await info.funding_history(coin, now - 2 * DAY, now) for coin in ("BTC", "ETH")
        }
    await writer.close()

    expected_hours = closed_hours(now, 2)
    assert len(expected_hours) == 48
    for coin in ("BTC", "ETH"):
        assert [c.open_ms for c in direct_candles[coin]] == expected_hours
        assert stored(influxd.url, influx_db, "candles", coin) == [
            candle_row(c) for c in direct_candles[coin]
        ]
        rates = direct_funding[coin]
        # one settlement per hour, a few ms after it, inside [now - 2 days, now]
        hours = [r.time_ms // HOUR for r in rates]
        assert hours == list(range(hours[0], hours[0] + len(hours)))
        assert len(rates) in (48, 49)
        assert now - 2 * DAY <= rates[0].time_ms and rates[-1].time_ms <= now
        assert stored(influxd.url, influx_db, "funding", coin) == [funding_row(r) for r in rates]

    assert report.ok and not report.empty
    assert report.counts == {
        "candles": {"BTC": 48, "ETH": 48},
        "funding": {"BTC": len(direct_funding["BTC"]), "ETH": len(direct_funding["ETH"])},
    }
    assert report.result("candles", "BTC").requests == 1  # 48 candles: one window
    assert report.result("funding", "ETH").requests == 1  # < 500 rows: one short page
    assert report.result("candles", "ETH").first_ms == expected_hours[0]
    assert report.result("candles", "ETH").last_ms == expected_hours[-1]
    assert writer.stats.written == report.points
    assert report.summary().splitlines()[-1] == f"total {report.points:,} points"


async def test_running_twice_leaves_exactly_the_same_points(
    simulator, influxd, influx_db, data_dir
):
    sim = await simulator(seed=2, **QUIET)
    now = int(time.time() * 1000)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    async with InfoClient(sim.url) as client:
        info = HyperliquidInfo(client)
        first = await backfill(info, writer, ["BTC", "SOL"], 2, now_ms=now)
        after_first = everything(influxd.url, influx_db)
        second = await backfill(info, writer, ["BTC", "SOL"], 2, now_ms=now)
        after_second = everything(influxd.url, influx_db)
    await writer.close()

    assert first.counts == second.counts
    assert len(after_first) == first.points
    assert after_second == after_first  # same count, same times, same values
    assert writer.stats.written == 2 * first.points


async def test_a_failing_coin_is_reported_and_the_others_go_on(
    simulator, influxd, influx_db, data_dir
):
    sim = await simulator(seed=3, **QUIET)
    now = int(time.time() * 1000)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    async with InfoClient(sim.url) as client:
        source = BrokenCandlesFor(HyperliquidInfo(client), "ETH")
        report = await backfill(source, writer, ["ETH", "BTC", "NOPE"], 2, now_ms=now)
    await writer.close()

    assert not report.ok
    [failed] = report.failed
    assert (failed.dataset, failed.coin, failed.points) == ("candles", "ETH", 0)
    assert "InfoRequestError" in failed.error and "422" in failed.error
    assert sim.ledger.rest_422 == 1  # refused once, not retried
    # the coins after it, and ETH's funding, went on
    assert report.counts["candles"] == {"ETH": 0, "BTC": 48, "NOPE": 0}
    assert report.counts["funding"]["ETH"] in (48, 49)
    assert len(stored(influxd.url, influx_db, "candles", "BTC")) == 48
    assert stored(influxd.url, influx_db, "candles", "ETH") == []
    assert len(stored(influxd.url, influx_db, "funding", "ETH")) == report.counts["funding"]["ETH"]
    # an unknown coin is answered with nothing: reported as empty, not as a failure
    assert [(r.dataset, r.coin) for r in report.empty] == [("candles", "NOPE"), ("funding", "NOPE")]
    summary = report.summary().splitlines()
    assert summary[0].startswith("candles  ETH        failed       0 points  (InfoRequestError")
    assert summary[-1] == f"total {report.points:,} points, 1 failed"


async def test_read_back_with_the_named_queries(simulator, influxd, influx_db, data_dir):
    sim = await simulator(seed=4, **QUIET)
    now = int(time.time() * 1000)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    async with InfoClient(sim.url) as client:
        await backfill(HyperliquidInfo(client), writer, ["BTC"], 2, now_ms=now)
    await writer.close()
    target = InfluxTarget(influxd.url, influx_db)

    before = time.time_ns() // 1_000_000
    frame = read_from_influx("candles", target=target, asset="BTC", hours=48)
    assert list(frame.columns) == [
        "coin",
        "interval",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trade_count",
    ]
    assert str(frame.index.tz) == "UTC" and frame.index.name == "time"
    # the window starts 48 h before the query, so the oldest candle (aligned down) is left out
    expected = [t for t in closed_hours(now, 2) if t >= before - 48 * HOUR]
    assert [t.value // 1_000_000 for t in frame.index] == expected
    assert set(frame["coin"]) == {"BTC"} and set(frame["interval"]) == {"1h"}

    assert read_from_influx("candles", target=target, asset="BTC", interval="1m").empty
    funding = read_from_influx("funding", target=target, asset="BTC", hours=49)
    assert list(funding.columns) == ["coin", "rate", "premium"]
    assert len(funding) == len(stored(influxd.url, influx_db, "funding", "BTC"))


async def test_pages_candles_and_funding(simulator, influxd, influx_db, data_dir):
    sim = await simulator(seed=5, **QUIET)
    now = int(time.time() * 1000)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    async with InfoClient(sim.url) as client:
        info = HyperliquidInfo(client)
        small = await backfill(info, writer, ["HYPE"], 2, {"candles"}, now_ms=now, candle_page=20)
        funding = await backfill(info, writer, ["HYPE"], 25, {"funding"}, now_ms=now)
        direct = await info.funding_history("HYPE", now - 25 * DAY, now)  # first 500 only
    await writer.close()

    assert small.result("candles", "HYPE").requests == 3  # 20 + 20 + 8 candles
    assert [r["time"] // 1_000_000 for r in stored(influxd.url, influx_db, "candles", "HYPE")] == (
        closed_hours(now, 2)
    )
    rows = stored(influxd.url, influx_db, "funding", "HYPE")
    hours = [r["time"] // 1_000_000_000 // 3600 for r in rows]
    assert funding.result("funding", "HYPE").requests == 2  # 500 rows, then the rest
    assert len(rows) == funding.counts["funding"]["HYPE"] in (600, 601)
    assert hours == list(range(hours[0], hours[0] + len(rows)))  # no gap, no duplicate
    assert rows[:500] == [funding_row(r) for r in direct]


async def test_one_minute_candles_stop_at_the_newest_5000(simulator, influxd, influx_db, data_dir):
    sim = await simulator(seed=6, **QUIET)
    if (wait := time.time() % 60) > 58:  # the simulator's newest minute must be ours
        await asyncio.sleep(60.1 - wait)
    now = int(time.time() * 1000)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    async with InfoClient(sim.url) as client:
        report = await backfill(
            HyperliquidInfo(client), writer, ["SOL"], 4, {"candles"}, interval="1m", now_ms=now
        )
    await writer.close()

    result = report.result("candles", "SOL")
    # the newest 5000 include the open one: 4999 closed candles, fetched in one request
    assert (result.points, result.requests) == (4999, 1)
    assert result.first_ms == now // MINUTE * MINUTE - 4999 * MINUTE
    assert result.note == "1m candles reach back only 5000 candles (3.47222 days)"
    [count] = influxql(influxd.url, 'SELECT COUNT("close") FROM "candles"', influx_db)
    assert count["count"] == 4999


async def test_progress_bars_on_a_stream(simulator, influxd, influx_db, data_dir):
    sim = await simulator(seed=7, **QUIET)
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    out = io.StringIO()
    async with InfoClient(sim.url) as client:
        info = HyperliquidInfo(client)
        await backfill(info, writer, ["BTC", "kPEPE"], 2, {"candles"}, progress=out)
    await writer.close()
    assert out.getvalue() == (
        "candles BTC    [##########] 100 %  48 points\n"
        "candles kPEPE  [##########] 100 %  48 points\n"
    )


def test_progress_bar_redraws_on_a_tty_and_writes_tenths_elsewhere():
    tty = io.StringIO()
    bar = ProgressBar("candles BTC", stream=tty, tty=True)
    bar.update(0.52, 1234)
    bar.update(0.6, 1500)
    bar.close()
    assert tty.getvalue() == (
        "\rcandles BTC  [#####.....] 52 %  1,234 points"
        "\rcandles BTC  [######....] 60 %  1,500 points"
        "\rcandles BTC  [######....] 60 %  1,500 points\n"
    )

    log = io.StringIO()
    bar = ProgressBar("funding ETH", stream=log, tty=False)
    for step in range(1, 41):
        bar.update(step / 40, step * 10)
    bar.close()
    expected = [f"[{'#' * n}{'.' * (10 - n)}] {n * 10} %  {n * 40} points" for n in range(1, 11)]
    assert log.getvalue().splitlines() == [
        "funding ETH  [..........] 2 %  10 points",
        *(f"funding ETH  {text}" for text in expected),
    ]

    failed = io.StringIO()
    with ProgressBar("candles NOPE", stream=failed, tty=False) as bar:
        bar.update(0.3, 0)
        bar.close("failed: HTTP 422")
    assert failed.getvalue().splitlines() == [
        "candles NOPE  [###.......] 30 %  0 points",
        "candles NOPE  [###.......] 30 %  0 points  failed: HTTP 422",
    ]


def test_points_carry_the_exchange_times_and_exact_fields():
    [candle], _ = parse_candles(
        b'[{"t":1700000000000,"T":1700003599999,"s":"BTC","i":"1h","o":"84981.0",'
        b'"c":"85000.5","h":"85100","l":"84900","v":"12.345","n":321}]'
    )
    rates, _ = parse_funding_history(
        b'[{"coin":"ETH","fundingRate":"0.0000125","premium":"-0.0002","time":1700000000048},'
        b'{"coin":"ETH","fundingRate":"-0.00001","time":1700003600012}]'
    )
    assert candle_lines([candle]) == [
        "candles,coin=BTC,interval=1h open=84981.0,high=85100.0,low=84900.0,close=85000.5,"
        "volume=12.345,trade_count=321i 1700000000000000000"
    ]
    assert funding_lines(rates) == [
        "funding,coin=ETH rate=1.25e-05,premium=-0.0002 1700000000048000000",
        "funding,coin=ETH rate=-1e-05 1700003600012000000",
    ]
    assert set(CANDLES.fields) == {"open", "high", "low", "close", "volume", "trade_count"}
    assert set(FUNDING.fields) == {"rate", "premium"}


def test_query_intervals_are_the_backfill_intervals():
    assert tuple(INTERVAL_MS) == CANDLE_INTERVALS
    assert QUERIES["candles"].signature() == (
        "candles(asset: str (required), interval: str in "
        "{1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, 12h, 1d, 3d, 1w, 1M} = '1h', hours: float = 24.0, "
        "start: time (optional), end: time (optional), limit: int = 1000000)"
    )
    assert QUERIES["funding"].signature() == (
        "funding(asset: str (required), hours: float = 24.0, start: time (optional), "
        "end: time (optional), limit: int = 1000000)"
    )
    assert BackfillReport(0, 1, "1h").summary() == "total 0 points"


class Untouchable:
    """A source and writer that fail the test when used: arguments are checked first."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"{name} used before the arguments were checked")


ALLOWED = "1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, 12h, 1d, 3d, 1w, 1M"


async def test_an_unknown_interval_is_one_line_naming_it_and_the_choices_before_any_request():
    expected = f"unknown candle interval '7m' (--interval); choose from {ALLOWED}"
    with pytest.raises(BackfillArgumentError) as err:
        await backfill(Untouchable(), Untouchable(), ["BTC"], 7, interval="7m")  # type: ignore[arg-type]
    assert str(err.value) == expected
    assert isinstance(err.value, HyperfluxError) and isinstance(err.value, ValueError)
    with pytest.raises(HyperfluxError, match=r"^unknown candle interval '1H'"):
        check_interval("1H")
    assert [check_interval(i) for i in INTERVAL_MS] == list(INTERVAL_MS)
    for bad in ({"datasets": ["trades"]}, {"days": 0}, {"candle_page": 5001}):
        with pytest.raises(BackfillArgumentError):
            await backfill(Untouchable(), Untouchable(), ["BTC"], **{"days": 1, **bad})  # type: ignore[arg-type]


def test_the_cli_says_an_unknown_interval_in_one_line_before_connecting_anywhere(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env = {
        "HYPERFLUX_INFLUX_URL": "http://127.0.0.1:1",
        "HYPERFLUX_HL_API_URL": "http://127.0.0.1:1",
        "HYPERFLUX_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        [sys.executable, "main.py", "backfill", "--coins", "BTC", "--interval", "7m"],
        cwd=Path(__file__).resolve().parents[1],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"hyperflux: unknown candle interval '7m' (--interval); choose from {ALLOWED}"
    ]
