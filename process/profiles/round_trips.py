"""Round trips from one account's fills: FIFO lots per coin, from flat back to flat.

A round trip opens when a coin's position leaves flat and closes when it is flat again; a fill
that flips the position closes one trip and opens the next with its remainder. Inside a trip,
opening fills add lots and reducing fills consume the oldest lots first (FIFO).

PnL, and what is exact: over a whole flat-to-flat trip the realized PnL before fees is what
the fills' prices and sizes moved (sells minus buys), whatever the cost method: `gross_pnl`,
computed by FIFO lot matching from `px` and `sz` (exact decimals as sent). `fees` is the sum
of `fee` over every fill of the trip (exact: what was charged; signed, a maker rebate is
negative; builder fees included; a flip fill's fee is split between its two trips by size).
`net_pnl = gross_pnl - fees` is what the profile figures use. The exchange's own `closedPnl`
(before fees, against its average entry price) is summed as `closed_pnl` for comparison: today
it equals `gross_pnl` up to its 6-decimal rounding, but the 2023 recordings disagree by up to
a few %, so it is not relied on.

Each fill states the position before it (`startPosition`), and that is trusted: a fill whose
start does not follow from the fills before it shows fills we never got (older than the window,
beyond the 10 000 the exchange keeps): the trip in progress is dropped, and a position already
open when the fills begin is skipped until it is flat again. The fills of those, and of a trip
still open at the end, are `unmatched`. Fills of one millisecond are chained by their start
positions, whatever order they came in; a self-trade (two fills of one millisecond with the same
start, price and size, one buy, one sell) moves nothing and is left out (unmatched). Spot
fills (`@N` and `X/Y` coins, `Buy`/`Sell`) are left out: spot has no position to go round.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from validate import Fill

PositionSide = Literal["long", "short"]
_ZERO = Decimal(0)
_SPOT_DIRS = frozenset({"Buy", "Sell", "Spot Dust Conversion"})


def is_perp(fill: Fill) -> bool:
    """False for spot fills (`@107`, `PURR/USDC`, dir `Buy`/`Sell`/`Spot Dust Conversion`)."""
    return not (fill.coin.startswith("@") or "/" in fill.coin or fill.direction in _SPOT_DIRS)


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One position from flat to flat in one coin. Sizes in base units, prices and PnL in USDC,
    times in ms; `entry_px`/`exit_px` are the VWAPs of the opening/closing fills; `fills`
    counts a flip fill in both of its trips."""

    coin: str
    side: PositionSide
    open_ms: int
    close_ms: int
    size: Decimal
    entry_px: Decimal
    exit_px: Decimal
    gross_pnl: Decimal
    fees: Decimal
    closed_pnl: Decimal
    fills: int

    @property
    def net_pnl(self) -> Decimal:
        """Realized PnL net of fees: FIFO-matched price PnL less every fill's fee."""
        return self.gross_pnl - self.fees

    @property
    def pnl_pct(self) -> float:
        """`net_pnl` in % of the entry notional (every opening fill's size x price)."""
        return float(self.net_pnl / (self.entry_px * self.size) * 100)

    @property
    def hold_ms(self) -> int:
        return self.close_ms - self.open_ms


@dataclass(frozen=True, slots=True)
class Matched:
    """What matching found: closed trips (by close time), fills in none of them, and how
    often a fill's start position showed fills missing in between (`gaps`)."""

    trips: list[RoundTrip]
    fills: int
    unmatched_fills: int
    gaps: int


@dataclass
class _Trip:
    """A trip in progress."""

    side: PositionSide
    open_ms: int
    lots: deque[list[Decimal]] = field(default_factory=deque)  # [size left, px], oldest first
    size: Decimal = _ZERO
    entry_notional: Decimal = _ZERO
    closed: Decimal = _ZERO
    exit_notional: Decimal = _ZERO
    closed_pnl: Decimal = _ZERO
    fees: Decimal = _ZERO
    gross: Decimal = _ZERO
    fill_ids: list[int] = field(default_factory=list)

    def add(self, index: int, px: Decimal, sz: Decimal, fee: Decimal) -> None:
        self.lots.append([sz, px])
        self.size += sz
        self.entry_notional += sz * px
        self.fees += fee
        self._note(index)

    def reduce(
        self, index: int, px: Decimal, sz: Decimal, closed_pnl: Decimal, fee: Decimal
    ) -> None:
        sign = 1 if self.side == "long" else -1
        left = sz
        while left > 0 and self.lots:
            lot = self.lots[0]
            take = min(left, lot[0])
            self.gross += sign * (px - lot[1]) * take
            lot[0] -= take
            left -= take
            if lot[0] == 0:
                self.lots.popleft()
        self.closed += sz
        self.exit_notional += sz * px
        self.closed_pnl += closed_pnl
        self.fees += fee
        self._note(index)

    def _note(self, index: int) -> None:
        if not self.fill_ids or self.fill_ids[-1] != index:
            self.fill_ids.append(index)

    def finish(self, coin: str, close_ms: int) -> RoundTrip:
        return RoundTrip(
            coin=coin,
            side=self.side,
            open_ms=self.open_ms,
            close_ms=close_ms,
            size=self.size,
            entry_px=self.entry_notional / self.size,
            exit_px=self.exit_notional / self.closed,
            gross_pnl=self.gross,
            fees=self.fees,
            closed_pnl=self.closed_pnl,
            fills=len(self.fill_ids),
        )


