"""Complete answers from a server that cuts them: a real influxd with `max-row-limit` = 100.

A non-chunked answer from this server holds at most 100 rows, marked `"partial": true`; every
read here asks for more (1,234 trades of one coin, 300 positions, 150 heatmap levels) and must
get all of them, through `read_from_influx`, `raw_query`, the async reader and the CLI. A server
(or proxy) that does not chunk, or a stream cut short, must raise a one-line error instead.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pandas as pd
import pytest

import db.reader
from db.client import InfluxTarget
from db.line_protocol import encode_point
from db.local_server import LocalInfluxd, influxd_path
from db.reader import AsyncInfluxReader, raw_query, read_from_influx
from db.schema import LIQ_LEVELS, TRADES
from tests.conftest import influxql
from tests.fault_proxy import LoopbackServer
from utils.errors import InfluxQueryError

REPO = Path(__file__).resolve().parents[1]
ROW_LIMIT = 100
DB = "complete"
NOW_NS = time.time_ns() // 1_000_000 * 1_000_000
BTC_TRADES = 1_234
ETH_TRADES = 50
ADDRESSES = 300
LEVELS = 150
MS = 1_000_000


def trade_time(i: int) -> int:
    """Trade i: i ms before a minute ago, every fifth in the next ns slot of the one before."""
    return NOW_NS - 60_000 * MS - (i - i % 5) * MS + i % 5


def address(i: int) -> str:
    return f"0x{i:040x}"


def lines() -> list[str]:
    out = [
        TRADES.line(
            {"coin": "BTC", "side": "buy" if i % 2 else "sell"},
            {"px": 100.0 + i / 8, "sz": 1.0, "notional": 100.0 + i / 8, "tid": i},
            trade_time(i),
        )
        for i in range(BTC_TRADES)
    ]
    out += [
        TRADES.line(
            {"coin": "ETH", "side": "buy"}, {"px": 3000.0, "tid": 10_000 + i}, trade_time(i)
        )
        for i in range(ETH_TRADES)
    ]
    for i in range(ADDRESSES):  # two polls each: the older one must not count
        for age_s, size in ((240, 1.0), (60, 2.0)):
            out.append(
                encode_point(
                    "positions",
                    {"coin": "BTC", "side": "long"},
                    {"address": address(i), "szi": size, "size_usd": size * (i + 1)},
                    NOW_NS - age_s * 10**9 + i,  # one series: each point its own ns slot
                )
            )
    for i in range(LEVELS):
        level = str(80_000 + 100 * i)
        fields = {
            "price": float(level),
            "long_liq_usd": 10.0 * i,
            "long_count": 1,
            "short_count": 0,
        }
        out.append(LIQ_LEVELS.line({"coin": "BTC", "level": level}, fields, NOW_NS - 120 * 10**9))
    return out


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxTarget]:
    """An influxd whose non-chunked answers hold at most ROW_LIMIT rows, with the data above."""
    if influxd_path() is None:
        pytest.fail("influxd is not installed: run `make test`")
    server = LocalInfluxd(tmp_path_factory.mktemp("influxd-limited"), max_row_limit=ROW_LIMIT)
    server.start()
    try:
        influxql(server.url, f'CREATE DATABASE "{DB}"')
        response = httpx.post(
            f"{server.url}/write",
            params={"db": DB, "precision": "ns"},
            content="\n".join(lines()),
        )
        assert response.status_code == 204, response.text
        yield InfluxTarget(url=server.url, db=DB)
    finally:
        server.stop()


class CuttingProxy(LoopbackServer):
    """Forwards /query to a real influxd, then cuts the answer as a server or proxy might:
    `unchunked` drops `chunked=true` from the request (so the server's max-row-limit applies);
    `first_chunk` passes only the first chunk of a chunked answer on, then ends the body."""

    def __init__(self, upstream: str, mode: str) -> None:
        self.upstream, self.mode = upstream, mode
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qsl(body.decode(), keep_blank_values=True)
                if proxy.mode == "unchunked":
                    form = [(k, v) for k, v in form if k not in ("chunked", "chunk_size")]
                upstream = httpx.post(proxy.upstream + self.path, data=dict(form), timeout=30)
                content = upstream.content
                if proxy.mode == "first_chunk":
                    content = content.split(b"\n", 1)[0] + b"\n"
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        return Handler


def cli(target: InfluxTarget, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env = {**clean, "HYPERFLUX_INFLUX_URL": target.url, "HYPERFLUX_INFLUX_DB": target.db}
    return subprocess.run(
        [sys.executable, "main.py", "query", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_cuts_plain_answers_at_its_row_limit(limited: InfluxTarget) -> None:
    """The premise: without chunking this server answers 100 of the 1,234 trades."""
    rows = influxql(limited.url, 'SELECT "tid" FROM "trades" WHERE "coin" = \'BTC\'', DB)
    assert len(rows) == ROW_LIMIT


def test_read_from_influx_returns_every_trade(limited: InfluxTarget) -> None:
    frame = read_from_influx("trades", target=limited, asset="BTC", hours=2)

    assert len(frame) == BTC_TRADES
    assert sorted(frame["tid"]) == list(range(BTC_TRADES))
    assert frame.index.is_monotonic_increasing
    assert sorted(frame.index.asi8) == sorted(trade_time(i) for i in range(BTC_TRADES))
    assert frame.attrs == {"query": "trades", "limit": 1_000_000, "truncated": False}


def test_raw_query_returns_every_row_also_grouped_and_in_many_chunks(
    limited: InfluxTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = raw_query('SELECT "tid", "coin" FROM "trades"', target=limited)
    assert len(everything) == BTC_TRADES + ETH_TRADES

    monkeypatch.setattr(db.reader, "CHUNK_SIZE", 64)  # 20 chunks, series split across them
    grouped = raw_query(
        'SELECT "tid" FROM "trades" WHERE time >= $start GROUP BY "coin", "side"',
        {"start": "1970-01-01T00:00:00Z"},
        limited,
    )
    assert len(grouped) == BTC_TRADES + ETH_TRADES
    assert grouped.groupby("coin").size().to_dict() == {"BTC": BTC_TRADES, "ETH": ETH_TRADES}
    assert sorted(grouped["tid"]) == sorted(everything["tid"])

    levels = raw_query('SHOW TAG VALUES FROM "liq_levels" WITH KEY = "level"', target=limited)
    assert len(levels) == LEVELS


async def test_the_async_reader_used_by_the_engines_gets_every_row(limited: InfluxTarget) -> None:
    async with AsyncInfluxReader(limited) as reader:
        rows = await reader.rows('SELECT "tid" FROM "trades" WHERE "coin" = $c', {"c": "BTC"})
        frame = await reader.named("trades", asset="BTC", hours=2)
    assert len(rows) == len(frame) == BTC_TRADES


def test_reduced_queries_see_every_row(limited: InfluxTarget) -> None:
    """latest_positions/whales reduce 600 polled rows, liq_heatmap reads 150 levels."""
    latest = read_from_influx("latest_positions", target=limited, asset="BTC")
    assert len(latest) == ADDRESSES
    assert set(latest["szi"]) == {2.0}  # each address's newest poll
    assert list(latest["address"][:2]) == [address(ADDRESSES - 1), address(ADDRESSES - 2)]

    whales = read_from_influx("whales", target=limited, asset="BTC", n=3, hours=1)
    assert list(whales["address"]) == [address(ADDRESSES - 1 - i) for i in range(3)]

    heatmap = read_from_influx("liq_heatmap", target=limited, asset="BTC", hours=1)
    assert len(heatmap) == LEVELS
    assert heatmap["price"].is_monotonic_increasing


def test_the_cli_prints_every_trade(limited: InfluxTarget) -> None:
    result = cli(limited, "trades", "--asset", "BTC", "--hours", "2", "--format", "csv")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "time,coin,side,px,sz,notional,tid,buyer,seller"
    assert len(lines) == 1 + BTC_TRADES
    assert result.stderr == ""


@pytest.mark.parametrize("mode", ["unchunked", "first_chunk"])
def test_an_answer_that_stays_partial_is_one_line_error(
    limited: InfluxTarget, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(db.reader, "CHUNK_SIZE", 500)  # three chunks: one gets through
    with CuttingProxy(limited.url, mode) as proxy:
        target = InfluxTarget(url=proxy.url, db=DB)
        for read in (
            lambda: read_from_influx("trades", target=target, asset="BTC", hours=2),
            lambda: raw_query('SELECT * FROM "trades"', target=target),
        ):
            with pytest.raises(InfluxQueryError) as err:
                read()
            message = str(err.value)
            rows = ROW_LIMIT if mode == "unchunked" else 500
            assert message.startswith(f"InfluxDB sent only part of the answer ({rows} rows")
            assert "max-row-limit" in message and "\n" not in message
        # a small answer is complete either way
        assert len(read_from_influx("trades", target=target, asset="ETH", limit=20)) == 20


def test_the_limit_keeps_the_newest_rows_and_says_it_cut(
    limited: InfluxTarget, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="db.reader"):
        frame = read_from_influx("trades", target=limited, asset="BTC", hours=2, limit=1_000)
    assert len(frame) == 1_000
    assert frame.index.min().value == sorted(trade_time(i) for i in range(BTC_TRADES))[-1_000]
    assert frame.index.is_monotonic_increasing
    assert frame.attrs["truncated"] is True
    assert "query 'trades': answer cut at limit=1000 rows (the newest kept" in caplog.text

    caplog.clear()
    exact = read_from_influx("trades", target=limited, asset="BTC", hours=2, limit=BTC_TRADES)
    unlimited = read_from_influx("trades", target=limited, asset="BTC", hours=2, limit=0)
    assert len(exact) == len(unlimited) == BTC_TRADES
    assert exact.attrs["truncated"] is False and caplog.text == ""

    largest = read_from_influx("latest_positions", target=limited, asset="BTC", limit=5)
    assert list(largest["address"]) == [address(ADDRESSES - 1 - i) for i in range(5)]
    assert largest.attrs["truncated"] is True


def test_start_and_end_bound_the_window(limited: InfluxTarget) -> None:
    times = sorted(trade_time(i) for i in range(BTC_TRADES))
    start, end = pd.Timestamp(times[100], tz="UTC"), pd.Timestamp(times[200], tz="UTC")
    frame = read_from_influx("trades", target=limited, asset="BTC", start=start, end=end)
    assert list(frame.index.asi8) == times[100:200]  # end is exclusive

    text = read_from_influx(
        "trades",
        target=limited,
        asset="BTC",
        start=start.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{start.nanosecond:03d}Z",
        end=end.isoformat(),
    )
    pd.testing.assert_frame_equal(text, frame)
    with pytest.raises(InfluxQueryError, match="give one of start or hours, not both"):
        read_from_influx("trades", target=limited, asset="BTC", start=start, hours=1)
    with pytest.raises(InfluxQueryError, match="is not before end"):
        read_from_influx("trades", target=limited, asset="BTC", start=end, end=start)
    with pytest.raises(InfluxQueryError, match="parameter 'start' must be a time like"):
        read_from_influx("trades", target=limited, asset="BTC", start="yesterday")


def test_cli_typed_params_and_hours_for_the_latest_queries(limited: InfluxTarget) -> None:
    result = cli(limited, "whales", "--asset", "BTC", "--param", "n=3", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 3

    for name in ("whales", "latest_positions", "liq_heatmap"):
        result = cli(limited, name, "--asset", "BTC", "--hours", "1", "--format", "csv")
        assert result.returncode == 0, (name, result.stderr)
        expected = {"whales": 20, "latest_positions": ADDRESSES, "liq_heatmap": LEVELS}[name]
        assert len(result.stdout.splitlines()) == 1 + expected, name

    stale = cli(limited, "whales", "--asset", "BTC", "--param", "minutes=0.5", "--format", "csv")
    assert (stale.returncode, len(stale.stdout.splitlines())) == (0, 1)  # the header only


@pytest.mark.parametrize(
    ("asset", "closest"),
    [("btc", "BTC"), ("BTCUSD", "BTC"), ("eht", "ETH"), ("ETH ", "ETH")],
)
def test_an_unknown_asset_names_the_closest_coin(
    limited: InfluxTarget, asset: str, closest: str
) -> None:
    with pytest.raises(InfluxQueryError) as err:
        read_from_influx("trades", target=limited, asset=asset)
    assert str(err.value) == (
        f"query 'trades': unknown asset {asset!r} (no such coin in 'trades'; coins are "
        f"case-sensitive); closest known coin: {closest!r}"
    )


def test_an_unknown_asset_is_one_line_in_the_cli(limited: InfluxTarget) -> None:
    result = cli(limited, "whales", "--asset", "eth")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "hyperflux: query 'whales': unknown asset 'eth' (no such coin in 'positions'; coins are "
        "case-sensitive); closest known coin: 'BTC'\n"
    )


def test_a_measurement_without_data_says_so_and_answers_empty(
    limited: InfluxTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing to compare the asset with: the empty answer stands, one warning says why."""
    with caplog.at_level(logging.WARNING, logger="db.reader"):
        assert read_from_influx("funding", target=limited, asset="BTC").empty
        assert read_from_influx("order_flow", target=limited, asset="BTC").empty
    assert [r.getMessage() for r in caplog.records] == [
        "query 'funding': nothing is stored in 'funding' yet: "
        "`python main.py backfill --coins BTC --datasets funding` fills it",
        "query 'order_flow': nothing is stored in 'order_flow' yet: "
        "the collector writes it while it runs against this database",
    ]
    caplog.clear()
    assert read_from_influx("trades", target=limited, asset="ETH", hours=0.001).empty  # known
    assert caplog.records == []


def test_the_cli_says_on_stderr_when_the_limit_cut_the_answer(limited: InfluxTarget) -> None:
    result = cli(limited, "trades", "--asset", "BTC", "--limit", "10", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + 10
    (warning,) = result.stderr.splitlines()
    assert "query 'trades': answer cut at limit=10 rows (the newest kept" in warning
