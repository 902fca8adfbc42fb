"""The WebSocket supervisor against the local Hyperliquid simulator, and fuzzed frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetch.info import HyperliquidInfo
from fetch.rest import InfoClient
from fetch.ws import Gap, MarketStream
from utils.quarantine import Quarantine
from validate import MidsMessage, Trade

QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False}
COINS = ["BTC", "ETH", "SOL", "HYPE", "kPEPE"]


class Collected:
    """What the stream delivered, in order, with the keys the ledger uses."""

    def __init__(self) -> None:
        self.trades: list[Trade] = []

    def __call__(self, trades: list[Trade]) -> None:
        self.trades.extend(trades)

    def keys(self, coin: str | None = None) -> list[tuple[str, int, int]]:
        return [(t.coin, t.time_ms, t.tid) for t in self.trades if coin in (None, t.coin)]


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(stream: MarketStream) -> AsyncIterator[MarketStream]:
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        await stream.stop()
        await asyncio.wait_for(task, 5)


def stream_for(sim, collected: Collected, tmp_path: Path, **kwargs) -> MarketStream:
    return MarketStream(
        sim.ws_url,
        kwargs.pop("coins", COINS),
        on_trades=collected,
        quarantine=Quarantine(tmp_path / "quarantine"),
        backoff_base=0.2,  # quick, yet within the exchange's 30 connection attempts a minute
        backoff_cap=1.0,
        **kwargs,
    )


async def test_subscribes_everything_and_acks_match_by_content(simulator, tmp_path):
    sim = await simulator(**QUIET)
    stream = stream_for(sim, Collected(), tmp_path, coin_channels=("l2Book", "bbo"))
    async with running(stream):
        await wait_for(lambda: stream.connected and not stream.unacknowledged)
    assert len(stream.subscriptions) == 3 * len(COINS) + 1


async def test_two_disconnects_deliver_every_trade_exactly_once(simulator, tmp_path):
    sim = await simulator(rate=150, recent_trades=2000, evolve_interval=0, auto_liquidations=False)
    collected = Collected()
    async with InfoClient(sim.url) as client:
        info = HyperliquidInfo(client)
        stream = stream_for(sim, collected, tmp_path, backfill=info.recent_trades)
        async with running(stream):
            await wait_for(lambda: stream.connected and not stream.unacknowledged)
            for drop in (1, 2):
                await asyncio.sleep(1.5)
                await sim.disconnect_all(abrupt=True, reject_seconds=1.0)  # trades go on meanwhile
                await wait_for(
                    lambda n=drop: stream.stats.reconnects == n and not stream.unacknowledged
                )
            await asyncio.sleep(1.0)
            sim.pause()
            await asyncio.sleep(0.5)
            expected = sim.ledger.trade_keys()
            await wait_for(lambda: len(collected.keys()) >= len(expected))
    delivered = collected.keys()
    assert len(delivered) == len(set(delivered)), "a trade was delivered twice"
    assert set(delivered) == expected
    assert stream.stats.reconnects == 2
    assert stream.stats.duplicates > 0  # replays and backfill overlap were dropped
    assert stream.stats.backfilled > 0  # trades sent while disconnected came back over REST
    assert stream.gaps == []


async def test_a_gap_that_recent_trades_cannot_fill_is_recorded(simulator, tmp_path):
    sim = await simulator(
        rate=300, recent_trades=5, replay_trades=5, evolve_interval=0, auto_liquidations=False
    )
    collected = Collected()
    async with InfoClient(sim.url) as client:
        stream = stream_for(
            sim, collected, tmp_path, coins=["BTC"], backfill=HyperliquidInfo(client).recent_trades
        )
        async with running(stream):
            await wait_for(lambda: stream.connected and len(collected.keys("BTC")) > 10)
            last_before = max(t.time_ms for t in collected.trades)
            await sim.disconnect_all(abrupt=True, reject_seconds=1.5)
            await wait_for(lambda: stream.gaps, timeout=15)
    gap = stream.gaps[0]
    assert gap.coin == "BTC" and gap.after_ms == last_before
    missing = sim.ledger.trade_keys("BTC") - set(collected.keys("BTC"))
    assert missing, "the simulator should have sent more trades than recentTrades keeps"
    assert all(gap.after_ms < t <= gap.before_ms for _, t, _ in missing if t <= gap.before_ms)


async def test_bad_records_are_quarantined_and_good_ones_in_the_same_frame_pass(
    simulator, tmp_path
):
    sim = await simulator(**QUIET)
    collected = Collected()
    stream = stream_for(sim, collected, tmp_path, coins=["BTC"])
    async with running(stream):
        await wait_for(lambda: stream.connected and not stream.unacknowledged)
        for kind in ("bad_px", "missing_tid", "bad_side", "not_json"):
            sim.send_malformed(kind, coin="BTC", good=2)
        sim.send_error("Already subscribed")
        await wait_for(lambda: stream.stats.rejected == 4 and stream.stats.errors == 1)
        await wait_for(lambda: len(collected.trades) == 6)
    assert set(collected.keys()) == sim.ledger.trade_keys("BTC")
    lines = [
        json.loads(line)
        for path in (tmp_path / "quarantine").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(lines) == 4
    assert all(line["reason"] and "\n" not in line["reason"] for line in lines)


async def test_pings_keep_a_quiet_socket_open(simulator, tmp_path):
    sim = await simulator(idle_timeout=1.5, **QUIET)
    stream = stream_for(sim, Collected(), tmp_path, ping_interval=0.5)
    async with running(stream):
        await asyncio.sleep(4)
    assert sim.ledger.ws_idle_drops == 0
    assert stream.stats.connects == 1


async def test_a_socket_that_only_pongs_is_treated_as_stale(simulator, tmp_path):
    sim = await simulator(**QUIET)
    stream = stream_for(sim, Collected(), tmp_path, channels=(), ping_interval=0.3, stale_after=1.0)
    async with running(stream):
        await wait_for(lambda: stream.stats.stale >= 1 and stream.stats.reconnects >= 1)


async def test_new_listings_are_subscribed_live_and_delisted_ones_dropped(simulator, tmp_path):
    sim = await simulator(**QUIET)
    collected = Collected()
    mids: list[MidsMessage] = []
    stream = stream_for(sim, collected, tmp_path, coins=["BTC"], on_message=mids.append)
    async with running(stream):
        await wait_for(lambda: stream.connected and not stream.unacknowledged)
        await stream.update_coins(["ETH"])
        await wait_for(lambda: not stream.unacknowledged)
        sim.burst("BTC", 3)
        sim.burst("ETH", 4)
        await wait_for(lambda: len(collected.trades) == 4)
        await wait_for(lambda: bool(mids))
    assert {t.coin for t in collected.trades} == {"ETH"}
    assert "BTC" in mids[-1].mids


async def test_a_burst_in_one_millisecond_arrives_whole(simulator, tmp_path):
    sim = await simulator(**QUIET)
    collected = Collected()
    stream = stream_for(sim, collected, tmp_path, coins=["SOL"])
    async with running(stream):
        await wait_for(lambda: stream.connected and not stream.unacknowledged)
        sim.burst("SOL", 1000)
        await wait_for(lambda: len(collected.trades) == 1000)
    assert len({t.time_ms for t in collected.trades}) == 1
    assert len(set(collected.keys())) == 1000


GOOD = {
    "coin": "BTC",
    "side": "B",
    "px": "84000.5",
    "sz": "0.01",
    "hash": "0x" + "ab" * 32,
    "users": ["0x" + "1" * 40, "0x" + "2" * 40],
}
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.dictionaries(st.sampled_from([*GOOD, "tid", "time"]), st.text(max_size=8)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    good_count=st.integers(0, 5),
    bad=st.lists(junk, max_size=5),
    garbage=st.one_of(st.none(), st.binary(max_size=60), st.text(max_size=60)),
)
def test_fuzzed_frames_never_raise_and_good_trades_pass(good_count, bad, garbage):
    collected = Collected()
    quarantined: list[tuple[str, str]] = []

    class Recorder:
        def add(self, source: str, reason: str, raw: str) -> None:
            quarantined.append((source, reason))

    stream = MarketStream("ws://unused", ["BTC"], on_trades=collected, quarantine=Recorder())
    now = int(time.time() * 1000)
    good = [{**GOOD, "time": now, "tid": 1000 + i} for i in range(good_count)]
    records = good + bad
    stream.handle_frame(json.dumps({"channel": "trades", "data": records}))
    if garbage is not None:
        stream.handle_frame(garbage)
    assert len(collected.trades) == good_count
    garbage_rejected = len(quarantined) - len(bad)
    assert garbage_rejected == 0 if garbage is None else garbage_rejected in (0, 1)
    assert all(reason and "\n" not in reason for _, reason in quarantined)


async def test_overlapping_subscription_updates_never_subscribe_twice(simulator, tmp_path):
    sim = await simulator(**QUIET)
    stream = stream_for(sim, Collected(), tmp_path, coins=[])
    async with running(stream):
        await wait_for(lambda: stream.connected)
        await asyncio.gather(
            stream.update_coins(["BTC", "ETH"]), stream.update_coins(["BTC", "ETH", "SOL"])
        )
        await wait_for(lambda: not stream.unacknowledged)
        await asyncio.sleep(0.3)
    assert stream.stats.errors == 0
    assert not sim.ledger.ws_errors_sent


async def test_a_reconnect_the_replay_covers_costs_no_rest_weight(simulator, tmp_path):
    sim = await simulator(replay_trades=30, **QUIET)
    collected = Collected()
    async with InfoClient(sim.url) as client:
        stream = stream_for(
            sim,
            collected,
            tmp_path,
            coins=["BTC", "ETH"],
            backfill=HyperliquidInfo(client).recent_trades,
        )
        async with running(stream):
            await wait_for(lambda: stream.connected and not stream.unacknowledged)
            sim.burst("BTC", 5)
            sim.burst("ETH", 5)
            await wait_for(lambda: len(collected.trades) == 10)
            before = sim.ledger.rest_requests["recentTrades"]
            await sim.disconnect_all(abrupt=True)
            sim.burst("BTC", 3)  # while disconnected: within the 30 trades replayed
            await wait_for(lambda: stream.stats.reconnects == 1 and len(collected.trades) == 13)
            await asyncio.sleep(0.5)
    assert sim.ledger.rest_requests["recentTrades"] == before
    assert set(collected.keys()) == sim.ledger.trade_keys()
    assert stream.gaps == []


# --- A/B feeds: redundant connections ------------------------------------------------------


async def test_one_connection_of_two_dropped_for_5_s_loses_nothing_and_records_no_gap(
    simulator, tmp_path
):
    sim = await simulator(rate=120, evolve_interval=0, auto_liquidations=False)  # 10 recentTrades
    collected = Collected()
    async with InfoClient(sim.url) as client:
        stream = stream_for(
            sim, collected, tmp_path, connections=2, backfill=HyperliquidInfo(client).recent_trades
        )
        async with running(stream):
            await wait_for(lambda: stream.connected_count == 2 and not stream.unacknowledged)
            await asyncio.sleep(1.0)
            assert await sim.disconnect_all(abrupt=True, reject_seconds=5.0, count=1) == 1
            await wait_for(lambda: stream.connected_count == 1)
            await asyncio.sleep(4.0)
            assert stream.connected_count == 1  # still down: trades flowed over the other one
            await wait_for(lambda: stream.connected_count == 2 and not stream.unacknowledged, 10)
            await asyncio.sleep(1.0)
            sim.pause()
            expected = sim.ledger.trade_keys()
            await wait_for(lambda: len(collected.keys()) >= len(expected))
    delivered = collected.keys()
    assert len(delivered) == len(set(delivered)) == len(expected)
    assert set(delivered) == expected
    assert stream.gaps == [] and stream.open_gaps == {}
    assert stream.stats.reconnects == 1
    assert sim.ledger.rest_requests["recentTrades"] == 0  # no backfill needed, none spent


async def test_both_connections_dropped_for_5_s_leave_every_missing_trade_inside_a_gap(
    simulator, tmp_path
):
    sim = await simulator(rate=120, evolve_interval=0, auto_liquidations=False)  # 10 recentTrades
    collected = Collected()
    opened: list[Gap] = []
    closed: list[Gap] = []
    async with InfoClient(sim.url) as client:
        stream = stream_for(
            sim,
            collected,
            tmp_path,
            connections=2,
            backfill=HyperliquidInfo(client).recent_trades,
            on_gap_opened=opened.append,
            on_gap_closed=closed.append,
        )
        async with running(stream):
            await wait_for(lambda: stream.connected_count == 2 and not stream.unacknowledged)
            await asyncio.sleep(1.0)
            down = time.time() * 1000
            await sim.disconnect_all(abrupt=True, reject_seconds=5.0)
            await wait_for(lambda: stream.connected_count == 0)
            await wait_for(lambda: stream.connected_count == 2 and not stream.unacknowledged, 15)
            up = time.time() * 1000
            await wait_for(lambda: not stream.open_gaps and len(closed) == len(opened))
            await asyncio.sleep(1.0)
            sim.pause()
            await asyncio.sleep(0.5)
    delivered = collected.keys()
    assert len(delivered) == len(set(delivered)), "a trade was delivered twice"
    missing = sim.ledger.trade_keys() - set(delivered)
    assert missing, "5 s at 120 trades/s is more than replay and recentTrades hold"
    gaps = {}
    for gap in stream.gaps:
        gaps.setdefault(gap.coin, []).append(gap)
    for coin, time_ms, tid in missing:
        assert any(g.after_ms < time_ms <= g.before_ms for g in gaps.get(coin, [])), (
            coin,
            time_ms,
            tid,
            gaps.get(coin),
        )
    for gap in stream.gaps:
        assert gap.before_ms - gap.after_ms <= (up - down) + 2000, gap
    assert {(g.coin, g.after_ms) for g in opened} == {(g.coin, g.after_ms) for g in closed}
    assert {(g.coin, g.after_ms) for g in stream.gaps} <= {(g.coin, g.after_ms) for g in opened}
