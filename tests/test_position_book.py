"""The position book: fills move positions (exactly) and cash (to float rounding) as the exchange
does; polls reconcile and measure the drift; gaps make positions estimated until the next poll."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from typing import Any

import pytest

from process.positions.book import (
    CHECK_GRACE_MS,
    MAKER_FEE,
    TAKER_FEE,
    PositionBook,
    PositionChange,
    to_decimal,
)
from process.positions.margin import MarginRule
from validate import ClearinghouseState, Trade, parse_clearinghouse_state

ALICE = "0x" + "a" * 40
BOB = "0x" + "b" * 40
CAROL = "0x" + "c" * 40
T0 = 1_800_000_000_000


def state(
    time_ms: int, cash: str, positions: dict[str, tuple[str, str]], isolated: dict | None = None
) -> ClearinghouseState:
    """A clearinghouseState: `positions` coin -> (szi, entryPx), cross unless in `isolated`
    (coin -> rawUsd)."""
    isolated = isolated or {}
    asset_positions: list[dict[str, Any]] = []
    for coin, (szi, entry) in positions.items():
        leverage: dict[str, Any] = {"type": "cross", "value": 10}
        if coin in isolated:
            leverage = {"type": "isolated", "value": 10, "rawUsd": isolated[coin]}
        asset_positions.append(
            {
                "type": "oneWay",
                "position": {
                    "coin": coin,
                    "szi": szi,
                    "leverage": leverage,
                    "entryPx": entry,
                    "positionValue": "0.0",
                    "unrealizedPnl": "0.0",
                    "returnOnEquity": "0.0",
                    "liquidationPx": None,
                    "marginUsed": "0.0",
                    "maxLeverage": 20,
                },
            }
        )
    summary = {
        "accountValue": cash,
        "totalNtlPos": "0.0",
        "totalRawUsd": cash,
        "totalMarginUsed": "0.0",
    }
    parsed, rejected = parse_clearinghouse_state(
        {
            "assetPositions": asset_positions,
            "marginSummary": summary,
            "crossMarginSummary": summary,
            "crossMaintenanceMarginUsed": "0.0",
            "withdrawable": cash,
            "time": time_ms,
        }
    )
    assert parsed is not None and not rejected
    return parsed


_tids = iter(range(1, 10**9))


def trade(
    buyer: str, seller: str, sz: str, px: str, at: int, taker: str = "buy", coin: str = "BTC"
) -> Trade:
    return Trade(
        coin=coin,
        side=taker,  # type: ignore[arg-type]
        px=D(px),
        sz=D(sz),
        time_ms=at,
        hash="0x" + "0" * 64,
        tid=next(_tids),
        buyer=buyer,
        seller=seller,
    )


def book_with(*addresses: str) -> tuple[PositionBook, list[PositionChange]]:
    changes: list[PositionChange] = []
    book = PositionBook(on_change=changes.append)
    for address in addresses:
        book.reconcile(address, state(T0, "1000.0", {}), T0)
    return book, changes


def usd(value: D) -> object:
    """The book's prices and cash are floats: equal to the exact figure within float rounding."""
    return pytest.approx(float(value), rel=1e-12)


def test_entry_increase_decrease_flip_and_close_follow_the_exchange_arithmetic() -> None:
    book, changes = book_with(ALICE)
    steps = [
        # (buyer, seller, sz, px, taker side) -> Alice's (szi, entry) after
        (ALICE, BOB, "2", "100", "buy", (D("2"), D("100"))),  # opens long, taker
        (ALICE, BOB, "1", "130", "sell", (D("3"), D("110"))),  # increase: (2*100+1*130)/3, maker
        (BOB, ALICE, "1", "150", "buy", (D("2"), D("110"))),  # decrease: entry unchanged
        (BOB, ALICE, "5", "90", "sell", (D("-3"), D("90"))),  # flip: entry is the fill price
        (ALICE, BOB, "3", "80", "buy", None),  # close
    ]
    cash = D("1000.0")
    for i, (buyer, seller, sz, px, taker, expected) in enumerate(steps):
        book.apply_trades([trade(buyer, seller, sz, px, T0 + 1 + i, taker)])
        signed = D(sz) if buyer == ALICE else -D(sz)
        alice_took = (taker == "buy") == (buyer == ALICE)
        cash += -signed * D(px) - abs(signed) * D(px) * (TAKER_FEE if alice_took else MAKER_FEE)
        position = book.positions_of(ALICE).get("BTC")
        if expected is None:
            assert position is None
        else:
            assert position is not None and position.szi == expected[0]  # exact
            assert position.entry_px == usd(expected[1])
        assert book.accounts[ALICE].cross_raw_usd == usd(cash)
    assert [(c.kind, c.szi_before, c.szi_after, c.source) for c in changes] == [
        ("entry", D(0), D(2), "trade"),
        ("increase", D(2), D(3), "trade"),
        ("decrease", D(3), D(2), "trade"),
        ("flip", D(2), D(-3), "trade"),
        ("exit", D(-3), D(0), "trade"),
    ]
    assert book.stats.trades_applied == 5  # Bob is not tracked: only Alice moved


