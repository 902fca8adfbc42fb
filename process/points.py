"""Normalized records -> line-protocol points: the one place records become points.

Every point follows the measurement contract of `db.schema` (DESIGN.md): tags only for bounded
sets, addresses and trade ids in fields, and one type per field forever: prices, sizes, USD
amounts, rates and leverage are floats (also when integral), `tid` and the `*_ms` times of
`trade_gaps` are ints, addresses and reasons are strings. A None value leaves its field out
(`mid_px`, `premium`, `liq_px` when `liquidationPx` is null, `user` when unknown).

Timestamps (ns). Records that can share a millisecond within one series get a slot from the
builder's `TimestampAllocator`, so each distinct record is its own point and a replay overwrites
itself; the series is the measurement plus its full tag set, the record key identifies the record
in it (seed the allocator from InfluxDB with the same series and keys after a restart):

- trades: series ("trades", coin, side), key `tid` (an int) at the trade's ms;
- liquidations: series ("liquidations", coin, side, method), key `tid`;
- positions: series ("positions", coin, side), key `address` at the poll's ms (two addresses
  polled in one instant are two points);
- position_changes: series ("position_changes", coin, kind), key 2 x tid + 1 for the seller's
  fill (a poll's change: tid 0, keyed by its address) at the fill's (snapshot's) ms.

Points unique by their tags are stamped at exactly `time_ms * 10**6`: asset_ctx (one per coin per
poll), hlp_positions and hlp_equity (one per vault, coin and side per poll), trade_gaps (at the
gap's `after_ms`, the last trade seen before it).

Unstorable records. A record InfluxDB could not store as it is (a value beyond the float range,
which would be written as inf; a coin name line protocol cannot carry) is skipped, counted in
`skipped` and handed to `on_skip(record, error)` (e.g. for the quarantine): the rest of the batch
is written.

Closed positions. A (coin, side) an account held at its previous poll and no longer holds is
written once as a closing point: `szi` = 0, `size_usd` = 0 and `unrealized_pnl` = 0, with
`entry_px`, `liq_px` and `leverage` left out (`address` is kept in `positions`). The last point of
a series therefore tells whether the position is still open; the caller passes those pairs as
`closed` (a flip from long to short closes the long).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Protocol

from db.line_protocol import encode_point, series_prefix
from db.schema import (
    ASSET_CTX,
    HLP_EQUITY,
    HLP_POSITIONS,
    LIQUIDATIONS,
    PIPELINE_HEALTH,
    POSITION_CHANGES,
    POSITIONS,
    TRADE_GAPS,
    TRADES,
)
from db.timestamps import NS_PER_MS, TimestampAllocator
from process.liquidations import LiquidationEvent
from process.positions.book import PositionChange
from utils.metrics import Sample
from validate import AssetCtx, ClearinghouseState, Position, Trade

_TRADES = TRADES.name
_LIQUIDATIONS = LIQUIDATIONS.name
_ASSET_CTX = ASSET_CTX.name
_POSITIONS = POSITIONS.name
_HLP_POSITIONS = HLP_POSITIONS.name
_HLP_EQUITY = HLP_EQUITY.name
_TRADE_GAPS = TRADE_GAPS.name
_POSITION_CHANGES = POSITION_CHANGES.name


_Number = Decimal | float
PositionFigures = tuple[_Number, _Number, _Number | None, _Number | None, _Number | None, _Number]
"""A position's (szi, size_usd, entry_px, liq_px, leverage, unrealized_pnl) for `positions`
(e.g. `process.positions.updates.Values`)."""


class GapRecord(Protocol):
    """A stretch of a coin's trade stream that may be missing (e.g. `fetch.ws.Gap`)."""

    @property
    def coin(self) -> str: ...
    @property
    def after_ms(self) -> int: ...
    @property
    def before_ms(self) -> int: ...
    @property
    def reason(self) -> str: ...


