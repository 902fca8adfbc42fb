"""Shared fixtures: a real influxd per test session, and a fresh database per test."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from db.local_server import LocalInfluxd, influxd_path
from tests.simulator import Simulator

_db_names = itertools.count(1)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxd]:
    """One real influxd for the whole session: temp dir, free 127.0.0.1 ports, stopped by PID."""
    if influxd_path() is None:
        pytest.fail(
            "influxd is not installed: run `make test`, which installs the influxdb package"
        )
    server = LocalInfluxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LocalInfluxd]]:
    """Start extra influxd servers with special settings (auth, small body); all get stopped."""
    started: list[LocalInfluxd] = []

    def start(**kwargs: object) -> LocalInfluxd:
        server = LocalInfluxd(tmp_path_factory.mktemp("influxd-extra"), **kwargs)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@functools.cache
def _http() -> httpx.Client:
    """One client for the whole session: creating one costs ~50 ms (certificate loading)."""
    return httpx.Client()


def influxql(url: str, query: str, db: str | None = None, **params: object) -> list[dict]:
    """Run one InfluxQL statement directly (test-side oracle, independent of db.reader)."""
    data: dict[str, str] = {"q": query, "epoch": "ns"}
    if db:
        data["db"] = db
    if params:
        data["params"] = json.dumps(params)
    response = _http().post(f"{url}/query", data=data, timeout=30)
    response.raise_for_status()
    result = response.json()["results"][0]
    assert "error" not in result, result["error"]
    rows: list[dict] = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags", {}))
            rows.append(row)
    return rows


@pytest.fixture
def influx_db(influxd: LocalInfluxd) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    name = f"test_{next(_db_names)}"
    influxql(influxd.url, f'CREATE DATABASE "{name}"')
    yield name
    influxql(influxd.url, f'DROP DATABASE "{name}"')


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real redis-server (`tests.redis_server.LocalRedis`) on a free 127.0.0.1 port, stopped
    by PID; `stop()` then `start()` restarts it on the same port."""
    from tests.redis_server import INSTALL_HINT, LocalRedis, redis_server_path

    if redis_server_path() is None:
        pytest.fail(INSTALL_HINT)
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def simulator() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    """Start local Hyperliquid simulators (`await simulator(seed=1, rate=0, ...)`); all stopped."""
    started: list[Simulator] = []

    async def start(**kwargs: object) -> Simulator:
        sim = Simulator(**kwargs)  # type: ignore[arg-type]
        await sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()
