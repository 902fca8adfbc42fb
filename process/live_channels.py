"""The optional WebSocket channels (`hl.ws_channels`), stored and published.

- `l2Book`: every snapshot is published (`book`); at most one per coin per `book_interval` is
  stored as `book_depth` (mid, spread, USD depth within 0.1 / 0.5 / 1 / 2 % of the mid,
  imbalance) and, with `book_levels` > 0, its top levels as `book_levels`.
- `bbo`: published (`bbo`); stored as `bbo`, at most one point per coin per second.
- `activeAssetCtx`: published (`asset_ctx`), stored as `asset_ctx` (between the REST polls) and
  its mark price given to the position book.

Only the shard that stores market data writes (`store`); every shard publishes what it hears.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from db.schema import BBO, BOOK_DEPTH, BOOK_LEVELS, DEPTH_BANDS_BPS
from db.timestamps import NS_PER_MS
from process.bus import EventBus
from process.points import PointBuilder
from process.positions.book import PositionBook
from process.storage_ports import PointSink
from utils.clock import now_ms
from utils.metrics import Sample
from validate import AssetCtxMessage, Bbo, BboMessage, BookMessage, L2Book, Level, WsMessage

BBO_MIN_INTERVAL_MS = 1000


@dataclass(frozen=True)
class Depth:
    """One snapshot's depth figures (see `book_depth`)."""

    mid: float
    spread_bps: float
    bid_usd: dict[int, float]  # band in bps -> USD
    ask_usd: dict[int, float]
    bid_reach_bps: float
    ask_reach_bps: float

    def imbalance(self, bps: int) -> float | None:
        total = self.bid_usd[bps] + self.ask_usd[bps]
        return (self.bid_usd[bps] - self.ask_usd[bps]) / total if total else None

    def fields(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"mid": self.mid, "spread_bps": self.spread_bps}
        for bps in DEPTH_BANDS_BPS:
            out[f"bid_usd_{bps}bps"] = self.bid_usd[bps]
            out[f"ask_usd_{bps}bps"] = self.ask_usd[bps]
            out[f"imbalance_{bps}bps"] = self.imbalance(bps)
        out["bid_reach_bps"] = self.bid_reach_bps
        out["ask_reach_bps"] = self.ask_reach_bps
        return out


def book_depth(book: L2Book) -> Depth | None:
    """Depth of a snapshot with both sides; None when a side is empty (no mid).

    A level counts in a band when its price is within the band of the mid (bids at or above
    mid x (1 - band), asks at or below mid x (1 + band)); its USD is price x size.
    """
    if not book.bids or not book.asks:
        return None
    best_bid, best_ask = book.bids[0].px, book.asks[0].px
    mid = (best_bid + best_ask) / 2
    bid_usd: dict[int, float] = {}
    ask_usd: dict[int, float] = {}
    for bps in DEPTH_BANDS_BPS:
        band = Decimal(bps) / 10_000
        low, high = mid * (1 - band), mid * (1 + band)
        bid_usd[bps] = float(sum((lv.px * lv.sz for lv in book.bids if lv.px >= low), Decimal()))
        ask_usd[bps] = float(sum((lv.px * lv.sz for lv in book.asks if lv.px <= high), Decimal()))
    return Depth(
        mid=float(mid),
        spread_bps=float((best_ask - best_bid) / mid * 10_000),
        bid_usd=bid_usd,
        ask_usd=ask_usd,
        bid_reach_bps=float((mid - book.bids[-1].px) / mid * 10_000),
        ask_reach_bps=float((book.asks[-1].px - mid) / mid * 10_000),
    )


def _level_fields(level: Level) -> dict[str, float | int]:
    return {"px": float(level.px), "sz": float(level.sz), "n": level.n}


