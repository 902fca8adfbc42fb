"""WebSocket frames in, one typed message out: `parse_ws_message(raw) -> WsMessage`.

Fast path: the frame's raw bytes go through one `validate_json` over a union of every channel,
dispatched on `channel` in Rust. Only when that fails (or a record time is out of bounds) is the
frame parsed again, slowly: batches (`trades`, `userFills`, `user` fills, `allMids`) are then
validated record by record, so the good records of a frame survive a bad neighbour and each bad
record becomes one `Rejected`. A frame that is not JSON, has an unknown channel or a broken
envelope (or a broken single-object payload such as a book) becomes `InvalidFrame` with one
Rejected for the whole frame. The text frame "Websocket connection established." becomes
`Ignored`. Nothing raises on bad input.

Every message has `channel` and `rejected`; quarantine `rejected` and go on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError

from validate.account import Fill
from validate.common import (
    Address,
    Batch,
    Flag,
    Price,
    Rejected,
    dump,
    load,
    resolve_now,
    summarize,
    text_of,
    time_error,
)
from validate.info import FILLS, TRADES, mids_from
from validate.market import AssetCtx, Bbo, Candle, L2Book, Trade
from validate.messages import (
    AssetCtxMessage,
    BboMessage,
    BookMessage,
    CandleMessage,
    ErrorMessage,
    Ignored,
    InvalidFrame,
    MidsMessage,
    Pong,
    SubscriptionAck,
    TradesMessage,
    UserEventsMessage,
    UserFillsMessage,
    WsMessage,
)

BANNER = "Websocket connection established."


# --- wire envelopes (private) ------------------------------------------------------------------


def _flatten_ctx(value: object) -> object:
    """`{"coin": C, "ctx": {...}}` -> the ctx fields plus `coin`."""
    if isinstance(value, dict) and isinstance(value.get("ctx"), dict):
        return {**value["ctx"], "coin": value.get("coin")}
    return value


class _Trades(BaseModel):
    channel: Literal["trades"]
    data: list[Trade]


class _Book(BaseModel):
    channel: Literal["l2Book"]
    data: L2Book


class _Bbo(BaseModel):
    channel: Literal["bbo"]
    data: Bbo


class _Candle(BaseModel):
    channel: Literal["candle"]
    data: Candle


class _MidsData(BaseModel):
    mids: dict[str, Price]


class _Mids(BaseModel):
    channel: Literal["allMids"]
    data: _MidsData


class _Ctx(BaseModel):
    channel: Literal["activeAssetCtx"]
    data: Annotated[AssetCtx, BeforeValidator(_flatten_ctx)]


class _UserFillsData(BaseModel):
    user: Address
    fills: list[Fill]
    is_snapshot: Flag = Field(False, alias="isSnapshot")


class _UserFills(BaseModel):
    channel: Literal["userFills"]
    data: _UserFillsData


class _UserData(BaseModel):
    fills: list[Fill] = []


class _User(BaseModel):
    channel: Literal["user"]
    data: _UserData


class _AckData(BaseModel):
    method: str
    subscription: dict[str, Any]


class _Ack(BaseModel):
    channel: Literal["subscriptionResponse"]
    data: _AckData


class _Pong(BaseModel):
    channel: Literal["pong"]


class _Error(BaseModel):
    channel: Literal["error"]
    data: Any = None


_ENVELOPES: dict[str, type[BaseModel]] = {
    "trades": _Trades,
    "l2Book": _Book,
    "bbo": _Bbo,
    "candle": _Candle,
    "allMids": _Mids,
    "activeAssetCtx": _Ctx,
    "userFills": _UserFills,
    "user": _User,
    "subscriptionResponse": _Ack,
    "pong": _Pong,
    "error": _Error,
}
_Envelope = (
    _Trades | _Book | _Bbo | _Candle | _Mids | _Ctx | _UserFills | _User | _Ack | _Pong | _Error
)
_FRAME: TypeAdapter[_Envelope] = TypeAdapter(Annotated[_Envelope, Field(discriminator="channel")])
_CHANNELS = {channel: TypeAdapter(model) for channel, model in _ENVELOPES.items()}
# Channels carrying a batch: (path of the batch in the frame, validator of one record); None
# marks a coin -> value mapping (allMids) instead of an array.
_BATCHES: dict[str, tuple[tuple[str, ...], Batch[Any] | None]] = {
    "trades": (("data",), TRADES),
    "userFills": (("data", "fills"), FILLS),
    "user": (("data", "fills"), FILLS),
    "allMids": (("data", "mids"), None),
}


def parse_ws_message(raw: bytes | str, now_ms: int | None = None) -> WsMessage:
    """One WebSocket frame as a typed message (see the module docstring). Never raises."""
    now_ms = resolve_now(now_ms)
    try:
        envelope = _FRAME.validate_json(raw)
    except ValidationError:
        return _parse_slowly(raw, now_ms)
    message = _message(envelope, raw, now_ms)
    return _parse_slowly(raw, now_ms) if message is None else message


def _message(
    envelope: _Envelope,
    raw: bytes | str,
    now_ms: int,
    records: Any = None,
    rejected: tuple[Rejected, ...] = (),
) -> WsMessage | None:
    """The message of a validated envelope.

    `records` replaces the envelope's batch (validated record by record on the slow path).
    Without `records`, None means a record time of the batch is out of bounds: the caller then
    takes the slow path, which rejects exactly those records.
    """
    match envelope:
        case _Trades(data=trades):
            if records is None and not TRADES.times_ok(trades, now_ms):
                return None
            return TradesMessage(trades if records is None else records, rejected=rejected)
        case _UserFills(data=data):
            if records is None and not FILLS.times_ok(data.fills, now_ms):
                return None
            fills = data.fills if records is None else records
            return UserFillsMessage(data.user, fills, data.is_snapshot, rejected=rejected)
        case _User(data=data):
            if records is None and not FILLS.times_ok(data.fills, now_ms):
                return None
            return UserEventsMessage(data.fills if records is None else records, rejected=rejected)
        case _Mids(data=data):
            return MidsMessage(data.mids if records is None else records, rejected=rejected)
        case _Candle(data=candle):
            reason = time_error("data.t", candle.open_ms, now_ms)
            return CandleMessage(candle) if reason is None else _invalid(reason, raw)
        case _Book(data=book):
            return BookMessage(book)
        case _Bbo(data=bbo):
            return BboMessage(bbo)
        case _Ctx(data=ctx):
            return AssetCtxMessage(ctx)
        case _Ack(data=ack):
            return SubscriptionAck(ack.method, ack.subscription)
        case _Pong():
            return Pong()
        case _Error(data=text):
            return ErrorMessage(text if isinstance(text, str) else dump(text))
    raise AssertionError(f"unhandled envelope {type(envelope).__name__}")  # pragma: no cover


def _invalid(reason: str, raw: bytes | str) -> InvalidFrame:
    return InvalidFrame(rejected=(Rejected(reason, text_of(raw)),))


def _parse_slowly(raw: bytes | str, now_ms: int) -> WsMessage:
    if text_of(raw).strip() == BANNER:
        return Ignored(BANNER)
    frame, broken = load(raw)
    if broken is not None:
        return InvalidFrame(rejected=(broken,))
    if not isinstance(frame, dict):
        return _invalid("(frame): expected a JSON object with a channel", raw)
    channel = frame.get("channel")
    adapter = _CHANNELS.get(channel) if isinstance(channel, str) else None
    if adapter is None:
        return _invalid(f"channel: unknown channel {channel!r}", raw)
    path, batch = _BATCHES.get(channel, ((), None))
    items = _at(frame, path) if path else None
    if not isinstance(items, dict if batch is None else list):
        # No batch here (or not even the right container): the frame stands or falls whole.
        try:
            envelope = adapter.validate_json(raw)
        except ValidationError as exc:
            return _invalid(summarize(exc), raw)
        return _message(envelope, raw, now_ms) or _invalid("(frame): time out of bounds", raw)
    try:
        envelope = adapter.validate_json(dump(_emptied(frame, path, type(items)())))
    except ValidationError as exc:
        return _invalid(summarize(exc), raw)
    if batch is None:
        records, rejected = mids_from(items)
    else:
        records, rejected = batch.parse_items(items, now_ms)
    return _message(envelope, raw, now_ms, records, tuple(rejected))  # type: ignore[return-value]


def _at(frame: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = frame
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _emptied(frame: dict[str, Any], path: tuple[str, ...], empty: Any) -> dict[str, Any]:
    """A copy of `frame` with the batch at `path` replaced by `empty`."""
    if len(path) == 1:
        return {**frame, path[0]: empty}
    return {**frame, path[0]: _emptied(frame[path[0]], path[1:], empty)}
