"""Liquidation prices from the margin formula agree with what the exchange served, exactly by hand.

Recorded accounts are valued at the mark each payload implies (positionValue / |szi|); every
served `liquidationPx` is matched within 0.1 % and every served null by None, except that the
2023 recording follows an older formula (its own test says which).
"""

from __future__ import annotations

import json
import random
import timeit
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from process.positions import (
    AccountMargin,
    MarginPosition,
    MarginRule,
    account_margin,
    liquidation_price,
    rules_from_meta,
)
from validate import (
    ClearinghouseState,
    parse_clearinghouse_state,
    parse_meta,
    parse_meta_and_asset_ctxs,
)
from validate.market import MarginTable, MarginTier

FIXTURES = Path(__file__).parent / "fixtures" / "hyperliquid"
SERVED_TOLERANCE = Decimal("0.001")
ROUND_TRIP_TOLERANCE = Decimal("1e-9")
D = Decimal


@dataclass(frozen=True)
class Pos:
    coin: str
    szi: Decimal
    leverage_type: str = "cross"
    raw_usd: Decimal | None = None


def iso(coin: str, szi: str, raw_usd: str) -> Pos:
    return Pos(coin, D(szi), "isolated", D(raw_usd))


def body(name: str) -> object:
    return json.loads((FIXTURES / f"{name}.json").read_text())["response"]


def marks_of(state: ClearinghouseState) -> dict[str, Decimal]:
    return {p.coin: p.position_value / abs(p.szi) for p in state.positions if p.szi}


def relative(value: Decimal, reference: Decimal) -> Decimal:
    return abs(value / reference - 1)


def assert_served(state: ClearinghouseState, account: AccountMargin) -> Decimal:
    """Every served price within 0.1 %, None exactly where null; returns the largest error."""
    computed = {p.coin: p.liquidation_px for p in account.positions}
    worst = D(0)
    for position in state.positions:
        liq = computed[position.coin]
        if position.liquidation_px is None:
            assert liq is None, position.coin
        else:
            assert liq is not None, position.coin
            worst = max(worst, relative(liq, position.liquidation_px))
    assert worst < SERVED_TOLERANCE
    return worst


# --- recorded accounts -------------------------------------------------------------------------


def test_hlp_strategy_a_recording() -> None:
    """2026 mainnet, HLP Strategy A, all cross: the recorder kept 6 of its positions but left the
    summaries whole, so the dropped ones come back as one long and one short of the same
    notional and signed value. Their maintenance rate is 1 % too: `crossMaintenanceMarginUsed`
    is 1 % of `totalNtlPos` to 1e-4 USDC, as every kept position's maxLeverage (50) implies."""
    state, rejected = parse_clearinghouse_state(body("info_clearinghouseState"))
    assert state is not None and not rejected
    cross = state.cross_margin_summary
    assert state.cross_maintenance_margin_used is not None
    assert abs(state.cross_maintenance_margin_used - cross.total_ntl_pos / 100) < D("0.0001")
    marks = marks_of(state)
    kept_signed = sum(p.szi * marks[p.coin] for p in state.positions)
    rest_signed = cross.account_value - cross.total_raw_usd - kept_signed
    rest_notional = cross.total_ntl_pos - sum(p.position_value for p in state.positions)
    rest = [
        Pos("DROPPED_LONGS", (rest_notional + rest_signed) / 2),
        Pos("DROPPED_SHORTS", -(rest_notional - rest_signed) / 2),
    ]
    marks |= {"DROPPED_LONGS": D(1), "DROPPED_SHORTS": D(1)}
    rules = {p.coin: MarginRule.flat(p.max_leverage or 0) for p in state.positions}
    rules |= {"DROPPED_LONGS": MarginRule.flat(50), "DROPPED_SHORTS": MarginRule.flat(50)}
    assert set(rules.values()) == {MarginRule.flat(50)}

    account = account_margin([*state.positions, *rest], cross.total_raw_usd, marks, rules)

    assert relative(account.account_value, cross.account_value) < D("1e-15")
    assert abs(account.cross_maintenance - state.cross_maintenance_margin_used) < D("0.0001")
    worst = assert_served(state, account)
    served = [(p.coin, p.liquidation_px) for p in state.positions if p.liquidation_px]
    assert served == [("AVAX", D("647.020287706")), ("DOGE", D("5.2151854947"))]
    assert worst < D("1e-10")
    print(f"\nHLP recording: 6 positions, largest relative error {worst:.1e}")


