"""The embedded default: which InfluxDB is used when none is configured."""

from __future__ import annotations

import os
import re
import signal
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
