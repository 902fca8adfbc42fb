"""Typed Hyperliquid `/info` requests: validated records out, rejected records quarantined.

Every function sends one request through the shared `InfoClient` (weight budget, breaker per
type, retries) and parses the body straight from bytes with `validate/`. A record that fails
validation goes to the quarantine with its reason; the good records beside it are returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeVar

from fetch.rate_limit import Budget
from fetch.rest import InfoClient
from utils.errors import HyperfluxError
from utils.quarantine import Quarantine
from validate import (
    AssetCtx,
    Candle,
    ClearinghouseState,
    Fill,
    FundingRate,
    L2Book,
    Meta,
    Rejected,
    Trade,
    VaultDetails,
    parse_all_mids,
    parse_candles,
    parse_clearinghouse_state,
    parse_funding_history,
    parse_l2_book,
    parse_meta,
    parse_meta_and_asset_ctxs,
    parse_trades,
    parse_user_fills,
    parse_vault_details,
)

T = TypeVar("T")


class InvalidPayloadError(HyperfluxError):
    """A whole /info answer failed validation (it is quarantined)."""


class HyperliquidInfo:
    def __init__(
        self,
        client: InfoClient,
        quarantine: Quarantine | None = None,
        budget: Budget | None = None,
    ) -> None:
        """`budget`: a job's lane of the client's budget (`client.budget.lane(...)`)."""
        self.client = client
        self.quarantine = quarantine
        self.budget = budget

    async def _get(self, payload: dict[str, Any], items_estimate: int | None = None) -> bytes:
        return await self.client.post(payload, budget=self.budget, items_estimate=items_estimate)

    def _keep(self, info_type: str, rejected: Sequence[Rejected]) -> None:
        if self.quarantine is not None:
            for record in rejected:
                self.quarantine.add(f"info:{info_type}", record.reason, record.raw_text)

    def _required(self, info_type: str, value: T | None, rejected: Sequence[Rejected]) -> T:
        self._keep(info_type, rejected)
        if value is None:
            reason = rejected[0].reason if rejected else "empty answer"
            raise InvalidPayloadError(f"Hyperliquid sent an invalid {info_type} answer: {reason}")
        return value

    async def meta(self) -> Meta:
        meta, rejected = parse_meta(await self._get({"type": "meta"}))
        return self._required("meta", meta, rejected)

    async def meta_and_asset_ctxs(self) -> tuple[Meta, list[AssetCtx]]:
        body = await self._get({"type": "metaAndAssetCtxs"})
        meta, ctxs, rejected = parse_meta_and_asset_ctxs(body)
        return self._required("metaAndAssetCtxs", meta, rejected), ctxs

    async def all_mids(self) -> dict[str, Decimal]:
        mids, rejected = parse_all_mids(await self._get({"type": "allMids"}))
        self._keep("allMids", rejected)
        return mids

    async def clearinghouse_state(self, user: str) -> ClearinghouseState:
        body = await self._get({"type": "clearinghouseState", "user": user})
        state, rejected = parse_clearinghouse_state(body)
        return self._required("clearinghouseState", state, rejected)

    async def recent_trades(self, coin: str) -> list[Trade]:
        trades, rejected = parse_trades(await self._get({"type": "recentTrades", "coin": coin}))
        self._keep("recentTrades", rejected)
        return trades

    async def vault_details(self, vault: str) -> VaultDetails | None:
        """None when the vault does not exist (the exchange answers `null`)."""
        body = await self._get({"type": "vaultDetails", "vaultAddress": vault})
        details, rejected = parse_vault_details(body)
        if details is None and rejected:
            return self._required("vaultDetails", details, rejected)
        return details

    async def l2_book(
        self, coin: str, n_sig_figs: int | None = None, mantissa: int | None = None
    ) -> L2Book:
        payload = {"type": "l2Book", "coin": coin, "nSigFigs": n_sig_figs, "mantissa": mantissa}
        book, rejected = parse_l2_book(await self._get(payload))
        return self._required("l2Book", book, rejected)

    async def candles(self, coin: str, interval: str, start_ms: int, end_ms: int) -> list[Candle]:
        req = {"coin": coin, "interval": interval, "startTime": start_ms, "endTime": end_ms}
        candles, rejected = parse_candles(await self._get({"type": "candleSnapshot", "req": req}))
        self._keep("candleSnapshot", rejected)
        return candles

    async def funding_history(
        self, coin: str, start_ms: int, end_ms: int | None = None
    ) -> list[FundingRate]:
        payload: dict[str, Any] = {"type": "fundingHistory", "coin": coin, "startTime": start_ms}
        if end_ms is not None:
            payload["endTime"] = end_ms
        rates, rejected = parse_funding_history(await self._get(payload))
        self._keep("fundingHistory", rejected)
        return rates

    async def user_fills_by_time(
        self, user: str, start_ms: int, end_ms: int, items_estimate: int = 40
    ) -> list[Fill]:
        """The account's fills with start_ms <= time <= end_ms (both inclusive), oldest first;
        `items_estimate` bounds the weight reserved (20 + 1 per 20 fills): a narrow window
        holds few."""
        payload = {
            "type": "userFillsByTime",
            "user": user,
            "startTime": start_ms,
            "endTime": end_ms,
            "aggregateByTime": False,
        }
        fills, rejected = parse_user_fills(await self._get(payload, items_estimate))
        self._keep("userFillsByTime", rejected)
        return fills

    async def user_fills(self, user: str) -> list[Fill]:
        body = await self._get({"type": "userFills", "user": user, "aggregateByTime": False})
        fills, rejected = parse_user_fills(body)
        self._keep("userFills", rejected)
        return fills
