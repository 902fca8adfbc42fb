"""Normalized per-account records: positions, fills (with liquidations), funding payments, vaults.

Same conventions as `validate.market`: frozen dataclasses of Python values, wire names in the
`validation_alias` metadata, prices in USDC, sizes in base units, times in ms (UTC), addresses
lower-cased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AliasPath, BeforeValidator, Field, Strict

from validate.common import (
    Address,
    Coin,
    Count,
    Flag,
    Ms,
    NonNegative,
    OptionalPrice,
    Price,
    Side,
    Signed,
    Size,
)


@dataclass(frozen=True, slots=True)
class MarginSummary:
    """Account totals in USDC (`marginSummary`: cross + isolated; `crossMarginSummary`: cross)."""

    account_value: Annotated[Signed, Field(validation_alias="accountValue")]
    total_ntl_pos: Annotated[Signed, Field(validation_alias="totalNtlPos")]
    total_raw_usd: Annotated[Signed, Field(validation_alias="totalRawUsd")]
    total_margin_used: Annotated[Signed, Field(validation_alias="totalMarginUsed")]


def _position_of(value: object) -> object:
    """`assetPositions[i]` is `{"type": "oneWay", "position": {...}}`: keep the inner object."""
    if isinstance(value, dict) and "position" in value:
        return value["position"]
    return value


@dataclass(frozen=True, slots=True)
class Position:
    """One open perp position of an account (REST `clearinghouseState`).

    `szi` is the signed size in base units: > 0 long, < 0 short, 0 for a position just closed.
    `position_value` is the absolute USD value at mark. `liquidation_px` is None when no
    liquidation price is reachable (null, or the legacy "NaN"). `entry_px` was null for zero
    positions in old payloads. `leverage_type` is "cross" or "isolated"; `raw_usd` is set only
    for isolated positions. `max_leverage` and the cumulative funding are None in 2023 payloads.
    """

    coin: Coin
    szi: Signed
    leverage_type: Annotated[
        Literal["cross", "isolated"], Field(validation_alias=AliasPath("leverage", "type"))
    ]
    leverage: Annotated[Count, Field(validation_alias=AliasPath("leverage", "value"))]
    position_value: Annotated[NonNegative, Field(validation_alias="positionValue")]
    unrealized_pnl: Annotated[Signed, Field(validation_alias="unrealizedPnl")]
    margin_used: Annotated[NonNegative, Field(validation_alias="marginUsed")]
    entry_px: Annotated[OptionalPrice, Field(validation_alias="entryPx")] = None
    liquidation_px: Annotated[OptionalPrice, Field(validation_alias="liquidationPx")] = None
    return_on_equity: Annotated[Signed | None, Field(validation_alias="returnOnEquity")] = None
    raw_usd: Annotated[Signed | None, Field(validation_alias=AliasPath("leverage", "rawUsd"))] = (
        None
    )
    max_leverage: Annotated[Count | None, Field(validation_alias="maxLeverage")] = None
    cum_funding_all_time: Annotated[
        Signed | None, Field(validation_alias=AliasPath("cumFunding", "allTime"))
    ] = None
    cum_funding_since_open: Annotated[
        Signed | None, Field(validation_alias=AliasPath("cumFunding", "sinceOpen"))
    ] = None


PositionItem = Annotated[Position, BeforeValidator(_position_of)]
"""An element of `assetPositions` (the wrapper object) validated as a Position."""


@dataclass(frozen=True, slots=True)
class ClearinghouseState:
    """An account's perp state (REST `clearinghouseState`); `time_ms` is informational."""

    margin_summary: Annotated[MarginSummary, Field(validation_alias="marginSummary")]
    cross_margin_summary: Annotated[MarginSummary, Field(validation_alias="crossMarginSummary")]
    withdrawable: Signed
    positions: Annotated[tuple[PositionItem, ...], Field(validation_alias="assetPositions")]
    cross_maintenance_margin_used: Annotated[
        Signed | None, Field(validation_alias="crossMaintenanceMarginUsed")
    ] = None
    time_ms: Annotated[Ms | None, Field(validation_alias="time")] = None


