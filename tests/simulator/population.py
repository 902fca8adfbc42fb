"""Accounts and their perp positions: power-law sizes, some near liquidation, slowly evolving."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from .config import (
    HLP_CHILDREN,
    HLP_LIQUIDATOR,
    HLP_PARENT,
    HLP_STRATEGY_A,
    HLP_STRATEGY_B,
    SimConfig,
)
from .market import CoinState, Market
from .wire import fmt, sig

LEVERAGES = (1, 2, 3, 5, 10, 15, 20, 25, 40, 50)


@dataclass(slots=True)
class Position:
    coin: str
    szi: float  # signed base units, negative = short
    entry_px: float
    leverage: int
    isolated: bool
    liq_px: float | None  # None = cannot be liquidated (served as null)
    cum_all: float = 0.0
    cum_open: float = 0.0

    @property
    def side(self) -> str:
        return "long" if self.szi > 0 else "short"


@dataclass(slots=True)
class Account:
    address: str
    collateral: float  # USD deposited (account value without unrealized PnL)
    positions: dict[str, Position] = field(default_factory=dict)


def liquidation_px(entry: float, long: bool, eff_lev: float, mmr: float) -> float | None:
    """Price where equity (margin 1/eff_lev of notional) meets maintenance margin `mmr`."""
    if long:
        return entry * (1 - 1 / eff_lev) / (1 - mmr) if eff_lev > 1 else None
    return entry * (1 + 1 / eff_lev) / (1 + mmr)


class Population:
    """Traders (`addresses`) plus the HLP vault accounts, all deterministic from the seed."""

    def __init__(self, config: SimConfig, market: Market) -> None:
        self.config = config
        self.market = market
        self.rng = random.Random(f"{config.seed}:population")
        self.accounts: dict[str, Account] = {}
        self.addresses: list[str] = []
        for _ in range(config.n_addresses):
            acct = self._new_account()
            held = self.rng.randint(1, min(4, len(market.active)))
            for cs in self.rng.sample(market.active, held):
                self.open_position(acct, cs, near_liq=self.rng.random() < config.near_liq_fraction)
        self._seed_vaults()

    def _new_account(self) -> Account:
        while True:
            address = f"0x{self.rng.getrandbits(160):040x}"
            if address not in self.accounts:
                break
        acct = self.accounts[address] = Account(address, 0.0)
        self.addresses.append(address)
        return acct

    def _seed_vaults(self) -> None:
        rng = self.rng
        for address, _name in ((HLP_PARENT, ""), *HLP_CHILDREN):
            self.accounts[address] = Account(address, rng.uniform(2e6, 5e6))
        for address, scale in ((HLP_STRATEGY_A, 3e6), (HLP_STRATEGY_B, 1e6), (HLP_LIQUIDATOR, 1e5)):
            acct = self.accounts[address]
            for cs in self.market.active:
                if address == HLP_LIQUIDATOR and rng.random() < 0.5:
                    continue
                long = rng.random() < 0.5
                sz = scale * cs.spec.weight * rng.uniform(0.2, 1.0) / cs.mark
                self._set(acct, cs, sz if long else -sz, cs.mark * math.exp(rng.gauss(0, 0.01)), 20)

    def _set(self, acct: Account, cs: CoinState, szi: float, entry: float, lev: int) -> None:
        """A vault-style position: cross, very low effective leverage."""
        mmr = 1 / (2 * cs.spec.max_leverage)
        acct.positions[cs.name] = Position(
            cs.name, szi, entry, lev, False, liquidation_px(entry, szi > 0, 1.2, mmr)
        )

    # --- positions -------------------------------------------------------------------------

    def open_position(
        self, acct: Account, cs: CoinState, near_liq: bool, long: bool | None = None
    ) -> Position:
        rng = self.rng
        max_lev = cs.spec.max_leverage
        mmr = 1 / (2 * max_lev)
        mark = cs.mark
        long = rng.random() < 0.55 if long is None else long
        notional = min(5e7, 300.0 * rng.paretovariate(1.1))
        if near_liq:
            lev = rng.randint(max(5, max_lev // 2), max_lev)
            d = rng.uniform(0.01, 0.02)
            liq: float | None = mark * (1 - d) if long else mark * (1 + d)
            assert liq is not None
            entry = liq * (1 - mmr) / (1 - 1 / lev) if long else liq * (1 + mmr) / (1 + 1 / lev)
            eff = float(lev)
        else:
            lev = rng.choice([x for x in LEVERAGES if x <= max_lev])
            eff = lev * rng.uniform(0.2, 1.0)
            entry = mark * math.exp(rng.gauss(0.0, 0.03))
            liq = liquidation_px(entry, long, eff, mmr)
            if liq is not None and (liq > 0.97 * mark if long else liq < 1.03 * mark):
                entry = mark
                liq = liquidation_px(entry, long, eff, mmr)
        step = 10.0**-cs.sz_decimals
        size = max(step, round(notional / mark / step) * step)
        pos = Position(
            cs.name,
            size if long else -size,
            entry,
            lev,
            rng.random() < 0.15,
            liq,
            cum_all=rng.gauss(0.0, 0.01) * notional,
            cum_open=rng.gauss(0.0, 0.002) * notional,
        )
        acct.positions[cs.name] = pos
        acct.collateral += size * entry / eff * rng.uniform(1.0, 1.2)
        return pos

    def close(self, address: str, coin: str) -> Position | None:
        acct = self.accounts.get(address)
        return acct.positions.pop(coin, None) if acct is not None else None

    def absorb(self, address: str, coin: str, signed_sz: float, px: float) -> None:
        """Add a fill to a (vault) account: a backstop transfers the victim's position here."""
        acct = self.accounts.setdefault(address, Account(address, 1e6))
        cs = self.market.coins[coin]
        old = acct.positions.get(coin)
        if old is None:
            self._set(acct, cs, signed_sz, px, 20)
            return
        new = old.szi + signed_sz
        if abs(new) < 10.0**-cs.sz_decimals / 2:
            del acct.positions[coin]
        elif (new > 0) == (old.szi > 0):
            entry = old.entry_px
            if abs(new) > abs(old.szi):
                entry = (old.szi * old.entry_px + signed_sz * px) / new
            self._set(acct, cs, new, entry, old.leverage)
        else:
            self._set(acct, cs, new, px, old.leverage)

    def crossed(self) -> list[tuple[Account, Position]]:
        """Trader positions whose liquidation price the mark has reached."""
        out = []
        for address in self.addresses:
            acct = self.accounts[address]
            for pos in acct.positions.values():
                if pos.liq_px is None:
                    continue
                mark = self.market.coins[pos.coin].mark
                if (mark <= pos.liq_px) if pos.szi > 0 else (mark >= pos.liq_px):
                    out.append((acct, pos))
        return out

    def pick_victim(
        self, coin: str | None, side: str | None, user: str | None
    ) -> tuple[Account, Position]:
        """The requested position, else the one closest to liquidation, else a new one."""
        if side not in (None, "long", "short") or (
            coin is not None and coin not in self.market.coins
        ):
            raise ValueError(f"no such coin or side: {coin!r}, {side!r} (side is long or short)")
        long = None if side is None else side == "long"
        coins = [self.market.coins[coin]] if coin else self.market.active
        names = {c.name for c in coins}
        owner = None
        if user is not None:
            owner = self.accounts.setdefault(user.lower(), Account(user.lower(), 0.0))
        pool = [owner] if owner is not None else [self.accounts[a] for a in self.addresses]
        candidates = [
            (acct, p)
            for acct in pool
            for p in acct.positions.values()
            if p.coin in names
            and long in (None, p.szi > 0)
            and (owner is not None or p.liq_px is not None)
        ]
        if candidates:
            return min(candidates, key=lambda ap: self._distance(ap[1]))
        cs = coins[0] if coin else self.rng.choice(coins)
        if owner is None:
            free = [a for a in self.addresses if cs.name not in self.accounts[a].positions]
            owner = self.accounts[self.rng.choice(free or self.addresses)]
        return owner, self.open_position(owner, cs, near_liq=True, long=long)

    def _distance(self, pos: Position) -> float:
        mark = self.market.coins[pos.coin].mark
        return abs(mark - pos.liq_px) / mark if pos.liq_px is not None else math.inf

    def evolve(self) -> None:
        """Touch a few accounts: close a position, open one, or resize one."""
        rng = self.rng
        for _ in range(max(1, int(len(self.addresses) * self.config.evolve_fraction))):
            acct = self.accounts[rng.choice(self.addresses)]
            r = rng.random()
            if acct.positions and r < 0.35:
                del acct.positions[rng.choice(sorted(acct.positions))]
            elif r < 0.7:
                free = [cs for cs in self.market.active if cs.name not in acct.positions]
                if free:
                    near = rng.random() < self.config.near_liq_fraction
                    self.open_position(acct, rng.choice(free), near_liq=near)
            elif acct.positions:
                pos = acct.positions[rng.choice(sorted(acct.positions))]
                step = 10.0 ** -self.market.coins[pos.coin].sz_decimals
                pos.szi = math.copysign(
                    max(step, round(abs(pos.szi) * rng.uniform(0.7, 1.3) / step) * step), pos.szi
                )

    # --- wire ------------------------------------------------------------------------------

    def clearinghouse_state(self, address: str, time: int) -> dict[str, Any]:
        acct = self.accounts.get(address) or Account(address, 0.0)
        positions: list[dict[str, Any]] = []
        ntl = margin = upnl_sum = signed_ntl = 0.0
        c_ntl = c_margin = c_upnl = c_signed = c_mm = 0.0
        for pos in acct.positions.values():
            cs = self.market.coins[pos.coin]
            mark = cs.mark
            value = abs(pos.szi) * mark
            upnl = pos.szi * (mark - pos.entry_px)
            used = value / pos.leverage
            ntl, margin, upnl_sum, signed_ntl = (
                ntl + value,
                margin + used,
                upnl_sum + upnl,
                signed_ntl + pos.szi * mark,
            )
            if not pos.isolated:
                c_ntl, c_margin, c_upnl = c_ntl + value, c_margin + used, c_upnl + upnl
                c_signed += pos.szi * mark
                c_mm += value / (2 * cs.spec.max_leverage)
            leverage: dict[str, Any] = {
                "type": "isolated" if pos.isolated else "cross",
                "value": pos.leverage,
            }
            if pos.isolated:
                leverage["rawUsd"] = fmt(-pos.szi * pos.entry_px + used, 6)
            positions.append(self._position(cs, pos, leverage, value, upnl, used))
        account_value = acct.collateral + upnl_sum
        cross_value = acct.collateral - (margin - c_margin) + c_upnl

        def summary(value: float, total_ntl: float, signed: float, used: float) -> dict[str, str]:
            return {
                "accountValue": fmt(value, 6),
                "totalNtlPos": fmt(total_ntl, 6),
                "totalRawUsd": fmt(value - signed, 6),
                "totalMarginUsed": fmt(used, 6),
            }

        return {
            "marginSummary": summary(account_value, ntl, signed_ntl, margin),
            "crossMarginSummary": summary(cross_value, c_ntl, c_signed, c_margin),
            "crossMaintenanceMarginUsed": fmt(c_mm, 6),
            "withdrawable": fmt(max(0.0, account_value - margin), 6),
            "assetPositions": positions,
            "time": time,
        }

    @staticmethod
    def _position(
        cs: CoinState,
        pos: Position,
        leverage: dict[str, Any],
        value: float,
        upnl: float,
        used: float,
    ) -> dict[str, Any]:
        equity = abs(pos.szi) * pos.entry_px / pos.leverage
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
                "liquidationPx": None if pos.liq_px is None else sig(pos.liq_px, 11),
                "marginUsed": fmt(used, 6),
                "maxLeverage": cs.spec.max_leverage,
                "cumFunding": {
                    "allTime": fmt(pos.cum_all, 6),
                    "sinceOpen": fmt(pos.cum_open, 6),
                    "sinceChange": "0.0",
                },
            },
        }