DOCS_EXAMPLE = {
    "assetPositions": [
        {
            "position": {
                "coin": "ETH",
                "cumFunding": {"allTime": "514.085417", "sinceChange": "0.0", "sinceOpen": "0.0"},
                "entryPx": "2986.3",
                "leverage": {"rawUsd": "-95.059824", "type": "isolated", "value": 20},
                "liquidationPx": "2866.26936529",
                "marginUsed": "4.967826",
                "maxLeverage": 50,
                "positionValue": "100.02765",
                "returnOnEquity": "-0.0026789",
                "szi": "0.0335",
                "unrealizedPnl": "-0.0134",
            },
            "type": "oneWay",
        }
    ],
    "crossMaintenanceMarginUsed": "0.0",
    "crossMarginSummary": {
        "accountValue": "13104.514502",
        "totalMarginUsed": "0.0",
        "totalNtlPos": "0.0",
        "totalRawUsd": "13104.514502",
    },
    "marginSummary": {
        "accountValue": "13109.482328",
        "totalMarginUsed": "4.967826",
        "totalNtlPos": "100.02765",
        "totalRawUsd": "13009.454678",
    },
    "time": 1708622398623,
    "withdrawable": "13104.514502",
}
"""The docs' clearinghouseState example ("Info endpoint" > "Perpetuals"), one isolated long."""


def test_docs_example_isolated_position() -> None:
    state, rejected = parse_clearinghouse_state(DOCS_EXAMPLE)
    assert state is not None and not rejected
    marks = marks_of(state)
    assert marks == {"ETH": D("2985.9")}

    account = account_margin(
        state.positions,
        state.cross_margin_summary.total_raw_usd,
        marks,
        {"ETH": MarginRule.flat(50)},
    )

    assert account.account_value == state.margin_summary.account_value == D("13109.482328")
    assert account.cross_account_value == state.cross_margin_summary.account_value
    assert account.cross_maintenance == 0
    assert account.maintenance == D("1.0002765")
    (eth,) = account.positions
    assert eth.isolated and eth.liquidation_px == D("95.059824") / (D("0.0335") * D("0.99"))
    worst = assert_served(state, account)
    assert worst < D("1e-8")  # rawUsd is served to 6 decimals: 1e-6 / 0.0335 / 2866 = 1e-8
    print(f"\ndocs example: 1 position, relative error {worst:.1e}")


SDK_2023_POSITIONS = """
BTC   -0.00785  211.64542   173198.69592357
ETH    0.1334   227.675114  null
ATOM  -0.45     4.86        2561.83187333
MATIC  76.6     79.3576     null
DYDX  -121.2    287.244     11.841653
SOL    7.39     145.5091    null
AVAX   28.3     464.12      null
BNB    1.916    588.0204    null
APE   -131.8    509.5388    12.57589638
OP    -76.4     156.238     17.0707113
LTC    5.33     469.7862    null
ARB    246.5    290.8207    null
"""
"""A whole cross account, 2023-03-27 (hyperliquid-python-sdk cassette `test_get_user_state`):
coin, szi, positionValue, liquidationPx. totalRawUsd 86.549602, accountValue 1182.312496. The
payload has no maxLeverage; every coin of the July 2023 `meta` recording is at 50."""


