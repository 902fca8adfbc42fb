"""`python main.py run` with the Redis publisher on: the simulator trades, a real influxd stores,
a real redis-server carries every trade and liquidation to a real subscriber, exactly once per
channel, through WebSocket drops and replays; a Redis restart mid-run loses only (and exactly)
what was published while it was down, counted, and collection does not notice."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from db.local_server import LocalInfluxd
from tests.conftest import influxql
from tests.redis_server import LocalRedis
from tests.test_pipeline import (
    collector_env,
    count,
    start_collector,
    stop_collector,
    subscribed,
    wait_until,
)
from tests.test_redis_publisher import Listener

TRADES = 'SELECT COUNT("tid") FROM "trades"'
Key = tuple[str, int, int]  # coin, time_ms, tid
SUMMARY = re.compile(r"redis: (\d+) events published, (\d+) dropped while Redis was unreachable")


def received(listener: Listener, kind: str) -> Counter[Key]:
    """What the subscriber got of `kind`, by (coin, time_ms, tid); the channel must match."""
    got: Counter[Key] = Counter()
    for channel, raw in listener.messages:
        message = json.loads(raw)
        if message["kind"] == kind:
            data = message["data"]
            assert (
                channel
                == f"hyperflux:{kind}:{data['coin']}"
                == f"hyperflux:{kind}:{message['coin']}"
            )
            assert message["time_ms"] == data["time_ms"]
            got[(data["coin"], data["time_ms"], data["tid"])] += 1
    return got


def stored(url: str, measurement: str) -> set[Key]:
    rows = influxql(url, f'SELECT "tid", "coin" FROM "{measurement}"', "hyperliquid")
    keys = [(r["coin"], r["time"] // 1_000_000, r["tid"]) for r in rows]
    assert len(keys) == len(set(keys))
    return set(keys)


def redis_env(redis: LocalRedis) -> str:
    section = {
        "url": redis.url,
        "events": ["trade", "liquidation"],
        "streams": True,
        "backoff_base": 0.1,
        "backoff_max": 0.5,
    }
    return json.dumps(section)


async def settled(url: str, sim, listener: Listener | None = None) -> None:
    """Every trade the simulator made is stored (and, given a listener, received)."""
    total = sim.ledger.trade_count()
    await wait_until(lambda: count(url, TRADES) >= total, 30)
    if listener is not None:
        await wait_until(lambda: sum(received(listener, "trade").values()) >= total, 15)


def summary(log: str) -> tuple[int, int]:
    published, dropped = SUMMARY.findall(log)[-1]
    return int(published), int(dropped)


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_subscriber_gets_every_trade_and_liquidation_exactly_once(
    simulator, make_influxd, redis_server, tmp_path: Path
):
    sim = await simulator(
        seed=21, rate=0, replay_trades=30, evolve_interval=0, auto_liquidations=False,
        n_addresses=40,
    )  # fmt: skip
    server: LocalInfluxd = make_influxd()
    log_path = tmp_path / "collector.log"
    env = collector_env(sim, server, tmp_path / "data", HYPERFLUX_REDIS=redis_env(redis_server))
    listener = await Listener(
        redis_server.url, "hyperflux:trade:*", "hyperflux:liquidation:*"
    ).start()
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        sim.set_rate(60)
        await asyncio.sleep(4)
        sim.burst("BTC", 300)  # one millisecond, some sharing tid % 10**6
        sim.backstop_liquidation(coin="ETH", side="long")
        sim.backstop_liquidation(coin="SOL", side="short")
        await asyncio.sleep(3)
        await sim.disconnect_all(abrupt=True, reject_seconds=0.5)  # replays and backfill
        await asyncio.sleep(4)
        sim.backstop_liquidation(coin="BTC", side="long")
        await asyncio.sleep(2)
        sim.pause()
        await settled(server.url, sim, listener)
        await asyncio.sleep(1)  # a duplicate would have come by now
    finally:
        code, _ = await stop_collector(process)
        await listener.stop()
    log = log_path.read_text()
    assert code == 0 and "Traceback" not in log, log[-3000:]

    trades = stored(server.url, "trades")
    assert trades == sim.ledger.trade_keys()
    got = received(listener, "trade")
    assert max(got.values()) == 1, [key for key, n in got.items() if n > 1][:5]
    assert set(got) == trades, (len(trades - set(got)), len(set(got) - trades))
    liquidations = stored(server.url, "liquidations")
    assert liquidations == {(r.coin, r.time, r.tid) for r in sim.ledger.liquidations_of()}
    got_liquidations = received(listener, "liquidation")
    assert max(got_liquidations.values()) == 1 and set(got_liquidations) == liquidations
    assert len(liquidations) == 3
    assert summary(log) == (len(trades) + len(liquidations), 0)

    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:  # the stream: every trade once, in the order they were published
        entries = await client.xrange("hyperflux:trade")
    finally:
        await client.aclose()
    in_stream = [json.loads(fields["data"])["data"] for _, fields in entries]
    assert Counter((d["coin"], d["time_ms"], d["tid"]) for d in in_stream) == got
    published = [json.loads(raw)["data"] for _, raw in listener.messages]
    assert in_stream == [d for d in published if "method" not in d]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_redis_restart_loses_only_what_was_published_while_it_was_down(
    simulator, make_influxd, redis_server, tmp_path: Path
):
    sim = await simulator(
        seed=22, rate=0, evolve_interval=0, auto_liquidations=False, n_addresses=40
    )
    server: LocalInfluxd = make_influxd()
    log_path = tmp_path / "collector.log"
    env = collector_env(sim, server, tmp_path / "data", HYPERFLUX_REDIS=redis_env(redis_server))
    patterns = ("hyperflux:trade:*", "hyperflux:liquidation:*")
    before = await Listener(redis_server.url, *patterns).start()
    after: Listener | None = None
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        sim.set_rate(50)
        await asyncio.sleep(4)
        sim.backstop_liquidation(coin="ETH", side="long")
        await asyncio.sleep(2)
        sim.pause()  # everything so far reaches the subscriber: nothing is in flight at the stop
        await settled(server.url, sim, before)
        up_to = len(sim.ledger.valid_trades())

        redis_server.stop()
        await before.stop()
        sim.resume()
        await asyncio.sleep(3)
        sim.backstop_liquidation(coin="SOL", side="short")
        await asyncio.sleep(2)
        sim.pause()  # and nothing of the outage is still on its way when Redis is back
        await asyncio.sleep(1)
        down = sim.ledger.valid_trades()[up_to:]

        redis_server.start()  # the same port
        after = await Listener(redis_server.url, *patterns).start()
        await wait_until(lambda: "reachable again" in log_path.read_text(), 10)
        sim.resume()
        await asyncio.sleep(3)
        sim.backstop_liquidation(coin="BTC", side="long")
        await asyncio.sleep(2)
        sim.pause()
        await settled(server.url, sim)
        await wait_until(
            lambda: (
                sum(received(after, "trade").values())
                >= len(sim.ledger.valid_trades()) - up_to - len(down)
            ),
            15,
        )
        await asyncio.sleep(1)
    finally:
        code, _ = await stop_collector(process)
        if after is not None:
            await after.stop()
    log = log_path.read_text()
    assert code == 0 and "Traceback" not in log, log[-3000:]

    trades = stored(server.url, "trades")  # collection did not notice
    assert trades == sim.ledger.trade_keys()
    liquidations = stored(server.url, "liquidations")
    liquidated = sim.ledger.liquidations_of()
    assert liquidations == {(r.coin, r.time, r.tid) for r in liquidated} and len(liquidated) == 3

    got = received(before, "trade") + received(after, "trade")
    got_liquidations = received(before, "liquidation") + received(after, "liquidation")
    assert max(got.values()) == 1 and max(got_liquidations.values()) == 1
    assert set(got) <= trades and set(got_liquidations) <= liquidations
    # lost: only what was made while Redis was down (normally all of it: the flow paused 1 s
    # before Redis came back), and exactly as many as the publisher counted
    lost = trades - set(got)
    lost_liquidations = liquidations - set(got_liquidations)
    assert lost <= {r.key for r in down}, (len(lost), len(down))
    assert lost_liquidations <= {(r.coin, r.time, r.tid) for r in liquidated[1:2]}
    missing = len(lost) + len(lost_liquidations)
    published, dropped = summary(log)
    assert dropped == missing > 0, (dropped, len(lost), len(lost_liquidations), len(down))
    assert published == sum(got.values()) + sum(got_liquidations.values())
    lines = [line for line in log.splitlines() if "redis_publisher" in line]
    assert len(lines) == 4, lines  # publishing, lost (the one warning), back, the summary
    assert "WARN" in lines[1] and " lost (ConnectionError" in lines[1], lines
    assert f"{missing} events dropped while it was down" in lines[2], lines
