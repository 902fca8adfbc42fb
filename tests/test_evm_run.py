"""`python main.py run` with an `evm` section: the collector runs the DEX job beside the
Hyperliquid side (the simulator) and stores every confirmed swap of a real anvil chain once."""

from __future__ import annotations

import asyncio
import json
import time

from db.schema import DEX_POOLS, DEX_SWAPS
from tests.conftest import influxql
from tests.evm_node import Anvil, anvil, deploy_dex  # noqa: F401 (fixture)
from tests.test_evm_job import pools, swap_some
from tests.test_pipeline import collector_env, start_collector, stop_collector

QUIET = {"rate": 5, "evolve_interval": 0, "auto_liquidations": False}


def count(url: str, db: str, query: str) -> int:
    rows = influxql(url, query, db)
    return int(rows[0]["count"]) if rows else 0


async def test_the_collector_stores_every_confirmed_swap_once(
    simulator,
    anvil: Anvil,  # noqa: F811
    influxd,
    influx_db,
    data_dir,
    tmp_path,
) -> None:
    sim = await simulator(**QUIET)
    dex = deploy_dex(anvil)
    swap_some(dex, rounds=2)  # 6 swaps in 2 blocks
    evm = {"rpc_url": anvil.url, "pools": pools(dex), "confirmations": 1, "poll_interval": 0.5}
    db = influx_db
    env = collector_env(
        sim, influxd, data_dir, HYPERFLUX_INFLUX_DB=db, HYPERFLUX_EVM=json.dumps(evm)
    )
    log = tmp_path / "collector.log"
    process = await start_collector(env, log)
    try:
        swaps = f'SELECT COUNT("tx_hash") FROM "{DEX_SWAPS.name}"'
        deadline = time.monotonic() + 30
        anvil.mine()  # the second block of swaps is confirmed now
        while count(influxd.url, db, swaps) < 6:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert process.returncode is None, log.read_text()[-3000:]
            await asyncio.sleep(0.3)
        swap_some(dex, rounds=1)  # 3 more, confirmed by the next block
        anvil.mine()
        while count(influxd.url, db, swaps) < 9:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.5)  # a few more runs: nothing is stored twice
    finally:
        code, seconds = await stop_collector(process)
    assert code == 0 and seconds < 2.5
    assert count(influxd.url, db, swaps) == 9
    pools_stored = influxql(influxd.url, f'SELECT "block", "pool" FROM "{DEX_POOLS.name}"', db)
    assert {row["pool"] for row in pools_stored} == {"A/B-v2", "A/B-v3"}
    text = log.read_text()
    assert anvil.url not in text and "Traceback" not in text