def test_2023_recording_used_the_formula_without_correction() -> None:
    """The served prices of 2023 are `mark - side * (accountValue - maintenance) / |szi|`, to
    1e-8, with maintenance 1 % of the notional: the formula of today without `(1 - l * side)`.
    Today's formula puts them 0.7 % to 1 % nearer the mark; nulls agree exactly."""
    rows = [line.split() for line in SDK_2023_POSITIONS.strip().splitlines()]
    positions = [Pos(coin, D(szi)) for coin, szi, _, _ in rows]
    marks = {coin: D(value) / abs(D(szi)) for coin, szi, value, _ in rows}
    served = {coin: None if liq == "null" else D(liq) for coin, _, _, liq in rows}
    rules = {coin: MarginRule.flat(50) for coin in marks}

    account = account_margin(positions, D("86.549602"), marks, rules)

    assert relative(account.account_value, D("1182.312496")) < D("1e-15")
    for position in account.positions:
        reference = served[position.coin]
        if reference is None:
            assert position.liquidation_px is None
            continue
        assert position.liquidation_px is not None
        side = 1 if position.szi > 0 else -1
        old = position.mark - side * (account.account_value - account.cross_maintenance) / abs(
            position.szi
        )
        assert relative(old, reference) < D("1e-8")
        assert D("0.006") < relative(position.liquidation_px, reference) < D("0.01")


# --- by hand -----------------------------------------------------------------------------------

RULES = {
    "BTC": MarginRule.flat(50),  # maintenance rate 1 %
    "ETH": MarginRule.flat(25),  # 2 %
    "X": MarginRule.tiered([(D(0), 10), (D(1_000_000), 5)]),  # 5 %, then 10 % from 1M notional
}


def one(
    position: Pos, cash: str, mark: str, rules: dict[str, MarginRule] = RULES
) -> Decimal | None:
    account = account_margin([position], D(cash), {position.coin: D(mark)}, rules)
    return account.positions[0].liquidation_px


def test_cross_long_and_short() -> None:
    """Deposit 20, buy 1 BTC at 100: rawUsd -80, liquidated where -80 + p = 1 % of p."""
    account = account_margin([Pos("BTC", D(1))], D(-80), {"BTC": D(100)}, RULES)
    (btc,) = account.positions
    assert (account.account_value, account.cross_maintenance) == (D(20), D(1))
    assert btc.liquidation_px == D(80) / D("0.99")
    assert btc.distance == (D(100) - D(80) / D("0.99")) / 100
    # deposit 20, sell 1 BTC at 100: rawUsd 120, liquidated where 120 - p = 1 % of p
    assert one(Pos("BTC", D(-1)), "120", "100") == D(120) / D("1.01")


def test_isolated_long_and_short_ignore_cross_cash_and_other_marks() -> None:
    """2 ETH at 1000 with 200 of isolated margin: rawUsd 200 - 2000 long, 200 + 2000 short."""
    long, short = iso("ETH", "2", "-1800"), iso("ETH", "-2", "2200")
    for cash, btc_mark in (("0", "100"), ("1000000", "1")):
        marks = {"ETH": D(1000), "BTC": D(btc_mark)}
        for position, expected in ((long, D(1800) / D("1.96")), (short, D(2200) / D("2.04"))):
            account = account_margin([position, Pos("BTC", D(1))], D(cash), marks, RULES)
            assert account.positions[0].liquidation_px == expected
            assert account.positions[0].isolated
    account = account_margin([long], D(5), {"ETH": D(1000)}, RULES)
    assert account.account_value == 5 - 1800 + 2000
    assert (account.cross_account_value, account.cross_maintenance) == (D(5), D(0))
    assert account.maintenance == D(40)


