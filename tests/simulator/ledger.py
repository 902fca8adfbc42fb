"""Ground truth of everything the simulator emitted or served, for exact test assertions."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Row = tuple[str, int, int, str, str, str, str, str, str]  # TradeRecord's fields as a plain tuple


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
