"""Normalized public market-data records: trades, books, candles, asset contexts, funding, meta.

Each record is a frozen, slotted dataclass holding Python values (`Decimal`, `int` ms, `str`),
never wire dicts or number strings. The `Annotated[..., Field(validation_alias=...)]` metadata
says where each field comes from on the wire; pydantic reads it when the validators in
`validate.info` / `validate.ws` build records straight from JSON bytes. Code that constructs a
record itself (tests, the simulator) just calls the dataclass; nothing is validated then.

Units: prices in quote currency (USDC) per unit of the coin, sizes in base units, times in ms
since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import AliasPath, BeforeValidator, Field, TypeAdapter, ValidationError

from validate.common import (
    Address,
    Coin,
    Count,
    Flag,
    Int,
    Ms,
    NonNegative,
    OptionalPrice,
    Price,
    Side,
    Signed,
    Size,
)

CANDLE_INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_419_200_000,  # 28 days, the shortest month: candle counts from it are upper bounds
}
"""candleSnapshot intervals (API.md 2.10) and their length in ms."""


@dataclass(frozen=True, slots=True)
class Trade:
    """One public trade (WS `trades`, REST `recentTrades`).

    `side` is the taker's (aggressor's) side: "buy" = a buyer lifted the ask, "sell" = a seller
    hit the bid. `buyer` and `seller` are `users[0]` and `users[1]` on the wire, never
    taker/maker. `tid` is a 50-bit hash, not a sequence and not unique on its own: dedupe on
    (coin, time_ms, tid). `hash` is the L1 transaction hash and may be all zeros.
    """

    coin: Coin
    side: Side
    px: Price
    sz: Size
    time_ms: Annotated[Ms, Field(validation_alias="time")]
    hash: str
    tid: Count
    buyer: Annotated[Address, Field(validation_alias=AliasPath("users", 0))]
    seller: Annotated[Address, Field(validation_alias=AliasPath("users", 1))]

    @property
    def notional(self) -> Decimal:
        """px * sz in USDC."""
        return self.px * self.sz


@dataclass(frozen=True, slots=True)
class Level:
    """One aggregated price level of a book: `n` resting orders for `sz` in total at `px`."""

    px: Price
    sz: Size
    n: Count


@dataclass(frozen=True, slots=True)
class L2Book:
    """A full order-book snapshot (REST `l2Book`, WS `l2Book`): best level first on each side.

    `time_ms` is the server time of the snapshot; informational, absent in older payloads.
    """

    coin: Coin
    bids: Annotated[tuple[Level, ...], Field(validation_alias=AliasPath("levels", 0))]
    asks: Annotated[tuple[Level, ...], Field(validation_alias=AliasPath("levels", 1))]
    time_ms: Annotated[Ms | None, Field(validation_alias="time")] = None


@dataclass(frozen=True, slots=True)
class Bbo:
    """Best bid and offer (WS `bbo`); a side is None when that side of the book is empty."""

    coin: Coin
    bid: Annotated[Level | None, Field(validation_alias=AliasPath("bbo", 0))]
    ask: Annotated[Level | None, Field(validation_alias=AliasPath("bbo", 1))]
    time_ms: Annotated[Ms | None, Field(validation_alias="time")] = None


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar (REST `candleSnapshot`, WS `candle`); the newest bar may still be open.

    `open_ms` is the bar start, `close_ms` = open_ms + interval - 1. `volume` is in base units.
    """

    coin: Annotated[Coin, Field(validation_alias="s")]
    interval: Annotated[str, Field(validation_alias="i", min_length=1)]
    open_ms: Annotated[Ms, Field(validation_alias="t")]
    close_ms: Annotated[Ms, Field(validation_alias="T")]
    open: Annotated[Price, Field(validation_alias="o")]
    high: Annotated[Price, Field(validation_alias="h")]
    low: Annotated[Price, Field(validation_alias="l")]
    close: Annotated[Price, Field(validation_alias="c")]
    volume: Annotated[NonNegative, Field(validation_alias="v")]
    trade_count: Annotated[Count, Field(validation_alias="n")]


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """One perp of `meta.universe`. `index` is its position there, which is its asset id.

    `max_leverage` is None in 2023-era payloads that only had `name` and `szDecimals`.
    Delisted assets stay in the universe with `is_delisted` True.
    """

    index: Count
    name: Coin
    sz_decimals: Annotated[Count, Field(validation_alias="szDecimals")]
    max_leverage: Annotated[Count | None, Field(validation_alias="maxLeverage")] = None
    is_delisted: Annotated[Flag, Field(validation_alias="isDelisted")] = False
    only_isolated: Annotated[Flag, Field(validation_alias="onlyIsolated")] = False
    margin_table_id: Annotated[Int | None, Field(validation_alias="marginTableId")] = None