def test_cross_positions_share_the_cash() -> None:
    """Cash 30, long 1 BTC from 100, short 10 ETH from 10: rawUsd 30. The brief's closed form,
    C = rawUsd + sum over the others of |szi| * mark * (side - l)."""
    positions = [Pos("BTC", D(1)), Pos("ETH", D(-10))]
    account = account_margin(positions, D(30), {"BTC": D(100), "ETH": D(10)}, RULES)
    btc, eth = account.positions
    assert (account.account_value, account.cross_maintenance) == (D(30), D(3))
    assert btc.liquidation_px == -(30 + 100 * (-1 - D("0.02"))) / (1 * (1 - D("0.01")))
    assert eth.liquidation_px == (30 + 100 * (1 - D("0.01"))) / (10 * (1 + D("0.02")))
    # ETH up to 11: the short loses 10, so BTC's liquidation price rises
    moved = account_margin(positions, D(30), {"BTC": D(100), "ETH": D(11)}, RULES)
    assert moved.positions[0].liquidation_px == D("82.2") / D("0.99")


def test_flip_from_long_to_short() -> None:
    """Long 1 BTC (rawUsd -80), then sell 2 at 100: short 1, rawUsd -80 + 200 = 120."""
    before = account_margin([Pos("BTC", D(1))], D(-80), {"BTC": D(100)}, RULES).positions[0]
    after = account_margin([Pos("BTC", D(-1))], D(120), {"BTC": D(100)}, RULES).positions[0]
    assert before.liquidation_px is not None and before.liquidation_px < 100
    assert after.liquidation_px == D(120) / D("1.01") and after.liquidation_px > 100
    assert before.distance is not None and after.distance is not None
    assert before.distance > 0 and after.distance > 0
    assert after.distance == (D(120) / D("1.01") - 100) / 100


def test_tiers_are_continuous_and_liquidation_finds_its_tier() -> None:
    """X: 10x to 1M notional (rate 5 %), 5x above (10 %); deduction 1M * (10 % - 5 %) = 50k."""
    rule = RULES["X"]
    assert [(t.lower_bound, t.rate, t.deduction) for t in rule.tiers] == [
        (0, D("0.05"), 0),
        (1_000_000, D("0.1"), 50_000),
    ]
    assert rule.maintenance(D(999_999)) == D("49999.95")
    assert rule.maintenance(D(1_000_000)) == 50_000
    assert rule.maintenance(D(2_000_000)) == 150_000
    # long 100 X, liquidation at 15000 (notional 1.5M, tier 2): -1.4M + 100 p = 10 % of 100 p - 50k
    assert one(Pos("X", D(100)), "-1400000", "20000") == 15_000
    assert one(Pos("X", D(100)), "-1400000", "20000", {"X": MarginRule.flat(10)}) == D(
        1_400_000
    ) / D(95)
    # in the first tier although the position sits in the second now
    assert one(Pos("X", D(100)), "-475000", "20000") == 5_000
    # exactly on the bound: both tiers give 10000
    assert one(Pos("X", D(100)), "-950000", "20000") == 10_000
    # short 100 X from 5000 (first tier) liquidated at 15000 (second tier)
    assert one(Pos("X", D(-100)), "1600000", "5000") == 15_000


def test_three_tiers_any_side_any_cash() -> None:
    """The docs' testnet BTC table (40x to 10k, 25x to 50k, 10x above): deductions 75 and 1575.
    For 2000 seeded accounts, long and short, the price returned is where equity meets the
    maintenance of the tier it lands in, or None exactly when no positive root exists."""
    rule = MarginRule.tiered([(D(0), 40), (D(10_000), 25), (D(50_000), 10)])
    assert [t.deduction for t in rule.tiers] == [0, 75, 1575]
    assert rule.maintenance(D(10_000)) == 125 and rule.maintenance(D(50_000)) == 925
    generator = random.Random(7)
    landed: set[int] = set()
    for _ in range(2000):
        szi = D(generator.randint(-5000, 5000) or 1) / 100
        rest = D(generator.randint(-10_000_000, 10_000_000)) / 100
        px = liquidation_price(rest, szi, rule)
        if px is None:
            assert (rest >= 0) if szi > 0 else (rest <= 0)
            continue
        maintenance = rule.maintenance(abs(szi) * px)
        assert abs(rest + szi * px - maintenance) <= D("1e-20") * max(maintenance, D(1))
        landed.add(rule.tier_at(abs(szi) * px).max_leverage)
    assert landed == {40, 25, 10}


