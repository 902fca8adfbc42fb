"""Ground truth of everything the simulator emitted or served, for exact test assertions."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Row = tuple[str, int, int, str, str, str, str, str, str]  # TradeRecord's fields as a plain tuple
# What one party's position did in a fill: (szi before, entry before (0.0 when flat), szi
# after, entry after (None when flat), kind, fee)
Move = tuple[float, float, float, float | None, str, float]
# One trade as settled, kept once and shared by the ledger's position changes and both parties'
# userFills: (trade row, buyer took, buyer's Move, seller's Move, liquidation object or None,
# (buyer's, seller's) fill `dir` overrides or None)
Deal = tuple[Row, bool, Move, Move, dict[str, str] | None, tuple[str | None, str | None] | None]


def row_of(t: dict[str, Any]) -> Row:
    """The ledger row of a wire trade (plain tuples of atoms are not tracked by the GC)."""
    buyer, seller = t["users"]
    return (t["coin"], t["time"], t["tid"], t["side"], t["px"], t["sz"], buyer, seller, t["hash"])


class TradeRecord(NamedTuple):
    """One distinct trade as emitted (strings exactly as on the wire)."""

    coin: str
    time: int
    tid: int
    side: str  # taker side: B = buyer lifted the ask, A = seller hit the bid
    px: str
    sz: str
    buyer: str
    seller: str
    hash: str

    @classmethod
    def of(cls, t: dict[str, Any]) -> TradeRecord:
        return cls._make(row_of(t))

    @property
    def key(self) -> tuple[str, int, int]:
        return self.coin, self.time, self.tid


class MalformedRecord(NamedTuple):
    """A record sent inside an otherwise good frame (or a whole bad frame) that is not a trade."""

    coin: str | None
    raw: Any  # the record (dict) or the frame text
    reason: str
    time: int


class LiquidationRecord(NamedTuple):
    """One liquidation trade; `side` is the position liquidated (long/short)."""

    coin: str
    time: int
    tid: int
    side: str
    px: str
    sz: str
    user: str  # the liquidated account
    method: str  # backstop | market
    counterparty: str  # liquidator vault (backstop) or maker (market)
    mark_px: str
    hash: str


class PositionChange(NamedTuple):
    """One change of one account's position: every fill makes one per party.

    Sizes are signed base units (floats rounded to the coin's szDecimals), prices floats;
    `entry_*` is None while flat. `kind`: entry (from flat), exit (to flat), flip (through
    flat), increase or decrease. `source`: the trade's (coin, time, tid), or "liquidation" for
    the fills of a liquidation trade (the trade is still (coin, time, tid))."""

    time: int
    address: str
    coin: str
    tid: int
    szi_before: float
    szi_after: float
    entry_before: float | None
    entry_after: float | None
    px: float
    kind: str
    source: tuple[str, int, int] | str

    @property
    def trade_key(self) -> tuple[str, int, int]:
        return self.coin, self.time, self.tid

    @property
    def signed_sz(self) -> float:
        return self.szi_after - self.szi_before


class Holding(NamedTuple):
    """A position as of some time: signed size (0.0 when flat) and entry price (None when flat)."""

    szi: float
    entry_px: float | None


class Transfer(NamedTuple):
    """Cash that moved without a fill: a deposit (usd > 0) or withdrawal into the cross account
    (`coin` None) or the isolated margin of the position in `coin`."""

    time: int
    address: str
    coin: str | None
    usd: float
    reason: str


class CtxPoll(NamedTuple):
    time: int
    ctxs: dict[str, dict[str, Any]]


class PositionsServed(NamedTuple):
    time: int
    address: str
    positions: list[dict[str, Any]]  # the `position` objects as served


@dataclass
class Ledger:
    """Append-only record; the `max_*` bounds drop the oldest records, never the counters."""

    max_trades: int | None = None
    max_records: int | None = None
    trades: deque[Row] = field(init=False)
    ctx_polls: deque[CtxPoll] = field(init=False)
    positions: deque[PositionsServed] = field(init=False)
    ws_errors_sent: deque[str] = field(init=False)
    rest_served: deque[tuple[int, str]] = field(init=False)  # (time, type) of each answer given
    ws_opened: deque[int] = field(init=False)  # time of each accepted WebSocket upgrade
    deals: deque[Deal] = field(init=False)  # settled trades: see position_changes()
    transfers: deque[Transfer] = field(init=False)
    # (address, coin) -> the current Holding: answers position_at() when nothing is recorded
    current: Callable[[str, str], Holding] | None = None
    trade_counts: Counter[str] = field(default_factory=Counter)
    malformed: list[MalformedRecord] = field(default_factory=list)
    liquidations: list[LiquidationRecord] = field(default_factory=list)
    rest_requests: Counter[str] = field(default_factory=Counter)
    rest_weight: Counter[str] = field(default_factory=Counter)
    rest_429: Counter[str] = field(default_factory=Counter)
    rest_422: int = 0
    ws_connections: int = 0
    ws_forced_disconnects: int = 0
    ws_disconnect_events: list[tuple[int, int]] = field(default_factory=list)  # (time, sockets)
    ws_idle_drops: int = 0
    ws_slow_drops: int = 0
    ws_rejected_upgrades: int = 0
    frames_sent: int = 0

    def __post_init__(self) -> None:
        self.trades = deque(maxlen=self.max_trades)
        self.ctx_polls = deque(maxlen=self.max_records)
        self.positions = deque(maxlen=self.max_records)
        self.ws_errors_sent = deque(maxlen=self.max_records)
        self.rest_served = deque(maxlen=self.max_records)
        self.ws_opened = deque(maxlen=self.max_records)
        self.deals = deque(maxlen=self.max_records)
        self.transfers = deque(maxlen=self.max_records)

    # --- recording (hot path first) --------------------------------------------------------

    def add_trades(self, coin: str, rows: list[Row]) -> None:
        self.trades.extend(rows)
        self.trade_counts[coin] += len(rows)

    def add_malformed(self, coin: str | None, raw: Any, reason: str, time: int) -> None:
        self.malformed.append(MalformedRecord(coin, raw, reason, time))

    # --- queries ---------------------------------------------------------------------------

    def valid_trades(self, coin: str | None = None) -> list[TradeRecord]:
        """Distinct valid trades in emission order (oldest first)."""
        make = TradeRecord._make
        return [make(r) for r in self.trades if coin is None or r[0] == coin]

    def trade_keys(self, coin: str | None = None) -> set[tuple[str, int, int]]:
        return {(r[0], r[1], r[2]) for r in self.trades if coin in (None, r[0])}

    def trade_count(self, coin: str | None = None) -> int:
        """Exact number of valid trades emitted (also past `max_trades`)."""
        return self.trade_counts.total() if coin is None else self.trade_counts[coin]

    def find_trade(self, coin: str, time: int, tid: int) -> TradeRecord | None:
        for r in reversed(self.trades):
            if r[2] == tid and r[1] == time and r[0] == coin:
                return TradeRecord._make(r)
        return None

    def liquidations_of(
        self, coin: str | None = None, method: str | None = None
    ) -> list[LiquidationRecord]:
        return [
            r for r in self.liquidations if coin in (None, r.coin) and method in (None, r.method)
        ]

    def position_changes(
        self, address: str | None = None, coin: str | None = None
    ) -> list[PositionChange]:
        """Every kept position change (oldest first; a trade's buyer before its seller), of one
        address and/or coin if given. Kept: the newest `max_records` trades' changes."""
        address = address.lower() if address is not None else None
        out = []
        for deal in self.deals:
            row = deal[0]
            if coin is not None and row[0] != coin:
                continue
            if address is None or row[6] == address:
                out.append(_change(deal, True))
            if address is None or row[7] == address:
                out.append(_change(deal, False))
        return out

    def position_at(self, address: str, coin: str, time_ms: int) -> Holding:
        """The position after every change at or before `time_ms` (what a clearinghouseState
        stamped `time_ms` serves). Exact back to the oldest kept change (`max_records`); before
        that, the state just before it. Without any kept change, the current position."""
        address = address.lower()
        last: Move | None = None
        for deal in self.deals:
            row = deal[0]
            if row[0] != coin or address not in (row[6], row[7]):
                continue
            move = deal[2] if row[6] == address else deal[3]
            if row[1] > time_ms:
                if last is None:
                    return Holding(move[0], move[1] if move[0] else None)
                break
            last = move
        if last is not None:
            return Holding(last[2], last[3])
        if self.current is not None:
            return self.current(address, coin)
        return Holding(0.0, None)

    def transfers_of(self, address: str) -> list[Transfer]:
        address = address.lower()
        return [t for t in self.transfers if t.address == address]

    def positions_of(self, address: str) -> list[PositionsServed]:
        address = address.lower()
        return [p for p in self.positions if p.address == address]

    @property
    def rest_weight_used(self) -> int:
        return self.rest_weight.total()

    @property
    def rest_429_count(self) -> int:
        return self.rest_429.total()

    def summary(self) -> dict[str, Any]:
        """Counters only: cheap to serve over HTTP during a benchmark."""
        return {
            "trades": self.trade_count(),
            "trades_by_coin": dict(self.trade_counts),
            "malformed": len(self.malformed),
            "liquidations": len(self.liquidations),
            "liquidations_by_method": dict(Counter(r.method for r in self.liquidations)),
            "ctx_polls": len(self.ctx_polls),
            "positions_served": len(self.positions),
            "position_changes": 2 * len(self.deals),
            "rest_requests": dict(self.rest_requests),
            "rest_weight": self.rest_weight_used,
            "rest_429": self.rest_429_count,
            "rest_422": self.rest_422,
            "ws_connections": self.ws_connections,
            "ws_forced_disconnects": self.ws_forced_disconnects,
            "ws_idle_drops": self.ws_idle_drops,
            "ws_slow_drops": self.ws_slow_drops,
            "ws_rejected_upgrades": self.ws_rejected_upgrades,
            "ws_errors_sent": len(self.ws_errors_sent),
            "frames_sent": self.frames_sent,
        }


def _change(deal: Deal, buyer: bool) -> PositionChange:
    (coin, time, tid, _, px, _, buyer_address, seller_address, _), liquidation = deal[0], deal[4]
    start, entry, after, entry_after, kind, _ = deal[2] if buyer else deal[3]
    return PositionChange(
        time,
        buyer_address if buyer else seller_address,
        coin,
        tid,
        start,
        after,
        entry if start else None,
        entry_after,
        float(px),
        kind,
        (coin, time, tid) if liquidation is None else "liquidation",
    )
