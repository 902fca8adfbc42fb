"""Accounts, their perp positions and cash: the exchange's bookkeeping of every fill.

The population starts from a genesis state (power-law sizes, some positions 1-2 % from their
liquidation price, HLP vaults with positions); from then on a position changes only through
fills (`fill`), as on the exchange (API.md 5.4):

- the buyer's szi += sz, the seller's szi -= sz (rounded to the coin's szDecimals);
- entry price: size-weighted average on an increase, unchanged on a decrease, the fill price
  on a flip, gone when the position closes;
- cash: the account's raw USD moves by `-signed_sz * px - fee` (base-tier fees: taker 0.045 %,
  maker 0.015 %; a backstop liquidator vault pays none).

Cross positions share the account's cross raw USD (`Account.usd`). An isolated position has its
own raw USD (`Position.raw_usd`, served as `leverage.rawUsd`); its fills' cash goes there.
Opening (or flipping) it sets its margin to `|szi| * px / leverage` from the cross account, an
increase moves `|sz| * px / leverage` in, a decrease leaves the margin where it is, and the
close returns what is left to the cross account. In every case the account's total raw USD
moves by exactly `-signed_sz * px - fee`.

Cash also moves through `Transfer`s (deposits and withdrawals when `evolve()` opens a position);
there is no funding.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from .config import (
    HLP_CHILDREN,
    HLP_LIQUIDATOR,
    HLP_PARENT,
    HLP_STRATEGY_A,
    HLP_STRATEGY_B,
    SimConfig,
)
from .ledger import Holding, Ledger, Move, Transfer
from .margin import (
    cross_constant,
    cross_liquidation_px,
    isolated_liquidation_px,
    maintenance_fraction,
)
from .market import CoinState, Market
from .wire import fmt, sig

LEVERAGES = (1, 2, 3, 5, 10, 15, 20, 25, 40, 50)
TAKER_FEE = 0.00045
MAKER_FEE = 0.00015
HLP_ACCOUNTS = frozenset({HLP_PARENT, *(address for address, _ in HLP_CHILDREN)})
BIG_ORDER = 20_000.0  # USD: larger orders of evolve() and liquidations fill against HLP
Evolution = tuple["Account", CoinState, float, bool | None]  # account, coin, target szi, near


class Position:
    """One open position; `owner` and `cs` give it the account and the coin's mark."""

    __slots__ = (
        "coin",
        "cs",
        "cum_all",
        "cum_open",
        "entry_px",
        "isolated",
        "leverage",
        "mmf",
        "owner",
        "raw_usd",
        "szi",
    )

    def __init__(
        self,
        owner: Account,
        cs: CoinState,
        szi: float,
        entry_px: float,
        leverage: int,
        isolated: bool,
        raw_usd: float = 0.0,
        cum_all: float = 0.0,
        cum_open: float = 0.0,
    ) -> None:
        self.owner = owner
        self.cs = cs
        self.coin = cs.name
        self.szi = szi  # signed base units, negative = short
        self.entry_px = entry_px
        self.leverage = leverage
        self.isolated = isolated
        self.raw_usd = raw_usd  # isolated only: the position's own cash
        self.cum_all = cum_all
        self.cum_open = cum_open
        self.mmf = maintenance_fraction(cs.spec.max_leverage)

    @property
    def side(self) -> str:
        return "long" if self.szi > 0 else "short"

    @property
    def liq_px(self) -> float | None:
        """The liquidation price now (API.md 5.4 formulas at the current marks)."""
        return self.owner.liquidation_px(self)

    @property
    def notional(self) -> float:
        return abs(self.szi) * self.cs.mark

    def __repr__(self) -> str:
        margin = f"isolated rawUsd={self.raw_usd!r}" if self.isolated else "cross"
        return (
            f"Position({self.owner.address[:10]} {self.coin} szi={self.szi!r} "
            f"entry={self.entry_px!r} {self.leverage}x {margin})"
        )


