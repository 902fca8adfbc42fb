"""Validators for REST `POST /info` responses: JSON text in, normalized records out.

Pass the response body (`response.content`); an already-parsed value is accepted too (it is
serialised back to JSON first, so both go through the same checks). Every function returns the
good part and one `Rejected` per bad record, or a single `Rejected` for the whole payload when
it is not JSON or its outer shape is wrong. Nothing raises on bad input.

Batches (trades, fills, candles, funding, positions, mids, asset contexts) keep their good
records when some are bad. Record times are checked against `now_ms` (default: the clock).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from validate.account import (
    ClearinghouseState,
    Fill,
    PositionItem,
    UserFunding,
    VaultDetails,
)
from validate.common import (
    Batch,
    BatchResult,
    Price,
    Rejected,
    as_json,
    dump,
    load,
    reject_payload,
    summarize,
    text_of,
)
from validate.market import AssetCtx, AssetInfo, Candle, FundingRate, L2Book, Meta, Trade

T = TypeVar("T")

TRADES: Batch[Trade] = Batch(Trade, time_attr="time_ms")
FILLS: Batch[Fill] = Batch(Fill, time_attr="time_ms")
CANDLES: Batch[Candle] = Batch(Candle, time_attr="open_ms", time_key="t")
FUNDING: Batch[FundingRate] = Batch(FundingRate, time_attr="time_ms")
USER_FUNDING: Batch[UserFunding] = Batch(UserFunding, time_attr="time_ms")
_POSITIONS: Batch[Any] = Batch(PositionItem)
_ASSETS: Batch[AssetInfo] = Batch(AssetInfo)
_CTXS: Batch[AssetCtx] = Batch(AssetCtx)
_MIDS: TypeAdapter[dict[str, Decimal]] = TypeAdapter(dict[str, Price])
_BOOK: TypeAdapter[L2Book] = TypeAdapter(L2Book)
_STATE: TypeAdapter[ClearinghouseState] = TypeAdapter(ClearinghouseState)
_VAULT: TypeAdapter[VaultDetails | None] = TypeAdapter(VaultDetails | None)
_META: TypeAdapter[Meta] = TypeAdapter(Meta)


def parse_trades(raw: bytes | str | Any, now_ms: int | None = None) -> BatchResult[Trade]:
    """`recentTrades` (or any JSON array of WS trades)."""
    return TRADES.parse(raw, now_ms)


def parse_user_fills(raw: bytes | str | Any, now_ms: int | None = None) -> BatchResult[Fill]:
    """`userFills` and `userFillsByTime` (newest first on the wire; order is kept)."""
    return FILLS.parse(raw, now_ms)


def parse_candles(raw: bytes | str | Any, now_ms: int | None = None) -> BatchResult[Candle]:
    """`candleSnapshot`: bars oldest first; the open time `t` is bounds-checked."""
    return CANDLES.parse(raw, now_ms)


def parse_funding_history(
    raw: bytes | str | Any, now_ms: int | None = None
) -> BatchResult[FundingRate]:
    """`fundingHistory`: settlements oldest first."""
    return FUNDING.parse(raw, now_ms)


def parse_user_funding(
    raw: bytes | str | Any, now_ms: int | None = None
) -> BatchResult[UserFunding]:
    """`userFunding`: an account's funding payments."""
    return USER_FUNDING.parse(raw, now_ms)


def parse_l2_book(raw: bytes | str | Any) -> tuple[L2Book | None, list[Rejected]]:
    """`l2Book`: a book is all or nothing (a partial book would be a wrong book)."""
    return _whole(_BOOK, raw)


def parse_vault_details(raw: bytes | str | Any) -> tuple[VaultDetails | None, list[Rejected]]:
    """`vaultDetails`: (None, []) when the answer is `null` (no such vault)."""
    return _whole(_VAULT, raw)


def parse_all_mids(raw: bytes | str | Any) -> tuple[dict[str, Decimal], list[Rejected]]:
    """`allMids`: coin -> mid price; a bad entry is rejected on its own."""
    raw = as_json(raw)
    try:
        return _MIDS.validate_json(raw), []
    except ValidationError:
        pass
    mids, broken = load(raw)
    if broken is not None:
        return {}, [broken]
    if not isinstance(mids, dict):
        return {}, [reject_payload("a JSON object", mids, raw)]
    return mids_from(mids)