class PointBuilder:
    """Turns validated records into lines of line protocol (without trailing newlines).

    Holds the one `TimestampAllocator` (`builder.allocator`) of the records that need slots, so
    use one builder per process, from one thread (the asyncio loop).
    """

    def __init__(
        self,
        allocator: TimestampAllocator | None = None,
        on_skip: Callable[[object, ValueError], None] | None = None,
    ) -> None:
        self.allocator = allocator if allocator is not None else TimestampAllocator()
        self.on_skip = on_skip
        self.skipped = 0
        self._trade_prefixes: dict[tuple[str, str], str] = {}
        self._change_prefixes: dict[tuple[str, str, str], str] = {}

    def _skip(self, record: object, error: ValueError) -> None:
        self.skipped += 1
        if self.on_skip is not None:
            self.on_skip(record, error)

    def trades(self, trades: Iterable[Trade]) -> list[str]:
        """One `trades` point per trade; `side` is the taker side (buy/sell).

        The hot path: the line is formatted directly, with the decimals written as the exact
        decimal text (`str(Decimal)`, which InfluxDB parses to the same float as `float()`
        would give, at a third of the cost). A trade with anything unusual (an exponent, so
        possibly beyond the float range; a quote or backslash to escape) takes `encode_point`,
        which writes floats.
        """
        allocate = self.allocator.allocate
        prefixes = self._trade_prefixes
        lines: list[str] = []
        append = lines.append
        for t in trades:
            coin, side, px, sz, tid, buyer, seller = (
                t.coin, t.side, t.px, t.sz, t.tid, t.buyer, t.seller
            )  # fmt: skip
            try:
                prefix = prefixes.get((coin, side)) or self._trade_prefix(coin, side)
                time_ns = allocate((_TRADES, coin, side), t.time_ms, tid)
                spx, ssz = str(px), str(sz)
                plain = spx + ssz  # no exponent, NaN or Infinity: then the product is plain too
                if "E" not in plain and "N" not in plain and "I" not in plain:
                    snotional = str(px * sz)  # an exponent if >= 1e28 (rounded) or tiny
                    who = buyer + seller
                    if "E" not in snotional and '"' not in who and "\\" not in who:
                        append(
                            f"{prefix} px={spx},sz={ssz},notional={snotional},tid={tid}i,"
                            f'buyer="{buyer}",seller="{seller}" {time_ns}'
                        )
                        continue
                fields = {"px": float(px), "sz": float(sz), "notional": float(px * sz),
                          "tid": tid, "buyer": buyer, "seller": seller}  # fmt: skip
                append(encode_point(_TRADES, {"coin": coin, "side": side}, fields, time_ns))
            except ValueError as error:
                self._skip(t, error)
        return lines

    def _trade_prefix(self, coin: str, side: str) -> str:
        prefix = series_prefix(_TRADES, {"coin": coin, "side": side})
        self._trade_prefixes[(coin, side)] = prefix
        return prefix

    def liquidations(self, events: Iterable[LiquidationEvent]) -> list[str]:
        """One `liquidations` point per event; `side` is the position liquidated."""
        allocate = self.allocator.allocate
        lines: list[str] = []
        for e in events:
            try:
                fields = {
                    "px": float(e.px),
                    "sz": float(e.sz),
                    "notional": float(e.notional),
                    "tid": e.tid,
                    "user": e.user,
                }
                tags = {"coin": e.coin, "side": e.side, "method": e.method}
                time_ns = allocate((_LIQUIDATIONS, e.coin, e.side, e.method), e.time_ms, e.tid)
                lines.append(encode_point(_LIQUIDATIONS, tags, fields, time_ns))
            except ValueError as error:
                self._skip(e, error)
        return lines

    def asset_ctxs(self, ctxs: Iterable[AssetCtx], time_ms: int) -> list[str]:
        """One `asset_ctx` point per coin, stamped at the poll time `time_ms`."""
        time_ns = time_ms * NS_PER_MS
        lines: list[str] = []
        for c in ctxs:
            try:
                fields = {
                    "funding": float(c.funding),
                    "open_interest": float(c.open_interest),
                    "open_interest_usd": float(c.open_interest_usd),
                    "mark_px": float(c.mark_px),
                    "oracle_px": float(c.oracle_px),
                    "mid_px": _opt(c.mid_px),
                    "premium": _opt(c.premium),
                    "day_ntl_vlm": float(c.day_ntl_vlm),
                }
                lines.append(encode_point(_ASSET_CTX, {"coin": c.coin}, fields, time_ns))
            except ValueError as error:
                self._skip(c, error)
        return lines

    def positions(
        self,
        address: str,
        state: ClearinghouseState,
        time_ms: int,
        closed: Iterable[tuple[str, str]] = (),
    ) -> list[str]:
        """`positions` points of one tracked address polled at `time_ms`: one per open position
        (zero positions are skipped), plus a closing point per (coin, side) in `closed` that is
        not open in `state`."""
        lines: list[str] = []
        for p, coin, side in _open_then_closed(state, closed):
            try:
                figures: PositionFigures | None = None
                if p is not None:
                    figures = (p.szi, p.position_value, p.entry_px, p.liquidation_px,
                               Decimal(p.leverage), p.unrealized_pnl)  # fmt: skip
                lines.append(self._position_line(address, coin, side, figures, time_ms))
            except ValueError as error:
                self._skip((coin, side) if p is None else p, error)
        return lines

    def position_now(
        self,
        address: str,
        coin: str,
        side: str,
        figures: PositionFigures | None,
        time_ms: int,
    ) -> str | None:
        """A `positions` point of one position as the book holds it between polls, or its
        closing point (None: szi 0, as a poll writes it); None if it cannot be stored."""
        try:
            return self._position_line(address, coin, side, figures, time_ms)
        except ValueError as error:
            self._skip((address, coin, side), error)
            return None

    def _position_line(
        self,
        address: str,
        coin: str,
        side: str,
        figures: PositionFigures | None,
        time_ms: int,
    ) -> str:
        """One `positions` point of `figures`, or None for the closing point (szi, size and
        PnL 0; the rest left out). ValueError if it cannot be stored."""
        if figures is None:
            fields: dict[str, object] = {
                "address": address,
                "szi": 0.0,
                "size_usd": 0.0,
                "unrealized_pnl": 0.0,
            }
        else:
            szi, size_usd, entry_px, liq_px, leverage, pnl = figures
            fields = {
                "address": address,
                "szi": float(szi),
                "size_usd": float(size_usd),
                "entry_px": _opt(entry_px),
                "liq_px": _opt(liq_px),
                "leverage": _opt(leverage),
                "unrealized_pnl": float(pnl),
            }
        time_ns = self.allocator.allocate((_POSITIONS, coin, side), time_ms, address)
        return encode_point(_POSITIONS, {"coin": coin, "side": side}, fields, time_ns)

    def position_change(self, change: PositionChange) -> str | None:
        """The `position_changes` point of one change (None if it cannot be stored).

        On the trade path (a change from a fill): formatted directly, decimals as their exact
        text, as `trades` does; anything unusual (an exponent, a character to escape) takes
        `encode_point`."""
        address, coin, kind, szi_before, szi_after, px, time_ms, source, tid = change
        tid = tid or 0
        series = (_POSITION_CHANGES, coin, kind)
        # an int key takes the allocator's fast path: the two parties of one trade differ by
        # the direction of their fill, a poll's change (tid 0) by its address
        key = tid * 2 + (szi_after < szi_before) if tid else -int(address[2:18] or "0", 16)
        try:
            time_ns = self.allocator.allocate(series, time_ms, key)
            if px is not None:
                before, after, spx = str(szi_before), str(szi_after), str(px)
                plain = before + after + spx  # no exponent, NaN or Infinity
                text = address + source
                if (
                    "E" not in plain
                    and "N" not in plain
                    and "I" not in plain
                    and '"' not in text
                    and "\\" not in text
                ):
                    prefix = self._change_prefixes.get(series)
                    if prefix is None:
                        prefix = series_prefix(series[0], {"coin": coin, "kind": kind})
                        self._change_prefixes[series] = prefix
                    return (
                        f'{prefix} address="{address}",szi_before={before},'
                        f'szi_after={after},px={spx},source="{source}",tid={tid}i {time_ns}'
                    )
            fields = {
                "address": address,
                "szi_before": float(szi_before),
                "szi_after": float(szi_after),
                "px": _opt(px),
                "source": source,
                "tid": tid,
            }
            return encode_point(_POSITION_CHANGES, {"coin": coin, "kind": kind}, fields, time_ns)
        except ValueError as error:
            self._skip(change, error)
            return None

    def hlp(
        self,
        vault_name: str,
        state: ClearinghouseState,
        time_ms: int,
        closed: Iterable[tuple[str, str]] = (),
    ) -> list[str]:
        """`hlp_positions` points of one HLP vault (open positions, then closing points for
        `closed` pairs not open in `state`) and its `hlp_equity` point (from `marginSummary`:
        cross + isolated)."""
        time_ns = time_ms * NS_PER_MS
        lines: list[str] = []
        for p, coin, side in _open_then_closed(state, closed):
            tags = {"vault": vault_name, "coin": coin, "side": side}
            try:
                if p is None:  # a closing point
                    fields = {"szi": 0.0, "size_usd": 0.0, "unrealized_pnl": 0.0}
                else:
                    fields = {
                        "szi": float(p.szi),
                        "size_usd": float(p.position_value),
                        "entry_px": _opt(p.entry_px),
                        "unrealized_pnl": float(p.unrealized_pnl),
                    }
                lines.append(encode_point(_HLP_POSITIONS, tags, fields, time_ns))
            except ValueError as error:
                self._skip((coin, side) if p is None else p, error)
        summary = state.margin_summary
        try:
            equity = {
                "account_value": float(summary.account_value),
                "total_ntl_pos": float(summary.total_ntl_pos),
                "total_margin_used": float(summary.total_margin_used),
                "withdrawable": float(state.withdrawable),
            }
            lines.append(encode_point(_HLP_EQUITY, {"vault": vault_name}, equity, time_ns))
        except ValueError as error:
            self._skip(summary, error)
        return lines

    def gap(self, gap: GapRecord) -> str:
        """The `trade_gaps` point of one gap, stamped at its `after_ms`.

        Raises ValueError for a gap line protocol cannot carry (a coin name with a newline).
        """
        fields = {"after_ms": gap.after_ms, "before_ms": gap.before_ms, "reason": gap.reason}
        return encode_point(_TRADE_GAPS, {"coin": gap.coin}, fields, gap.after_ms * NS_PER_MS)

    def health(self, samples: Iterable[Sample], time_ms: int) -> list[str]:
        """`pipeline_health`: one point per component, one float field per figure.

        Unlabelled samples belong to component "pipeline"; a labelled one to its label values
        (e.g. job=positions -> "positions"), so the tag stays a small bounded set.
        """
        components: dict[str, dict[str, float]] = {}
        for sample in samples:
            component = "/".join(sample.labels[k] for k in sorted(sample.labels)) or "pipeline"
            components.setdefault(component, {})[sample.name] = float(sample.value)
        time_ns = time_ms * NS_PER_MS
        return [
            PIPELINE_HEALTH.line({"component": component}, fields, time_ns)
            for component, fields in sorted(components.items())
        ]


def _open_then_closed(
    state: ClearinghouseState, closed: Iterable[tuple[str, str]]
) -> Iterator[tuple[Position | None, str, str]]:
    """(position, coin, side) for each open position of `state`, then (None, coin, side) for
    each pair of `closed` that is not open in it (a closing point)."""
    held: set[tuple[str, str]] = set()
    for p in state.positions:
        side = _side(p)
        if side is not None:
            held.add((p.coin, side))
            yield p, p.coin, side
    for coin, side in closed:
        if (coin, side) not in held:
            yield None, coin, side


def _side(position: Position) -> str | None:
    """ "long" (szi > 0), "short" (szi < 0), or None for a zero position."""
    if position.szi > 0:
        return "long"
    if position.szi < 0:
        return "short"
    return None


def _opt(value: _Number | None) -> float | None:
    return None if value is None else float(value)
