"""Typed /info requests and HLP discovery against the local Hyperliquid simulator."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from config import Settings
from fetch.hlp import KNOWN_LIQUIDATORS, discover_hlp
from fetch.info import HyperliquidInfo
from fetch.rest import InfoClient
from tests.simulator import HLP_CHILDREN, HLP_LIQUIDATOR, HLP_PARENT, LIQUIDATOR_VAULTS
from utils.quarantine import Quarantine

QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False}


async def test_every_request_type_returns_validated_records(simulator, tmp_path):
    sim = await simulator(seed=3, **QUIET)
    sim.burst("ETH", 25)
    quarantine = Quarantine(tmp_path / "quarantine")
    async with InfoClient(sim.url) as client:
        info = HyperliquidInfo(client, quarantine)
        meta = await info.meta()
        assert [a.name for a in meta.universe] == [c.name for c in sim.config.coins]
        assert [a.is_delisted for a in meta.universe].count(True) == 1

        meta_again, ctxs = await info.meta_and_asset_ctxs()
        assert meta_again == meta
        served = sim.ledger.ctx_polls[-1]
        assert {c.coin: c.mark_px for c in ctxs} == {
            coin: Decimal(ctx["markPx"]) for coin, ctx in served.ctxs.items()
        }

        address = sim.addresses[0]
        state = await info.clearinghouse_state(address)
        served_positions = sim.ledger.positions_of(address)[-1]
        assert sorted((p.coin, p.szi) for p in state.positions) == sorted(
            (p["coin"], Decimal(p["szi"])) for p in served_positions.positions
        )

        trades = await info.recent_trades("ETH")  # the newest 10, as the exchange serves
        assert [(t.time_ms, t.tid) for t in trades] == [
            (r.time, r.tid) for r in sim.ledger.valid_trades("ETH")
        ][-10:]

        mids = await info.all_mids()
        assert set(mids) >= {"BTC", "ETH"}
        book = await info.l2_book("BTC")
        assert book.bids and book.asks and book.bids[0].px < book.asks[0].px
        now = int(time.time() * 1000)
        candles = await info.candles("BTC", "1h", now - 24 * 3_600_000, now)
        assert 24 <= len(candles) <= 25
        rates = await info.funding_history("BTC", now - 24 * 3_600_000)
        assert len(rates) in (23, 24) and all(r.coin == "BTC" for r in rates)
        fills = await info.user_fills(HLP_LIQUIDATOR)
        assert isinstance(fills, list)
    assert quarantine.count == 0
    assert sim.ledger.rest_429_count == 0


async def test_hlp_discovery_finds_every_child_and_the_liquidators(simulator):
    sim = await simulator(**QUIET)
    async with InfoClient(sim.url) as client:
        vaults = await discover_hlp(HyperliquidInfo(client))
    assert vaults.parent == HLP_PARENT
    assert vaults.children == dict(HLP_CHILDREN)
    assert vaults.liquidators == LIQUIDATOR_VAULTS | set(KNOWN_LIQUIDATORS)
    assert vaults.name_of(HLP_LIQUIDATOR) == "HLP Liquidator"


async def test_hlp_discovery_falls_back_to_the_known_liquidator_when_unreachable():
    async with InfoClient("http://127.0.0.1:1", max_attempts=1) as client:
        vaults = await discover_hlp(HyperliquidInfo(client))
    assert vaults.liquidators == frozenset(KNOWN_LIQUIDATORS)
    assert vaults.children == {}


async def test_many_concurrent_callers_never_earn_a_429(simulator):
    """30 callers want far more than the budget; the shared budget holds them all back."""
    sim = await simulator(weight_budget=200, **QUIET)
    settings = Settings(hl_api_url=sim.url, hl_weight_budget=200, hl_weight_margin=0.1)
    async with InfoClient.from_settings(settings) as client:
        assert client.budget.limit == 180
        info = HyperliquidInfo(client)

        async def caller(n: int) -> int:
            done = 0
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(info.clearinghouse_state(sim.addresses[n]), 1)
                except TimeoutError:
                    break
                done += 1
            return done

        served = sum(await asyncio.gather(*(caller(n) for n in range(30))))
    assert sim.ledger.rest_429_count == 0
    assert served == 90  # 180 usable weight / 2 per clearinghouseState, then everyone waits
    assert sim.ledger.rest_weight_used == 180