def match_round_trips(fills: Iterable[Fill]) -> Matched:
    """Round trips of every perp coin in `fills` (any order; duplicates must be removed)."""
    by_coin: dict[str, list[Fill]] = defaultdict(list)
    for fill in sorted((f for f in fills if is_perp(f)), key=lambda f: f.time_ms):
        by_coin[fill.coin].append(fill)
    trips: list[RoundTrip] = []
    total = matched = gaps = 0
    for coin, coin_fills in by_coin.items():
        coin_trips, coin_matched, coin_gaps = _match_coin(coin, _chained(coin_fills))
        trips += coin_trips
        total += len(coin_fills)
        matched += coin_matched
        gaps += coin_gaps
    trips.sort(key=lambda t: (t.close_ms, t.open_ms, t.coin))
    return Matched(trips, total, total - matched, gaps)


def _chained(fills: Sequence[Fill]) -> list[Fill]:
    """One coin's fills (sorted by time), each millisecond's ordered so that every fill starts
    where the one before it left the position (when they can be: else as they came)."""
    out: list[Fill] = []
    pos: Decimal | None = None
    i = 0
    while i < len(fills):
        j = i
        while j < len(fills) and fills[j].time_ms == fills[i].time_ms:
            j += 1
        group = _without_self_trades(fills[i:j])
        while group:
            pick = next((f for f in group if f.start_position == pos), group[0])
            group.remove(pick)
            out.append(pick)
            pos = pick.start_position + _signed(pick)
        i = j
    return out


def _without_self_trades(group: Sequence[Fill]) -> list[Fill]:
    """One millisecond's fills less the pairs that are the account trading with itself."""
    left = list(group)
    for buy in [f for f in group if f.side == "buy"]:
        twin = next(
            (
                f
                for f in left
                if f.side == "sell"
                and (f.px, f.sz, f.start_position) == (buy.px, buy.sz, buy.start_position)
            ),
            None,
        )
        if twin is not None:
            left.remove(buy)
            left.remove(twin)
    return left


def _signed(fill: Fill) -> Decimal:
    return fill.sz if fill.side == "buy" else -fill.sz


def _match_coin(coin: str, fills: list[Fill]) -> tuple[list[RoundTrip], int, int]:
    """(closed trips, fills in them, gaps) of one coin's chained fills."""
    trips: list[RoundTrip] = []
    matched: set[int] = set()
    pos = _ZERO
    trip: _Trip | None = None
    skipping = False  # the position's opening was not seen: wait until it is flat
    gaps = 0
    for index, fill in enumerate(fills):
        start, signed = fill.start_position, _signed(fill)
        if start != pos:
            gaps += index > 0
            trip, skipping = None, start != 0
        closing = min(fill.sz, abs(start)) if start and (start > 0) != (signed > 0) else _ZERO
        opening = fill.sz - closing
        fee = fill.fee or _ZERO
        close_fee = fee * closing / fill.sz
        if closing:
            if trip is not None:
                trip.reduce(index, fill.px, closing, fill.closed_pnl, close_fee)
            if closing == abs(start):  # flat again
                if trip is not None:
                    trips.append(trip.finish(coin, fill.time_ms))
                    matched.update(trip.fill_ids)
                trip, skipping = None, False
        if opening and not skipping:
            if trip is None:
                trip = _Trip("long" if signed > 0 else "short", fill.time_ms)
            trip.add(index, fill.px, opening, fee - close_fee)
        pos = start + signed
    return trips, len(matched), gaps
