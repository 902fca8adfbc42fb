"""Liquidations detected in the public trade stream, which carries no liquidation flag (API.md 5).

Two methods, both inferences from `users` (buyer, seller) and the taker `side`:

- backstop: a liquidator vault (HLP child, found by vault discovery) takes a position over, as
  the taker. The position liquidated comes from `users`, never from the taker side: the vault
  is the buyer -> a long was liquidated, the vault is the seller -> a short was. The other party
  of the transfer is the liquidated account, so `user` is set. Trades where the vault is the
  maker are its ordinary unwinding of positions it took over (recorded liquidator fills: "Close
  Short", `crossed: false`) and are not liquidations; the taker side is used only for that test.
  Unconfirmed (API.md 8): that a backstop's taker side on the trades stream is the vault's.
  A vault unwinding as taker is indistinguishable from a backstop here (a known false positive).
- market: the engine sends the victim's position into the book, so the victim is the taker.
  Only a tracked address can be recognized: its trade as taker that reduces its position on the
  coin at or beyond the liquidation price it had at its last poll (long: px <= liq_px; short:
  px >= liq_px, widened by `tolerance`). A voluntary close past the liquidation price looks the
  same, and a liquidation at a price the last poll did not foresee is missed.

Events are a pure function of the trade (and, for market, the position view at detection time),
so a replayed trade gives the same event, which the point builder stamps with the same timestamp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from validate import Trade

LiquidatedSide = Literal["long", "short"]
Method = Literal["backstop", "market"]


class PositionView(Protocol):
    """What the detector needs of a tracked position (`validate.Position` fits)."""

    @property
    def szi(self) -> Decimal:
        """Signed size in base units: > 0 long, < 0 short."""
        ...

    @property
    def liquidation_px(self) -> Decimal | None: ...


PositionLookup = Callable[[str], Mapping[str, PositionView]]
"""address -> coin -> its last known position; an empty mapping for an untracked address."""


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    """One liquidation trade. `side` is the position liquidated; `user` the liquidated account
    when known. Prices in USDC, sizes in base units, `time_ms` and `tid` those of the trade."""

    coin: str
    side: LiquidatedSide
    method: Method
    px: Decimal
    sz: Decimal
    tid: int
    time_ms: int
    user: str | None = None

    @property
    def notional(self) -> Decimal:
        """px * sz in USDC."""
        return self.px * self.sz


class LiquidationDetector:
    """Finds backstop liquidations (liquidator vault as taker) and market liquidations of
    tracked addresses in batches of trades.

    `liquidators`: liquidator vault addresses (any case). `positions`: the last polled positions
    of tracked addresses, or None to detect backstops only. `tolerance`: a fraction by which a
    market trade's price may stay short of the liquidation price (0.001 = 0.1 %), for liquidation
    prices that moved since the poll. `vault_must_take`: False counts every trade of a liquidator
    vault as a backstop, in case the stream shows backstops with the victim as taker. `mark`:
    coin -> its latest mark price; a taker that cuts a position whose liquidation price the mark
    has crossed is flagged too, whatever the trade's price (the exchange liquidates on the mark,
    and the liquidating order may fill on the far side of the liquidation price).
    """

    def __init__(
        self,
        liquidators: Iterable[str],
        positions: PositionLookup | None = None,
        *,
        tolerance: Decimal = Decimal(0),
        vault_must_take: bool = True,
        mark: Callable[[str], Decimal | None] | None = None,
    ) -> None:
        if tolerance < 0:
            raise ValueError("tolerance must be >= 0")
        self._liquidators: frozenset[str] = frozenset()
        self.update_liquidators(liquidators)
        self._positions = positions
        self._long_factor = 1 + tolerance
        self._short_factor = 1 - tolerance
        self._vault_must_take = vault_must_take
        self._mark = mark

    @property
    def liquidators(self) -> frozenset[str]:
        return self._liquidators

    def update_liquidators(self, addresses: Iterable[str]) -> None:
        """Replace the liquidator vault set (after HLP vault discovery)."""
        self._liquidators = frozenset(address.lower() for address in addresses)

    def detect(self, trades: Iterable[Trade]) -> list[LiquidationEvent]:
        """The liquidations among `trades`, in trade order (at most one per trade)."""
        liquidators = self._liquidators
        positions = self._positions
        events: list[LiquidationEvent] = []
        for trade in trades:
            buyer, seller = trade.buyer, trade.seller
            if buyer in liquidators or seller in liquidators:
                event = self._backstop(trade, buyer in liquidators, seller in liquidators)
            elif positions is not None:
                held = positions(buyer if trade.side == "buy" else seller)  # the taker's
                if not held:
                    continue  # nearly every trade: an untracked or flat taker
                event = self._market(trade, held)
            else:
                continue
            if event is not None:
                events.append(event)
        return events

    def _backstop(
        self, trade: Trade, buyer_is_vault: bool, seller_is_vault: bool
    ) -> LiquidationEvent | None:
        if buyer_is_vault == seller_is_vault:  # a trade between two vaults moves no victim
            return None
        if self._vault_must_take and (trade.side == "buy") != buyer_is_vault:
            return None  # the vault is the maker: unwinding, not a takeover
        side: LiquidatedSide = "long" if buyer_is_vault else "short"
        victim = trade.seller if buyer_is_vault else trade.buyer
        return _event(trade, side, "backstop", victim)

    def _market(self, trade: Trade, held: Mapping[str, PositionView]) -> LiquidationEvent | None:
        taker = trade.buyer if trade.side == "buy" else trade.seller
        position = held.get(trade.coin)
        if position is None:
            return None
        szi = position.szi
        long_cut = szi > 0 and trade.side == "sell"
        if not long_cut and not (szi < 0 and trade.side == "buy"):
            return None  # the taker adds to its position: no liquidation price needed
        liq_px = position.liquidation_px
        if liq_px is None:
            return None
        mark = None if self._mark is None else self._mark(trade.coin)
        if long_cut and (
            trade.px <= liq_px * self._long_factor or (mark is not None and mark <= liq_px)
        ):
            return _event(trade, "long", "market", taker)
        if not long_cut and (
            trade.px >= liq_px * self._short_factor or (mark is not None and mark >= liq_px)
        ):
            return _event(trade, "short", "market", taker)
        return None


def _event(trade: Trade, side: LiquidatedSide, method: Method, user: str) -> LiquidationEvent:
    return LiquidationEvent(
        trade.coin, side, method, trade.px, trade.sz, trade.tid, trade.time_ms, user
    )
