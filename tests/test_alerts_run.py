"""Alerts in a running collector: a watched wallet enters, increases, flips and exits on the
simulator (a consistent exchange); a local webhook receiver (a real HTTP server) that fails its
first requests gets exactly those four alerts once each, and `alerts` holds exactly four."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from db.local_server import LocalInfluxd
from tests.conftest import influxql
from tests.test_pipeline import (
    collector_env,
    start_collector,
    stop_collector,
    subscribed,
    wait_until,
)
from utils.net import free_port

WATCHED = "0x" + "ab" * 20
MAKER = "0x" + "cd" * 20
OTHER = "0x" + "ef" * 20


class Receiver:
    """A webhook endpoint that answers 503 to its first `fail_first` requests."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests = 0
        self.bodies: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.fail_first:
            return web.Response(status=503)
        self.bodies.append(await request.json())
        return web.Response(status=200)


@pytest.mark.timeout(120)
async def test_a_watched_wallet_alerts_once_per_change_through_a_failing_receiver(
    simulator, make_influxd, tmp_path
):
    receiver = Receiver(fail_first=2)
    app = web.Application()
    app.router.add_post("/alerts", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sim = await simulator(
        seed=3, rate=0, evolve_interval=0, auto_liquidations=False, n_addresses=10
    )
    server: LocalInfluxd = make_influxd()
    alerts = {
        "targets": {"hook": {"kind": "json", "url": f"http://127.0.0.1:{port}/alerts"}},
        "rules": [{"name": "watch", "kind": "wallet", "addresses": [WATCHED]}],
        "retry_base": 0.2,
    }
    env = collector_env(sim, server, tmp_path / "data", HYPERFLUX_ALERTS=json.dumps(alerts))
    log_path = tmp_path / "collector.log"
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        sim.trade("SOL", WATCHED, MAKER, 120, 1, "B")  # the wallet is discovered, then polled
        await wait_until(lambda: any(s.address == WATCHED for s in sim.ledger.positions), 30)
        await asyncio.sleep(2)  # its first poll is in the book
        for buyer, seller, sz in (
            (WATCHED, MAKER, 1),  # entry: long 1 ETH
            (WATCHED, MAKER, 1),  # increase: long 2
            (MAKER, WATCHED, 3),  # flip: short 1
            (WATCHED, MAKER, 1),  # exit
            (OTHER, MAKER, 5),  # not watched
        ):
            sim.trade("ETH", buyer, seller, 2700, sz, "B")
            await asyncio.sleep(0.3)
        await wait_until(lambda: len(receiver.bodies) >= 4, 30)
        await asyncio.sleep(1.5)  # anything more would have come by now
    finally:
        code, _ = await stop_collector(process)
        await runner.cleanup()
    log = log_path.read_text()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    events = [(b["event"], b["address"], b["coin"]) for b in receiver.bodies]
    assert events == [(e, WATCHED, "ETH") for e in ("entry", "increase", "flip", "exit")]
    assert len({b["id"] for b in receiver.bodies}) == 4
    assert receiver.requests == 6  # two refusals, then each alert once
    rows = influxql(
        server.url,
        """SELECT "event", "address" FROM "alerts" WHERE "kind" = 'wallet' ORDER BY time""",
        "hyperliquid",
    )
    assert [(r["event"], r["address"]) for r in rows] == [
        (e, WATCHED) for e in ("entry", "increase", "flip", "exit")
    ]
    assert log.count("alert target hook") == 2  # one line when it failed, one when it recovered
    assert "delivers again" in log
