"""The library API (`from hyperflux import LiquidationMonitor`) against the local Hyperliquid:
every liquidation the exchange makes while the monitor runs is yielded once, with its side and
method, and the statistics are the ledger's sums."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

from hyperflux import LiquidationEvent, LiquidationMonitor, Trade, UnknownCoinError
from tests.simulator import Simulator
from tests.simulator.config import HLP_LIQUIDATOR_2

COINS = ["BTC", "ETH", "SOL"]
QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False}


async def until(
    condition: Callable[[], bool], timeout: float, what: str | Callable[[], str]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        await asyncio.sleep(0.1)


def tracked_victim(
    sim: Simulator, monitor: LiquidationMonitor, coin: str, long: bool
) -> str | None:
    """An account the monitor's book tracks, holding a `coin` position of that side with a
    liquidation price, as the exchange and as the book compute it."""
    book = monitor.feed.book
    for address in sorted(book.accounts):
        account = sim.population.accounts.get(address)
        position = None if account is None else account.positions.get(coin)
        if position is None or position.liq_px is None or (position.szi > 0) != long:
            continue
        if book.liquidation_prices(book.accounts[address]).get(coin) is not None:
            return address  # the book computes one too (not while a mark it needs is unknown)
    return None


def crash_through(sim: Simulator, monitor: LiquidationMonitor, address: str, coin: str) -> None:
    """The price runs 5 % through the account's liquidation price, as the exchange and as the
    monitor's book compute it (the book's, from marks up to 20 s old and estimated cash, can be
    several percent off for a small cross account)."""
    position = sim.population.accounts[address].positions[coin]
    book = monitor.feed.book
    computed = book.liquidation_prices(book.accounts[address]).get(coin)
    assert position.liq_px is not None and computed is not None
    prices = (position.liq_px, float(computed))
    long = position.szi > 0
    sim.market.coins[coin].mid = min(prices) * 0.95 if long else max(prices) * 1.05


def key(event: LiquidationEvent) -> tuple[str, str, str, int, str | None]:
    return (event.coin, event.side, event.method, event.tid, event.user)


@pytest.mark.timeout(120)
async def test_every_liquidation_is_yielded_once_with_its_side_and_the_statistics_add_up(
    simulator,
) -> None:
    sim = await simulator(seed=7, n_addresses=24, near_liq_fraction=0.5, **QUIET)
    async with LiquidationMonitor(sim.url, sim.ws_url, COINS, weight_budget=1200) as monitor:
        await monitor.wait_ready()
        seen: list[LiquidationEvent] = []

        async def consume() -> None:
            async for event in monitor.monitor_realtime():
                seen.append(event)

        consumer = asyncio.create_task(consume())
        await until(lambda: monitor.feed.bus.wants("liquidation"), 5, "the subscription")
        sim.set_rate(25)  # the traders show up on the tape and the monitor polls them
        await asyncio.sleep(4)
        sim.pause()
        scheduler = monitor.feed.poller.scheduler
        await until(lambda: scheduler.discovery_backlog == 0, 20, "every trader polled")
        await asyncio.sleep(1)  # the last polls answered

        sim.backstop_liquidation(coin="ETH", side="long")
        sim.backstop_liquidation(coin="ETH", side="short", vault=HLP_LIQUIDATOR_2)
        sim.backstop_liquidation(coin="BTC", side="short")
        await until(lambda: len(seen) == 3, 10, "the backstops")
        scanned = await monitor.scan_recent_liquidations(["ETH", "BTC"])
        assert sorted(map(key, scanned)) == sorted(map(key, seen))

        for coin, long in (("SOL", True), ("BTC", False)):
            await until(
                lambda c=coin, side=long: tracked_victim(sim, monitor, c, side) is not None,
                25,
                f"a tracked {coin} position with a liquidation price in the book",
            )
            victim = tracked_victim(sim, monitor, coin, long)
            assert victim is not None
            crash_through(sim, monitor, victim, coin)
            await asyncio.sleep(1.2)  # the new mark reaches the monitor (activeAssetCtx)
            sim.market_liquidation(
                coin=coin, side="long" if long else "short", user=victim, parts=2
            )
        ledger = sim.ledger.liquidations
        confirmer = monitor.feed.confirmer
        await until(
            lambda: len(seen) >= len(ledger),
            15,
            lambda: (
                f"the market liquidations: {len(seen)} of {len(ledger)} seen, "
                f"{confirmer.candidates} candidates, {confirmer.rejected} rejected"
            ),
        )
        await asyncio.sleep(2)  # a duplicate would show up meanwhile
        stats = monitor.get_statistics()
        recent = monitor.get_liquidations_by_timeframe(120)
        consumer.cancel()

    assert {r.method for r in ledger} == {"backstop", "market"} and len(ledger) == 7
    made = sorted((r.coin, r.side, r.method, r.tid, r.user) for r in ledger)
    assert sorted(map(key, seen)) == made  # each once, with the side and method it had
    assert sorted(map(key, recent)) == made

    sums: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for r in ledger:
        count, usd = sums.get((r.coin, r.side), (0, Decimal(0)))
        sums[(r.coin, r.side)] = (count + 1, usd + Decimal(r.px) * Decimal(r.sz))
    got = {
        (coin, side): (totals.count, totals.usd)
        for coin, sides in stats.by_coin.items()
        for side, totals in sides.items()
    }
    assert got == sums
    assert stats.count == 7 and stats.usd == sum(usd for _, usd in sums.values())
    assert stats.by_method["backstop"].count == 3 and stats.by_method["market"].count == 4


@pytest.mark.timeout(60)
async def test_trades_are_yielded_once_each_and_a_bad_coin_is_one_clear_error(simulator) -> None:
    sim = await simulator(seed=3, **QUIET)
    async with LiquidationMonitor(
        sim.url, sim.ws_url, ["ETH"], track_positions=False, discover_vaults=False
    ) as monitor:
        got: list[Trade] = []

        async def consume() -> None:
            async for trade in monitor.trades(["BTC"]):  # a coin not followed yet: added
                got.append(trade)

        consumer = asyncio.create_task(consume())
        await until(lambda: "BTC" in monitor.feed.coins, 5, "BTC followed")
        await monitor.wait_ready()
        await asyncio.sleep(0.5)
        made = sim.burst("BTC", 40, batch=15) + sim.burst("ETH", 5)
        await until(lambda: len(got) >= 40, 10, "the trades")
        await asyncio.sleep(0.5)
        consumer.cancel()
        with pytest.raises(
            UnknownCoinError, match="'btc' is not a listed perp; did you mean 'BTC'"
        ):
            await monitor.scan_recent_liquidations(["btc"])
    assert sorted((t.coin, t.time_ms, t.tid) for t in got) == sorted(
        (r.coin, r.time, r.tid) for r in made if r.coin == "BTC"
    )
