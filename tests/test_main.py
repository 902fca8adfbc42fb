"""The command line: expected failures are one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import influxql

REPO = Path(__file__).resolve().parents[1]


def main(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HYPERFLUX_METRICS_PORT": "abc"}, "HYPERFLUX_METRICS_PORT='abc' is not valid"),
        ({"HYPERFLUX_LOG_LEVEL": "LOUD"}, "HYPERFLUX_LOG_LEVEL='LOUD' is not valid"),
        ({"HYPERFLUX_INFLUX_URL": "ftp://x"}, "HYPERFLUX_INFLUX_URL='ftp://x' is not valid"),
        ({"HYPERFLUX_CONFIG": "/nonexistent.yaml"}, "/nonexistent.yaml"),
    ],
)
def test_bad_config_is_one_line_naming_key_and_value(env, expected, tmp_path):
    result = main("check", HYPERFLUX_DATA_DIR=str(tmp_path), **env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_check_fails_with_a_clear_line_when_influxdb_is_down(tmp_path):
    result = main(
        "check",
        HYPERFLUX_DATA_DIR=str(tmp_path),
        HYPERFLUX_INFLUX_URL="http://127.0.0.1:1",
        HYPERFLUX_INFLUX_PASSWORD="do-not-print-me",
    )
    assert result.returncode == 1
    assert "FAIL influxdb    InfluxDB at http://127.0.0.1:1 is not reachable" in result.stdout
    assert "do-not-print-me" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_reports_each_part_on_its_own_line_and_creates_nothing(influxd, tmp_path):
    """Only the report on stdout, nothing on stderr; the missing database is a warning (not a
    failure) and is still missing afterwards."""
    env = {
        "HYPERFLUX_DATA_DIR": str(tmp_path),
        "HYPERFLUX_INFLUX_URL": influxd.url,
        "HYPERFLUX_INFLUX_DB": "check_readonly",
        "HYPERFLUX_HL_API_URL": "http://127.0.0.1:1",
    }
    result = main("check", **env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    assert lines[0] == f"ok   config      data dir {tmp_path}, database 'check_readonly'"
    assert lines[1].startswith("ok   influxdb    InfluxDB 1.6.7")
    assert lines[2] == "warn database    'check_readonly' does not exist yet: `run` creates it"
    assert lines[3].startswith("FAIL hyperliquid ")
    assert "HYPERFLUX_HL_API_URL" in lines[3]
    assert lines[4] == "ok   spool       waiting: 0 points in 0 segments, 0 B of 1 GiB"
    assert "check_readonly" not in _databases(influxd.url)

    influxql(influxd.url, 'CREATE DATABASE "check_readonly"')
    try:
        result = main("check", **env, HYPERFLUX_INFLUX_RETENTION="30d")
        lines = result.stdout.splitlines()
        assert lines[2] == (
            "ok   database    'check_readonly' exists (retention INF); `run` sets 30d"
        )
        assert result.stderr == ""
        policy = influxql(influxd.url, 'SHOW RETENTION POLICIES ON "check_readonly"')[0]
        assert policy["duration"] == "0s"
    finally:
        influxql(influxd.url, 'DROP DATABASE "check_readonly"')


def _databases(url: str) -> list[str]:
    body = httpx.get(f"{url}/query", params={"q": "SHOW DATABASES"}).json()
    series = body["results"][0].get("series", [])
    return [row[0] for one in series for row in one.get("values", [])]


def test_spool_command_reports_waiting_points_and_human_sizes(tmp_path):
    from db.spool import Spool

    spool = Spool(tmp_path / "spool")
    spool.append(b"m v=1i 1\nm v=2i 2", points=2)
    spool.append(b"x" * (3 * 1024 * 1024 + 300 * 1024), points=1)
    result = main("spool", HYPERFLUX_DATA_DIR=str(tmp_path))
    assert result.returncode == 0
    assert result.stdout == (
        f"{tmp_path / 'spool'}: 3 points in 2 segments, 3.3 MiB of 1 GiB (when full: drop_oldest)\n"
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (12_900_000, "12.3 MiB"),
        (1024**3 - 1, "1 GiB"),
        (5 * 1024**4, "5 TiB"),
    ],
)
def test_human_sizes(size, text):
    from db.spool import human_size

    assert human_size(size) == text


def test_help_lists_the_commands():
    result = main("--help")
    assert result.returncode == 0
    for command in ("run", "check", "spool", "influxdb"):
        assert command in result.stdout


def test_query_help_lists_every_query():
    result = main("query", "--help", HYPERFLUX_CONFIG="/nonexistent.yaml")  # no config needed
    assert result.returncode == 0, result.stderr
    assert "queries (query NAME --help for its parameters):" in result.stdout
    for name in ("trades", "whales", "liq_heatmap", "global_metrics"):
        assert f"\n  {name} " in result.stdout


def test_query_name_help_lists_its_parameters_with_types_and_defaults():
    result = main("query", "whales", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: main.py query whales [--asset ...] [--hours ...]")
    assert lines[2] == (
        "whales: The n largest open positions in one coin, or over every coin, from the latest "
        "polls."
    )
    for expected in (
        "  asset    str (optional)",
        "           Hyperliquid coin, e.g. BTC (case-sensitive); omitted: every coin",
        "  n        int = 20",
        "           how many",
        "  minutes  float = 20.0",
        "  hours    float (optional)",
        "  start    time (optional)",
        "  end      time (optional)",
        "  limit    int = 0",
    ):
        assert expected in lines, expected
    assert lines[-1] == "shell:   python main.py query whales --asset ETH --param n=10"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("whales", "--asset", "BTC", "--param", "n=x"), "parameter 'n' must be an int, got 'x'"),
        (
            ("whales", "--asset", "BTC", "--param", "n=3.5"),
            "parameter 'n' must be an int, got '3.5'",
        ),
        (("whales", "--asset", "BTC", "--param", "n=0"), "parameter 'n' must be >= 1, got 0"),
        (
            ("trades", "--asset", "BTC", "--hours", "six"),
            "parameter 'hours' must be a float, got 'six'",
        ),
        (
            ("trades", "--asset", "BTC", "--limit", "1e3"),
            "parameter 'limit' must be an int, got '1e3'",
        ),
        (
            ("trades", "--asset", "BTC", "--start", "yesterday"),
            "parameter 'start' must be a time like",
        ),
        (("trades", "--asset", "BTC", "--param", "coin=BTC"), "unknown parameter coin"),
        (("global_metrics", "--asset", "BTC"), "unknown parameter asset"),
        (("whales", "--asset", "BTC", "--param", "n"), "--param takes KEY=VALUE, got 'n'"),
        ((), "query needs a NAME, one of: asset_ctx,"),
        (("tradez",), "unknown query 'tradez'; available: asset_ctx,"),
    ],
)
def test_bad_query_parameters_are_one_line_naming_the_type(args, problem):
    """Checked before any connection: the server address does not answer."""
    result = main("query", *args, HYPERFLUX_INFLUX_URL="http://127.0.0.1:1")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hyperflux: ") and problem in lines[0], lines[0]


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_data_dir_that_cannot_be_written_is_one_line(command, tmp_path):
    """/sys refuses new entries even to root; a path below a regular file cannot exist."""
    (tmp_path / "a-file").write_text("")
    for data_dir in ("/sys/hyperflux-test-data", str(tmp_path / "a-file" / "data")):
        result = main(
            command,
            HYPERFLUX_DATA_DIR=data_dir,
            HYPERFLUX_INFLUX_URL="http://127.0.0.1:1",
            HYPERFLUX_HL_API_URL="http://127.0.0.1:1",
            HYPERFLUX_METRICS_PORT="0",
        )
        assert "Traceback" not in result.stderr
        message = f"the data dir {data_dir} is not writable"
        if command == "run":
            assert result.returncode == 2
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"hyperflux: {message}"), lines
            assert "HYPERFLUX_DATA_DIR" in lines[0]
        else:
            assert result.returncode == 1
            assert f"FAIL data dir    {message}" in result.stdout


async def test_a_stop_during_a_start_up_whose_requests_hang_takes_under_2_s(influxd, tmp_path):
    """Hyperliquid behind a firewall that drops packets: connections open, nothing answers.
    SIGTERM while the start-up waits on it: exit 0 within 2 s, no traceback."""
    peers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        while await reader.read(65536):
            pass

    blackhole = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = blackhole.sockets[0].getsockname()[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "main.py",
            "run",
            cwd=REPO,
            stdout=log,
            stderr=log,
            env={
                **clean,
                "HYPERFLUX_DATA_DIR": str(tmp_path / "data"),
                "HYPERFLUX_INFLUX_URL": influxd.url,
                "HYPERFLUX_HL_API_URL": f"http://127.0.0.1:{port}",
                "HYPERFLUX_HL_WS_URL": f"ws://127.0.0.1:{port}/ws",
                "HYPERFLUX_METRICS_PORT": "0",
                "HYPERFLUX_LOG_FORMAT": "plain",
            },
        )
        try:
            deadline = time.monotonic() + 20
            while not peers:  # the start-up's first request is on its way, and hangs
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 10)
            took = time.monotonic() - started
        finally:
            if process.returncode is None:
                process.kill()
            blackhole.close()
    output = log_path.read_text()
    assert code == 0, output
    assert took < 2.0, output
    assert "Traceback" not in output
    assert "stopped during start-up" in output