def test_a_trade_moves_both_tracked_parties_and_leaves_untracked_ones_alone() -> None:
    book, _ = book_with(ALICE, BOB)
    book.apply_trades(
        [trade(ALICE, BOB, "0.5", "200", T0 + 5), trade(CAROL, BOB, "1", "200", T0 + 6)]
    )
    assert book.positions_of(ALICE)["BTC"].szi == D("0.5")
    assert book.positions_of(BOB)["BTC"].szi == D("-1.5")
    assert CAROL not in book


def test_a_poll_keeps_the_fills_newer_than_its_snapshot_and_measures_no_drift_when_exact() -> None:
    book, changes = book_with(ALICE)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])  # in the next snapshot
    book.apply_trades([trade(ALICE, BOB, "2", "120", T0 + 30)])  # newer than it
    truth = state(
        T0 + 20, str(D("1000.0") - D("100") - D("100") * TAKER_FEE), {"BTC": ("1", "100")}
    )
    book.reconcile(ALICE, truth, T0 + 40)
    position = book.positions_of(ALICE)["BTC"]
    assert position.szi == D(3) and position.entry_px == usd((D(100) + 2 * D(120)) / 3)
    book.apply_trades([trade(ALICE, BOB, "5", "100", T0 - 1)])  # already in both snapshots
    assert book.positions_of(ALICE)["BTC"].szi == D(3)
    assert book.stats.late_skipped == 1
    assert book.settle_checks(T0 + 40 + CHECK_GRACE_MS - 1) == []  # not due yet
    [(address, drift)] = book.settle_checks(T0 + 40 + CHECK_GRACE_MS)
    assert address == ALICE and drift.coins == 0 and drift.usd == 0
    assert [c.source for c in changes] == ["trade", "trade"]
    assert book.stats.polls == 1 and book.stats.polls_with_drift == 0


def test_a_trade_the_polls_answer_overtook_is_a_change_and_no_drift() -> None:
    """The REST answer arrives before the WebSocket frame of a trade its snapshot holds: the
    trade still changed the position since the book's figures, and the poll found nothing."""
    book, changes = book_with(ALICE)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])
    book.reconcile(ALICE, state(T0 + 20, "900.0", {"BTC": ("3", "100")}), T0 + 20)
    book.apply_trades([trade(ALICE, BOB, "2", "100", T0 + 19)])  # the frame, after the answer
    assert book.positions_of(ALICE)["BTC"].szi == D(3)  # the snapshot held it already
    [(_, drift)] = book.settle_checks()
    assert drift.coins == 0 and book.stats.polls_with_drift == 0
    assert book.stats.late_credited == 1
    assert [(c.kind, c.szi_before, c.szi_after, c.time_ms, c.source) for c in changes] == [
        ("entry", D(0), D(1), T0 + 10, "trade"),
        ("increase", D(1), D(3), T0 + 19, "trade"),
    ]


def test_a_poll_that_finds_a_difference_counts_the_drift_and_reports_the_change() -> None:
    book, changes = book_with(ALICE)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])
    truth = state(T0 + 20, "900.0", {"BTC": ("1.5", "100"), "ETH": ("-2", "50")})  # missed fills
    book.reconcile(ALICE, truth, T0 + 20)
    assert len(changes) == 1  # the difference is told once the trades in flight had their time
    [(_, drift)] = book.settle_checks(T0 + 20 + CHECK_GRACE_MS)
    assert drift.coins == 2
    assert drift.usd == float(D("0.5") * 100 + 2 * 50)
    assert [(c.coin, c.kind, c.szi_before, c.szi_after, c.source) for c in changes[1:]] == [
        ("BTC", "increase", D(1), D("1.5"), "poll"),
        ("ETH", "entry", D(0), D(-2), "poll"),
    ]
    assert book.stats.polls_with_drift == 1