def test_null_where_the_exchange_serves_null() -> None:
    assert one(Pos("BTC", D(1)), "10", "100") is None  # over-collateralised long: p < 0
    assert one(Pos("BTC", D(-1)), "-5", "100") is None  # short under water at any price
    assert one(Pos("BTC", D(-1)), "1e16", "100") is None  # beyond 1e15
    assert one(Pos("BTC", D(-1)), "1e15", "100") == D("1e15") / D("1.01")
    assert liquidation_price(D(-1), D(0), RULES["BTC"]) is None
    account = account_margin([Pos("BTC", D(0)), Pos("ETH", D(1))], D(-5), {"ETH": D(10)}, RULES)
    zero = account.positions[0]
    assert (zero.coin, zero.liquidation_px, zero.maintenance, zero.distance) == (
        "BTC",
        None,
        0,
        None,
    )
    assert account.positions[1].liquidation_px == D(5) / D("0.98")


def mixed_account() -> tuple[list[Pos], Decimal, dict[str, Decimal]]:
    """Cross: account value 180k over maintenance 151.5k (X alone 150k, in its second tier);
    isolated SOL long and DOGE short; every position has a liquidation price."""
    positions = [
        Pos("BTC", D("0.75")),
        Pos("ETH", D("-12.5")),
        Pos("X", D(100)),
        iso("SOL", "40", "-3100"),
        iso("DOGE", "-20000", "3300"),
    ]
    marks = {"BTC": D(100_000), "ETH": D(3_000), "X": D(20_000), "SOL": D(90), "DOGE": D("0.15")}
    return positions, D(-1_857_500), marks


MIXED_RULES = RULES | {"SOL": MarginRule.flat(20), "DOGE": MarginRule.tiered([(D(0), 10)])}


def test_round_trip_equity_meets_maintenance_at_the_liquidation_price() -> None:
    positions, cash, marks = mixed_account()
    account = account_margin(positions, cash, marks, MIXED_RULES)
    assert all(p.liquidation_px is not None for p in account.positions)
    for index, (position, result) in enumerate(zip(positions, account.positions, strict=True)):
        assert result.liquidation_px is not None
        at = account_margin(
            positions, cash, marks | {position.coin: result.liquidation_px}, MIXED_RULES
        )
        if result.isolated:
            assert position.raw_usd is not None
            equity = position.raw_usd + position.szi * result.liquidation_px
            maintenance = at.positions[index].maintenance
        else:
            equity, maintenance = at.cross_account_value, at.cross_maintenance
        assert relative(equity, maintenance) < ROUND_TRIP_TOLERANCE, position.coin
    x = account.positions[2]
    assert x.liquidation_px is not None and x.liquidation_px * 100 > 1_000_000  # second tier


def test_distances() -> None:
    positions, cash, marks = mixed_account()
    account = account_margin(positions, cash, marks, MIXED_RULES)
    distances = account.distances()
    for result in account.positions:
        assert result.liquidation_px is not None
        assert distances[result.coin] == abs(result.mark - result.liquidation_px) / result.mark
    # beyond the liquidation price the distance turns negative
    past = account_margin([Pos("BTC", D(1))], D(-80), {"BTC": D(80)}, RULES).positions[0]
    assert past.distance is not None and past.distance < 0


# --- rules from meta ---------------------------------------------------------------------------


