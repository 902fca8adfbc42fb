"""The position book in a running collector: tracked positions change only by trades between
polls in the simulator (a consistent exchange), so every poll finds the book equal to the truth,
and `position_changes` holds exactly the ledger's changes of the tracked accounts."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest

from db.local_server import LocalInfluxd
from tests.conftest import influxql
from tests.test_pipeline import (
    VAULTS,
    collector_env,
    count,
    start_collector,
    stop_collector,
    subscribed,
)


@pytest.mark.timeout(180)
async def test_every_poll_finds_the_book_exact_and_changes_match_the_ledger(
    simulator, make_influxd, tmp_path
):
    sim = await simulator(
        seed=12, rate=0, evolve_interval=0, auto_liquidations=False, n_addresses=60
    )
    server: LocalInfluxd = make_influxd()
    log_path = tmp_path / "collector.log"
    env = collector_env(sim, server, tmp_path / "data", HYPERFLUX_JOBS_POSITIONS_SHARE="0.7")
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        sim.set_rate(30)
        await asyncio.sleep(35)  # every address is polled a few times meanwhile
        sim.pause()
        changes = 'SELECT COUNT("tid") FROM "position_changes"'
        last = -1
        while (now := await asyncio.to_thread(count, server.url, changes)) != last:
            last = now  # every point landed (a stop leaves what is late in the spool)
            await asyncio.sleep(2)
    finally:
        code, _ = await stop_collector(process)
    log = log_path.read_text()
    assert code == 0 and "Traceback" not in log, log[-3000:]

    status = dict(re.findall(r"(\w+)=(\d+)", log.split("status at stop:")[-1].splitlines()[0]))
    assert int(status["book_polls"]) > 60  # accounts polled again after their first poll
    assert int(status["book_polls_drift"]) == 0  # and the book always held the truth

    # every change of a tracked account after its first poll, as the ledger has it
    first_poll: dict[str, int] = {}
    for served in sim.ledger.positions:
        if served.address not in VAULTS:  # the HLP job polls the vaults, the book skips them
            first_poll.setdefault(served.address, served.time)
    expected = {
        (c.address, c.coin, c.tid, Decimal(repr(c.szi_after)))
        for c in sim.ledger.position_changes()
        if c.address in first_poll and c.time > first_poll[c.address]
    }
    rows = influxql(
        server.url,
        """SELECT "address", "tid", "szi_after", "coin" FROM "position_changes" """
        """WHERE "source" = 'trade'""",
        "hyperliquid",
    )
    stored = {(r["address"], r["coin"], r["tid"], Decimal(repr(r["szi_after"]))) for r in rows}
    assert expected and stored == expected
    assert len(rows) == len(expected)


@pytest.mark.timeout(180)
async def test_market_liquidations_of_tracked_accounts_are_caught_and_none_invented(
    simulator, make_influxd, tmp_path
):
    """Prices swing, and the exchange liquidates the accounts whose mark crosses their
    liquidation price (30 % backstop, the rest market orders). Every market liquidation stored
    is one the exchange made; those of accounts the book tracked are counted."""
    sim = await simulator(
        seed=21, rate=0, evolve_interval=0, n_addresses=60, near_liq_fraction=0.5,
        price_sigma=1.5e-3,
    )  # fmt: skip
    server: LocalInfluxd = make_influxd()
    log_path = tmp_path / "collector.log"
    env = collector_env(
        sim,
        server,
        tmp_path / "data",
        HYPERFLUX_JOBS_POSITIONS_SHARE="0.7",
        # live marks from activeAssetCtx (pushed every 0.5 s here): polling metaAndAssetCtxs
        # every second instead took the whole REST budget and starved the confirmations
        HYPERFLUX_HL_WS_CHANNELS="activeAssetCtx",
        HYPERFLUX_JOBS_ASSET_CTX_INTERVAL="5",
    )
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        await asyncio.sleep(12)  # every account polled once: the book tracks them
        sim.set_rate(40)
        await asyncio.sleep(40)  # long enough for several liquidations of tracked accounts
        sim.pause()
        await asyncio.sleep(4)  # the last candidates checked
    finally:
        code, _ = await stop_collector(process)
    log = log_path.read_text()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    rows = influxql(
        server.url,
        """SELECT "tid", "coin", "side", "user" FROM "liquidations" WHERE "method" = 'market'""",
        "hyperliquid",
    )
    stored = {(r["coin"], r["side"], r["tid"], r["user"]) for r in rows}
    made = {(r.coin, r.side, r.tid, r.user) for r in sim.ledger.liquidations_of(method="market")}
    assert stored <= made  # nothing invented
    polled: dict[str, int] = {}
    for served in sim.ledger.positions:
        polled.setdefault(served.address, served.time)
    tracked = {
        (r.coin, r.side, r.tid, r.user)
        for r in sim.ledger.liquidations_of(method="market")
        if r.user in polled and polled[r.user] < r.time
    }
    status = dict(re.findall(r"(\w+)=(\d+)", log.split("status at stop:")[-1].splitlines()[0]))
    print(
        f"\nmarket liquidations: made {len(made)} ({len(tracked)} of accounts polled before), "
        f"stored {len(stored)} ({len(stored & tracked)} of those), "
        f"candidates {status.get('market_liquidation_candidates')}"
    )
    assert stored, "the book catches market liquidations of the accounts it tracks"