class Account:
    """An address: cross raw USD, positions by coin, and the leverage and margin mode its new
    positions get."""

    __slots__ = ("address", "exact", "headroom", "isolated", "leverage", "positions", "usd")

    def __init__(
        self,
        address: str,
        usd: float = 0.0,
        leverage: int = 20,
        isolated: bool = False,
        headroom: float = 0.0,
    ) -> None:
        self.address = address
        self.usd = usd  # cross raw USD (crossMarginSummary.totalRawUsd)
        self.positions: dict[str, Position] = {}
        self.leverage = leverage
        self.isolated = isolated
        self.headroom = headroom  # free margin known to be left (see Population.reserve)
        self.exact = False  # headroom was computed at the marks and nothing freed margin since

    def cross(self) -> Iterator[Position]:
        return (p for p in self.positions.values() if not p.isolated)

    @property
    def total_raw_usd(self) -> float:
        return self.usd + sum(p.raw_usd for p in self.positions.values() if p.isolated)

    def cross_equity(self) -> float:
        return self.usd + sum(p.szi * p.cs.mark for p in self.cross())

    def free_margin(self) -> float:
        """Cross equity above the initial margin of the cross positions, at the marks."""
        free = self.usd
        for p in self.positions.values():
            if not p.isolated:
                szi, mark = p.szi, p.cs.mark
                free += szi * mark - (szi if szi > 0.0 else -szi) * mark / p.leverage
        return free

    def cross_maintenance(self) -> float:
        return sum(abs(p.szi) * p.cs.mark * p.mmf for p in self.cross())

    def cross_constant(self, without: Position | None = None) -> float:
        """`C` of the cross liquidation formula for `without` (all cross positions if None)."""
        others = ((p.szi, p.cs.mark, p.mmf) for p in self.cross() if p is not without)
        return cross_constant(self.usd, others)

    def liquidation_px(self, pos: Position) -> float | None:
        if pos.isolated:
            return isolated_liquidation_px(pos.raw_usd, pos.szi, pos.mmf)
        return cross_liquidation_px(self.cross_constant(pos), pos.szi, pos.mmf)

    def underwater(self) -> list[Position]:
        """Positions whose liquidation price the mark has crossed (equity below maintenance):
        every cross position when the cross account is, largest first; isolated ones alone."""
        out = []
        cross = sorted(self.cross(), key=lambda p: -p.notional)
        if cross and self.cross_equity() < self.cross_maintenance():
            out.extend(cross)
        for p in self.positions.values():
            if p.isolated and p.raw_usd + p.szi * p.cs.mark < p.notional * p.mmf:
                out.append(p)
        return out


