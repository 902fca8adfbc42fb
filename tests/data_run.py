"""Data from a simulator run, shared by the dashboard and notebook tests.

`python main.py run` collects from the local Hyperliquid simulator (80 trades/s, automatic
liquidations on, plus backstop liquidations triggered on both sides) into the database
`simulator_run` of the session's real influxd, and `python main.py backfill` adds a day of hourly
candles and settled funding of the tests' coin, until every measurement the dashboards read holds
points and the liquidation heatmap has levels of the tests' coin (or a deadline passes: a
measurement nothing writes yet stays empty, and the tests say which). The collector then
stops, so what the tests read no longer changes. One run per session: the fixture is imported
by several test modules, and the result is cached here by server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest

from db.local_server import LocalInfluxd
from db.schema import (
    ASSET_CTX,
    BBO,
    BOOK_DEPTH,
    CANDLES,
    CVD,
    FUNDING,
    GLOBAL_METRICS,
    HLP_EQUITY,
    HLP_POSITIONS,
    LIQ_COVERAGE,
    LIQ_LEVELS,
    LIQUIDATIONS,
    ORDER_FLOW,
    PIPELINE_HEALTH,
    POSITION_CHANGES,
    POSITIONING,
    POSITIONS,
    SMART_MONEY,
    TRADES,
    WALLET_PROFILES,
)
from tests.simulator import DEFAULT_COINS, Simulator
from tests.test_pipeline import REPO, collector_env

DB = "simulator_run"
COIN = "BTC"
"""The coin the tests select: the simulator's busiest, held by the HLP vaults too."""

COLLECTOR_MEASUREMENTS = frozenset(
    m.name
    for m in (
        TRADES,
        LIQUIDATIONS,
        ASSET_CTX,
        POSITIONS,
        POSITION_CHANGES,
        HLP_POSITIONS,
        HLP_EQUITY,
        WALLET_PROFILES,
        BOOK_DEPTH,
        BBO,
    )
) | {PIPELINE_HEALTH.name}
ENGINE_MEASUREMENTS = frozenset(
    m.name
    for m in (ORDER_FLOW, CVD, LIQ_LEVELS, LIQ_COVERAGE, POSITIONING, GLOBAL_METRICS, SMART_MONEY)
)
"""Written by the engines (process/engines/), not by the collector's own jobs."""
BACKFILL_MEASUREMENTS = frozenset(m.name for m in (CANDLES, FUNDING))
"""Written by `python main.py backfill` (BACKFILL_ARGS), not by the collector."""
BACKFILL_ARGS = ("--coins", COIN, "--days", "1", "--datasets", "candles,funding")
"""A day of hourly candles and settlements: the newest closed candle opened 1-2 h ago, the
newest settlement at most 1 h ago (the tests' time range holds both)."""

RUN_ENV = {
    "HYPERFLUX_INFLUX_DB": DB,
    "HYPERFLUX_JOBS_ASSET_CTX_INTERVAL": "2",
    "HYPERFLUX_JOBS_HLP_INTERVAL": "5",
    # The simulator's positions are small (mostly a few hundred USD) and most of their
    # liquidation prices lie beyond the default +/- 15 %: the heatmap takes them all in.
    "HYPERFLUX_ENGINES_HEATMAP_MIN_SIZE_USD": "0",
    "HYPERFLUX_ENGINES_HEATMAP_RANGE": "0.5",
    "HYPERFLUX_ENGINES_HEATMAP_STORE_INTERVAL": "10",
    # wallet profiles and their rankings within the run (the Smart money dashboard)
    "HYPERFLUX_PROFILES_INTERVAL": "3",
    "HYPERFLUX_PROFILES_RANK_INTERVAL": "5",
    # the order book channels of the tests' coin (book_depth, bbo: the Market dashboard)
    "HYPERFLUX_HL_WS_CHANNELS": "l2Book,bbo,activeAssetCtx",
    "HYPERFLUX_HL_WS_CHANNEL_COINS": "BTC",
    "HYPERFLUX_HL_BOOK_INTERVAL": "2",
}
HISTORY_COINS = tuple(c.name for c in DEFAULT_COINS if not c.is_delisted)
HISTORY_TRADES = 20
MIN_SECONDS = 20.0
DEADLINE_SECONDS = 42.0
"""pipeline_health is first written 30 s after the jobs start, so a run lasts at least that."""
LEVELS_DEADLINE_SECONDS = 85.0
"""The heatmap stores its levels once a minute after its first store: when the tests' coin had
no level in range at the first (its positions not polled yet), the run waits for the second."""

T = TypeVar("T")


@dataclass(frozen=True)
class DataRun:
    url: str
    db: str
    coin: str
    measurements: frozenset[str]
    """Measurements holding points after the run."""


class SimulatorThread:
    """The simulator on an event loop of its own thread, so synchronous fixtures can drive it."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sim: Simulator | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A sync simulator control, run on the simulator's loop (its state is not thread-safe)."""

        async def on_loop() -> T:
            return fn(*args, **kwargs)

        return self.run(on_loop())

    def __enter__(self) -> Simulator:
        self.thread.start()

        async def start() -> Simulator:
            return await Simulator(**self.config).start()

        self.sim = self.run(start())
        return self.sim

    def __exit__(self, *exc: object) -> None:
        if self.sim is not None:
            self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def measurements(url: str) -> frozenset[str]:
    """Measurements of the run's database (none while the collector has not created it)."""
    try:
        response = httpx.post(f"{url}/query", data={"q": "SHOW MEASUREMENTS", "db": DB}, timeout=10)
        result = response.json()["results"][0]
    except (httpx.HTTPError, ValueError, KeyError):
        return frozenset()
    return frozenset(row[0] for series in result.get("series", []) for row in series["values"])


