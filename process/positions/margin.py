"""Liquidation prices from Hyperliquid's margin formula: pure, exact (Decimal), one account at once.

What it relies on (Hyperliquid docs, mirrored in dzmbs/hyperliquid-docs `docs/trading/`):
- "Liquidations": an account is liquidated when its equity falls below its maintenance margin;
  `liq_price = price - side * margin_available / position_size / (1 - l * side)`, side +1 long,
  -1 short, `l = 1 / maintenance_leverage`; cross `margin_available = account_value -
  maintenance_margin_required`, isolated `isolated_margin - maintenance_margin_required`; with
  margin tiers, the tier "corresponding to the position value at the liquidation price".
- "Liquidations" / "Margining": maintenance margin is half the initial margin at max leverage,
  so the maintenance rate of a tier is `1 / (2 * max_leverage)`; an isolated position's margin
  check sees only its own margin and notional.
- "Margin tiers": `maintenance_margin = notional * rate - deduction`, `deduction(0) = 0`,
  `deduction(n) = deduction(n-1) + lower_bound(n) * (rate(n) - rate(n-1))`, so the maintenance
  margin is continuous in notional; a margin table id under 50 is one tier at that leverage.
- The official example (hyperliquid-dex/ts-examples `examples/LiquidationPx.tsx`) evaluates it
  at the mark price and serves null when the result is <= 0 or > 1e15: `None` here.

Solved for the price p of one position with every other mark fixed: equity(p) = C + szi * p and
maintenance(p) = |szi| * p * rate - deduction, so `p = -side * (C + deduction) / (|szi| * (1 -
side * rate))`, where C is the equity without this position's value and without the other
positions' maintenance: `crossMarginSummary.totalRawUsd + sum over j != i of (szi_j * mark_j -
maintenance_j)` for a cross position (API.md 5.4), the isolated `rawUsd` for an isolated one.
Equity - maintenance is continuous and monotonic in p (linear per tier), so the tier of the
root is the last one whose lower bound still has equity on the far side of maintenance: found
by comparisons, without a division per tier. Decimal divisions round to the context precision
(28 digits by default); nothing else is rounded.

Not confirmed: how the exchange rounds (recorded prices agree to 1e-8 or better); which
leverage applies when a position's own `maxLeverage` and `meta` disagree (the official example
prefers the position's); that tiers apply per position the same way in the cross sum. A 2023
recording follows an older formula, without the `(1 - l * side)` correction (see the tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from validate.market import Meta

ZERO = Decimal(0)
ONE = Decimal(1)
MAX_LIQUIDATION_PX = Decimal("1e15")
"""Above this the exchange serves a null liquidation price (as it does for <= 0)."""
LISTED_TABLES_FROM = 50
"""Margin table ids below this are never listed: the id is the max leverage of a single tier."""


class MarginPosition(Protocol):
    """What the margin formula needs of a position (`validate.Position` fits).

    `szi` signed size in base units; `raw_usd` the isolated margin's raw USD (`leverage.rawUsd`:
    margin minus szi * entry price), required when `leverage_type` is "isolated". The entry
    price is not needed: it is already in `raw_usd` / the cross `totalRawUsd`.
    """

    @property
    def coin(self) -> str: ...

    @property
    def szi(self) -> Decimal: ...

    @property
    def leverage_type(self) -> str: ...

    @property
    def raw_usd(self) -> Decimal | None: ...


@dataclass(frozen=True, slots=True)
class Tier:
    """From `lower_bound` of notional (USDC) on: maintenance = notional * rate - deduction."""

    lower_bound: Decimal
    max_leverage: int
    rate: Decimal
    deduction: Decimal


@dataclass(frozen=True, slots=True)
class MarginRule:
    """The maintenance margin of one coin as a function of a position's notional."""

    tiers: tuple[Tier, ...]

    @classmethod
    def flat(cls, max_leverage: int) -> MarginRule:
        """One tier: maintenance rate 1 / (2 * max_leverage) of the notional."""
        return cls.tiered([(ZERO, max_leverage)])

    @classmethod
    def tiered(cls, bounds: Iterable[tuple[Decimal, int]]) -> MarginRule:
        """Tiers from (lower bound, max leverage) pairs; the lowest bound must be 0.

        Deductions follow "Margin tiers", which keeps the maintenance margin continuous.
        """
        tiers: list[Tier] = []
        for bound, max_leverage in sorted(bounds):
            if max_leverage < 1:
                raise ValueError(f"max leverage {max_leverage} is not a positive integer")
            lower = Decimal(bound)
            rate = ONE / (2 * max_leverage)
            deduction = tiers[-1].deduction + lower * (rate - tiers[-1].rate) if tiers else ZERO
            tiers.append(Tier(lower, max_leverage, rate, deduction))
        if not tiers or tiers[0].lower_bound != 0:
            raise ValueError("a margin table needs a tier from notional 0")
        return cls(tuple(tiers))

    def tier_at(self, notional: Decimal) -> Tier:
        """The tier whose range [lower_bound, next lower_bound) holds `notional`."""
        found = self.tiers[0]
        for tier in self.tiers[1:]:
            if notional < tier.lower_bound:
                break
            found = tier
        return found

    def maintenance(self, notional: Decimal) -> Decimal:
        """Maintenance margin (USDC) of a position of this absolute notional."""
        tier = self.tier_at(notional)
        return notional * tier.rate - tier.deduction


