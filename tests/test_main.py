"""The command line: expected failures are one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_check_reports_each_part_on_its_own_line(influxd, tmp_path):
    result = main(
        "check",
        HYPERFLUX_DATA_DIR=str(tmp_path),
        HYPERFLUX_INFLUX_URL=influxd.url,
        HYPERFLUX_HL_API_URL="http://127.0.0.1:1",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("ok   influxdb    InfluxDB 1.6.7")
    assert lines[2].startswith("ok   database    'hyperliquid' ready")
    assert lines[3].startswith("FAIL hyperliquid ")
    assert "HYPERFLUX_HL_API_URL" in lines[3]


def test_spool_command_reports_waiting_points(tmp_path):
    from db.spool import Spool

    Spool(tmp_path / "spool").append(b"m v=1i 1\nm v=2i 2", points=2)
    result = main("spool", HYPERFLUX_DATA_DIR=str(tmp_path))
    assert result.returncode == 0
    assert "2 points in 1 segments" in result.stdout


def test_help_lists_the_commands():
    result = main("--help")
    assert result.returncode == 0
    for command in ("run", "check", "spool"):
        assert command in result.stdout


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