def count(url: str, query: str) -> int:
    """COUNT(...) of a query on the run's database; 0 while it does not exist."""
    try:
        response = httpx.post(f"{url}/query", data={"q": query, "db": DB}, timeout=10)
        series = response.json()["results"][0].get("series", [])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
    return series[0]["values"][0][1] if series else 0


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.25)


def start_collector(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "main.py", "run"], cwd=REPO, env=env, stdout=log, stderr=log
    )


def start_backfill(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "main.py", "backfill", *BACKFILL_ARGS],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )


def wait_backfill(process: subprocess.Popen, log: Path) -> None:
    code = process.wait(30)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def stop_collector(process: subprocess.Popen, log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    code = process.wait(20)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def collect(server: LocalInfluxd, workdir: Path) -> DataRun:
    """Two collector runs on one simulator, into one database.

    1. History: trades stamped 90 s back (a minute that is over), then a stop. CVD points exist
       only at completed minute boundaries, and an engine's first run after a start reads the
       past minutes back, so the second run has order-flow bars and CVD points from its start,
       whatever the second of the minute the tests began at. Meanwhile `python main.py
       backfill` stores candles and funding (its own process, its own log).
    2. The run proper, until every measurement has points (or the deadline); liquidations of
       both sides are triggered once trades flow.
    """
    wanted = COLLECTOR_MEASUREMENTS | ENGINE_MEASUREMENTS | BACKFILL_MEASUREMENTS
    log_path = workdir / "collector.log"
    backfill_log = workdir / "backfill.log"
    trades = f'SELECT COUNT("tid") FROM "{TRADES.name}"'
    coin_levels = f'SELECT COUNT("price") FROM "{LIQ_LEVELS.name}" WHERE "coin" = \'{COIN}\''
    simulator = SimulatorThread(seed=11, rate=80, auto_liquidations=True, n_addresses=200)
    with simulator as sim, open(log_path, "ab") as log, open(backfill_log, "ab") as fill_log:
        env = collector_env(sim, server, workdir / "data", **RUN_ENV)
        # its own data directory: the spool and quarantine belong to one process
        backfill = start_backfill(
            {**env, "HYPERFLUX_DATA_DIR": str(workdir / "backfill")}, fill_log
        )
        process = start_collector(env, log)
        try:
            wait_until(lambda: count(server.url, trades) > 0, process, log_path)
            past_ms = int(time.time() * 1000) - 90_000
            for coin in HISTORY_COINS:
                simulator.call(sim.burst, coin, HISTORY_TRADES, time_ms=past_ms)
            stored = f"{trades} WHERE time >= {past_ms}ms AND time < {past_ms + 1}ms"
            expected = HISTORY_TRADES * len(HISTORY_COINS)
            wait_until(lambda: count(server.url, stored) >= expected, process, log_path)
            wait_backfill(backfill, backfill_log)
        finally:
            if backfill.poll() is None:
                backfill.kill()
            stop_collector(process, log_path)

        started, started_ms = time.monotonic(), int(time.time() * 1000)
        process = start_collector(env, log)
        try:
            liquidated = False
            while True:
                present = measurements(server.url)
                elapsed = time.monotonic() - started
                # a trade of this run stored: the collector follows the stream again
                if not liquidated and count(server.url, f"{trades} WHERE time > {started_ms}ms"):
                    for side in ("long", "short"):
                        simulator.call(sim.backstop_liquidation, coin=COIN, side=side)
                    simulator.call(sim.backstop_liquidation, coin="ETH", side="long")
                    liquidated = True
                # both sides tracked, so every positioning figure (e.g. ls_ratio) has a value
                both_sides = count(server.url, 'SELECT COUNT("ls_ratio") FROM "global_metrics"')
                # the heatmap dashboard panels and the notebook draw the tests' coin
                levels = count(server.url, coin_levels)
                # a ranked trader with closed round trips (the Smart money table's win rate)
                ranked = count(server.url, 'SELECT COUNT("win_rate") FROM "smart_money"')
                done = (
                    elapsed > MIN_SECONDS and wanted <= present and both_sides and levels and ranked
                )
                if elapsed > (DEADLINE_SECONDS if levels else LEVELS_DEADLINE_SECONDS) or done:
                    break
                assert process.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.5)
        finally:
            stop_collector(process, log_path)
    return DataRun(url=server.url, db=DB, coin=COIN, measurements=measurements(server.url))


_runs: dict[str, DataRun] = {}


@pytest.fixture(scope="session")
def data_run(influxd: LocalInfluxd, tmp_path_factory: pytest.TempPathFactory) -> DataRun:
    """One simulator run per session into the database `simulator_run` (see the module doc)."""
    if influxd.url not in _runs:
        _runs[influxd.url] = collect(influxd, tmp_path_factory.mktemp("simulator_run"))
    return _runs[influxd.url]


def influx_env(run: DataRun) -> dict[str, str]:
    """The environment that points hyperflux's reader (and the notebook) at the run's data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env.update(HYPERFLUX_INFLUX_URL=run.url, HYPERFLUX_INFLUX_DB=run.db)
    return env