class LiveChannels:
    """`on_message` of the trade stream: the optional channels' messages."""

    def __init__(
        self,
        builder: PointBuilder,
        writer: PointSink,
        bus: EventBus,
        *,
        book: PositionBook | None = None,
        book_interval_ms: int = 10_000,
        book_levels: int = 0,
        store: bool = True,
    ) -> None:
        self.builder = builder
        self.writer = writer
        self.bus = bus
        self.book = book
        self.book_interval_ms = book_interval_ms
        self.book_levels = book_levels
        self.store = store
        self._stored: dict[tuple[str, str], int] = {}  # (channel, coin) -> last stored ms
        self.books = 0
        self.books_stored = 0
        self.bbos_stored = 0
        self.ctxs = 0

    def __call__(self, message: WsMessage) -> None:
        if isinstance(message, BookMessage):
            self._book(message.book)
        elif isinstance(message, BboMessage):
            self._bbo(message.bbo)
        elif isinstance(message, AssetCtxMessage):
            self._ctx(message)

    def _due(self, channel: str, coin: str, time_ms: int, every_ms: int) -> bool:
        """Whether a point of `channel` for `coin` at `time_ms` is to be stored (throttle)."""
        if not self.store:
            return False
        last = self._stored.get((channel, coin))
        if last is not None and time_ms - last < every_ms:
            return False
        self._stored[(channel, coin)] = time_ms
        return True

    def _book(self, book: L2Book) -> None:
        self.books += 1
        time_ms = book.time_ms or now_ms()
        self.bus.publish("book", book.coin, time_ms, book)
        if not self._due("l2Book", book.coin, time_ms, self.book_interval_ms):
            return
        depth = book_depth(book)
        time_ns = time_ms * NS_PER_MS
        lines = []
        if depth is not None:
            lines.append(BOOK_DEPTH.line({"coin": book.coin}, depth.fields(), time_ns))
        for side, levels in (("bid", book.bids), ("ask", book.asks)):
            for i, level in enumerate(levels[: self.book_levels]):
                tags = {"coin": book.coin, "side": side, "level": str(i)}
                lines.append(BOOK_LEVELS.line(tags, _level_fields(level), time_ns))
        if lines:
            self.books_stored += 1
            self.writer.write(lines)

    def _bbo(self, bbo: Bbo) -> None:
        time_ms = bbo.time_ms or now_ms()
        self.bus.publish("bbo", bbo.coin, time_ms, bbo)
        if not self._due("bbo", bbo.coin, time_ms, BBO_MIN_INTERVAL_MS):
            return
        fields: dict[str, float | None] = {
            "bid_px": None if bbo.bid is None else float(bbo.bid.px),
            "bid_sz": None if bbo.bid is None else float(bbo.bid.sz),
            "ask_px": None if bbo.ask is None else float(bbo.ask.px),
            "ask_sz": None if bbo.ask is None else float(bbo.ask.sz),
        }
        if bbo.bid is not None and bbo.ask is not None:
            mid = (bbo.bid.px + bbo.ask.px) / 2
            fields["mid"] = float(mid)
            fields["spread_bps"] = float((bbo.ask.px - bbo.bid.px) / mid * 10_000)
        if all(value is None for value in fields.values()):
            return
        self.bbos_stored += 1
        self.writer.write([BBO.line({"coin": bbo.coin}, fields, time_ms * NS_PER_MS)])

    def _ctx(self, message: AssetCtxMessage) -> None:
        ctx, time_ms = message.ctx, now_ms()
        self.ctxs += 1
        self.bus.publish("asset_ctx", ctx.coin, time_ms, ctx)
        if self.book is not None:  # the book's liquidation prices follow the live mark
            self.book.set_mark(ctx.coin, ctx.mark_px)
        if self.store:
            self.writer.write(self.builder.asset_ctxs([ctx], time_ms))

    def samples(self) -> list[Sample]:
        return [
            Sample("books_total", "counter", "l2Book snapshots received", self.books),
            Sample("books_stored_total", "counter", "l2Book snapshots stored", self.books_stored),
            Sample("bbo_stored_total", "counter", "bbo points stored", self.bbos_stored),
            Sample("ws_asset_ctx_total", "counter", "activeAssetCtx updates", self.ctxs),
        ]