def test_rules_from_recorded_meta_with_margin_tables() -> None:
    meta, _, rejected = parse_meta_and_asset_ctxs(body("info_metaAndAssetCtxs"))
    assert meta is not None and not rejected
    assert [table.id for table in meta.margin_tables] == [50, 51, 52, 53, 54, 55, 56]
    assert meta.margin_tables[1] == MarginTable(
        51, (MarginTier(D("0.0"), 10), MarginTier(D("3000000.0"), 5)), "tiered 10x"
    )
    rules = rules_from_meta(meta)
    assert [(t.lower_bound, t.max_leverage, t.deduction) for t in rules["BTC"].tiers] == [
        (0, 40, 0),
        (150_000_000, 20, 150_000_000 * (D("0.025") - D("0.0125"))),
    ]
    assert [(t.max_leverage, t.deduction) for t in rules["HYPE"].tiers] == [(10, 0), (5, 1_000_000)]
    assert set(rules) == {"BTC", "ETH", "SOL", "HYPE"}


def test_rules_from_meta_without_listed_tables() -> None:
    meta, rejected = parse_meta(
        {
            "universe": [
                {"name": "BTC", "szDecimals": 5, "maxLeverage": 50},
                {"name": "xyz:TSLA", "szDecimals": 3, "maxLeverage": 10, "marginTableId": 10},
                {"name": "NEW", "szDecimals": 0, "maxLeverage": 3, "marginTableId": 60},
                {"name": "OLD", "szDecimals": 0},
            ],
            "marginTables": [
                [50, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 50}]}]
            ],
        }
    )
    assert meta is not None and not rejected
    rules = rules_from_meta(meta)
    assert rules == {
        "BTC": MarginRule.flat(50),
        "xyz:TSLA": MarginRule.flat(10),  # ids under 50: one tier at that leverage
        "NEW": MarginRule.flat(3),  # unknown table: the universe max leverage
    }
    old, rejected = parse_meta(body("info_meta"))
    assert old is not None and not rejected and old.margin_tables == ()
    assert set(rules_from_meta(old).values()) == {MarginRule.flat(50)}


def test_a_malformed_margin_table_is_left_out_and_the_universe_kept() -> None:
    good = [52, {"description": "t", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 20}]}]
    meta, rejected = parse_meta(
        {
            "universe": [{"name": "BTC", "szDecimals": 5, "maxLeverage": 50, "marginTableId": 51}],
            "marginTables": [
                [51, {"marginTiers": [{"lowerBound": "0.0", "maxLeverage": 0}]}],
                good,
                "junk",
            ],
        }
    )
    assert meta is not None and not rejected
    assert [t.id for t in meta.margin_tables] == [52]
    assert rules_from_meta(meta)["BTC"] == MarginRule.flat(50)  # its table is gone: maxLeverage


def test_rule_needs_a_tier_from_zero_and_positive_leverage() -> None:
    with pytest.raises(ValueError, match="from notional 0"):
        MarginRule.tiered([(D(10), 5)])
    with pytest.raises(ValueError, match="positive"):
        MarginRule.flat(0)
    with pytest.raises(ValueError, match="rawUsd"):
        account_margin([Pos("SOL", D(1), "isolated")], D(0), {"SOL": D(1)}, MIXED_RULES)


# --- speed -------------------------------------------------------------------------------------


def test_recomputing_an_account_is_fast() -> None:
    positions, cash, marks = mixed_account()
    many: Sequence[MarginPosition] = [
        Pos(f"{p.coin}{i}", p.szi, p.leverage_type, p.raw_usd) for i in range(4) for p in positions
    ]
    many_marks = {f"{coin}{i}": mark for i in range(4) for coin, mark in marks.items()}
    many_rules = {f"{coin}{i}": rule for i in range(4) for coin, rule in MIXED_RULES.items()}
    runs = 200
    seconds = timeit.timeit(
        lambda: account_margin(many, cash * 4, many_marks, many_rules), number=runs
    )
    per_position_us = seconds / runs / len(many) * 1e6
    print(f"\naccount_margin: {per_position_us:.1f} us per position ({len(many)} positions)")
    assert per_position_us < 50