def test_a_gap_makes_the_coin_estimated_until_the_next_poll() -> None:
    book, _ = book_with(ALICE, BOB)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])
    assert book.exact_share() == (2, 2)
    assert book.note_gap("BTC", T0 + 20, T0 + 50) == [ALICE, BOB]  # both hold BTC
    assert book.note_gap("SOL", T0 + 20, T0 + 50) == []  # SOL uncertain, but nobody holds it
    assert not book.accounts[ALICE].exact("BTC") and book.accounts[ALICE].exact("ETH")
    assert book.exact_share() == (0, 2)
    book.reconcile(ALICE, state(T0 + 60, "900.0", {"BTC": ("1", "100")}), T0 + 60)
    assert book.accounts[ALICE].exact("BTC") and book.exact_share() == (1, 2)


def test_an_isolated_position_moves_its_own_margin() -> None:
    book, _ = book_with()
    book.reconcile(ALICE, state(T0, "1000.0", {"ETH": ("1", "100")}, {"ETH": "-90.0"}), T0)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 1, "sell", coin="ETH")])  # maker buy
    position = book.positions_of(ALICE)["ETH"]
    fee = D(100) * MAKER_FEE
    margin = D(100) / 10  # the added notional at leverage 10 comes from the cross account
    assert position.raw_usd == usd(D("-90.0") - D(100) - fee + margin)
    assert book.accounts[ALICE].cross_raw_usd == usd(D("1000.0") - margin)
    assert book.accounts[ALICE].cash_estimated


def test_liquidation_prices_follow_fills_and_marks_with_the_served_price_before_any_mark() -> None:
    book, _ = book_with()
    truth = state(T0, "-9000.0", {"BTC": ("1", "10000")})  # long 1 BTC on 1,000 USDC of equity
    truth = replace(truth, positions=(replace(truth.positions[0], liquidation_px=D("9100")),))
    book.reconcile(ALICE, truth, T0)
    assert book.views(ALICE)["BTC"].liquidation_px == D("9100")  # no marks yet: as served
    rules = {"BTC": MarginRule.flat(20)}  # maintenance 1/40 of the notional
    book.set_market({"BTC": D("10000")}, rules)
    # equity = -9000 + p, maintenance = p / 40: liquidated at p = 9000 / (1 - 1/40)
    assert book.views(ALICE)["BTC"].liquidation_px == D(9000) / (1 - D(1) / 40)
    book.apply_trades([trade(ALICE, BOB, "1", "10000", T0 + 1, "sell")])  # doubles up, maker
    view = book.views(ALICE)["BTC"]
    cash = to_decimal(book.accounts[ALICE].cross_raw_usd)
    assert view.szi == D(2) and view.liquidation_px == -cash / (2 * (1 - D(1) / 40))
    assert book.views(BOB) == {}


def test_trades_while_the_first_poll_is_on_its_way_are_applied_over_its_snapshot() -> None:
    changes: list[PositionChange] = []
    book = PositionBook(on_change=changes.append)
    book.polling(ALICE)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])  # in the snapshot to come
    book.apply_trades([trade(ALICE, BOB, "2", "100", T0 + 30)])  # after it
    assert ALICE not in book and changes == []
    book.reconcile(ALICE, state(T0 + 20, "900.0", {"BTC": ("1", "100")}), T0 + 40)
    assert book.positions_of(ALICE)["BTC"].szi == D(3)
    assert [(c.kind, c.szi_before, c.szi_after) for c in changes] == [("increase", D(1), D(3))]
    book.polling(BOB)
    book.poll_failed(BOB)
    book.apply_trades([trade(CAROL, BOB, "1", "100", T0 + 50)])
    assert book._first_polls == {}