def rules_from_meta(meta: Meta) -> dict[str, MarginRule]:
    """coin -> its maintenance rule, from `meta` (universe plus `marginTables`).

    An asset names its table by `marginTableId`; an id under 50 is a single tier at that max
    leverage. Without an id, or with an id whose table is missing or unusable, the universe
    `maxLeverage` is the single tier (the first tier always has it; only notionals past the
    next bound, millions of USDC, would differ). Assets without any max leverage (2023 payloads)
    get no rule.
    """
    tables = {table.id: table for table in meta.margin_tables}
    rules: dict[str, MarginRule] = {}
    for asset in meta.universe:
        table_id = asset.margin_table_id
        table = tables.get(table_id) if table_id is not None else None
        rule: MarginRule | None = None
        if table is not None:
            try:
                rule = MarginRule.tiered((t.lower_bound, t.max_leverage) for t in table.tiers)
            except ValueError:
                rule = None
        elif table_id is not None and 0 < table_id < LISTED_TABLES_FROM:
            rule = MarginRule.flat(table_id)
        if rule is None and asset.max_leverage:
            rule = MarginRule.flat(asset.max_leverage)
        if rule is not None:
            rules[asset.name] = rule
    return rules


@dataclass(frozen=True, slots=True)
class PositionMargin:
    """One position valued at `mark`: its maintenance margin (USDC) and liquidation price.

    `liquidation_px` is None where the exchange serves null: unreachable (<= 0), beyond 1e15,
    or a zero position.
    """

    coin: str
    szi: Decimal
    mark: Decimal
    isolated: bool
    maintenance: Decimal
    liquidation_px: Decimal | None

    @property
    def distance(self) -> Decimal | None:
        """How far the mark may move against the position before liquidation, as a fraction of
        the mark: 0.2 = 20 % down for a long, up for a short; <= 0 means liquidatable now;
        None when there is no liquidation price."""
        if self.liquidation_px is None:
            return None
        move = self.mark - self.liquidation_px
        return (move if self.szi > 0 else -move) / self.mark