class Population:
    """Traders (`addresses`) plus the HLP vault accounts, all deterministic from the seed."""

    def __init__(self, config: SimConfig, market: Market, ledger: Ledger | None = None) -> None:
        self.config = config
        self.market = market
        self.ledger = ledger if ledger is not None else Ledger()
        self.ledger.current = self.holding
        self.rng = random.Random(f"{config.seed}:population")
        self.accounts: dict[str, Account] = {}
        self.addresses: list[str] = []
        self.last_trade = 0  # newest time stamped by `stamp()`
        self.last_snapshot = 0  # newest clearinghouseState time served
        for _ in range(config.n_addresses):
            self._seed_trader(self._new_account())
        self._seed_vaults()

    # --- genesis ---------------------------------------------------------------------------

    def _new_account(self) -> Account:
        rng = self.rng
        while True:
            address = f"0x{rng.getrandbits(160):040x}"
            if address not in self.accounts:
                break
        acct = self.accounts[address] = Account(
            address, 0.0, rng.choice((3, 5, 10, 20, 25, 40, 50)), rng.random() < 0.15
        )
        self.addresses.append(address)
        return acct

    def _seed_trader(self, acct: Account) -> None:
        """1-4 positions; cash for a leverage of 20-100 % of each one's setting plus 0-50 % of
        the notional idle, or the cash that puts a near-liquidation one 1-2 % from its price."""
        rng, active = self.rng, self.market.active
        collateral = 0.0
        near_cross: tuple[Position, float] | None = None
        for cs in rng.sample(active, rng.randint(1, min(4, len(active)))):
            near = rng.random() < self.config.near_liq_fraction
            long = rng.random() < 0.55
            isolated = rng.random() < 0.15 or (near and near_cross is not None)
            max_lev, mark = cs.spec.max_leverage, cs.mark
            size = lots(min(5e7, 300.0 * rng.paretovariate(1.1)) / mark, cs)
            szi, side = (size, 1.0) if long else (-size, -1.0)
            cum = (rng.gauss(0.0, 0.01) * size * mark, rng.gauss(0.0, 0.002) * size * mark)
            if near:
                lev = rng.randint(min(max_lev, max(5, max_lev // 2)), max_lev)
                pos = Position(acct, cs, szi, mark * math.exp(rng.gauss(0.0, 0.01)), lev, isolated)
                liq = mark * (1.0 - side * rng.uniform(0.01, 0.02))
                target = -side * liq * size * (1.0 - side * pos.mmf)  # C or rawUsd at `liq`
                if isolated:
                    pos.raw_usd = target
                else:
                    near_cross = (pos, target)
            else:
                lev = rng.choice([x for x in LEVERAGES if x <= max_lev])
                eff = lev * rng.uniform(0.2, 1.0)
                entry = mark * math.exp(rng.gauss(0.0, 0.03))
                pos = Position(acct, cs, szi, entry, lev, isolated)
                if isolated:
                    pos.raw_usd = size * entry / eff - szi * entry
                    if self._too_near(pos):
                        pos.entry_px = mark
                        pos.raw_usd = size * mark / eff - szi * mark
                else:
                    collateral += size * entry / eff * rng.uniform(1.0, 1.2)
            pos.cum_all, pos.cum_open = cum
            acct.positions[cs.name] = pos
        if near_cross is not None:
            pos, target = near_cross
            acct.usd = target - acct.cross_constant(pos) + acct.usd
            return
        idle = rng.uniform(0.0, 0.5) * sum(abs(p.szi) * p.entry_px for p in acct.positions.values())
        acct.usd = collateral + idle - sum(p.szi * p.entry_px for p in acct.cross())
        for pos in list(acct.cross()):  # as if entered at the mark if that was too near
            if self._too_near(pos):
                acct.usd += pos.szi * (pos.entry_px - pos.cs.mark)
                pos.entry_px = pos.cs.mark

    def _too_near(self, pos: Position) -> bool:
        liq, mark = pos.liq_px, pos.cs.mark
        return liq is not None and (liq > 0.97 * mark if pos.szi > 0 else liq < 1.03 * mark)

    def _seed_vaults(self) -> None:
        rng = self.rng
        for address, _name in ((HLP_PARENT, ""), *HLP_CHILDREN):
            self.accounts[address] = Account(address, rng.uniform(2e6, 5e6), headroom=math.inf)
        for address, scale in ((HLP_STRATEGY_A, 3e6), (HLP_STRATEGY_B, 1e6), (HLP_LIQUIDATOR, 1e5)):
            acct = self.accounts[address]
            for cs in self.market.active:
                if address == HLP_LIQUIDATOR and rng.random() < 0.5:
                    continue
                long = rng.random() < 0.5
                size = lots(scale * cs.spec.weight * rng.uniform(0.2, 1.0) / cs.mark, cs)
                entry = cs.mark * math.exp(rng.gauss(0, 0.01))
                pos = Position(acct, cs, size if long else -size, entry, 20, False)
                acct.positions[cs.name] = pos
                acct.usd -= pos.szi * entry

    # --- bookkeeping -----------------------------------------------------------------------

    def account(self, address: str) -> Account:
        """The account of `address`, created empty (cross, 20x) if unknown."""
        acct = self.accounts.get(address)
        if acct is None:
            acct = self.accounts[address] = Account(address)
        return acct

    def open_account(
        self,
        address: str,
        usd: float = 0.0,
        leverage: int = 20,
        isolated: bool = False,
        time: int = 0,
    ) -> Account:
        """Set up `address` (created if unknown): `usd` deposited into its cross account (a
        `Transfer`), and the leverage and margin mode its new positions get."""
        acct = self.account(address.lower())
        acct.leverage, acct.isolated = leverage, isolated
        self.transfer(acct, None, usd, time, "deposit")
        return acct

    def holding(self, address: str, coin: str) -> Holding:
        acct = self.accounts.get(address)
        pos = acct.positions.get(coin) if acct is not None else None
        return Holding(0.0, None) if pos is None else Holding(pos.szi, pos.entry_px)

    def fill(
        self,
        address: str,
        cs: CoinState,
        signed: float,
        px: float,
        fee: float,
        check: bool = False,
    ) -> Move | None:
        """Apply one side of a trade (`signed` > 0 bought) to `address`'s position and cash.
        Returns the `Move` (szi and entry before and after, kind, fee); the caller records it
        (`TradeFactory.settle`). With `check`, a fill that
        opens or adds to a position is refused (None, nothing moved) when the account lacks
        the initial margin for it (`reserve`)."""
        acct = self.accounts.get(address)
        if acct is None:
            acct = self.account(address)
        coin = cs.name
        pos = acct.positions.get(coin)
        cash = -signed * px - fee
        if pos is None:
            lev = acct.leverage if acct.leverage <= cs.spec.max_leverage else cs.spec.max_leverage
            size = signed if signed > 0.0 else -signed
            if check:
                need = size * px / lev + fee
                if need <= acct.headroom:
                    acct.headroom -= need
                elif not self.reserve(acct, need):
                    return None
            pos = acct.positions[coin] = Position(acct, cs, signed, px, lev, acct.isolated)
            if pos.isolated:
                margin = size * px / lev
                acct.usd -= margin + fee
                pos.raw_usd = margin - signed * px
            else:
                acct.usd += cash
            return 0.0, 0.0, signed, px, "entry", fee
        start = pos.szi
        entry = pos.entry_px
        scale = cs.lot_scale
        new = round((start + signed) * scale) / scale  # == round(start + signed, szDecimals)
        if new == 0.0:
            del acct.positions[coin]
            acct.usd += pos.raw_usd + cash if pos.isolated else cash
            acct.exact = False
            return start, entry, 0.0, None, "exit", fee
        if (new > 0.0) is (start > 0.0):
            if (new > start) is (start > 0.0):  # further from zero
                size = signed if signed > 0.0 else -signed
                if check:
                    need = size * px / pos.leverage + fee
                    if need <= acct.headroom:
                        acct.headroom -= need
                    elif not self.reserve(acct, need):
                        return None
                pos.szi = new
                pos.entry_px = ((start if start > 0.0 else -start) * entry + size * px) / (
                    new if new > 0.0 else -new
                )
                if pos.isolated:
                    margin = size * px / pos.leverage
                    acct.usd -= margin
                    pos.raw_usd += margin + cash
                else:
                    acct.usd += cash
                return start, entry, new, pos.entry_px, "increase", fee
            pos.szi = new
            if pos.isolated:
                pos.raw_usd += cash
            else:
                acct.usd += cash
            acct.exact = False
            return start, entry, new, entry, "decrease", fee
        size = new if new > 0.0 else -new
        if check and not self.reserve(acct, size * px / pos.leverage + fee):
            return None  # (flips are rare: no inlined fast path)
        pos.szi = new
        pos.entry_px = px
        pos.cum_open = 0.0
        if pos.isolated:
            raw = pos.raw_usd + cash
            move = size * px / pos.leverage - (raw + new * px)
            acct.usd -= move
            pos.raw_usd = raw + move
        else:
            acct.usd += cash
        return start, entry, new, px, "flip", fee

    @staticmethod
    def reserve(acct: Account, need: float) -> bool:
        """Take `need` USD of initial margin from the account's free margin, if it has it.

        `Account.headroom` is a cheap estimate: fills that add exposure draw it down, nothing
        raises it; only when it runs out is the free margin computed at the marks
        (`Account.free_margin`), and then not again before something may have freed margin
        (`Account.exact` cleared by a reducing fill, a transfer or `refresh()`). Vaults have
        infinite headroom."""
        if need <= acct.headroom:
            acct.headroom -= need
            return True
        if acct.exact:  # nothing freed margin since it was computed: still not enough
            return False
        free = acct.free_margin()
        acct.exact = True
        if need <= free:
            acct.headroom = free - need
            return True
        acct.headroom = free
        return False

    def transfer(self, acct: Account, coin: str | None, usd: float, time: int, reason: str) -> None:
        """Cash in (usd > 0) or out of the cross account, or of the isolated margin of `coin`."""
        if usd == 0.0:
            return
        if coin is None:
            acct.usd += usd
        else:
            acct.positions[coin].raw_usd += usd
        acct.exact = False
        self.ledger.transfers.append(Transfer(time, acct.address, coin, usd, reason))

    # --- clock -----------------------------------------------------------------------------

    def stamp(self, now: int) -> int:
        """The time of a trade made now: after every clearinghouseState already served, so a
        snapshot stamped T holds every trade stamped at or before T."""
        t = now if now > self.last_snapshot else self.last_snapshot + 1
        if t > self.last_trade:
            self.last_trade = t
        return t

    def refresh(self) -> None:
        """Marks moved (a market tick): margin estimates are recomputed when next needed."""
        for acct in self.accounts.values():
            acct.exact = False

    # --- liquidation -----------------------------------------------------------------------

    def crossed(self) -> list[tuple[Account, Position]]:
        """Positions whose liquidation price the mark has crossed, of every account but HLP's
        (account by account, each cross account's positions largest first)."""
        return [
            (acct, pos)
            for acct in self.accounts.values()
            if acct.positions and acct.address not in HLP_ACCOUNTS
            for pos in acct.underwater()
        ]

    def find_victim(
        self, coin: str | None, side: str | None, user: str | None
    ) -> tuple[Account, Position] | None:
        """The requested position, else the trader position closest to its liquidation price."""
        if side not in (None, "long", "short") or (
            coin is not None and coin not in self.market.coins
        ):
            raise ValueError(f"no such coin or side: {coin!r}, {side!r} (side is long or short)")
        long = None if side is None else side == "long"
        names = {coin} if coin else {c.name for c in self.market.active}
        owner = self.account(user.lower()) if user is not None else None
        pool = [owner] if owner is not None else [self.accounts[a] for a in self.addresses]
        best, best_distance = None, math.inf
        for acct in pool:
            for p in acct.positions.values():
                if p.coin not in names or long not in (None, p.szi > 0):
                    continue
                liq = p.liq_px
                if liq is None and owner is None:
                    continue
                distance = math.inf if liq is None else abs(p.cs.mark - liq) / p.cs.mark
                if best is None or distance < best_distance:
                    best, best_distance = (acct, p), distance
        return best

    def victim_slot(
        self, coin: str | None, side: str | None, user: str | None
    ) -> tuple[Account, CoinState, bool]:
        """Where to open a position to liquidate when none fits: (account, coin, long)."""
        cs = self.market.coins[coin] if coin else self.rng.choice(self.market.active)
        if user is not None:
            acct = self.account(user.lower())
        else:
            free = [a for a in self.addresses if cs.name not in self.accounts[a].positions]
            acct = self.accounts[self.rng.choice(free or self.addresses)]
        long = self.rng.random() < 0.55 if side is None else side == "long"
        return acct, cs, long

    # --- evolution -------------------------------------------------------------------------

    def evolution(self) -> Evolution | None:
        """One change an account wants: close a position, open one, or resize one. Returns
        (account, coin, target szi, near) where `near` (opens only, else None) asks for
        a margin 1-2 % from liquidation; None when the account has nothing to do."""
        rng = self.rng
        acct = self.accounts[rng.choice(self.addresses)]
        r = rng.random()
        if acct.positions and r < 0.35:
            pos = acct.positions[rng.choice(sorted(acct.positions))]
            return acct, pos.cs, 0.0, None
        if r < 0.7:
            free = [cs for cs in self.market.active if cs.name not in acct.positions]
            if not free:
                return None
            cs = rng.choice(free)
            near = rng.random() < self.config.near_liq_fraction
            return acct, cs, self.new_size(cs, rng.random() < 0.55), near
        if acct.positions:
            pos = acct.positions[rng.choice(sorted(acct.positions))]
            size = lots(abs(pos.szi) * rng.uniform(0.7, 1.3), pos.cs)
            return acct, pos.cs, math.copysign(size, pos.szi), None
        return None

    def new_size(self, cs: CoinState, long: bool) -> float:
        """A power-law position size (signed) for a new position."""
        size = lots(min(5e7, 300.0 * self.rng.paretovariate(1.1)) / cs.mark, cs)
        return size if long else -size

    def maker(self, rng: random.Random, taker: str, cs: CoinState, signed: float) -> str:
        """Who fills `signed` base units (the maker's side) of an order: HLP Strategy A for big
        orders and 15 % of the rest, else a trader with the margin for it."""
        if abs(signed) * cs.mark <= BIG_ORDER and rng.random() >= 0.15:
            maker = self.addresses[int(rng.random() * len(self.addresses))]
            if maker != taker and self.can_take(self.accounts[maker], cs, signed):
                return maker
        return HLP_STRATEGY_A if taker != HLP_STRATEGY_A else HLP_STRATEGY_B

    def can_take(self, acct: Account, cs: CoinState, signed: float) -> bool:
        """Whether `acct` has the initial margin for a fill of `signed` at the mark (a fill
        that reduces a position always can); reserves it."""
        pos = acct.positions.get(cs.name)
        start = pos.szi if pos is not None else 0.0
        added = abs(start + signed) - abs(start)
        if added <= 0.0 and (start + signed) * start >= 0.0:
            return True
        lev = pos.leverage if pos is not None else min(acct.leverage, cs.spec.max_leverage)
        grown = abs(start + signed) if (start + signed) * start < 0.0 else added
        return self.reserve(acct, grown * cs.mark / lev)

    def fund_opening(
        self, acct: Account, pos: Position, cross_used: float, near: bool, time: int
    ) -> None:
        """The deposits that go with a position opened by evolve(): the margin it took, then
        enough (or less) cash for a leverage of 20-100 % of its setting, or, when `near`, for a
        liquidation price 1-2 % from the mark."""
        rng, mark = self.rng, pos.cs.mark
        side, size = (1.0 if pos.szi > 0 else -1.0), abs(pos.szi)
        liq = mark * (1.0 - side * rng.uniform(0.01, 0.02))
        target = -side * liq * size * (1.0 - side * pos.mmf)  # C (cross) or rawUsd at `liq`
        eff = pos.leverage * rng.uniform(0.2, 1.0)
        if pos.isolated:
            self.transfer(acct, None, cross_used, time, "deposit")
            if not near:
                target = size * pos.entry_px / eff - pos.szi * pos.entry_px
            self.transfer(acct, pos.coin, target - pos.raw_usd, time, "margin")
        elif near:
            self.transfer(acct, None, target - acct.cross_constant(pos), time, "deposit")
        else:
            self.transfer(acct, None, size * pos.entry_px / eff, time, "deposit")

    # --- wire ------------------------------------------------------------------------------

    def clearinghouse_state(self, address: str, now: int) -> dict[str, Any]:
        """The account now; `time` is at least the newest trade's, so it holds every trade
        stamped at or before it."""
        time = now if now > self.last_trade else self.last_trade
        if time > self.last_snapshot:
            self.last_snapshot = time
        acct = self.accounts.get(address) or Account(address)
        positions: list[dict[str, Any]] = []
        ntl = margin = signed_ntl = iso_raw = 0.0
        c_ntl = c_margin = c_signed = c_mm = 0.0
        for pos in sorted(acct.positions.values(), key=lambda p: p.cs.index):
            cs = pos.cs
            mark = cs.mark
            value = abs(pos.szi) * mark
            upnl = pos.szi * (mark - pos.entry_px)
            leverage: dict[str, Any] = {"type": "cross", "value": pos.leverage}
            if pos.isolated:
                used = max(0.0, pos.raw_usd + pos.szi * mark)
                leverage = {
                    "type": "isolated",
                    "value": pos.leverage,
                    "rawUsd": fmt(pos.raw_usd, 6),
                }
                iso_raw += pos.raw_usd
            else:
                used = value / pos.leverage
                c_ntl, c_margin, c_signed = (
                    c_ntl + value,
                    c_margin + used,
                    c_signed + pos.szi * mark,
                )
                c_mm += value * pos.mmf
            ntl, margin, signed_ntl = ntl + value, margin + used, signed_ntl + pos.szi * mark
            positions.append(self._position(pos, leverage, value, upnl, used))
        cross_value = acct.usd + c_signed

        def summary(raw: float, total_ntl: float, signed: float, used: float) -> dict[str, str]:
            return {
                "accountValue": fmt(raw + signed, 6),
                "totalNtlPos": fmt(total_ntl, 6),
                "totalRawUsd": fmt(raw, 6),
                "totalMarginUsed": fmt(used, 6),
            }

        return {
            "marginSummary": summary(acct.usd + iso_raw, ntl, signed_ntl, margin),
            "crossMarginSummary": summary(acct.usd, c_ntl, c_signed, c_margin),
            "crossMaintenanceMarginUsed": fmt(c_mm, 6),
            "withdrawable": fmt(max(0.0, cross_value - c_margin), 6),
            "assetPositions": positions,
            "time": time,
        }

    @staticmethod
    def _position(
        pos: Position, leverage: dict[str, Any], value: float, upnl: float, used: float
    ) -> dict[str, Any]:
        cs = pos.cs
        equity = abs(pos.szi) * pos.entry_px / pos.leverage
        liq = pos.liq_px
        return {
            "type": "oneWay",
            "position": {
                "coin": pos.coin,
                "szi": cs.sz(pos.szi),
                "leverage": leverage,
                "entryPx": fmt(pos.entry_px, min(8, cs.decimals + 2)),
                "positionValue": fmt(value, 6),
                "unrealizedPnl": fmt(upnl, 6),
                "returnOnEquity": fmt(upnl / equity if equity else 0.0, 10),
                "liquidationPx": None if liq is None else sig(liq, 12),
                "marginUsed": fmt(used, 6),
                "maxLeverage": cs.spec.max_leverage,
                "cumFunding": {
                    "allTime": fmt(pos.cum_all, 6),
                    "sinceOpen": fmt(pos.cum_open, 6),
                    "sinceChange": "0.0",
                },
            },
        }


def lots(size: float, cs: CoinState) -> float:
    """`size` (>= 0) rounded to the coin's lot (10**-szDecimals), at least one lot."""
    step = 10.0**-cs.sz_decimals
    return round(max(step, round(size / step) * step), cs.sz_decimals)