@dataclass(frozen=True, slots=True)
class Liquidation:
    """The liquidation a fill took part in.

    `method` "market": the victim's order went through the book; "backstop": the liquidator vault
    took the position over. `liquidated_user` is the victim (absent in some payloads).
    `mark_px` is the mark price at the time, not the fill price.
    """

    method: Literal["market", "backstop"]
    mark_px: Annotated[Price, Field(validation_alias="markPx")]
    liquidated_user: Annotated[Address | None, Field(validation_alias="liquidatedUser")] = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill of one account (REST `userFills`/`userFillsByTime`, WS `userFills`, `user`).

    `side` is this account's side: "buy" (wire "B") or "sell" ("A"). `crossed` True means this
    account was the taker. `start_position` is the signed position before the fill; `direction`
    is the display label (`dir`: "Open Long", "Liquidated Cross Long", ...). `fee` is negative
    for a rebate and already includes `builder_fee`.

    Historical drift accepted: fills before about mid-2023 have no `tid`, `fee_token` or
    `twap_id` (and Feb-2023 fills no `fee`); those fields are then None. Dedupe fills on
    (user, tid), or on (user, hash, oid, time_ms, px, sz) when `tid` is None.
    """

    coin: Coin
    px: Price
    sz: Size
    side: Side
    time_ms: Annotated[Ms, Field(validation_alias="time")]
    start_position: Annotated[Signed, Field(validation_alias="startPosition")]
    direction: Annotated[str, Field(validation_alias="dir")]
    closed_pnl: Annotated[Signed, Field(validation_alias="closedPnl")]
    hash: str
    oid: Count
    crossed: Annotated[bool, Strict()]
    fee: Signed | None = None
    builder_fee: Annotated[Signed | None, Field(validation_alias="builderFee")] = None
    fee_token: Annotated[str | None, Field(validation_alias="feeToken")] = None
    tid: Count | None = None
    twap_id: Annotated[Count | None, Field(validation_alias="twapId")] = None
    cloid: str | None = None
    liquidation: Liquidation | None = None


@dataclass(frozen=True, slots=True)
class UserFunding:
    """One hourly funding payment of an account (REST `userFunding`).

    `usdc` is the amount in USDC: negative means the account paid. `szi` is the signed position
    size it was paid on; `funding_rate` the hourly rate.
    """

    time_ms: Annotated[Ms, Field(validation_alias="time")]
    hash: str
    coin: Annotated[Coin, Field(validation_alias=AliasPath("delta", "coin"))]
    usdc: Annotated[Signed, Field(validation_alias=AliasPath("delta", "usdc"))]
    szi: Annotated[Signed, Field(validation_alias=AliasPath("delta", "szi"))]
    funding_rate: Annotated[Signed, Field(validation_alias=AliasPath("delta", "fundingRate"))]
    n_samples: Annotated[Count | None, Field(validation_alias=AliasPath("delta", "nSamples"))] = (
        None
    )


@dataclass(frozen=True, slots=True)
class VaultDetails:
    """A vault (REST `vaultDetails`); how HLP's child vaults are discovered.

    `relationship` "parent" lists `child_addresses` (HLP's strategies and liquidators);
    "child" and "normal" have none. `apr` is a fraction (0.36 = 36 %).
    """

    vault_address: Annotated[Address, Field(validation_alias="vaultAddress")]
    name: str
    leader: Address
    relationship: Annotated[
        Literal["parent", "child", "normal"],
        Field(validation_alias=AliasPath("relationship", "type")),
    ] = "normal"
    child_addresses: Annotated[
        tuple[Address, ...],
        Field(validation_alias=AliasPath("relationship", "data", "childAddresses")),
    ] = ()
    description: str = ""
    apr: float | None = None
    is_closed: Annotated[Flag, Field(validation_alias="isClosed")] = False
