"""Liquidations found in the trade stream of the local Hyperliquid equal its ledger, exactly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from db.local_server import LocalInfluxd
from db.schema import LIQUIDATIONS
from fetch.hlp import KNOWN_LIQUIDATORS, discover_hlp
from fetch.info import HyperliquidInfo
from fetch.rest import InfoClient
from process import LiquidationDetector, LiquidationEvent, PointBuilder, PositionView
from tests.conftest import influxql
from tests.simulator import LiquidationRecord, Simulator
from tests.simulator.config import HLP_LIQUIDATOR_2
from validate import Position, Trade, parse_clearinghouse_state, parse_trades

QUIET = {"seed": 1, "rate": 0, "evolve_interval": 0, "auto_liquidations": False}
FIXTURES = Path(__file__).parent / "fixtures" / "hyperliquid"
VAULT = KNOWN_LIQUIDATORS[0]
TRADER = "0x" + "ab" * 20


@dataclass(frozen=True)
class View:
    szi: Decimal
    liquidation_px: Decimal | None


async def recent_trades(sim: Simulator, coin: str) -> list[Trade]:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{sim.url}/info", json={"type": "recentTrades", "coin": coin})
    trades, rejected = parse_trades(response.content)
    assert not rejected
    return trades


async def polled_positions(sim: Simulator, address: str) -> dict[str, Position]:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{sim.url}/info", json={"type": "clearinghouseState", "user": address}
        )
    state, rejected = parse_clearinghouse_state(response.content)
    assert state is not None and not rejected
    return {p.coin: p for p in state.positions}


def expected(records: list[LiquidationRecord]) -> list[LiquidationEvent]:
    return [
        LiquidationEvent(
            r.coin,
            r.side,  # type: ignore[arg-type]
            r.method,  # type: ignore[arg-type]
            Decimal(r.px),
            Decimal(r.sz),
            r.tid,
            r.time,
            r.user,
        )
        for r in records
    ]


def trade(side: str, buyer: str, seller: str, px: str = "100", tid: int = 1) -> Trade:
    return Trade(
        "ETH", side, Decimal(px), Decimal("2"), 1_717_171_717_000, "0x0", tid, buyer, seller
    )


async def test_backstops_of_a_long_and_a_short_are_found_with_side_from_users_and_victim(
    simulator, influxd: LocalInfluxd, influx_db: str
) -> None:
    sim = await simulator(**QUIET)
    async with InfoClient(sim.url) as client:
        vaults = await discover_hlp(HyperliquidInfo(client))
    detector = LiquidationDetector(KNOWN_LIQUIDATORS)
    detector.update_liquidators(vaults.liquidators)  # adds Liquidator 2

    sim.backstop_liquidation(coin="ETH", side="long")
    sim.backstop_liquidation(coin="ETH", side="short")
    sim.backstop_liquidation(coin="ETH", side="long", vault=HLP_LIQUIDATOR_2)
    trades = await recent_trades(sim, "ETH")
    events = detector.detect(trades)

    ledger = sim.ledger.liquidations_of(method="backstop")
    assert [r.side for r in ledger] == ["long", "short", "long"]
    assert len(trades) == 3
    assert events == expected(ledger)
    assert [e.user for e in events] == [r.user for r in ledger]  # the vault's counterparty
    assert all(e.user is not None and e.user not in vaults.liquidators for e in events)

    builder = PointBuilder()
    lines = builder.liquidations(events)
    replayed = builder.liquidations(detector.detect(trades))  # a replay is the same points
    for batch in (lines, replayed):
        response = httpx.post(
            f"{influxd.url}/write",
            params={"db": influx_db, "precision": "ns"},
            content="\n".join(batch).encode(),
        )
        assert response.status_code == 204
    rows = influxql(influxd.url, f"{LIQUIDATIONS.select()} ORDER BY time", influx_db)
    assert sorted((r["side"], r["method"], r["tid"], r["user"]) for r in rows) == sorted(
        (r.side, r.method, r.tid, r.user) for r in ledger
    )


async def test_market_liquidation_of_a_tracked_address_past_its_liquidation_price(
    simulator,
) -> None:
    sim = await simulator(**QUIET)
    victim = next(
        a
        for a in sim.addresses
        if any(p.liq_px is not None for p in sim.population.accounts[a].positions.values())
    )
    tracked = {victim: await polled_positions(sim, victim)}
    coin, position = next((c, p) for c, p in tracked[victim].items() if p.liquidation_px)
    side = "long" if position.szi > 0 else "short"
    detector = LiquidationDetector(KNOWN_LIQUIDATORS, lambda a: tracked.get(a, {}))
    # the price runs through the liquidation price, and the engine sells (buys) into the book
    offset = Decimal("0.99") if side == "long" else Decimal("1.01")
    sim.market.coins[coin].mid = float(position.liquidation_px * offset)

    records = sim.market_liquidation(coin=coin, side=side, user=victim, parts=3)
    events = detector.detect(await recent_trades(sim, coin))

    assert len(records) == 3 and {r.method for r in records} == {"market"}
    assert events == expected(records)
    assert {(e.method, e.side, e.user) for e in events} == {("market", side, victim)}


async def test_a_close_short_of_the_liquidation_price_is_not_a_liquidation(simulator) -> None:
    sim = await simulator(**QUIET)
    victim = next(
        a
        for a in sim.addresses
        if any(p.liq_px is not None for p in sim.population.accounts[a].positions.values())
    )
    tracked = {victim: await polled_positions(sim, victim)}
    coin = next(c for c, p in tracked[victim].items() if p.liquidation_px)
    detector = LiquidationDetector(KNOWN_LIQUIDATORS, lambda a: tracked.get(a, {}))

    records = sim.market_liquidation(coin=coin, user=victim)  # at the book, far from liq_px

    assert len(records) == 1
    assert detector.detect(await recent_trades(sim, coin)) == []


async def test_ordinary_trades_are_no_liquidations(simulator) -> None:
    sim = await simulator(recent_trades=100, **QUIET)
    views: dict[str, dict[str, PositionView]] = {
        address: {
            coin: View(Decimal(repr(p.szi)), None if p.liq_px is None else Decimal(repr(p.liq_px)))
            for coin, p in sim.population.accounts[address].positions.items()
        }
        for address in sim.addresses
    }
    detector = LiquidationDetector(KNOWN_LIQUIDATORS, lambda a: views.get(a, {}))

    for coin in ("BTC", "ETH", "SOL"):
        sim.burst(coin, 300)
        trades = await recent_trades(sim, coin)
        assert len(trades) == 100
        assert detector.detect(trades) == []
    assert sim.ledger.liquidations == []


def test_a_taker_cutting_a_position_past_its_liquidation_price_by_the_mark_is_flagged() -> None:
    """The exchange liquidates on the mark; the liquidating order may fill above a long's
    liquidation price (a thick bid). With the mark, that trade is a candidate too."""
    held = {TRADER: {"ETH": View(Decimal("2"), Decimal("99"))}}  # long 2 ETH, liquidated at 99
    marks = {"ETH": Decimal("100")}
    detector = LiquidationDetector([VAULT], lambda a: held.get(a, {}), mark=marks.get)
    sell = trade("sell", "0x" + "cd" * 20, TRADER, px="99.5")  # the long's taker sell above 99
    assert detector.detect([sell]) == []  # the mark has not crossed either
    marks["ETH"] = Decimal("98.9")
    [event] = detector.detect([sell])
    assert (event.side, event.method, event.user) == ("long", "market", TRADER)
    buy = trade("buy", TRADER, "0x" + "cd" * 20, px="98")  # adding to the long: never
    assert detector.detect([buy]) == []
    blind = LiquidationDetector([VAULT], lambda a: held.get(a, {}))
    assert blind.detect([sell]) == []  # without marks: the trade's price alone decides


def test_a_liquidator_vault_unwinding_as_maker_is_not_a_backstop() -> None:
    """Recorded liquidator fill: "Close Short", crossed false: the vault bought as the maker."""
    fills = json.loads((FIXTURES / "info_userFills_liquidator.json").read_text())["response"]
    close = next(f for f in fills if f["dir"] == "Close Short")
    assert close["side"] == "B" and close["crossed"] is False
    unwind = trade("sell", VAULT, TRADER)  # the taker sold into the vault's bid

    assert LiquidationDetector([VAULT]).detect([unwind]) == []
    loose = LiquidationDetector([VAULT], vault_must_take=False).detect([unwind])
    assert [(e.side, e.method, e.user) for e in loose] == [("long", "backstop", TRADER)]


def test_side_comes_from_users_and_vault_case_does_not_matter() -> None:
    detector = LiquidationDetector([VAULT.upper().replace("0X", "0x")])
    takeovers = [trade("buy", VAULT, TRADER, tid=1), trade("sell", TRADER, VAULT, tid=2)]
    between_vaults = trade("buy", VAULT, HLP_LIQUIDATOR_2, tid=3)
    detector.update_liquidators([VAULT, HLP_LIQUIDATOR_2])

    events = detector.detect([*takeovers, between_vaults])

    assert [(e.side, e.user, e.tid, e.notional) for e in events] == [
        ("long", TRADER, 1, Decimal("200")),
        ("short", TRADER, 2, Decimal("200")),
    ]


def test_market_inference_needs_a_reducing_taker_trade_past_the_liquidation_price() -> None:
    tracked: dict[str, Mapping[str, PositionView]] = {
        TRADER: {"ETH": View(Decimal("5"), Decimal("95"))}
    }

    def lookup(address: str) -> Mapping[str, PositionView]:
        return tracked.get(address, {})

    detector = LiquidationDetector([VAULT], lookup)
    other = "0x" + "cd" * 20

    cases = {
        "taker sells at liq_px": trade("sell", other, TRADER, "95", 1),
        "taker sells through it": trade("sell", other, TRADER, "94.5", 2),
        "taker sells above it": trade("sell", other, TRADER, "95.01", 3),
        "maker sells at it": trade("buy", other, TRADER, "95", 4),
        "taker buys (adds)": trade("buy", TRADER, other, "95", 5),
        "untracked taker": trade("sell", TRADER.replace("ab", "ef"), other, "90", 6),
    }
    found = {e.tid for e in detector.detect(cases.values())}

    assert found == {1, 2}
    tolerant = LiquidationDetector([VAULT], lookup, tolerance=Decimal("0.001"))
    assert {e.tid for e in tolerant.detect(cases.values())} == {1, 2, 3}
    assert LiquidationDetector([VAULT]).detect(cases.values()) == []  # no positions: no inference
