"""`python main.py run` end to end: the simulator feeds it, a real influxd stores what it writes.

One run of about a minute goes through bursts of same-millisecond trades, trade replays, two
WebSocket disconnects, malformed frames, backstop liquidations, position changes and a 15 s
InfluxDB outage; afterwards InfluxDB must hold exactly what the simulator's ledger says.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from db.local_server import LocalInfluxd
from process.registry import AddressRegistry
from tests.conftest import influxql
from tests.simulator import HLP_CHILDREN, HLP_PARENT

REPO = Path(__file__).resolve().parents[1]
VAULTS = {HLP_PARENT, *(address for address, _ in HLP_CHILDREN)}


def collector_env(sim, server: LocalInfluxd, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env.update(
        HYPERFLUX_INFLUX_URL=server.url,
        HYPERFLUX_HL_API_URL=sim.url,
        HYPERFLUX_HL_WS_URL=sim.ws_url,
        HYPERFLUX_DATA_DIR=str(data_dir),
        HYPERFLUX_METRICS_PORT="0",
        HYPERFLUX_LOG_FORMAT="plain",
        HYPERFLUX_INFLUX_FLUSH_INTERVAL="0.2",
        HYPERFLUX_JOBS_ASSET_CTX_INTERVAL="5",  # 240 weight/min
        HYPERFLUX_JOBS_HLP_INTERVAL="10",  # 60 weight/min
        HYPERFLUX_JOBS_POSITIONS_SHARE="0.4",  # 432 weight/min: room left for backfills
    )
    env.update(extra)
    return env


async def start_collector(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps writing after this returns
    return await asyncio.create_subprocess_exec(
        sys.executable, "main.py", "run", cwd=REPO, env=env, stdout=log, stderr=log
    )


async def stop_collector(process: asyncio.subprocess.Process) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), 20)
    return code, time.monotonic() - started


async def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.25)


async def subscribed(log_path: Path) -> None:
    """Wait until the collector has subscribed to the trades. The tests start the trade flow
    only then: trades from before a collector's first subscription are not its to recover
    (a fresh start has only the exchange's replay of the latest trades)."""
    await wait_until(lambda: "subscri" in log_path.read_text().split("running", 1)[-1])


def count(url: str, query: str) -> int:
    """COUNT(...) of a query; 0 while the database does not exist yet."""
    try:
        rows = influxql(url, query, "hyperliquid")
    except (AssertionError, httpx.HTTPError):
        return 0
    return rows[0]["count"] if rows else 0


@pytest.mark.timeout(240)
async def test_a_minute_of_trouble_loses_nothing_and_doubles_nothing(
    simulator, make_influxd, tmp_path
):
    sim = await simulator(
        seed=7, rate=0, recent_trades=1000, replay_trades=30, evolve_interval=0,
        auto_liquidations=False, n_addresses=120,
    )  # fmt: skip
    server: LocalInfluxd = make_influxd()
    log_path = tmp_path / "collector.log"
    process = await start_collector(collector_env(sim, server, tmp_path / "data"), log_path)
    url = server.url
    try:
        await subscribed(log_path)
        sim.set_rate(80)
        await wait_until(lambda: count(url, 'SELECT COUNT("tid") FROM "trades"') > 50)
        sim.burst("BTC", 500)  # distinct trades in one millisecond, some sharing tid % 10**6
        for kind in ("bad_px", "missing_tid", "not_json"):
            sim.send_malformed(kind, coin="ETH", good=3)
        sim.backstop_liquidation(coin="ETH", side="long")
        sim.backstop_liquidation(coin="SOL", side="short")
        await asyncio.sleep(3)
        await sim.disconnect_all(abrupt=True, reject_seconds=1.0)  # replays + backfill
        await asyncio.sleep(4)
        sim.evolve()  # positions open, close and resize
        server.stop()  # 15 s outage: the collector spools
        await asyncio.sleep(5)
        sim.burst("ETH", 300)
        sim.backstop_liquidation(coin="BTC", side="long")
        await asyncio.sleep(10)
        server.start()
        await asyncio.sleep(3)
        await sim.disconnect_all(abrupt=True, reject_seconds=0.5)
        sim.burst("SOL", 200)
        await asyncio.sleep(8)
        sim.pause()
        total = sim.ledger.trade_count()
        await wait_until(lambda: count(url, 'SELECT COUNT("tid") FROM "trades"') >= total, 30)
        # the order-flow engine catches up with every trade, late ones included
        bars = 'SELECT SUM("buy_count") + SUM("sell_count") AS "count" FROM "order_flow"'
        await wait_until(lambda: count(url, bars) >= total, 40)
    finally:
        code, took = await stop_collector(process)
    log = log_path.read_text()
    assert code == 0, log[-3000:]
    assert took < 15
    assert "Traceback" not in log

    # every distinct trade exactly once
    rows = influxql(url, 'SELECT "tid", "coin" FROM "trades"', "hyperliquid")
    stored = Counter((r["coin"], r["time"] // 1_000_000, r["tid"]) for r in rows)
    expected = sim.ledger.trade_keys()
    assert max(stored.values()) == 1
    assert set(stored) == expected
    assert len(rows) == sim.ledger.trade_count()

    # backstop liquidations exact, side from the vault's side of the trade; a market one only
    # where the exchange made one (candidates from the book are confirmed by the victim's fills)
    liquidations = influxql(
        url, 'SELECT "tid", "coin", "side", "method" FROM "liquidations"', "hyperliquid"
    )
    stored = {(r["coin"], r["side"], r["method"], r["tid"]) for r in liquidations}
    made = {(r.coin, r.side, r.method, r.tid) for r in sim.ledger.liquidations_of()}
    assert {s for s in stored if s[2] == "backstop"} == {m for m in made if m[2] == "backstop"}
    assert stored <= made
    assert len(liquidations) == len(stored)

    # asset contexts: one point per coin per poll the simulator served, with its values
    ctx_rows = influxql(url, 'SELECT "mark_px", "funding", "coin" FROM "asset_ctx"', "hyperliquid")
    served = sim.ledger.ctx_polls
    for coin in ("BTC", "ETH"):
        mine = sorted((r["mark_px"], r["funding"]) for r in ctx_rows if r["coin"] == coin)
        theirs = sorted(
            (float(p.ctxs[coin]["markPx"]), float(p.ctxs[coin]["funding"])) for p in served
        )
        assert mine == theirs

    # positions: every point is a position the simulator served for that address, or (written
    # from the position book between polls) its size after a recorded fill by then
    position_rows = influxql(
        url, 'SELECT "address", "szi", "entry_px", "coin", "side" FROM "positions"', "hyperliquid"
    )
    served_positions = {
        (p.address, pos["coin"], Decimal(pos["szi"]))
        for p in sim.ledger.positions
        for pos in p.positions
    }
    held: dict[tuple[str, str], set[tuple[int, Decimal]]] = defaultdict(set)
    for change in sim.ledger.position_changes():
        held[(change.address, change.coin)].add((change.time, Decimal(repr(change.szi_after))))

    def real(row: dict) -> bool:
        szi = Decimal(str(row["szi"]))
        return (row["address"], row["coin"], szi) in served_positions or any(
            t <= row["time"] // 1_000_000 and s == szi
            for t, s in held[(row["address"], row["coin"])]
        )

    open_points = [r for r in position_rows if r["szi"] != 0]
    assert open_points
    assert all(real(r) for r in open_points)
    assert not {r["address"] for r in position_rows} & VAULTS

    # HLP vaults: positions and equity of the parent and every child, as served
    vault_names = {r["vault"] for r in influxql(url, 'SELECT * FROM "hlp_equity"', "hyperliquid")}
    assert vault_names == {"HLP"} | {name for _, name in HLP_CHILDREN}
    names = {HLP_PARENT: "HLP", **dict(HLP_CHILDREN)}
    served_vaults = {
        (names[p.address], pos["coin"], Decimal(pos["szi"]))
        for p in sim.ledger.positions
        if p.address in names
        for pos in p.positions
    }
    hlp_rows = influxql(url, 'SELECT "szi", "vault", "coin" FROM "hlp_positions"', "hyperliquid")
    assert hlp_rows
    assert {(r["vault"], r["coin"], Decimal(str(r["szi"]))) for r in hlp_rows} <= served_vaults

    assert sim.ledger.rest_429_count == 0
    assert sim.ledger.ws_forced_disconnects >= 2


@pytest.mark.timeout(120)
async def test_the_address_registry_survives_a_restart(simulator, influxd, tmp_path):
    sim = await simulator(seed=3, rate=0, evolve_interval=0, auto_liquidations=False)
    env = collector_env(sim, influxd, tmp_path / "data", HYPERFLUX_INFLUX_DB="registry_test")
    log_path = tmp_path / "collector.log"
    process = await start_collector(env, log_path)
    await subscribed(log_path)
    sim.set_rate(60)
    await asyncio.sleep(6)
    sim.pause()
    await asyncio.sleep(1)
    assert (await stop_collector(process))[0] == 0
    traders = {a for r in sim.ledger.valid_trades() for a in (r.buyer, r.seller)} - VAULTS
    with AddressRegistry(tmp_path / "data" / "addresses.sqlite") as registry:
        assert set(registry.addresses()) == traders
    process = await start_collector(env, log_path)
    await asyncio.sleep(3)
    assert (await stop_collector(process))[0] == 0
    assert f"{len(traders)} known addresses" in log_path.read_text()
    httpx.post(f"{influxd.url}/query", data={"q": "DROP DATABASE registry_test"})


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "main.py",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_backfill_twice_leaves_the_same_points_and_query_reads_them(
    simulator, influxd, tmp_path
):
    sim = await simulator(seed=5, rate=0, evolve_interval=0, auto_liquidations=False)
    env = collector_env(sim, influxd, tmp_path / "data", HYPERFLUX_INFLUX_DB="backfill_test")
    args = ("backfill", "--coins", "BTC,ETH", "--days", "2")
    code, out, err = await cli(env, *args)
    assert code == 0, err
    counts = [
        influxql(influxd.url, f'SELECT COUNT("close") FROM "candles" WHERE "coin" = \'{coin}\'',
                 "backfill_test")[0]["count"]
        for coin in ("BTC", "ETH")
    ]  # fmt: skip
    assert counts == [48, 48]
    funding = influxql(influxd.url, 'SELECT COUNT("rate") FROM "funding"', "backfill_test")
    first = (counts, funding, influxql(influxd.url, 'SELECT * FROM "candles"', "backfill_test"))
    code, _, err = await cli(env, *args)
    assert code == 0, err
    funding = influxql(influxd.url, 'SELECT COUNT("rate") FROM "funding"', "backfill_test")
    again = influxql(influxd.url, 'SELECT * FROM "candles"', "backfill_test")
    assert (first[1], first[2]) == (funding, again)

    code, out, err = await cli(env, "query", "candles", "--asset", "BTC", "--hours", "72",
                               "--format", "csv")  # fmt: skip
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("time,coin,interval,open,high,low,close,volume,trade_count")
    assert len(lines) == 1 + 48
    code, _, err = await cli(env, "query", "nonsense")
    assert code == 2 and err.strip().startswith("hyperflux: unknown query 'nonsense'; available:")
    httpx.post(f"{influxd.url}/query", data={"q": "DROP DATABASE backfill_test"})


async def test_check_reports_influxdb_and_hyperliquid(simulator, influxd, tmp_path):
    sim = await simulator(rate=0, evolve_interval=0)
    env = collector_env(sim, influxd, tmp_path / "data", HYPERFLUX_INFLUX_DB="check_test")
    code, out, _ = await cli(env, "check")
    assert code == 0, out
    assert "ok   hyperliquid 5 perps listed at " + sim.url in out
    env["HYPERFLUX_HL_API_URL"] = "http://127.0.0.1:1"
    code, out, err = await cli(env, "check")
    assert code == 1
    assert "FAIL hyperliquid" in out and "Traceback" not in err
    httpx.post(f"{influxd.url}/query", data={"q": "DROP DATABASE check_test"})


@pytest.mark.timeout(120)
async def test_two_shards_split_the_addresses_and_only_shard_0_stores_trades(
    simulator, influxd, tmp_path
):
    sim = await simulator(seed=4, rate=0, evolve_interval=0, auto_liquidations=False)
    envs = [
        collector_env(
            sim, influxd, tmp_path / f"data{i}", HYPERFLUX_INFLUX_DB="shard_test",
            HYPERFLUX_JOBS_SHARD=f"{i}/2", HYPERFLUX_JOBS_POSITIONS_SHARE="0.3",
        )
        for i in range(2)
    ]  # fmt: skip
    logs = [tmp_path / f"shard{i}.log" for i in range(2)]
    processes = [await start_collector(env, log) for env, log in zip(envs, logs, strict=True)]
    for log in logs:
        await subscribed(log)
    sim.set_rate(60)
    await asyncio.sleep(6)
    sim.pause()
    await asyncio.sleep(1.5)
    for process in processes:
        assert (await stop_collector(process))[0] == 0
    traders = {a for r in sim.ledger.valid_trades() for a in (r.buyer, r.seller)} - VAULTS
    shards = []
    for i in range(2):
        with AddressRegistry(tmp_path / f"data{i}" / "addresses.sqlite") as registry:
            shards.append(set(registry.addresses()))
    assert shards[0] | shards[1] == traders
    assert not shards[0] & shards[1]
    assert shards[0] and shards[1]
    stored = influxql(influxd.url, 'SELECT COUNT("tid") FROM "trades"', "shard_test")
    assert stored[0]["count"] == sim.ledger.trade_count()  # from shard 0 alone, no doubles
    httpx.post(f"{influxd.url}/query", data={"q": "DROP DATABASE shard_test"})
