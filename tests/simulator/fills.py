"""Per-account fills behind userFills: cheap references per trade, fill objects built on request."""

from __future__ import annotations

from collections import deque
from typing import Any

from .config import LIQUIDATOR_VAULTS
from .ledger import Row
from .population import Population
from .wire import fmt

TAKER_FEE = 0.00045
MAKER_FEE = 0.00015

# (trade row, is_buyer, crossed, start_szi, entry_px, liquidation object or None, dir override)
FillRef = tuple[Row, bool, bool, float, float, dict[str, str] | None, str | None]


def direction(start: float, signed: float) -> str:
    """The `dir` label of a fill from the position before it and the signed fill size."""
    if signed > 0:
        if start >= 0:
            return "Open Long"
        return "Close Short" if signed <= -start else "Short > Long"
    if start <= 0:
        return "Open Short"
    return "Close Long" if -signed <= start else "Long > Short"


class Fills:
    """Newest `max_fills` fills per address (positions are not moved by ordinary fills)."""

    def __init__(self, population: Population, max_fills: int) -> None:
        self.population = population
        self.accounts = population.accounts
        self.max_fills = max_fills
        self.by_user: dict[str, deque[FillRef]] = {}

    def add(
        self,
        user: str,
        trade: Row,
        is_buyer: bool,
        crossed: bool,
        liquidation: dict[str, str] | None = None,
        dir_override: str | None = None,
    ) -> None:
        acct = self.accounts.get(user)  # the position before the fill (startPosition, PnL)
        pos = acct.positions.get(trade[0]) if acct is not None else None
        start, entry = (pos.szi, pos.entry_px) if pos is not None else (0.0, 0.0)
        fills = self.by_user.get(user)
        if fills is None:
            fills = self.by_user[user] = deque(maxlen=self.max_fills)
        fills.append((trade, is_buyer, crossed, start, entry, liquidation, dir_override))

    def user_fills(
        self, user: str, start: int | None = None, end: int | None = None
    ) -> list[dict[str, Any]]:
        """All kept fills newest first, or those with start <= time <= end oldest first."""
        refs = list(self.by_user.get(user, ()))
        if start is None:
            return [self._fill(user, ref) for ref in reversed(refs)]
        last = end if end is not None else 2**63
        return [self._fill(user, ref) for ref in refs if start <= ref[0][1] <= last]

    def _fill(self, user: str, ref: FillRef) -> dict[str, Any]:
        (coin, time, tid, _, px_s, sz_s, _, _, hash_), is_buyer, crossed = ref[:3]
        start, entry, liquidation, dir_override = ref[3:]
        cs = self.population.market.coins[coin]
        px, sz = float(px_s), float(sz_s)
        signed = sz if is_buyer else -sz
        closing = min(abs(start), sz) if start and (start > 0) != (signed > 0) else 0.0
        pnl = closing * (px - entry) * (1 if start > 0 else -1)
        backstop_vault = liquidation is not None and user in LIQUIDATOR_VAULTS
        fee = 0.0 if backstop_vault else px * sz * (TAKER_FEE if crossed else MAKER_FEE)
        fill: dict[str, Any] = {
            "coin": coin,
            "px": px_s,
            "sz": sz_s,
            "side": "B" if is_buyer else "A",
            "time": time,
            "startPosition": cs.sz(start),
            "dir": dir_override or direction(start, signed),
            "closedPnl": fmt(pnl, 6),
            "hash": hash_,
            "oid": (tid * 2654435761 + is_buyer) % 900_000_000_000 + 100_000_000_000,
            "crossed": crossed,
            "fee": fmt(fee, 6),
            "tid": tid,
        }
        if liquidation is not None:
            fill["liquidation"] = liquidation
        fill["feeToken"] = "USDC"
        fill["twapId"] = None
        return fill
