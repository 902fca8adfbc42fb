"""The embedded default: which InfluxDB is used when none is configured."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from db import embedded
from utils.errors import InfluxUnavailableError
from utils.net import free_port, port_is_free

REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_a_configured_url_is_used_and_nothing_is_started(tmp_path):
    url, server = embedded.resolve_influx("http://127.0.0.1:1", tmp_path)
    assert (url, server) == ("http://127.0.0.1:1", None)
    assert not (tmp_path / "influxdb").exists()


def test_a_server_answering_at_the_default_url_is_used(influxd, tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "DEFAULT_URL", influxd.url)
    assert embedded.resolve_influx(None, tmp_path) == (influxd.url, None)
    assert not (tmp_path / "influxdb").exists()


def test_without_any_server_a_private_influxd_is_started_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "DEFAULT_URL", f"http://127.0.0.1:{free_port()}")
    url, server = embedded.resolve_influx(None, tmp_path)
    assert server is not None
    try:
        assert httpx.get(f"{url}/ping").status_code == 204
        assert url.startswith("http://127.0.0.1:")
        config = (tmp_path / "influxdb" / "influxd.conf").read_text()
        assert f'bind-address = "127.0.0.1:{server.http_port}"' in config
        assert f'bind-address = "127.0.0.1:{server.rpc_port}"' in config
        assert (tmp_path / "influxdb" / "data").is_dir()
        pid = server.pid
    finally:
        server.stop()
    assert pid is not None and not alive(pid)


def test_without_influxd_installed_one_line_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "DEFAULT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(embedded, "influxd_path", lambda: None)
    with pytest.raises(InfluxUnavailableError) as error:
        embedded.resolve_influx(None, tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install -y influxdb" in message and "HYPERFLUX_INFLUX_URL" in message


@pytest.mark.skipif(not port_is_free(8086), reason="something already listens on 8086")
def test_main_run_starts_and_stops_its_own_influxd(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env["HYPERFLUX_DATA_DIR"] = str(tmp_path / "data")
    env["HYPERFLUX_METRICS_PORT"] = "0"
    job = subprocess.Popen(
        [sys.executable, "main.py", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert job.stdout is not None
    output = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = job.stdout.readline()
        output.append(line)
        if "hyperflux running" in line:
            break
    text = "".join(output)
    match = re.search(r"started influxd pid (\d+) at (http://127\.0\.0\.1:\d+)", text)
    assert match, text
    pid, url = int(match[1]), match[2]
    databases = httpx.get(f"{url}/query", params={"q": "SHOW DATABASES"}).json()
    assert ["hyperliquid"] in databases["results"][0]["series"][0]["values"]
    job.send_signal(signal.SIGTERM)
    assert job.wait(15) == 0
    assert not alive(pid)


def influxdb_command(default_url: str, data_dir: Path, **env: str) -> subprocess.Popen[str]:
    """`main.py influxdb` with DEFAULT_URL moved off 8086, so tests never need that port."""
    code = (
        f"import sys, db.embedded; db.embedded.DEFAULT_URL = {default_url!r}; "
        "import main; sys.exit(main.main(['influxdb']))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**clean, "HYPERFLUX_DATA_DIR": str(data_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answers_ping(url: str) -> bool:
    return embedded.answers_ping(url, timeout=0.5)


async def test_influxdb_serves_what_a_run_wrote_after_it_stopped(tmp_path, monkeypatch):
    """The collector's storage writes trades through its embedded influxd and stops (so does the
    influxd); `main.py influxdb` serves the same files at the same URL until Ctrl-C."""
    import pandas as pd

    from config import load_settings
    from db import InfluxTarget, open_storage, read_from_influx

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(embedded, "DEFAULT_URL", url)
    data_dir = tmp_path / "data"
    now = time.time_ns()
    times = [now - 120 * 10**9, now - 60 * 10**9]
    settings = load_settings(env={"HYPERFLUX_DATA_DIR": str(data_dir)})
    async with open_storage(settings) as storage:
        assert storage.embedded is not None and storage.target.url == url
        storage.writer.write(
            [
                f'trades,coin=BTC,side=buy px=100.5,sz=2,notional=201,tid=11i,buyer="0xaa",'
                f'seller="0xbb" {times[0]}',
                f'trades,coin=BTC,side=sell px=101,sz=0.5,notional=50.5,tid=12i,buyer="0xcc",'
                f'seller="0xdd" {times[1]}',
            ]
        )
    assert not answers_ping(url)

    job = influxdb_command(url, data_dir)
    try:
        assert job.stdout is not None and job.stderr is not None
        line = job.stdout.readline()
        assert line == (
            f"serving {data_dir / 'influxdb'} at {url}, database 'hyperliquid'; "
            "stop with Ctrl-C or SIGTERM\n"
        ), line or job.stderr.read()
        frame = read_from_influx("trades", target=InfluxTarget(url, "hyperliquid"), asset="BTC")
        expected = pd.DataFrame(
            {
                "coin": ["BTC", "BTC"],
                "side": ["buy", "sell"],
                "px": [100.5, 101.0],
                "sz": [2.0, 0.5],
                "notional": [201.0, 50.5],
                "tid": [11, 12],
                "buyer": ["0xaa", "0xcc"],
                "seller": ["0xbb", "0xdd"],
            },
            index=pd.DatetimeIndex(pd.to_datetime(times, unit="ns", utc=True), name="time"),
        )
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
        started = time.monotonic()
        job.send_signal(signal.SIGINT)
        code = job.wait(10)
        took = time.monotonic() - started
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert code == 0
    assert took < 2.0
    assert job.stdout.read() == "" and job.stderr.read() == ""
    assert not answers_ping(url)


def test_influxdb_says_in_one_line_that_a_running_collector_serves_the_files(tmp_path):
    from db.local_server import LocalInfluxd

    data_dir = tmp_path / "data"
    with LocalInfluxd(data_dir / "influxdb") as collectors:
        pid = collectors.pid
        job = influxdb_command(f"http://127.0.0.1:{free_port()}", data_dir)
        out, err = job.communicate(timeout=30)
    assert (job.returncode, out) == (2, "")
    assert err == (
        f"hyperflux: influxd pid {pid} already serves {data_dir / 'influxdb'} at "
        f"{collectors.url} (a running collector's, or another `main.py influxdb`): read from it "
        "while it runs, or stop that first\n"
    )


def test_influxdb_refuses_a_default_port_taken_by_an_influxdb_or_anything_else(influxd, tmp_path):
    data_dir = tmp_path / "data"
    job = influxdb_command(influxd.url, data_dir)
    out, err = job.communicate(timeout=30)
    assert (job.returncode, out) == (2, "")
    assert err == (
        f"hyperflux: an InfluxDB already answers at {influxd.url} (a running collector's, or "
        "your own): a collector without HYPERFLUX_INFLUX_URL writes there, so read from it; "
        f"stop it to serve {data_dir / 'influxdb'}\n"
    )
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        job = influxdb_command(f"http://127.0.0.1:{port}", data_dir)
        out, err = job.communicate(timeout=30)
    assert (job.returncode, out) == (2, "")
    assert err == (
        f"hyperflux: port {port} is taken by another process that is not InfluxDB: free it to "
        f"serve {data_dir / 'influxdb'} at http://127.0.0.1:{port}\n"
    )
    assert not (data_dir / "influxdb").exists()


def test_influxdb_has_nothing_to_serve_with_an_external_server(tmp_path):
    job = influxdb_command(
        f"http://127.0.0.1:{free_port()}", tmp_path, HYPERFLUX_INFLUX_URL="http://influx.test:8086"
    )
    out, err = job.communicate(timeout=30)
    assert (job.returncode, out) == (2, "")
    assert err == (
        "hyperflux: HYPERFLUX_INFLUX_URL is set (http://influx.test:8086): the data is on that "
        "server, there is no embedded influxd to serve\n"
    )