def test_hourly_funding_moves_cash_once_and_spares_snapshots_that_hold_it() -> None:
    book, _ = book_with(ALICE, BOB)
    book.apply_trades([trade(ALICE, BOB, "2", "100", T0 + 1)])  # Alice long 2, Bob short 2
    cash = {a: D(book.accounts[a].cross_raw_usd) for a in (ALICE, BOB)}
    hour = T0 + 3_600_000
    rates = {"BTC": (D("0.0001"), D("101")), "ETH": (D("0.0002"), D("50"))}
    assert book.apply_funding(rates, hour) == 2
    assert book.accounts[ALICE].cross_raw_usd == usd(cash[ALICE] - 2 * D("101") * D("0.0001"))
    assert book.accounts[BOB].cross_raw_usd == usd(cash[BOB] + 2 * D("101") * D("0.0001"))
    assert book.apply_funding(rates, hour) == 0  # once per settlement
    book.reconcile(ALICE, state(hour + 5, "900.0", {"BTC": ("2", "100")}), hour + 5)
    assert book.apply_funding(rates, hour + 3_600_000) == 2
    assert book.apply_funding(rates, hour + 2 * 3_600_000) == 2
    later = hour + 3 * 3_600_000
    book.reconcile(BOB, state(later + 5, "900.0", {"BTC": ("-2", "100")}), later + 5)
    assert book.apply_funding(rates, later) == 1  # Bob's snapshot already holds it
    assert book.accounts[BOB].cross_raw_usd == D("900.0")


def test_a_trade_with_a_tracked_party_is_kept_for_the_other_partys_first_poll() -> None:
    book, _ = book_with(ALICE)
    book.polling(BOB)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 30)])  # after Bob's coming snapshot
    book.reconcile(BOB, state(T0 + 20, "900.0", {"BTC": ("-2", "100")}), T0 + 40)
    assert book.positions_of(BOB)["BTC"].szi == D(-3)
    assert book.positions_of(ALICE)["BTC"].szi == D(1)


def test_sizes_stay_exact_where_binary_floats_would_not() -> None:
    """0.1 + 0.2 is 0.3 in the book (sizes are exact ints of 1e-8): a poll serving 0.3 finds no
    drift, and the changes carry the sizes as plain decimals."""
    book, changes = book_with(ALICE)
    book.apply_trades([trade(ALICE, BOB, "0.1", "100", T0 + 1)])
    book.apply_trades([trade(ALICE, BOB, "0.2", "100", T0 + 2)])
    book.apply_trades([trade(ALICE, BOB, "1234.56789", "100", T0 + 3)])
    book.apply_trades([trade(BOB, ALICE, "1234.56789", "100", T0 + 4)])
    assert book.positions_of(ALICE)["BTC"].szi == D("0.3")
    book.reconcile(ALICE, state(T0 + 10, "1000.0", {"BTC": ("0.3", "100")}), T0 + 10)
    [(_, drift)] = book.settle_checks()
    assert drift.coins == 0
    assert [(c.szi_before, c.szi_after) for c in changes] == [
        (0, D("0.1")),
        (D("0.1"), D("0.3")),
        (D("0.3"), D("1234.86789")),
        (D("1234.86789"), D("0.3")),
    ]
    assert not any("E" in str(c.szi_before) + str(c.szi_after) for c in changes)


def test_a_gap_sends_the_accounts_holding_its_coin_to_the_front_of_the_polls(tmp_path) -> None:
    from process.jobs import PositionsJob
    from process.points import PointBuilder
    from process.poll_scheduler import PollScheduler
    from process.registry import AddressRegistry
    from process.shard import Shard

    carol = "0x" + "c" * 40
    book, _ = book_with(ALICE, BOB)
    registry = AddressRegistry(tmp_path / "a.sqlite")
    scheduler = PollScheduler(states=registry.by_address)
    job = PositionsJob(
        None, PointBuilder(), None, registry, scheduler, Shard.parse("0/1"), book=book
    )  # type: ignore[arg-type]
    for address, polled_s_ago in ((ALICE, 10), (BOB, 30), (carol, 50)):
        registry.record_poll(
            address,
            T0 - polled_s_ago * 1000,
            notional_usd=1e5,
            min_liq_distance=None,
            positions=None,
        )
        scheduler.add(address)
    book.apply_trades([trade(ALICE, BOB, "1", "100", T0 + 10)])  # both hold BTC now
    book.reconcile(BOB, state(T0 + 20, "900.0", {}), T0 + 20)  # BOB polled after the gap
    job.note_gap("BTC", T0 + 5, T0 + 15)
    assert [s.estimated for s in (registry.get(ALICE), registry.get(BOB), registry.get(carol))] == [
        True,
        False,
        False,
    ]
    # equal weights: the index is the age, ALICE's x 4 (40 s) passes BOB's 30 s, not carol's 50
    assert scheduler.next_batch(T0, 3) == [carol, ALICE, BOB]
    registry.close()
