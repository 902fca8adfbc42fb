"""Pydantic models of Hyperliquid's wire formats, and the normalized records built from them.

Everything after `validate/` deals in these records (Decimal prices, int ms times, lower-case
addresses), never in raw dicts or number strings. Parse functions never raise on bad input:
they return the good records plus one `Rejected` per bad record, for `utils.quarantine`.

- REST `/info` bodies: `parse_trades`, `parse_user_fills`, `parse_candles`,
  `parse_funding_history`, `parse_user_funding`, `parse_l2_book`, `parse_all_mids`,
  `parse_clearinghouse_state`, `parse_meta`, `parse_meta_and_asset_ctxs`, `parse_vault_details`.
- WebSocket frames: `parse_ws_message(raw) -> WsMessage`, one message class per channel.
"""

from validate.account import (
    ClearinghouseState,
    Fill,
    Liquidation,
    MarginSummary,
    Position,
    UserFunding,
    VaultDetails,
)
from validate.common import MAX_AHEAD_MS, MIN_TIME_MS, BatchResult, Rejected
from validate.info import (
    parse_all_mids,
    parse_candles,
    parse_clearinghouse_state,
    parse_funding_history,
    parse_l2_book,
    parse_meta,
    parse_meta_and_asset_ctxs,
    parse_trades,
    parse_user_fills,
    parse_user_funding,
    parse_vault_details,
)
from validate.market import (
    AssetCtx,
    AssetInfo,
    Bbo,
    Candle,
    FundingRate,
    L2Book,
    Level,
    MarginTable,
    MarginTier,
    Meta,
    Trade,
)
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
    subscription_key,
)
from validate.ws import parse_ws_message

__all__ = [
    "MAX_AHEAD_MS",
    "MIN_TIME_MS",
    "AssetCtx",
    "AssetCtxMessage",
    "AssetInfo",
    "BatchResult",
    "Bbo",
    "BboMessage",
    "BookMessage",
    "Candle",
    "CandleMessage",
    "ClearinghouseState",
    "ErrorMessage",
    "Fill",
    "FundingRate",
    "Ignored",
    "InvalidFrame",
    "L2Book",
    "Level",
    "Liquidation",
    "MarginSummary",
    "MarginTable",
    "MarginTier",
    "Meta",
    "MidsMessage",
    "Pong",
    "Position",
    "Rejected",
    "SubscriptionAck",
    "Trade",
    "TradesMessage",
    "UserEventsMessage",
    "UserFillsMessage",
    "UserFunding",
    "VaultDetails",
    "WsMessage",
    "parse_all_mids",
    "parse_candles",
    "parse_clearinghouse_state",
    "parse_funding_history",
    "parse_l2_book",
    "parse_meta",
    "parse_meta_and_asset_ctxs",
    "parse_trades",
    "parse_user_fills",
    "parse_user_funding",
    "parse_vault_details",
    "parse_ws_message",
    "subscription_key",
]
