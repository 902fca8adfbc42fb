"""The typed messages `parse_ws_message` returns, one class per WebSocket channel.

Every message has `channel` (the wire channel name, or "ignored"/"invalid") and `rejected`: the
records of the frame that failed validation, or the whole frame for `InvalidFrame`. Match on the
class (`match message: case TradesMessage(trades=trades): ...`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from validate.account import Fill
from validate.common import Rejected
from validate.market import AssetCtx, Bbo, Candle, L2Book, Trade


@dataclass(frozen=True, slots=True)
class _Message:
    rejected: tuple[Rejected, ...] = field(default=(), kw_only=True)
    """Records of this frame that failed validation (or the whole frame, for InvalidFrame)."""


@dataclass(frozen=True, slots=True)
class TradesMessage(_Message):
    """`trades`: trades of one coin. The first message after a subscribe replays recent trades."""

    trades: list[Trade]
    channel: ClassVar[str] = "trades"


@dataclass(frozen=True, slots=True)
class BookMessage(_Message):
    """`l2Book`: a full book snapshot (no diffs, no sequence numbers)."""

    book: L2Book
    channel: ClassVar[str] = "l2Book"


@dataclass(frozen=True, slots=True)
class BboMessage(_Message):
    """`bbo`: best bid and offer, sent when the top of book changes."""

    bbo: Bbo
    channel: ClassVar[str] = "bbo"


@dataclass(frozen=True, slots=True)
class CandleMessage(_Message):
    """`candle`: one bar; the current bar is re-sent as it updates."""

    candle: Candle
    channel: ClassVar[str] = "candle"


@dataclass(frozen=True, slots=True)
class MidsMessage(_Message):
    """`allMids`: coin -> mid price in USDC."""

    mids: dict[str, Decimal]
    channel: ClassVar[str] = "allMids"


@dataclass(frozen=True, slots=True)
class AssetCtxMessage(_Message):
    """`activeAssetCtx`: the live context of one perp."""

    ctx: AssetCtx
    channel: ClassVar[str] = "activeAssetCtx"


@dataclass(frozen=True, slots=True)
class UserFillsMessage(_Message):
    """`userFills`: fills of `user`; `is_snapshot` marks the catch-up batch after subscribing."""

    user: str
    fills: list[Fill]
    is_snapshot: bool = False
    channel: ClassVar[str] = "userFills"


@dataclass(frozen=True, slots=True)
class UserEventsMessage(_Message):
    """`user` (the `userEvents` subscription): only its `fills` variant is read (others: [])."""

    fills: list[Fill]
    channel: ClassVar[str] = "user"


@dataclass(frozen=True, slots=True)
class SubscriptionAck(_Message):
    """`subscriptionResponse`: the server's (normalised) echo of a (un)subscribe request."""

    method: str
    subscription: dict[str, Any]
    channel: ClassVar[str] = "subscriptionResponse"

    @property
    def key(self) -> tuple[tuple[str, Any], ...]:
        """`subscription_key` of the echoed subscription."""
        return subscription_key(self.subscription)


@dataclass(frozen=True, slots=True)
class Pong(_Message):
    """`pong`: the answer to `{"method": "ping"}`."""

    channel: ClassVar[str] = "pong"


@dataclass(frozen=True, slots=True)
class ErrorMessage(_Message):
    """`error`: the server refused something (e.g. a duplicate subscription)."""

    text: str
    channel: ClassVar[str] = "error"


@dataclass(frozen=True, slots=True)
class Ignored(_Message):
    """A frame that is expected and carries nothing (the connection banner)."""

    text: str
    channel: ClassVar[str] = "ignored"


@dataclass(frozen=True, slots=True)
class InvalidFrame(_Message):
    """A frame rejected as a whole; `rejected` holds exactly one Rejected."""

    channel: ClassVar[str] = "invalid"


WsMessage = (
    TradesMessage
    | BookMessage
    | BboMessage
    | CandleMessage
    | MidsMessage
    | AssetCtxMessage
    | UserFillsMessage
    | UserEventsMessage
    | SubscriptionAck
    | Pong
    | ErrorMessage
    | Ignored
    | InvalidFrame
)


def subscription_key(subscription: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Order-free key of a subscription, null values dropped: match acks on this, since the
    server reorders keys and adds `"nSigFigs": null, "mantissa": null` to `l2Book`."""
    return tuple(sorted((k, v) for k, v in subscription.items() if v is not None))
