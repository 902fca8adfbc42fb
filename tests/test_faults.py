"""No trade lost silently: `python main.py run` through the faults of a long-running job.

The simulator serves what the exchange serves (10 trades from `recentTrades`, 30 replayed on
subscribe, drops of one connection or all of them); a real influxd stores what the collector
writes. Every trade the simulator sent is either stored exactly once or inside a `trade_gaps`
stretch of its coin, and each gap lies around a real outage.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from db.local_server import LocalInfluxd
from tests.conftest import influxql
from tests.test_pipeline import (
    collector_env,
    count,
    start_collector,
    stop_collector,
    subscribed,
    wait_until,
)

DB = "hyperliquid"
TRADES = 'SELECT COUNT("tid") FROM "trades"'


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def stored_trades(url: str) -> Counter[tuple[str, int, int]]:
    rows = influxql(url, 'SELECT "tid", "coin" FROM "trades"', DB)
    return Counter((r["coin"], r["time"] // 1_000_000, r["tid"]) for r in rows)


def recorded_gaps(url: str) -> list[tuple[str, int, int]]:
    rows = influxql(url, 'SELECT "after_ms", "before_ms", "coin" FROM "trade_gaps"', DB)
    return [(r["coin"], r["after_ms"], r["before_ms"]) for r in rows]


def outside_gaps(
    missing: set[tuple[str, int, int]], gaps: list[tuple[str, int, int]]
) -> list[tuple[str, int, int]]:
    return [
        (coin, t, tid)
        for coin, t, tid in sorted(missing)
        if not any(c == coin and after < t <= before for c, after, before in gaps)
    ]


def outcome(
    name: str, url: str, sim, log_path: Path, code: int, took: float
) -> tuple[Counter[tuple[str, int, int]], set[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """The run ended well (exit 0 within 2 s, no traceback) and nothing is stored twice or
    stored that was never sent; returns what is stored, what is missing and the gaps. Prints
    the figures (pytest -s shows them)."""
    log = log_path.read_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    assert took < 2.0
    stored = stored_trades(url)
    assert max(stored.values()) == 1, "a trade was stored twice"
    sent = sim.ledger.trade_keys()
    assert set(stored) <= sent
    missing = sent - set(stored)
    gaps = recorded_gaps(url)
    print(
        f"\n{name}: sent {len(sent)}, stored {len(stored)}, missing {len(missing)} "
        f"({len(missing) - len(outside_gaps(missing, gaps))} inside {len(gaps)} recorded gaps), "
        f"HTTP 429 {sim.ledger.rest_429_count}, stop {took:.2f} s"
    )
    return stored, missing, gaps


async def settle(url: str, log_path: Path, timeout: float = 40) -> None:
    """Wait until the stored trade count stops moving (spool replayed, backfills done)."""
    deadline = time.monotonic() + timeout
    last = -1
    while True:
        now = await asyncio.to_thread(count, url, TRADES)
        if now == last and now > 0:
            return
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        last = now
        await asyncio.sleep(2.0)


@pytest.mark.timeout(180)
async def test_one_connection_down_loses_nothing_and_both_down_leave_only_recorded_gaps(
    simulator, make_influxd, tmp_path
):
    sim = await simulator(
        seed=5, rate=0, evolve_interval=0, auto_liquidations=False, n_addresses=300
    )  # the exchange's 10 recentTrades, 30 trades replayed on subscribe
    server: LocalInfluxd = make_influxd()
    url = server.url
    log_path = tmp_path / "collector.log"
    env = collector_env(sim, server, tmp_path / "data", HYPERFLUX_JOBS_POSITIONS_SHARE="0.7")
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        sim.set_rate(100)
        await asyncio.sleep(6)  # the positions poller fills its lane of the budget
        one_down = now_ms()
        assert await sim.disconnect_all(abrupt=True, reject_seconds=5.0, count=1) == 1
        await asyncio.sleep(5)
        await wait_until(lambda: len(sim.hub.conns) == 2, 15)  # the spare is back
        await asyncio.sleep(1)
        both_down = now_ms()
        assert await sim.disconnect_all(abrupt=True, reject_seconds=5.0) == 2
        await asyncio.sleep(10)
        sim.pause()
        await settle(url, log_path)
    finally:
        code, took = await stop_collector(process)
    _, missing, gaps = outcome("drops", url, sim, log_path, code, took)

    # one connection down: nothing missing, no gap, no REST backfill spent
    assert not [k for k in missing if k[1] < both_down]
    assert not [g for g in gaps if g[1] < both_down - 3000]
    served = sim.ledger.rest_served
    assert not [t for t, kind in served if kind == "recentTrades" and one_down <= t < both_down]

    # both down: what neither replay nor recentTrades brought back lies in a recorded gap
    assert missing, "5 s at 100 trades/s is more than the replay and recentTrades hold"
    assert outside_gaps(missing, gaps) == []
    reopened = min(t for t in sim.ledger.ws_opened if t > both_down)
    outage = reopened - both_down
    assert all(before - after <= outage + 2000 for _, after, before in gaps), (gaps, outage)
    # backfills leave at once although positions saturate their lane
    backfills = [t for t, kind in served if kind == "recentTrades" and t >= both_down]
    assert backfills
    assert max(backfills) - reopened <= 1500, (backfills, reopened)
    assert sim.ledger.rest_429_count == 0


@pytest.mark.slow
@pytest.mark.timeout(420)
async def test_five_sigkills_an_influxd_crash_and_a_start_with_influxd_down(
    simulator, make_influxd, tmp_path
):
    """The collector starts while influxd is down, is SIGKILLed five times 10-20 s apart and
    restarted, and influxd itself is SIGKILLed once: no trade is stored twice, every trade
    missing lies in a recorded gap around a downtime, the exchange never answers 429, and
    once settled every order-flow bar equals the trades stored in its minute."""
    sim = await simulator(
        seed=9, rate=0, evolve_interval=0, auto_liquidations=False, n_addresses=150
    )
    server: LocalInfluxd = make_influxd()
    await asyncio.to_thread(server.stop)  # down at the first start
    url = server.url
    log_path = tmp_path / "collector.log"
    env = collector_env(sim, server, tmp_path / "data", HYPERFLUX_ENGINES_INTERVAL="2")
    rng = random.Random(4)
    downtimes: list[tuple[int, int]] = []
    process = await start_collector(env, log_path)
    try:
        await subscribed(log_path)
        sim.set_rate(60)
        await asyncio.sleep(5)
        assert (tmp_path / "data" / "spool").exists()
        await asyncio.to_thread(
            server.start
        )  # the points collected meanwhile come out of the spool
        await wait_until(lambda: count(url, TRADES) > 0, 30)
        for round_ in range(5):
            await asyncio.sleep(rng.uniform(10, 20))
            killed = now_ms()
            process.kill()
            await process.wait()
            if round_ == 2:
                server.kill()  # influxd crashes too, and comes back a little later
                await asyncio.sleep(1.0)
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            marker = f"--- restart {round_ + 1}\n"
            with log_path.open("a") as log:
                log.write(marker)
            process = await start_collector(env, log_path)
            if round_ == 2:
                await asyncio.sleep(2.0)
                await asyncio.to_thread(server.start)
            await wait_until(lambda m=marker: "subscri" in log_path.read_text().split(m)[-1], 30)
            downtimes.append((killed, now_ms()))
        await asyncio.sleep(5)
        sim.pause()
        await settle(url, log_path, timeout=60)
        await asyncio.sleep(5)  # two engine intervals after the last trade landed
    finally:
        code, took = await stop_collector(process)
    stored, missing, gaps = outcome("sigkills", url, sim, log_path, code, took)
    assert outside_gaps(missing, gaps) == []
    for coin, after, before in gaps:  # each around a downtime of the collector
        assert any(down - 8000 <= after and before <= up + 8000 for down, up in downtimes), (
            coin,
            after,
            before,
            downtimes,
        )
    assert sim.ledger.rest_429_count == 0

    # order flow, settled: every bar counts exactly the trades stored in its minute, and says
    # it is incomplete exactly when a recorded gap of its coin overlaps the minute
    bars = influxql(
        url, 'SELECT "buy_count", "sell_count", "incomplete", "coin" FROM "order_flow"', DB
    )
    per_minute = Counter((coin, t // 60_000) for coin, t, _ in stored)
    counted = {
        (r["coin"], r["time"] // 60_000_000_000): r["buy_count"] + r["sell_count"] for r in bars
    }
    assert counted == dict(per_minute)

    def overlaps(coin: str, minute: int) -> bool:
        start, end = minute * 60_000, minute * 60_000 + 59_999
        return any(c == coin and max(a + 1, start) <= min(b, end) for c, a, b in gaps)

    flags = {(r["coin"], r["time"] // 60_000_000_000): r["incomplete"] for r in bars}
    assert flags == {key: overlaps(*key) for key in flags}
    assert any(flags.values()) == bool(gaps)
