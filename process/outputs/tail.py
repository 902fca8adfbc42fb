"""The terminal tail: one readable line per event (`python main.py tail ...`), as pure functions
of the bus's `Event`s, so a scripted flow has exact expected lines.

Times are the exchange's, UTC, to the millisecond. Sizes are in base units as traded, prices to
6 significant digits, USD = px x sz rounded to the dollar. Sides: a trade's is the taker's
(buy/sell); a liquidation's is the position liquidated (long/short).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from process.alerts.alert import Alert, number, price, usd
from process.bus import Event, EventKind
from process.liquidations import LiquidationEvent
from validate import L2Book, Trade

View = Literal["trades", "liquidations", "alerts", "book"]
VIEWS: dict[View, EventKind] = {
    "trades": "trade",
    "liquidations": "liquidation",
    "alerts": "alert",
    "book": "book",
}
BOOK_LEVELS = 5


def clock(time_ms: int) -> str:
    """`12:34:56.789` (UTC)."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]


def trade_line(trade: Trade) -> str:
    """`12:34:56.789 BTC     buy   0.5 @ 84981 = 42,491 USD`."""
    return (
        f"{clock(trade.time_ms)} {trade.coin:<7} {trade.side:<5} {number(trade.sz)} @ "
        f"{price(trade.px)} = {usd(float(trade.notional))}"
    )


def liquidation_line(event: LiquidationEvent) -> str:
    """`12:34:56.789 ETH     long  1.5 @ 2500 = 3,750 USD  backstop 0xabc...` (user when known)."""
    line = (
        f"{clock(event.time_ms)} {event.coin:<7} {event.side:<5} {number(event.sz)} @ "
        f"{price(event.px)} = {usd(float(event.notional))}  {event.method}"
    )
    return f"{line} {event.user}" if event.user else line


def alert_line(alert: Alert) -> str:
    """`12:34:56.789 liquidation [rule] liquidation ETH: long 1.5 at 2500 (3,750 USD), ...`."""
    return f"{clock(alert.time_ms)} {alert.kind:<16} {alert.text}"


def book_lines(book: L2Book, levels: int = BOOK_LEVELS) -> list[str]:
    """A header (time, coin, mid, spread in USD and bps), then the top `levels` of each side
    side by side: bid size and price | ask price and size, best first."""
    bids, asks = book.bids[:levels], book.asks[:levels]
    head = f"{clock(book.time_ms or 0)} {book.coin}"
    if bids and asks:
        mid = (bids[0].px + asks[0].px) / 2
        spread = asks[0].px - bids[0].px
        bps = spread / mid * 10_000
        head += f"  mid {price(mid)}  spread {number(spread)} ({bps:.2f} bps)"
    else:
        head += "  one side of the book is empty"
    lines = [head]
    for i in range(max(len(bids), len(asks))):
        bid = f"{number(bids[i].sz):>14} {price(bids[i].px):>12}" if i < len(bids) else " " * 27
        ask = f"{price(asks[i].px):<12} {number(asks[i].sz)}" if i < len(asks) else ""
        lines.append(f"  {bid} | {ask}".rstrip())
    return lines


def size_usd(event: Event) -> float | None:
    """The USD an event is about (what `--min-usd` filters), None when it has none."""
    data = event.data
    if isinstance(data, Trade | LiquidationEvent):
        return float(data.notional)
    if isinstance(data, Alert):
        return data.size_usd
    return None


def render(event: Event, min_usd: float = 0.0) -> list[str]:
    """The lines of one event; none when it is under `min_usd` (or of a kind not shown)."""
    amount = size_usd(event)
    if min_usd and amount is not None and amount < min_usd:
        return []
    data = event.data
    if isinstance(data, Trade):
        return [trade_line(data)]
    if isinstance(data, LiquidationEvent):
        return [liquidation_line(data)]
    if isinstance(data, Alert):
        return [alert_line(data)]
    if isinstance(data, L2Book):
        return book_lines(data)
    return []


def header(view: View, coins: list[str] | None, min_usd: float) -> str:
    """The first line: what is shown, and how to stop."""
    what = ", ".join(coins) if coins else "every coin"
    floor = f", at least {usd(min_usd)}" if min_usd else ""
    return f"tail {view}: {what}{floor} (Ctrl-C stops)"