def mids_from(mids: dict[str, Any]) -> tuple[dict[str, Decimal], list[Rejected]]:
    """Validate parsed coin -> mid entries one by one."""
    good: dict[str, Decimal] = {}
    rejected: list[Rejected] = []
    for coin, mid in mids.items():
        text = dump({coin: mid})
        try:
            good.update(_MIDS.validate_json(text))
        except ValidationError as exc:
            rejected.append(Rejected(summarize(exc), text))
    return good, rejected


def parse_clearinghouse_state(
    raw: bytes | str | Any,
) -> tuple[ClearinghouseState | None, list[Rejected]]:
    """`clearinghouseState`: the summaries must be valid; a bad position is rejected alone."""
    raw = as_json(raw)
    try:
        return _STATE.validate_json(raw), []
    except ValidationError as exc:
        error = exc
    state, broken = load(raw)
    if broken is not None:
        return None, [broken]
    items = state.get("assetPositions") if isinstance(state, dict) else None
    if not isinstance(items, list):
        return None, [Rejected(summarize(error), text_of(raw))]
    try:
        empty = _STATE.validate_json(dump({**state, "assetPositions": []}))
    except ValidationError as exc:
        return None, [Rejected(summarize(exc), text_of(raw))]
    positions, rejected = _POSITIONS.parse_items(items)
    return replace(empty, positions=tuple(positions)), rejected


def parse_meta(raw: bytes | str | Any) -> tuple[Meta | None, list[Rejected]]:
    """`meta`: the universe keeps each asset's index (its asset id) when others are rejected."""
    raw = as_json(raw)
    meta, broken = load(raw)
    if broken is not None:
        return None, [broken]
    return _meta_from(meta, raw)


def parse_meta_and_asset_ctxs(
    raw: bytes | str | Any,
) -> tuple[Meta | None, list[AssetCtx], list[Rejected]]:
    """`metaAndAssetCtxs`: `[meta, ctxs]` where ctxs[i] belongs to universe[i].

    Each AssetCtx gets its coin from the universe entry at the same index; a ctx whose entry
    was rejected (or is missing) is rejected too, so a coin never gets another coin's context.
    """
    raw = as_json(raw)
    pair, broken = load(raw)
    if broken is not None:
        return None, [], [broken]
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], list)):
        return None, [], [reject_payload("[meta, assetCtxs]", pair, raw)]
    meta, rejected = _meta_from(pair[0], raw)
    if meta is None:
        return None, [], rejected
    names = {asset.index: asset.name for asset in meta.universe}
    ctxs: list[AssetCtx] = []
    for index, ctx in enumerate(pair[1]):
        name = names.get(index)
        if name is None:
            reason = f"assetCtxs.{index}: no valid universe entry at index {index}"
            rejected.append(Rejected(reason, dump(ctx)))
            continue
        item = {**ctx, "coin": name} if isinstance(ctx, dict) else ctx
        result = _CTXS.check(item, raw_text=dump(ctx))
        if isinstance(result, Rejected):
            reason = f"assetCtxs.{index} ({name}): {result.reason}"
            rejected.append(Rejected(reason, result.raw_text))
        else:
            ctxs.append(result)
    return meta, ctxs, rejected


def _meta_from(meta: Any, raw: bytes | str) -> tuple[Meta | None, list[Rejected]]:
    universe = meta.get("universe") if isinstance(meta, dict) else None
    if not isinstance(universe, list):
        return None, [reject_payload("a meta object with a universe array", meta, raw)]
    try:
        empty = _META.validate_json(dump({**meta, "universe": []}))
    except ValidationError as exc:
        return None, [Rejected(summarize(exc), text_of(raw))]
    assets: list[AssetInfo] = []
    rejected: list[Rejected] = []
    for index, entry in enumerate(universe):
        item = {**entry, "index": index} if isinstance(entry, dict) else entry
        result = _ASSETS.check(item, raw_text=dump(entry))
        if isinstance(result, Rejected):
            rejected.append(Rejected(f"universe.{index}: {result.reason}", result.raw_text))
        else:
            assets.append(result)
    return replace(empty, universe=tuple(assets)), rejected


def _whole(adapter: TypeAdapter[T], raw: bytes | str | Any) -> tuple[T | None, list[Rejected]]:
    raw = as_json(raw)
    try:
        return adapter.validate_json(raw), []
    except ValidationError as exc:
        return None, [Rejected(summarize(exc), text_of(raw))]
