"""Per-account fills behind userFills: cheap references per trade, fill objects built on request.

The position before the fill and the fee come from the bookkeeping (`Population.fill`), so a
fill's startPosition, closedPnl and fee are what moved the account."""

from __future__ import annotations

from collections import deque
from typing import Any

from .ledger import Deal
from .population import Population
from .wire import fmt


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
    """Newest `max_fills` fills per address."""

    def __init__(self, population: Population, max_fills: int) -> None:
        self.population = population
        self.max_fills = max_fills
        self.by_user: dict[str, deque[Deal]] = {}

    def of(self, user: str) -> deque[Deal]:
        """The fills deque of `user`, created empty if it has none."""
        fills = self.by_user.get(user)
        if fills is None:
            fills = self.by_user[user] = deque(maxlen=self.max_fills)
        return fills

    def user_fills(
        self, user: str, start: int | None = None, end: int | None = None
    ) -> list[dict[str, Any]]:
        """All kept fills newest first, or those with start <= time <= end oldest first."""
        refs = list(self.by_user.get(user, ()))
        if start is None:
            return [self._fill(user, ref) for ref in reversed(refs)]
        last = end if end is not None else 2**63
        return [self._fill(user, ref) for ref in refs if start <= ref[0][1] <= last]

    def _fill(self, user: str, ref: Deal) -> dict[str, Any]:
        (coin, time, tid, _, px_s, sz_s, buyer, _, hash_), buyer_took = ref[0], ref[1]
        is_buyer = user == buyer
        crossed = buyer_took is is_buyer
        start, entry, _, _, _, fee = ref[2] if is_buyer else ref[3]
        liquidation, labels = ref[4], ref[5]
        dir_override = None if labels is None else labels[0 if is_buyer else 1]
        cs = self.population.market.coins[coin]
        px, sz = float(px_s), float(sz_s)
        signed = sz if is_buyer else -sz
        closing = min(abs(start), sz) if start and (start > 0) != (signed > 0) else 0.0
        pnl = closing * (px - entry) * (1 if start > 0 else -1)
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
