"""The simulator's position book: every trade moves both parties' positions and cash as the
exchange does (API.md 5.4), clearinghouseState serves that truth, liquidation prices solve
equity == maintenance margin, and nothing moves a position but a recorded fill."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.simulator import HLP_LIQUIDATOR, HLP_STRATEGY_A, Simulator
from tests.simulator.ledger import Holding, TradeRecord

QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False, "push_interval": 60}
A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
TAKER, MAKER = Decimal("0.00045"), Decimal("0.00015")


def sim_of(**kwargs: Any) -> Simulator:
    """A simulator that is not serving: the book, the ledger and the controls only."""
    return Simulator(**{"seed": 1, "port": 0, **QUIET, **kwargs})


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., Any]]:
    """Start simulators with an HTTP client; all stopped after."""
    started: list[tuple[Simulator, httpx.AsyncClient]] = []

    async def start(**kwargs: Any) -> tuple[Simulator, httpx.AsyncClient]:
        sim = await sim_of(**kwargs).start()
        client = httpx.AsyncClient(base_url=sim.url, timeout=5)
        started.append((sim, client))
        return sim, client

    yield start
    for sim, client in started:
        await client.aclose()
        await sim.stop()


async def state_of(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    response = await client.post("/info", json={"type": "clearinghouseState", "user": user})
    assert response.status_code == 200
    return response.json()


def positions(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["position"]["coin"]: p["position"] for p in state["assetPositions"]}


# --- one trade at a time, by hand ----------------------------------------------------------

# (side, buyer, seller, px, sz): open, increase, partial close, flip, close, seen from A
STEPS = [
    ("B", A, B, "2000", "2"),  # A takes: buys 2 @ 2000
    ("A", A, B, "2300", "1"),  # B takes: A buys 1 more @ 2300 as maker
    ("A", B, A, "2200", "1.5"),  # A takes: sells 1.5 @ 2200
    ("B", B, A, "2000", "4"),  # B takes: A sells 4 @ 2000 as maker, long 1.5 -> short 2.5
    ("B", A, B, "1900", "2.5"),  # A takes: buys 2.5 @ 1900, flat
]
# A's (szi, entry, kind) after each step; B mirrors the size and entry
A_POSITIONS = [
    (Decimal("2"), Decimal("2000"), "entry"),
    (Decimal("3"), Decimal("2100"), "increase"),  # (2 * 2000 + 1 * 2300) / 3
    (Decimal("1.5"), Decimal("2100"), "decrease"),
    (Decimal("-2.5"), Decimal("2000"), "flip"),
    (Decimal("0"), None, "exit"),
]
# fees: taker 0.045 %, maker 0.015 % of px * sz
A_FEES = [Decimal("1.8"), Decimal("0.345"), Decimal("1.485"), Decimal("1.2"), Decimal("2.1375")]
B_FEES = [Decimal("0.6"), Decimal("1.035"), Decimal("0.495"), Decimal("3.6"), Decimal("0.7125")]
# cross: cash moves by -signed_sz * px - fee
A_CROSS_USD = ["5998.2", "3697.855", "6996.37", "14995.17", "10243.0325"]
B_CROSS_USD = ["13999.4", "16298.365", "12997.87", "4994.27", "9743.5575"]
# isolated A (10x): the cross account pays the margin (|szi| * px / 10 on open, increase and
# flip), the isolated margin takes the fill's cash; the close returns it to cross
A_ISO = [
    ("9598.2", "-3600"),  # cross 10000 - 400 - 1.8; rawUsd 400 - 2 * 2000
    ("9368.2", "-5670.345"),  # cross - 230; rawUsd + 230 - 2300 - 0.345
    ("9368.2", "-2371.83"),  # rawUsd + 1.5 * 2200 - 1.485
    ("9495.17", "5500"),  # rawUsd' = -2371.83 + 8000 - 1.2; margin reset to 2.5 * 2000 / 10
    ("10243.0325", None),  # 9495.17 + 5500 - 2.5 * 1900 - 2.1375
]


@pytest.mark.parametrize("isolated", [False, True], ids=["cross", "isolated"])
async def test_a_trade_moves_both_positions_entries_and_cash_exactly(served, isolated) -> None:
    sim, client = await served()
    sim.population.open_account(A, usd=10_000, leverage=10, isolated=isolated)
    sim.population.open_account(B, usd=10_000, leverage=10)
    for i, (side, buyer, seller, px, sz) in enumerate(STEPS):
        record = sim.trade("ETH", buyer, seller, px, sz, side=side)
        szi, entry, kind = A_POSITIONS[i]
        a, b = sim.population.accounts[A], sim.population.accounts[B]
        state_a, state_b = await state_of(client, A), await state_of(client, B)
        held_a, held_b = positions(state_a).get("ETH"), positions(state_b).get("ETH")
        if szi:
            assert held_a is not None and held_b is not None
            assert (Decimal(held_a["szi"]), Decimal(held_b["szi"])) == (szi, -szi)
            assert Decimal(held_a["entryPx"]) == entry == Decimal(held_b["entryPx"])
            assert a.positions["ETH"].entry_px == float(entry)
        else:
            assert held_a is None and held_b is None and "ETH" not in a.positions
        assert b.usd == pytest.approx(float(B_CROSS_USD[i]), abs=1e-9)
        if isolated:
            cross, raw = A_ISO[i]
            assert a.usd == pytest.approx(float(cross), abs=1e-9)
            if raw is not None:
                assert a.positions["ETH"].raw_usd == pytest.approx(float(raw), abs=1e-9)
                assert held_a is not None and held_a["leverage"]["type"] == "isolated"
                assert Decimal(held_a["leverage"]["rawUsd"]) == Decimal(raw)
        else:
            assert a.usd == pytest.approx(float(A_CROSS_USD[i]), abs=1e-9)
            assert Decimal(state_a["crossMarginSummary"]["totalRawUsd"]) == Decimal(A_CROSS_USD[i])
        # the account's total raw USD always moves by -signed_sz * px - fee
        signed = Decimal(sz) if buyer == A else -Decimal(sz)
        total = Decimal(state_a["marginSummary"]["totalRawUsd"])
        previous = Decimal(10_000) if i == 0 else Decimal(A_CROSS_USD[i - 1])
        assert total == previous - signed * Decimal(px) - A_FEES[i]
        change_a, change_b = sim.ledger.position_changes(coin="ETH")[-2:]
        assert {change_a.address, change_b.address} == {A, B}
        mine = change_a if change_a.address == A else change_b
        assert (mine.kind, mine.szi_after, mine.source) == (kind, float(szi), record.key)
        assert mine.entry_after == (None if entry is None else float(entry))
    fills_a = (await client.post("/info", json={"type": "userFills", "user": A})).json()[::-1]
    fills_b = (await client.post("/info", json={"type": "userFills", "user": B})).json()[::-1]
    assert [Decimal(f["fee"]) for f in fills_a] == A_FEES
    assert [Decimal(f["fee"]) for f in fills_b] == B_FEES
    assert [f["crossed"] for f in fills_a] == [True, False, True, False, True]
    assert [Decimal(f["startPosition"]) for f in fills_a] == [0, 2, 3, Decimal("1.5"), -2.5]
    assert [Decimal(f["closedPnl"]) for f in fills_a] == [0, 0, 150, -150, 250]
    assert [f["dir"] for f in fills_a] == [
        "Open Long", "Open Long", "Close Long", "Long > Short", "Close Short",
    ]  # fmt: skip
    assert [c.kind for c in sim.ledger.position_changes(B)] == [k for _, _, k in A_POSITIONS]
    assert sim.ledger.transfers_of(A)[0].usd == 10_000


def test_isolated_liquidation_price_and_margin_as_computed_by_hand() -> None:
    sim = sim_of()
    sim.population.open_account(A, usd=10_000, leverage=10, isolated=True)
    sim.population.open_account(B, usd=10_000, leverage=10)
    sim.trade("ETH", A, B, "2000", "2")
    pos = sim.population.accounts[A].positions["ETH"]
    # ETH maxLeverage 25: l = 1 / 50; liq = -side * rawUsd / (|szi| * (1 - side * l))
    assert pos.liq_px == pytest.approx(3600 / (2 * 0.98), rel=1e-15)
    item = positions(sim.population.clearinghouse_state(A, 0))["ETH"]
    mark = sim.market.coins["ETH"].mark
    assert Decimal(item["liquidationPx"]) == pytest.approx(
        Decimal(3600 / 1.96), rel=Decimal("1e-11")
    )
    assert float(item["marginUsed"]) == pytest.approx(-3600 + 2 * mark, abs=1e-6)


# --- many trades: the served state is the replay of the ledger ------------------------------


class Book:
    """An independent replay of recorded trades (Decimal), from a copy of the genesis state."""

    def __init__(self, sim: Simulator) -> None:
        self.max_lev = {c.name: c.spec.max_leverage for c in sim.market.coins.values()}
        self.usd: dict[str, Decimal] = {}
        self.style: dict[str, tuple[int, bool]] = {}
        # address -> coin -> [szi, entry, leverage, isolated, raw]
        self.pos: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        for address, acct in sim.population.accounts.items():
            self.usd[address] = Decimal(acct.usd)
            self.style[address] = (acct.leverage, acct.isolated)
            for coin, p in acct.positions.items():
                held = [Decimal(repr(p.szi)), Decimal(p.entry_px), p.leverage, p.isolated]
                self.pos[address][coin] = [*held, Decimal(p.raw_usd)]

    def apply(self, t: TradeRecord) -> None:
        px, sz = Decimal(t.px), Decimal(t.sz)
        for address, signed, took in ((t.buyer, sz, t.side == "B"), (t.seller, -sz, t.side == "A")):
            self._fill(address, t.coin, signed, px, px * sz * (TAKER if took else MAKER))

    def _fill(self, address: str, coin: str, s: Decimal, px: Decimal, fee: Decimal) -> None:
        book = self.pos[address]
        cash = -s * px - fee
        self.usd.setdefault(address, Decimal(0))
        if coin not in book:
            lev, iso = self.style.get(address, (20, False))
            lev = min(lev, self.max_lev[coin])
            margin = abs(s) * px / lev
            book[coin] = [s, px, lev, iso, margin - s * px if iso else Decimal(0)]
            self.usd[address] -= margin + fee if iso else -cash
            return
        szi, entry, lev, iso, raw = book[coin]
        new = szi + s
        if new == 0:
            del book[coin]
            self.usd[address] += raw + cash if iso else cash
        elif (new > 0) == (szi > 0) and abs(new) > abs(szi):  # increase
            margin = abs(s) * px / lev if iso else Decimal(0)
            self.usd[address] += -margin if iso else cash
            book[coin] = [new, (abs(szi) * entry + abs(s) * px) / abs(new), lev, iso, raw]
            book[coin][4] += margin + cash if iso else 0
        elif (new > 0) == (szi > 0):  # decrease
            book[coin][0] = new
            if iso:
                book[coin][4] += cash
            else:
                self.usd[address] += cash
        else:  # flip: isolated margin reset to |szi| * px / leverage
            after = raw + cash
            move = abs(new) * px / lev - (after + new * px) if iso else Decimal(0)
            self.usd[address] += -move if iso else cash
            book[coin] = [new, px, lev, iso, after + move if iso else Decimal(0)]


def close(served: str, expected: Decimal, rel: float = 1e-12) -> bool:
    """A served decimal equals `expected` up to its own rounding (and float noise)."""
    places = len(served.split(".")[1]) if "." in served else 0
    return abs(Decimal(served) - expected) <= Decimal(10) ** -places / 2 + abs(expected) * Decimal(
        rel
    ) + Decimal("1e-9")


async def test_clearinghouse_state_after_random_trades_is_the_replay_of_the_ledger(served) -> None:
    sim, client = await served(n_addresses=120)
    book = Book(sim)
    for i, coin in enumerate(["BTC", "ETH", "SOL", "HYPE", "kPEPE"] * 4):
        sim.burst(coin, 150 + 10 * i)
    trades = sim.ledger.valid_trades()
    assert len(trades) == sim.ledger.trade_count() == sum(150 + 10 * i for i in range(20))
    for t in trades:
        book.apply(t)
    touched = sorted({a for t in trades for a in (t.buyer, t.seller)})
    assert len(touched) > 100
    marks = {c: cs.mark for c, cs in sim.market.coins.items()}
    for n, address in enumerate(touched):
        if n < 20:
            state = await state_of(client, address)
        else:
            state = sim.population.clearinghouse_state(address, 0)
        held = positions(state)
        assert set(held) == set(book.pos[address]), address
        iso_raw = Decimal(0)
        signed_ntl = Decimal(0)
        for coin, (szi, entry, lev, iso, raw) in book.pos[address].items():
            item = held[coin]
            assert Decimal(item["szi"]) == szi
            assert close(item["entryPx"], entry), (item["entryPx"], entry)
            assert item["leverage"]["type"] == ("isolated" if iso else "cross")
            assert item["leverage"]["value"] == lev
            if iso:
                assert close(item["leverage"]["rawUsd"], raw)
                iso_raw += raw
            signed_ntl += szi * Decimal(marks[coin])
            holding = sim.ledger.position_at(address, coin, state["time"])
            assert Decimal(repr(holding.szi)) == szi
        cross = state["crossMarginSummary"]
        assert close(cross["totalRawUsd"], book.usd[address])
        total = book.usd[address] + iso_raw
        assert close(state["marginSummary"]["totalRawUsd"], total)
        assert close(state["marginSummary"]["accountValue"], total + signed_ntl, 1e-9)
    # the fills served are the ledger's: per account, the sizes add up to its szi change
    fills = (await client.post("/info", json={"type": "userFills", "user": touched[0]})).json()
    assert len(fills) == sum(1 for t in trades if touched[0] in (t.buyer, t.seller))


def test_served_liquidation_price_puts_equity_at_maintenance_margin() -> None:
    sim = sim_of(n_addresses=200)
    for coin in ("BTC", "ETH", "SOL", "HYPE", "kPEPE"):
        sim.burst(coin, 400)
    checked = {"cross": 0, "isolated": 0}
    for address in [*sim.addresses, HLP_STRATEGY_A, HLP_LIQUIDATOR]:
        acct = sim.population.accounts[address]
        state = sim.population.clearinghouse_state(address, 0)
        for coin, item in positions(state).items():
            if item["liquidationPx"] is None:
                continue
            at = float(item["liquidationPx"])
            pos = acct.positions[coin]
            if pos.isolated:
                equity = pos.raw_usd + pos.szi * at
                maintenance = abs(pos.szi) * at * pos.mmf
                checked["isolated"] += 1
            else:
                equity, maintenance = acct.usd, 0.0
                for p in acct.positions.values():
                    if not p.isolated:
                        mark = at if p is pos else p.cs.mark
                        equity += p.szi * mark
                        maintenance += abs(p.szi) * mark * p.mmf
                checked["cross"] += 1
            assert abs(equity - maintenance) <= 1e-9 * maintenance, (address, coin)
    assert checked["cross"] > 100 and checked["isolated"] > 20


def test_a_null_liquidation_price_is_one_no_mark_reaches() -> None:
    sim = sim_of()
    nulls = 0
    for address in sim.addresses:
        acct = sim.population.accounts[address]
        for pos in acct.positions.values():
            if pos.liq_px is None and not pos.isolated:
                nulls += 1
                assert pos.szi > 0  # only a long can be over-collateralised for good
                assert acct.cross_constant(pos) >= 0
    assert nulls > 10


# --- nothing moves a position but a recorded fill -----------------------------------------


def test_evolve_changes_positions_only_through_recorded_trades() -> None:
    sim = sim_of()
    before = {
        (address, coin): Decimal(repr(p.szi))
        for address, acct in sim.population.accounts.items()
        for coin, p in acct.positions.items()
    }
    made = [t for _ in range(30) for t in sim.evolve()]
    assert made and made == sim.ledger.valid_trades()
    moved: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for t in made:
        moved[(t.buyer, t.coin)] += Decimal(t.sz)
        moved[(t.seller, t.coin)] -= Decimal(t.sz)
    after = {
        (address, coin): Decimal(repr(p.szi))
        for address, acct in sim.population.accounts.items()
        for coin, p in acct.positions.items()
    }
    for key in set(before) | set(after) | set(moved):
        assert after.get(key, 0) - before.get(key, 0) == moved.get(key, 0), key
    assert any(key not in after for key in before) and any(key not in before for key in after)
    changes = sim.ledger.position_changes()
    assert len(changes) == 2 * len(made)
    assert {c.source for c in changes} == {t.key for t in made}
    assert {c.kind for c in changes} >= {"entry", "exit", "increase", "decrease"}
    assert all(t.usd > 0 or t.reason == "margin" or t.coin is None for t in sim.ledger.transfers)


async def test_unrecorded_flood_moves_nothing() -> None:
    sim = sim_of(n_addresses=50)
    before = {
        a: {c: p.szi for c, p in acct.positions.items()}
        for a, acct in sim.population.accounts.items()
    }
    usd = {a: acct.usd for a, acct in sim.population.accounts.items()}
    result = await sim.fast_push(2000, batch=200, record=False)
    assert result["count"] == 2000 and sim.ledger.trade_count() == 2000
    assert not sim.ledger.deals and not sim.ledger.trades
    after = {
        a: {c: p.szi for c, p in acct.positions.items()}
        for a, acct in sim.population.accounts.items()
    }
    assert after == before and {a: acct.usd for a, acct in sim.population.accounts.items()} == usd


def test_a_trader_without_margin_cannot_add_to_positions() -> None:
    sim = sim_of(n_addresses=40)
    broke = sim.addresses[0]
    acct = sim.population.accounts[broke]
    acct.positions.clear()
    acct.usd = 0.0
    for coin in ("BTC", "ETH", "SOL"):
        sim.burst(coin, 300)
    assert all(broke not in (t.buyer, t.seller) for t in sim.ledger.valid_trades())
    free = [sim.population.accounts[a].free_margin() for a in sim.addresses[1:]]
    assert sum(f < 0 for f in free) < len(free) // 4  # most traders keep within their margin


# --- liquidations ---------------------------------------------------------------------------


@pytest.mark.parametrize("long", [True, False], ids=["long", "short"])
def test_a_mark_past_the_liquidation_price_liquidates_with_the_right_side(long: bool) -> None:
    sim = sim_of(auto_liquidations=True)
    victim = "0x" + "c3" * 20
    sim.population.open_account(victim, usd=200, leverage=20)
    eth = sim.market.coins["ETH"]
    buyer, seller = (victim, HLP_STRATEGY_A) if long else (HLP_STRATEGY_A, victim)
    sim.trade("ETH", buyer, seller, eth.px(eth.mid), "1")
    pos = sim.population.accounts[victim].positions["ETH"]
    liq = pos.liq_px
    assert liq is not None and 0.9 < liq / eth.mark < 1.1

    def put_mark(factor: float) -> None:
        eth.mid = liq * factor / (1.0 + eth.mark_off)

    put_mark(1.002 if long else 0.998)  # near, not past
    assert all(a.address != victim for a, _ in sim.population.crossed())
    assert victim not in {r.user for r in sim.liquidate_crossed()}
    put_mark(0.995 if long else 1.005)
    sim.tick()  # market tick, then the automatic liquidations
    records = [r for r in sim.ledger.liquidations if r.user == victim]
    assert records and {r.side for r in records} == {"long" if long else "short"}
    assert "ETH" not in sim.population.accounts[victim].positions
    for r in records:
        trade = sim.ledger.find_trade(r.coin, r.time, r.tid)
        assert trade is not None
        assert (trade.seller if long else trade.buyer) == victim
        if r.method == "market":
            assert trade.side == ("A" if long else "B")  # the victim took
        else:
            assert HLP_LIQUIDATOR in (trade.buyer, trade.seller)
    assert sim.ledger.position_changes(victim)[-1].source == "liquidation"


def test_backstop_moves_the_position_to_the_vault_without_fee() -> None:
    sim = sim_of()
    vault = sim.population.accounts[HLP_LIQUIDATOR]
    before = vault.positions["ETH"].szi if "ETH" in vault.positions else 0.0
    usd = vault.usd
    record = sim.backstop_liquidation(coin="ETH", side="long")
    victim = sim.population.accounts[record.user]
    assert "ETH" not in victim.positions
    after = vault.positions["ETH"].szi if "ETH" in vault.positions else 0.0
    assert Decimal(repr(after)) - Decimal(repr(before)) == Decimal(record.sz)
    assert vault.usd == pytest.approx(usd - float(record.px) * float(record.sz), rel=1e-12)
    fill = sim.fills.user_fills(HLP_LIQUIDATOR)[0]
    assert fill["fee"] == "0.0" and fill["crossed"] is True


# --- time and history -----------------------------------------------------------------------


def test_position_at_answers_from_the_recorded_changes() -> None:
    sim = sim_of()
    sim.population.open_account(A, usd=10_000)
    sim.population.open_account(B, usd=10_000)
    sim.trade("SOL", A, B, "120", "10", time_ms=1_000)
    sim.trade("SOL", A, B, "130", "10", time_ms=2_000)
    sim.trade("SOL", B, A, "125", "20", time_ms=3_000)
    assert sim.ledger.position_at(A, "SOL", 999) == Holding(0.0, None)
    assert sim.ledger.position_at(A, "SOL", 1_000) == Holding(10.0, 120.0)
    assert sim.ledger.position_at(A, "SOL", 2_500) == Holding(20.0, 125.0)
    assert sim.ledger.position_at(B, "SOL", 2_500) == Holding(-20.0, 125.0)
    assert sim.ledger.position_at(A, "SOL", 3_000) == Holding(0.0, None)
    someone = sim.addresses[0]
    coin, pos = next(iter(sim.population.accounts[someone].positions.items()))
    assert sim.ledger.position_at(someone, coin, 5_000) == Holding(pos.szi, pos.entry_px)
    assert [c.kind for c in sim.ledger.position_changes(A, "SOL")] == ["entry", "increase", "exit"]


async def test_a_snapshot_holds_every_trade_up_to_its_time(served) -> None:
    sim, client = await served()
    sim.burst("BTC", 200)
    first = sim.ledger.valid_trades("BTC")[0]
    state = await state_of(client, first.buyer)
    later = sim.burst("BTC", 200)  # maybe in the same millisecond: stamped after the snapshot
    assert all(t.time > state["time"] for t in later)
    assert all(t.time <= state["time"] for t in sim.ledger.valid_trades("BTC")[:200])
    item = positions(state).get("BTC")
    held = sim.ledger.position_at(first.buyer, "BTC", state["time"])
    assert (Decimal(item["szi"]) if item else Decimal(0)) == Decimal(repr(held.szi))


def test_position_history_is_bounded_by_ledger_max_records() -> None:
    sim = sim_of(ledger_max_records=50)
    sim.burst("ETH", 300)
    assert len(sim.ledger.deals) == 50 and len(sim.ledger.position_changes()) == 100
    assert sim.ledger.summary()["position_changes"] == 100