@dataclass(frozen=True, slots=True)
class MarginTier:
    """From `lower_bound` of position notional (USDC) on, leverage is at most `max_leverage`."""

    lower_bound: Annotated[NonNegative, Field(validation_alias="lowerBound")]
    max_leverage: Annotated[Count, Field(validation_alias="maxLeverage", ge=1)]


def _margin_table_of(value: object) -> object:
    """`marginTables[i]` is `[id, {"description", "marginTiers"}]`: one object with its id."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict):
        return {**value[1], "id": value[0]}
    return value


@dataclass(frozen=True, slots=True)
class MarginTable:
    """One of `meta.marginTables`; `AssetInfo.margin_table_id` names it by `id`.

    `tiers` lowest bound first, as served. Ids under 50 are never listed: such an id is a single
    tier at that max leverage (docs, "Margin tiers").
    """

    id: Int
    tiers: Annotated[tuple[MarginTier, ...], Field(validation_alias="marginTiers")]
    description: str = ""


MarginTableItem = Annotated[MarginTable, BeforeValidator(_margin_table_of)]
"""An element of `marginTables` (the `[id, table]` pair) validated as a MarginTable."""
_MARGIN_TABLE = TypeAdapter(MarginTableItem)


def _valid_tables(value: object) -> object:
    """Tables that do not validate are left out (their assets fall back to `maxLeverage`): a
    drift in this optional part must not cost the universe, which everything needs."""
    if not isinstance(value, list):
        return value
    kept = []
    for item in value:
        try:
            kept.append(_MARGIN_TABLE.validate_python(item))
        except ValidationError:
            continue
    return kept


@dataclass(frozen=True, slots=True)
class Meta:
    """The perp universe (REST `meta`, first half of `metaAndAssetCtxs`).

    `margin_tables` is empty in older payloads (the 2023 recordings have none).
    """

    universe: tuple[AssetInfo, ...]
    collateral_token: Annotated[Int | None, Field(validation_alias="collateralToken")] = None
    margin_tables: Annotated[
        tuple[MarginTable, ...],
        BeforeValidator(_valid_tables),
        Field(validation_alias="marginTables"),
    ] = ()


@dataclass(frozen=True, slots=True)
class AssetCtx:
    """Live context of one perp (REST `metaAndAssetCtxs`, WS `activeAssetCtx`).

    `funding`: current hourly funding rate as a fraction (0.0000125 = 0.00125 %/h); positive
    means longs pay shorts. `open_interest` is in base units (see `open_interest_usd`).
    `premium`, `mid_px`, `impact_pxs` (impact bid, impact ask) and `day_base_vlm` may be None
    (null on the wire, or absent in early-2023 payloads).
    """

    coin: Coin
    funding: Signed
    open_interest: Annotated[NonNegative, Field(validation_alias="openInterest")]
    oracle_px: Annotated[NonNegative, Field(validation_alias="oraclePx")]
    mark_px: Annotated[NonNegative, Field(validation_alias="markPx")]
    prev_day_px: Annotated[NonNegative, Field(validation_alias="prevDayPx")]
    day_ntl_vlm: Annotated[NonNegative, Field(validation_alias="dayNtlVlm")]
    premium: Signed | None = None
    mid_px: Annotated[OptionalPrice, Field(validation_alias="midPx")] = None
    impact_pxs: Annotated[
        tuple[NonNegative, NonNegative] | None, Field(validation_alias="impactPxs")
    ] = None
    day_base_vlm: Annotated[NonNegative | None, Field(validation_alias="dayBaseVlm")] = None

    @property
    def open_interest_usd(self) -> Decimal:
        """Open interest valued at the mark price, in USDC."""
        return self.open_interest * self.mark_px


@dataclass(frozen=True, slots=True)
class FundingRate:
    """One funding settlement (REST `fundingHistory`): hourly since mid-2023, 8-hourly before.

    `funding_rate` is the fraction paid for that period; positive means longs paid shorts.
    """

    coin: Coin
    funding_rate: Annotated[Signed, Field(validation_alias="fundingRate")]
    time_ms: Annotated[Ms, Field(validation_alias="time")]
    premium: Signed | None = None