@dataclass(frozen=True, slots=True)
class AccountMargin:
    """An account valued at the given marks, positions in input order.

    `account_value` matches `marginSummary.accountValue` (cash, isolated margins and every
    szi * mark), `cross_account_value` `crossMarginSummary.accountValue`, `cross_maintenance`
    `crossMaintenanceMarginUsed`; `maintenance` adds the isolated positions' own.
    """

    account_value: Decimal
    cross_account_value: Decimal
    cross_maintenance: Decimal
    maintenance: Decimal
    positions: tuple[PositionMargin, ...]

    def distances(self) -> dict[str, Decimal | None]:
        """coin -> `PositionMargin.distance`."""
        return {position.coin: position.distance for position in self.positions}


def account_margin(
    positions: Iterable[MarginPosition],
    cross_raw_usd: Decimal,
    marks: Mapping[str, Decimal],
    rules: Mapping[str, MarginRule],
) -> AccountMargin:
    """Value an account at `marks` and give every position its liquidation price.

    `cross_raw_usd` is `crossMarginSummary.totalRawUsd` (cash: deposits, realised PnL, fees,
    funding, minus szi * entry of the cross positions). `marks` and `rules` must hold every coin
    with a non-zero position (KeyError otherwise). Two passes over the positions: the cross
    totals first, then each liquidation price from them.
    """
    valued: list[tuple[MarginPosition, Decimal, Decimal, MarginRule | None]] = []
    cross_value = isolated_value = cross_maintenance = isolated_maintenance = ZERO
    for position in positions:
        szi = position.szi
        if not szi:
            valued.append((position, marks.get(position.coin, ZERO), ZERO, None))
            continue
        mark = marks[position.coin]
        rule = rules[position.coin]
        maintenance = rule.maintenance(abs(szi) * mark)
        if position.leverage_type == "isolated":
            isolated_value += _raw_usd(position) + szi * mark
            isolated_maintenance += maintenance
        else:
            cross_value += szi * mark
            cross_maintenance += maintenance
        valued.append((position, mark, maintenance, rule))

    cross_account_value = cross_raw_usd + cross_value
    results: list[PositionMargin] = []
    for position, mark, maintenance, rule in valued:
        szi = position.szi
        isolated = position.leverage_type == "isolated"
        liquidation_px: Decimal | None = None
        if rule is not None:
            if isolated:
                rest = _raw_usd(position)
            else:
                rest = cross_account_value - szi * mark - (cross_maintenance - maintenance)
            liquidation_px = liquidation_price(rest, szi, rule)
        results.append(
            PositionMargin(position.coin, szi, mark, isolated, maintenance, liquidation_px)
        )
    return AccountMargin(
        account_value=cross_account_value + isolated_value,
        cross_account_value=cross_account_value,
        cross_maintenance=cross_maintenance,
        maintenance=cross_maintenance + isolated_maintenance,
        positions=tuple(results),
    )


def liquidation_price(rest: Decimal, szi: Decimal, rule: MarginRule) -> Decimal | None:
    """The mark at which equity `rest + szi * p` meets the position's maintenance margin.

    `rest` is the equity the position shares, without its own value: for a cross position the
    cross account value minus szi * mark minus the other cross positions' maintenance; for an
    isolated one its `rawUsd`. None where the exchange serves null (<= 0, > 1e15, szi 0).
    """
    if not szi:
        return None
    long = szi > 0
    tier = rule.tiers[0]
    for above in rule.tiers[1:]:
        bound = above.lower_bound
        floor = bound * above.rate - above.deduction  # maintenance at the bound
        # the root is at or past this bound: a long is under maintenance there, a short not yet
        if (rest <= floor - bound) if long else (rest >= floor + bound):
            tier = above
        else:
            break
    size = abs(szi)
    if long:
        px = -(rest + tier.deduction) / (size * (ONE - tier.rate))
    else:
        px = (rest + tier.deduction) / (size * (ONE + tier.rate))
    return px if ZERO < px <= MAX_LIQUIDATION_PX else None


def _raw_usd(position: MarginPosition) -> Decimal:
    raw_usd = position.raw_usd
    if raw_usd is None:
        raise ValueError(f"isolated {position.coin} position without its rawUsd")
    return raw_usd
