"""validate/: every recorded Hyperliquid payload validates; drift is accepted; bad records are
rejected one by one with exact reasons; a fuzzed `trades` stream never breaks the parser."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import validate.common
from utils.quarantine import Quarantine
from validate import (
    MAX_AHEAD_MS,
    MIN_TIME_MS,
    AssetCtxMessage,
    BboMessage,
    BookMessage,
    CandleMessage,
    ErrorMessage,
    Ignored,
    InvalidFrame,
    MidsMessage,
    Pong,
    Rejected,
    SubscriptionAck,
    TradesMessage,
    UserEventsMessage,
    UserFillsMessage,
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
    parse_ws_message,
    subscription_key,
)

FIXTURES = Path(__file__).parent / "fixtures" / "hyperliquid"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "hyperliquid" / "fixtures"
NOW = 1_764_835_613_064  # 2025-12-04, the time of the recorded HYPE trade
LATER = 1_800_000_000_000  # 2027-01-15: after every recorded payload
BUYER = "0x8cdba352268065be9d5444e1f82b8fe83717bbd5"
SELLER = "0x13558be785661958932ceac35ba20de187275a42"
TRADE = {
    "coin": "HYPE",
    "side": "B",
    "px": "35.276",
    "sz": "5.78",
    "time": NOW,
    "hash": "0x" + "0" * 64,
    "tid": 716095722814130,
    "users": [BUYER, SELLER],
}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def body(name: str) -> bytes:
    return json.dumps(fixture(name)["response"]).encode()


def frame(*trades: Any) -> bytes:
    return json.dumps({"channel": "trades", "data": list(trades)}).encode()


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- the recorded payloads -----------------------------------------------------------------------


def test_fixtures_are_unchanged_copies_with_their_source() -> None:
    names = sorted(path.name for path in FIXTURES.glob("*.json"))
    assert len(names) == 20
    for name in names:
        assert json.loads((FIXTURES / name).read_text())["source"]
    if SHARED.is_dir():
        assert names == sorted(path.name for path in SHARED.glob("*"))
        for name in names:
            assert (FIXTURES / name).read_bytes() == (SHARED / name).read_bytes()


INFO_PARSERS = {
    "info_allMids": parse_all_mids,
    "info_candleSnapshot": lambda raw: parse_candles(raw, now_ms=LATER),
    "info_clearinghouseState": parse_clearinghouse_state,
    "info_fundingHistory": lambda raw: parse_funding_history(raw, now_ms=LATER),
    "info_l2Book": parse_l2_book,
    "info_meta": parse_meta,
    "info_metaAndAssetCtxs": parse_meta_and_asset_ctxs,
    "info_userFills": lambda raw: parse_user_fills(raw, now_ms=LATER),
    "info_userFillsByTime": lambda raw: parse_user_fills(raw, now_ms=LATER),
    "info_userFills_liquidator": lambda raw: parse_user_fills(raw, now_ms=LATER),
    "info_userFunding": lambda raw: parse_user_funding(raw, now_ms=LATER),
    "info_vaultDetails": parse_vault_details,
}
WS_MESSAGES = {
    "ws_allMids": MidsMessage,
    "ws_bbo": BboMessage,
    "ws_candle": CandleMessage,
    "ws_l2Book": BookMessage,
    "ws_pong": Pong,
    "ws_subscriptionResponse": SubscriptionAck,
    "ws_trades": TradesMessage,
    "ws_userEvents": UserEventsMessage,
}


def test_every_fixture_has_a_validator() -> None:
    assert {path.stem for path in FIXTURES.glob("*.json")} == set(INFO_PARSERS) | set(WS_MESSAGES)


@pytest.mark.parametrize("name", sorted(INFO_PARSERS))
def test_info_fixture_validates_without_rejects(name: str) -> None:
    result = INFO_PARSERS[name](body(name))
    assert result[0]
    assert result[-1] == []


@pytest.mark.parametrize("name", sorted(WS_MESSAGES))
def test_ws_fixture_validates_with_its_ack_and_examples(name: str) -> None:
    data = fixture(name)
    message = parse_ws_message(body(name), now_ms=LATER)
    assert type(message) is WS_MESSAGES[name]
    assert message.rejected == ()
    extras = [data["ack"]] if "ack" in data else []
    extras += [example["response"] for example in data.get("more_examples", [])]
    for extra in extras:
        assert type(parse_ws_message(json.dumps(extra), now_ms=LATER)) is SubscriptionAck


def test_ws_trade_is_normalized() -> None:
    message = parse_ws_message(body("ws_trades"), now_ms=NOW)
    assert isinstance(message, TradesMessage)
    (trade,) = message.trades
    assert trade.coin == "HYPE"
    assert trade.side == "buy"
    assert trade.px == Decimal("35.276")
    assert trade.sz == Decimal("5.78")
    assert trade.time_ms == 1764835613064
    assert trade.hash == "0x" + "0" * 64
    assert trade.tid == 716095722814130
    assert (trade.buyer, trade.seller) == (BUYER, SELLER)
    assert trade.notional == Decimal("203.89528")


def test_liquidator_fills_carry_the_backstop_liquidation() -> None:
    fills, _ = parse_user_fills(body("info_userFills_liquidator"), now_ms=LATER)
    first = fills[0]
    assert first.liquidation is not None
    assert first.liquidation.method == "backstop"
    assert first.liquidation.mark_px == Decimal("0.000231")
    assert first.liquidation.liquidated_user == "0xcb02837caaee310c178501855b63bf7f4f4b1f8b"
    assert (first.coin, first.side, first.px, first.sz) == (
        "HMSTR",
        "sell",
        Decimal("0.000255"),
        Decimal("13385820.0"),
    )
    assert (first.direction, first.crossed, first.fee, first.tid) == (
        "Liquidated Isolated Short",
        True,
        Decimal("0.0"),
        802203254918732,
    )
    assert first.fee_token == "USDC" and first.twap_id is None
    assert [fill.liquidation is None for fill in fills] == [False, False, True, True, True]


def test_2023_fills_have_no_tid_and_keep_their_order() -> None:
    fills, rejected = parse_user_fills(body("info_userFills"), now_ms=LATER)
    assert rejected == []
    assert len(fills) == 40
    assert all(fill.tid is None and fill.fee_token is None for fill in fills)
    assert (fills[0].coin, fills[0].px, fills[0].side) == ("SUI", Decimal("1.3189"), "sell")
    assert fills[0].start_position == Decimal("4623.5")
    assert fills[0].closed_pnl == Decimal("-0.25686")


def test_ws_user_events_fill() -> None:
    message = parse_ws_message(body("ws_userEvents"), now_ms=LATER)
    assert isinstance(message, UserEventsMessage)
    (fill,) = message.fills
    assert (fill.coin, fill.tid, fill.fee_token, fill.fee) == (
        "@107",
        1,
        "HYPE",
        Decimal("0.00031499"),
    )


def test_clearinghouse_state_positions() -> None:
    state, _ = parse_clearinghouse_state(body("info_clearinghouseState"))
    assert state is not None
    assert state.time_ms == 1790518335406
    assert state.margin_summary.account_value == Decimal("3119882.2733840002")
    assert state.withdrawable == Decimal("2680599.8258540002")
    assert [position.coin for position in state.positions] == [
        "BTC",
        "ETH",
        "SOL",
        "AVAX",
        "DOGE",
        "HYPE",
    ]
    btc, avax = state.positions[0], state.positions[3]
    assert btc.liquidation_px is None
    assert (btc.szi, btc.entry_px, btc.leverage_type, btc.leverage) == (
        Decimal("0.5681"),
        Decimal("84255.8"),
        "cross",
        20,
    )
    assert btc.cum_funding_all_time == Decimal("-612646.526557")
    assert avax.szi == Decimal("-4788.3")
    assert avax.liquidation_px == Decimal("647.020287706")
    assert avax.unrealized_pnl == Decimal("-444.231227")


def test_meta_and_asset_ctxs_pair_by_position() -> None:
    meta, ctxs, rejected = parse_meta_and_asset_ctxs(body("info_metaAndAssetCtxs"))
    assert rejected == []
    assert meta is not None and meta.collateral_token == 0
    assert [(a.index, a.name, a.max_leverage) for a in meta.universe][3] == (3, "HYPE", 10)
    assert [ctx.coin for ctx in ctxs] == ["BTC", "ETH", "SOL", "HYPE"]
    btc = ctxs[0]
    assert btc.funding == Decimal("0.0000125")
    assert btc.mark_px == Decimal("84981.0")
    assert btc.impact_pxs == (Decimal("84980.0"), Decimal("84981.0"))
    assert btc.premium == Decimal("-0.0002823363")
    assert btc.open_interest_usd == Decimal("38359.47984") * Decimal("84981.0")


def test_other_recorded_payloads() -> None:
    meta, _ = parse_meta(body("info_meta"))
    assert meta is not None and meta.universe[0].name == "BTC"
    assert (meta.universe[0].sz_decimals, meta.universe[15].name) == (5, "kPEPE")
    mids, _ = parse_all_mids(body("info_allMids"))
    assert len(mids) == 28 and mids["BTC"] == Decimal("30135.0")
    book, _ = parse_l2_book(body("info_l2Book"))
    assert book is not None and (len(book.bids), len(book.asks)) == (20, 20)
    assert (book.bids[0].px, book.asks[0].px, book.time_ms) == (
        Decimal("2.111"),
        Decimal("2.1124"),
        1689630203930,
    )
    candles, _ = parse_candles(body("info_candleSnapshot"), now_ms=LATER)
    assert len(candles) == 24
    assert (candles[0].open, candles[0].trade_count, candles[0].volume) == (
        Decimal("0.001601"),
        709,
        Decimal("520665683.0"),
    )
    assert candles[0].close_ms - candles[0].open_ms + 1 == 3_600_000
    rates, _ = parse_funding_history(body("info_fundingHistory"), now_ms=LATER)
    assert (len(rates), rates[0].funding_rate, rates[0].premium) == (
        40,
        Decimal("0.0000125"),
        Decimal("0.00024129"),
    )
    payments, _ = parse_user_funding(body("info_userFunding"), now_ms=LATER)
    assert (payments[3].coin, payments[3].usdc) == ("AVAX", Decimal("-0.572915"))
    vault, _ = parse_vault_details(body("info_vaultDetails"))
    assert vault is not None and vault.relationship == "parent"
    assert "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14" in vault.child_addresses
    assert vault.leader == "0x677d831aef5328190852e24f13c46cac05f984e7"


def test_ws_book_bbo_candle_mids_ack() -> None:
    bbo = parse_ws_message(body("ws_bbo"), now_ms=LATER)
    assert isinstance(bbo, BboMessage) and bbo.bbo.bid is not None and bbo.bbo.ask is not None
    assert (bbo.bbo.bid.px, bbo.bbo.ask.sz, bbo.bbo.ask.n) == (
        Decimal("23.757"),
        Decimal("100.26"),
        2,
    )
    book = parse_ws_message(body("ws_l2Book"), now_ms=LATER)
    assert isinstance(book, BookMessage) and book.book.asks[1].px == Decimal("34.97")
    candle = parse_ws_message(body("ws_candle"), now_ms=LATER)
    assert isinstance(candle, CandleMessage)
    assert candle.candle.volume == Decimal("3495670.8399999999")
    mids = parse_ws_message(body("ws_allMids"), now_ms=LATER)
    assert isinstance(mids, MidsMessage) and mids.mids == {
        "0G": Decimal("1.2017"),
        "2Z": Decimal("0.129165"),
    }
    ack = parse_ws_message(
        b'{"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":'
        b'{"type":"l2Book","coin":"BTC","nSigFigs":null,"mantissa":null}}}'
    )
    assert isinstance(ack, SubscriptionAck)
    assert ack.key == subscription_key({"coin": "BTC", "type": "l2Book"})


# --- drift that must be accepted -----------------------------------------------------------------


def test_2023_meta_with_only_name_and_sz_decimals_and_null_flags() -> None:
    meta, rejected = parse_meta(
        {
            "universe": [
                {"name": "BTC", "szDecimals": 5},
                {
                    "name": "X",
                    "szDecimals": 0,
                    "isDelisted": None,
                    "onlyIsolated": None,
                    "growthMode": "on",
                },
            ]
        }
    )
    assert rejected == []
    assert meta is not None
    assert [(a.name, a.max_leverage, a.is_delisted, a.only_isolated) for a in meta.universe] == [
        ("BTC", None, False, False),
        ("X", None, False, False),
    ]


POSITION = {
    "coin": "BTC",
    "szi": "-0.5",
    "leverage": {"type": "isolated", "value": 10, "rawUsd": "55000.1"},
    "entryPx": "100000.0",
    "positionValue": "50000.0",
    "unrealizedPnl": "0.0",
    "returnOnEquity": "0.0",
    "liquidationPx": "110000.5",
    "marginUsed": "5000.0",
}
SUMMARY = {"accountValue": "1", "totalNtlPos": "2", "totalRawUsd": "3", "totalMarginUsed": "4"}


def state_with(*positions: Any, **extra: Any) -> dict[str, Any]:
    items = [{"type": "oneWay", "position": position} for position in positions]
    return {
        "marginSummary": SUMMARY,
        "crossMarginSummary": SUMMARY,
        "withdrawable": "1.5",
        "assetPositions": items,
        **extra,
    }


@pytest.mark.parametrize(
    ("patch", "field", "expected"),
    [
        ({"liquidationPx": None}, "liquidation_px", None),
        ({"liquidationPx": "NaN"}, "liquidation_px", None),
        ({"entryPx": None, "szi": "0.0"}, "entry_px", None),
        ({"cumFunding": None, "maxTradeSzs": ["1", "2"]}, "cum_funding_all_time", None),
        ({}, "raw_usd", Decimal("55000.1")),
    ],
)
def test_position_drift_is_accepted(patch: dict[str, Any], field: str, expected: Any) -> None:
    state, rejected = parse_clearinghouse_state(state_with({**POSITION, **patch}))
    assert rejected == []
    assert state is not None and state.time_ms is None
    assert getattr(state.positions[0], field) == expected


CTX = {
    "funding": "-0.0000125",
    "openInterest": "10.0",
    "prevDayPx": "99.0",
    "dayNtlVlm": "1000.0",
    "oraclePx": "100.0",
    "markPx": "100.1",
}


def test_early_2023_asset_ctx_without_premium_mid_impact_and_base_volume() -> None:
    nulls = {"premium": None, "midPx": None, "impactPxs": None}
    _, ctxs, rejected = parse_meta_and_asset_ctxs(
        [
            {"universe": [{"name": "A", "szDecimals": 1}, {"name": "B", "szDecimals": 1}]},
            [CTX, {**CTX, **nulls}],
        ]
    )
    assert rejected == []
    assert [(c.coin, c.premium, c.mid_px, c.impact_pxs, c.day_base_vlm) for c in ctxs] == [
        ("A", None, None, None, None),
        ("B", None, None, None, None),
    ]
    assert ctxs[0].funding == Decimal("-0.0000125")


FILL = {
    "coin": "BTC",
    "px": "30000.5",
    "sz": "0.01",
    "side": "A",
    "time": 1_676_000_000_000,
    "startPosition": "0.0",
    "dir": "Open Short",
    "closedPnl": "0.0",
    "hash": "0xabc",
    "oid": 12,
    "crossed": False,
}


def test_ws_active_asset_ctx_takes_its_coin_from_the_envelope() -> None:
    raw = json.dumps({"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": CTX}})
    message = parse_ws_message(raw, now_ms=NOW)
    assert isinstance(message, AssetCtxMessage)
    assert (message.ctx.coin, message.ctx.funding, message.ctx.mark_px) == (
        "BTC",
        Decimal("-0.0000125"),
        Decimal("100.1"),
    )
    raw = json.dumps(
        {"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": {**CTX, "markPx": "x"}}}
    )
    assert parse_ws_message(raw, now_ms=NOW) == InvalidFrame(
        rejected=(Rejected("data.markPx: Input should be a valid decimal", raw),)
    )


def test_feb_2023_fill_without_tid_fee_token_twap_id_or_fee() -> None:
    testnet = {**FILL, "liquidationMarkPx": None}
    fills, rejected = parse_user_fills([FILL, testnet], now_ms=NOW)
    assert rejected == []
    assert [(f.tid, f.fee, f.fee_token, f.twap_id, f.liquidation) for f in fills] == [
        (None, None, None, None, None)
    ] * 2


def test_unknown_fields_are_ignored_and_book_time_is_optional() -> None:
    message = parse_ws_message(frame({**TRADE, "newField": [1, {"x": None}]}), now_ms=NOW)
    assert isinstance(message, TradesMessage) and message.rejected == ()
    book, _ = parse_l2_book({"coin": "X", "levels": [[], []], "fast": True})
    assert book is not None and (book.bids, book.asks, book.time_ms) == ((), (), None)


# --- rejections ----------------------------------------------------------------------------------

HOUR_LATER = NOW + 3_600_000
REJECTIONS = [
    ({"px": "abc"}, "px: Input should be a valid decimal"),
    ({"px": "0"}, "px: Input should be greater than 0"),
    ({"px": "-35.1"}, "px: Input should be greater than 0"),
    ({"px": "NaN"}, "px: Input should be a finite number"),
    ({"sz": "0"}, "sz: Input should be greater than 0"),
    ({"side": "X"}, "side: Input should be 'B' or 'A'"),
    ({"tid": None}, "tid: Input should be a valid integer"),
    (
        {"time": 1_546_300_800_000},
        "time: 1546300800000 is before 2022-06-01, when Hyperliquid started",
    ),
    ({"time": HOUR_LATER}, f"time: {HOUR_LATER} is more than 5 minutes after now ({NOW})"),
]


@pytest.mark.parametrize(("patch", "reason"), REJECTIONS)
def test_a_bad_trade_is_rejected_alone_with_its_reason(patch: dict[str, Any], reason: str) -> None:
    bad = {**TRADE, **patch}
    message = parse_ws_message(frame(TRADE, bad, {**TRADE, "tid": 7}), now_ms=NOW)
    assert isinstance(message, TradesMessage)
    assert [trade.tid for trade in message.trades] == [TRADE["tid"], 7]
    assert message.rejected == (Rejected(reason, dump(bad)),)
    trades, rejected = parse_trades(json.dumps([bad, TRADE]), now_ms=NOW)
    assert (len(trades), rejected) == (1, [Rejected(reason, dump(bad))])


def test_a_trade_without_tid_is_rejected() -> None:
    bad = {key: value for key, value in TRADE.items() if key != "tid"}
    trades, rejected = parse_trades([TRADE, bad], now_ms=NOW)
    assert len(trades) == 1
    assert rejected == [Rejected("tid: Field required", dump(bad))]


def test_time_just_inside_the_bounds_is_accepted() -> None:
    edges = [{**TRADE, "time": MIN_TIME_MS}, {**TRADE, "time": NOW + MAX_AHEAD_MS}]
    assert len(parse_trades(edges, now_ms=NOW)[0]) == 2


def test_default_now_comes_from_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate.common, "clock", lambda: NOW - 3_600_000)
    message = parse_ws_message(frame(TRADE))
    assert isinstance(message, TradesMessage) and message.trades == []
    assert message.rejected[0].reason.endswith(f"after now ({NOW - 3_600_000})")


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"px": "0"}, "px: Input should be greater than 0"),
        ({"side": "S"}, "side: Input should be 'B' or 'A'"),
        (
            {"liquidation": {"method": "adl", "markPx": "1"}},
            "liquidation.method: Input should be 'market' or 'backstop'",
        ),
        ({"time": HOUR_LATER}, f"time: {HOUR_LATER} is more than 5 minutes after now ({NOW})"),
    ],
)
def test_a_bad_fill_is_rejected_alone(patch: dict[str, Any], reason: str) -> None:
    bad = {**FILL, **patch}
    fills, rejected = parse_user_fills([FILL, bad], now_ms=NOW)
    assert (len(fills), rejected) == (1, [Rejected(reason, dump(bad))])
    user = {"isSnapshot": True, "user": BUYER.upper().replace("0X", "0x"), "fills": [bad, FILL]}
    message = parse_ws_message(json.dumps({"channel": "userFills", "data": user}), now_ms=NOW)
    assert isinstance(message, UserFillsMessage)
    assert (message.user, message.is_snapshot, len(message.fills)) == (BUYER, True, 1)
    assert message.rejected == (Rejected(reason, dump(bad)),)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            b"\xff{",
            "not JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        ),
        (b"[1, 2]", "(frame): expected a JSON object with a channel"),
        (b'{"channel": "webData2", "data": {}}', "channel: unknown channel 'webData2'"),
        (b'{"data": []}', "channel: unknown channel None"),
        (b'{"channel": "trades", "data": {"coin": "BTC"}}', "data: Input should be a valid array"),
        (
            b'{"channel": "l2Book", "data": {"coin": "X", "levels": '
            b'[[{"px": "1", "sz": "0", "n": 1}], []]}}',
            "data.levels.0.0.sz: Input should be greater than 0",
        ),
        (b'{"channel": "userFills", "data": {"fills": []}}', "data.user: Field required"),
    ],
)
def test_a_broken_frame_is_rejected_whole(raw: bytes, reason: str) -> None:
    message = parse_ws_message(raw, now_ms=NOW)
    assert message == InvalidFrame(
        rejected=(Rejected(reason, raw.decode("utf-8", "backslashreplace")),)
    )


def test_banner_pong_and_error_frames() -> None:
    assert parse_ws_message("Websocket connection established.") == Ignored(
        "Websocket connection established."
    )
    assert parse_ws_message(b'{"channel":"pong"}') == Pong()
    assert parse_ws_message(b'{"channel":"error","data":"Already subscribed"}') == ErrorMessage(
        "Already subscribed"
    )


def test_snapshots_keep_their_good_part() -> None:
    bad_position = {**POSITION, "positionValue": "x"}
    state, rejected = parse_clearinghouse_state(state_with(POSITION, bad_position))
    assert state is not None and len(state.positions) == 1
    assert rejected == [
        Rejected(
            "positionValue: Input should be a valid decimal",
            dump({"type": "oneWay", "position": bad_position}),
        )
    ]
    broken = state_with(POSITION, withdrawable=None)
    assert parse_clearinghouse_state(broken) == (
        None,
        [
            Rejected(
                "withdrawable: Decimal input should be an integer, float, string or Decimal object",
                dump(broken),
            )
        ],
    )
    mids, rejected = parse_all_mids({"BTC": "1.5", "ETH": "-2", "@107": "3"})
    assert mids == {"BTC": Decimal("1.5"), "@107": Decimal("3")}
    assert rejected == [Rejected("ETH: Input should be greater than 0", '{"ETH":"-2"}')]


def test_a_ctx_whose_universe_entry_is_bad_is_rejected_too() -> None:
    universe = [{"name": "A", "szDecimals": 1}, {"name": "B"}, {"name": "C", "szDecimals": 1}]
    meta, ctxs, rejected = parse_meta_and_asset_ctxs(
        [{"universe": universe}, [CTX, CTX, {**CTX, "markPx": "-1"}, CTX]]
    )
    assert meta is not None and [(a.index, a.name) for a in meta.universe] == [(0, "A"), (2, "C")]
    assert ctxs == [ctxs[0]] and ctxs[0].coin == "A"
    assert [r.reason for r in rejected] == [
        "universe.1: szDecimals: Field required",
        "assetCtxs.1: no valid universe entry at index 1",
        "assetCtxs.2 (C): markPx: Input should be greater than or equal to 0",
        "assetCtxs.3: no valid universe entry at index 3",
    ]


def test_rest_payload_that_is_not_json_or_not_an_array() -> None:
    assert parse_trades(b"<html>", now_ms=NOW) == (
        [],
        [Rejected("not JSON: Expecting value: line 1 column 1 (char 0)", "<html>")],
    )
    assert parse_trades(b'{"a": 1}', now_ms=NOW) == (
        [],
        [Rejected("(payload): expected a JSON array, got dict", '{"a": 1}')],
    )
    assert parse_vault_details(b"null") == (None, [])


# --- fuzzing: a trades stream never breaks the parser -------------------------------------------

HEX = "0123456789abcdefABCDEF"
decimals = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("10000000"), places=6, allow_nan=False
).map(str)
good_trades = st.fixed_dictionaries(
    {
        "coin": st.sampled_from(["BTC", "HYPE", "@107", "kPEPE", "xyz:TSLA"]),
        "side": st.sampled_from(["B", "A"]),
        "px": decimals,
        "sz": decimals,
        "time": st.integers(MIN_TIME_MS, NOW + MAX_AHEAD_MS),
        "hash": st.text(HEX, max_size=66),
        "tid": st.integers(0, 2**50),
        "users": st.lists(
            st.text(HEX, min_size=40, max_size=40).map("0x".__add__), min_size=2, max_size=2
        ),
    }
)
breakages = st.sampled_from(
    [
        ("px", "abc"),
        ("px", "0"),
        ("px", "-1"),
        ("px", None),
        ("px", 1e400),
        ("sz", "0"),
        ("sz", []),
        ("side", "X"),
        ("side", "b"),
        ("tid", None),
        ("tid", "1"),
        ("tid", 1.5),
        ("time", 1_546_300_800_000),
        ("time", NOW + 3_600_000),
        ("users", []),
        ("coin", ""),
        ("tid", "DELETE"),
        ("users", "DELETE"),
        ("time", "DELETE"),
    ]
)


@st.composite
def bad_trades(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        key, value = draw(breakages)
        trade = draw(good_trades)
        if value == "DELETE":
            del trade[key]
        else:
            trade[key] = value
        return trade
    return draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=20),
            st.lists(st.integers(), max_size=3),
            st.dictionaries(st.text(max_size=5), st.none()),
        )
    )


def quarantined(rejected: Iterable[Rejected]) -> list[tuple[str, str, str]]:
    """Write `rejected` through a real Quarantine; read back (source, reason, raw) per line."""
    with tempfile.TemporaryDirectory() as directory:
        quarantine = Quarantine(directory)
        for item in rejected:
            quarantine.add("ws:trades", item.reason, item.raw_text)
        lines = [
            json.loads(line)
            for path in sorted(Path(directory).glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
    assert quarantine.count == len(lines)
    return [(line["source"], line["reason"], line["raw"]) for line in lines]


def assert_one_line_reasons(rejected: Iterable[Rejected]) -> None:
    for item in rejected:
        assert item.reason.strip() and "\n" not in item.reason


mixed_records = st.lists(
    st.one_of(good_trades.map(lambda t: (True, t)), bad_trades().map(lambda t: (False, t))),
    max_size=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=mixed_records)
def test_fuzzed_trades_frames_keep_every_valid_trade(items: list[tuple[bool, Any]]) -> None:
    good = [trade for ok, trade in items if ok]
    bad = [trade for ok, trade in items if not ok]
    message = parse_ws_message(frame(*(trade for _, trade in items)), now_ms=NOW)
    assert isinstance(message, TradesMessage)
    assert [trade.tid for trade in message.trades] == [trade["tid"] for trade in good]
    assert [trade.buyer for trade in message.trades] == [t["users"][0].lower() for t in good]
    assert [trade.px for trade in message.trades] == [Decimal(t["px"]) for t in good]
    assert [rejected.raw_text for rejected in message.rejected] == [dump(trade) for trade in bad]
    assert_one_line_reasons(message.rejected)
    assert quarantined(message.rejected) == [
        ("ws:trades", rejected.reason, rejected.raw_text) for rejected in message.rejected
    ]
    trades, rejected = parse_trades(json.dumps([trade for _, trade in items]), now_ms=NOW)
    assert (trades, rejected) == (message.trades, list(message.rejected))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=mixed_records, data=st.data())
def test_garbage_bytes_in_a_trades_frame_never_raise(
    items: list[tuple[bool, Any]], data: st.DataObject
) -> None:
    raw = frame(*(trade for _, trade in items))
    at = data.draw(st.integers(0, len(raw)))
    raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    message = parse_ws_message(raw, now_ms=NOW)
    assert_one_line_reasons(message.rejected)
    if isinstance(message, InvalidFrame):
        (rejected,) = message.rejected
        assert rejected.raw_text == raw.decode("utf-8", "backslashreplace")
    assert quarantined(message.rejected) == [
        ("ws:trades", rejected.reason, rejected.raw_text) for rejected in message.rejected
    ]


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_garbage_frames_never_raise(raw: bytes | str) -> None:
    message = parse_ws_message(raw, now_ms=NOW)
    assert_one_line_reasons(message.rejected)
    if isinstance(message, InvalidFrame):
        assert len(message.rejected) == 1


@settings(max_examples=100, deadline=None)
@given(trades=st.lists(good_trades, min_size=1, max_size=10), cut=st.integers(1, 200))
def test_a_truncated_frame_is_rejected_whole(trades: list[Any], cut: int) -> None:
    raw = frame(*trades)
    raw = raw[: min(cut, len(raw) - 1)]
    message = parse_ws_message(raw, now_ms=NOW)
    assert isinstance(message, InvalidFrame)
    assert message.rejected[0].raw_text == raw.decode()
