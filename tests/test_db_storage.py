"""open_storage in any weather: InfluxDB down at start, down at close, or not InfluxDB at all."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from config import Settings, load_settings
from db.local_server import LocalInfluxd
from db.spool import Spool
from db.storage import open_storage
from tests.conftest import influxql

REPO = Path(__file__).resolve().parents[1]


def lines(start: int, count: int) -> list[str]:
    return [
        f"m,s=s{i % 7} v={i}i {1_700_000_000_000_000_000 + i}" for i in range(start, start + count)
    ]


def settings_for(url: str, data_dir: Path) -> Settings:
    return load_settings(
        env={
            "HYPERFLUX_INFLUX_URL": url,
            "HYPERFLUX_INFLUX_DB": "hf_storage",
            "HYPERFLUX_DATA_DIR": str(data_dir),
            "HYPERFLUX_INFLUX_BATCH_SIZE": "1000",
            "HYPERFLUX_INFLUX_FLUSH_INTERVAL": "0.1",
        }
    )


def stored(url: str) -> list[int]:
    return sorted(r["v"] for r in influxql(url, 'SELECT "v" FROM "m"', "hf_storage"))


def stored_count(url: str) -> int:
    rows = influxql(url, 'SELECT COUNT("v") FROM "m"', "hf_storage")
    return rows[0]["count"] if rows else 0


def databases(url: str) -> list[str]:
    return [row["name"] for row in influxql(url, "SHOW DATABASES")]


@pytest.fixture
def down_influxd(make_influxd) -> LocalInfluxd:
    """A real influxd that has been stopped (its ports and files kept for `.start()`)."""
    server: LocalInfluxd = make_influxd()
    server.stop()
    return server


async def test_opens_while_influxdb_is_down_and_bootstraps_when_it_answers(
    down_influxd, data_dir, caplog
):
    server = down_influxd
    settings = settings_for(server.url, data_dir)
    caplog.set_level(logging.INFO)
    async with open_storage(settings, retry_cap=0.5) as storage:
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert said == [
            f"InfluxDB at {server.url} is not reachable (connection refused): start it, or set "
            f"HYPERFLUX_INFLUX_URL; collecting points into the spool at {data_dir / 'spool'} "
            "meanwhile, and the database is bootstrapped when the server answers"
        ]
        assert storage.server is None and not storage.ready.is_set()
        writer = storage.writer
        writer.write(lines(0, 4500))
        await writer.flush()
        assert (writer.accepted_lines, writer.durable_through, writer.landed_through) == (
            4500,
            4500,
            0,
        )
        assert writer.spool.points == 4500 and writer.stats.retried == 0

        server.start()
        assert await storage.wait_ready(timeout=20)
        assert storage.server is not None and storage.server.flavour == 1
        writer.write(lines(4500, 1500))
        assert await writer.drain(timeout=20)
        assert writer.landed_through == 6000
        assert (writer.stats.written, writer.stats.replayed) == (6000, writer.stats.spooled)
    assert "hf_storage" in databases(server.url)
    assert stored_count(server.url) == 6000
    assert stored(server.url) == list(range(6000))


async def test_close_while_down_spools_in_time_and_the_next_start_replays_once(
    down_influxd, data_dir
):
    server = down_influxd
    settings = settings_for(server.url, data_dir)
    async with open_storage(settings, close_timeout=3) as storage:
        storage.writer.write(lines(0, 2500))
        leaving = time.monotonic()
    assert time.monotonic() - leaving < 3
    assert Spool(settings.spool_dir).points == 2500

    server.start()
    replayed: list[list[str]] = []
    async with open_storage(settings, on_replayed=replayed.append) as storage:
        assert storage.server is not None
        assert await storage.writer.drain(timeout=20)
        assert storage.writer.stats.replayed == storage.writer.stats.written == 2500
    assert sorted(line for segment in replayed for line in segment) == sorted(lines(0, 2500))
    assert stored_count(server.url) == 2500
    assert stored(server.url) == list(range(2500))
    assert Spool(settings.spool_dir).points == 0


class NotInflux(BaseHTTPRequestHandler):
    """A web server answering 200 and HTML to every request, the v2 bucket API included (no
    X-Influxdb-Version)."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_influx() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotInflux)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_main(command: str, url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env.update(
        HYPERFLUX_INFLUX_URL=url,
        HYPERFLUX_DATA_DIR=str(tmp_path / "data"),
        HYPERFLUX_METRICS_PORT="0",
        HYPERFLUX_HL_API_URL="http://127.0.0.1:1",
        HYPERFLUX_HL_WS_URL="ws://127.0.0.1:1/ws",
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "main.py", command],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result, time.monotonic() - started


def test_run_against_a_server_that_is_not_influxdb_is_one_line(not_influx, tmp_path):
    result, seconds = run_main("run", not_influx, tmp_path)
    assert result.returncode == 2, result.stderr
    assert seconds < 5
    assert result.stderr.splitlines() == [
        f"hyperflux: {not_influx} is not InfluxDB: /ping has no X-Influxdb-Version header and "
        "/query answered 200 with text/html instead of JSON; set HYPERFLUX_INFLUX_URL to the "
        "InfluxDB HTTP API address (e.g. http://HOST:8086)"
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_check_against_a_server_that_is_not_influxdb_fails_that_check(not_influx, tmp_path):
    result, _ = run_main("check", not_influx, tmp_path)
    assert result.returncode == 1
    assert f"FAIL influxdb    {not_influx} is not InfluxDB: " in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
