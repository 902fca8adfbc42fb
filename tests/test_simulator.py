"""The local Hyperliquid simulator speaks the recorded wire formats and keeps an exact ledger."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.simulator import HLP_LIQUIDATOR, HLP_PARENT, Simulator
from tests.simulator.rest import weight
from validate import TradesMessage, parse_ws_message

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hyperliquid"
QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False, "push_interval": 60}
HEX_HASH = re.compile(r"0x[0-9a-f]{64}")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def keys(obj: dict[str, Any]) -> set[str]:
    return set(obj)


TLS = ssl.create_default_context()  # built once: httpx would build one per client (~0.1 s)
_clients: dict[int, httpx.AsyncClient] = {}


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Any]]:
    """Start simulators (seed 1, a free port) with one HTTP client each; all stopped after."""
    started: list[Simulator] = []

    async def start(**kwargs: Any) -> Simulator:
        sim = await Simulator(**{"seed": 1, "port": 0, **kwargs}).start()
        started.append(sim)
        _clients[id(sim)] = httpx.AsyncClient(base_url=sim.url, timeout=5, verify=TLS)
        return sim

    yield start
    for sim in started:
        await _clients.pop(id(sim)).aclose()
        await sim.stop()


async def info(sim: Simulator, body: Any) -> httpx.Response:
    return await _clients[id(sim)].post("/info", json=body)


async def recv(ws: Any, timeout: float = 2.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_channel(ws: Any, channel: str, timeout: float = 2.0) -> dict[str, Any]:
    while True:
        msg = await recv(ws, timeout)
        if msg["channel"] == channel:
            return msg


async def subscribe(ws: Any, sub: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
    return await recv_channel(ws, "subscriptionResponse")


# --- REST ------------------------------------------------------------------------------------


async def test_every_rest_type_has_the_recorded_shape(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    sim.burst("BTC", 45)
    ctx_fixture = fixture("info_metaAndAssetCtxs")["response"]

    meta = (await info(sim, {"type": "meta"})).json()
    assert keys(meta) == {"universe", "marginTables", "collateralToken"}
    assert [u["name"] for u in meta["universe"]] == ["BTC", "ETH", "SOL", "MATIC", "HYPE", "kPEPE"]
    for entry in meta["universe"]:
        assert keys(entry) - {"isDelisted"} == keys(ctx_fixture[0]["universe"][0])
    assert [u.get("isDelisted", False) for u in meta["universe"]].count(True) == 1

    meta2, ctxs = (await info(sim, {"type": "metaAndAssetCtxs"})).json()
    assert meta2 == meta and len(ctxs) == len(meta["universe"])
    for ctx in ctxs:
        assert keys(ctx) == keys(ctx_fixture[1][0])
    btc = ctxs[0]
    assert all(isinstance(btc[k], str) for k in btc if k != "impactPxs")
    assert ctxs[3]["midPx"] is None and ctxs[3]["impactPxs"] is None  # delisted
    assert [p.ctxs["BTC"] for p in sim.ledger.ctx_polls] == [btc]

    mids = (await info(sim, {"type": "allMids"})).json()
    assert set(mids) == {"BTC", "ETH", "SOL", "HYPE", "kPEPE"}
    assert all(Decimal(v) > 0 for v in mids.values())

    state_fixture = fixture("info_clearinghouseState")["response"]
    address = sim.addresses[0]
    state = (await info(sim, {"type": "clearinghouseState", "user": address})).json()
    assert keys(state) == keys(state_fixture)
    assert keys(state["marginSummary"]) == keys(state_fixture["marginSummary"])
    assert state["assetPositions"]
    for item in state["assetPositions"]:
        assert keys(item) == {"type", "position"} and item["type"] == "oneWay"
        position = item["position"]
        assert keys(position) == keys(state_fixture["assetPositions"][0]["position"])
        assert keys(position["cumFunding"]) == {"allTime", "sinceOpen", "sinceChange"}
        assert position["leverage"]["type"] in {"cross", "isolated"}
        assert ("rawUsd" in position["leverage"]) == (position["leverage"]["type"] == "isolated")
        assert position["liquidationPx"] is None or Decimal(position["liquidationPx"]) > 0
    assert sim.ledger.positions_of(address)[0].positions == [
        p["position"] for p in state["assetPositions"]
    ]

    trades = (await info(sim, {"type": "recentTrades", "coin": "BTC"})).json()
    ws_trade = fixture("ws_trades")["response"]["data"][0]
    assert len(trades) == 10 and all(keys(t) == keys(ws_trade) for t in trades)  # the newest 10
    assert [(t["time"], t["tid"]) for t in trades] == [
        (t.time, t.tid) for t in sim.ledger.valid_trades("BTC")
    ][-10:]

    book = (await info(sim, {"type": "l2Book", "coin": "ETH"})).json()
    bids, asks = book["levels"]
    assert keys(book) == {"coin", "time", "levels"} and len(bids) == len(asks) == 20
    assert all(keys(level) == {"px", "sz", "n"} for level in bids + asks)
    assert Decimal(bids[0]["px"]) < Decimal(asks[0]["px"])
    assert [Decimal(b["px"]) for b in bids] == sorted(
        (Decimal(b["px"]) for b in bids), reverse=True
    )
    assert [Decimal(a["px"]) for a in asks] == sorted(Decimal(a["px"]) for a in asks)

    now = state["time"]
    candles = (
        await info(
            sim,
            {
                "type": "candleSnapshot",
                "req": {"coin": "kPEPE", "interval": "1h", "startTime": now - 10 * 3_600_000},
            },
        )
    ).json()
    candle_fixture = fixture("info_candleSnapshot")["response"][0]
    assert len(candles) == 11
    assert all(keys(c) == keys(candle_fixture) for c in candles)
    assert all(c["T"] == c["t"] + 3_600_000 - 1 and c["i"] == "1h" for c in candles)
    assert [c["t"] for c in candles] == sorted(c["t"] for c in candles)
    assert isinstance(candles[0]["o"], str) and isinstance(candles[0]["n"], int)

    funding = (
        await info(
            sim, {"type": "fundingHistory", "coin": "BTC", "startTime": now - 30 * 86_400_000}
        )
    ).json()
    assert len(funding) == 500
    assert keys(funding[0]) == keys(fixture("info_fundingHistory")["response"][0])
    assert all(0 <= f["time"] % 3_600_000 < 1000 for f in funding)
    assert [f["time"] for f in funding] == sorted(f["time"] for f in funding)

    fills = (await info(sim, {"type": "userFills", "user": trades[-1]["users"][0]})).json()
    fill_keys = keys(fixture("info_userFills_liquidator")["response"][0])
    assert fills and all(keys(f) == fill_keys - {"liquidation"} for f in fills)
    assert [f["time"] for f in fills] == sorted((f["time"] for f in fills), reverse=True)

    vault_fixture = fixture("info_vaultDetails")["response"]
    hlp = (await info(sim, {"type": "vaultDetails", "vaultAddress": HLP_PARENT})).json()
    assert keys(hlp) == keys(vault_fixture)
    assert hlp["relationship"]["type"] == "parent"
    children = hlp["relationship"]["data"]["childAddresses"]
    assert HLP_LIQUIDATOR in children and len(children) == 4
    names = []
    for child in children:
        details = (await info(sim, {"type": "vaultDetails", "vaultAddress": child})).json()
        assert details["relationship"] == {"type": "child"}
        names.append(details["name"])
    assert "HLP Liquidator" in names and "Liquidator 2" in names
    unknown = await info(sim, {"type": "vaultDetails", "vaultAddress": "0x" + "ab" * 20})
    assert unknown.status_code == 200 and unknown.text == "null"


async def test_unknown_or_malformed_requests_get_422(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with httpx.AsyncClient(base_url=sim.url, verify=TLS) as client:
        for body in (
            b'{"type":"nope"}',
            b"not json",
            b"[1,2]",
            b'{"type":"clearinghouseState"}',
            b'{"type":"clearinghouseState","user":"0x12"}',
            b'{"type":"candleSnapshot","req":{"coin":"BTC","interval":"7m","startTime":0}}',
        ):
            response = await client.post("/info", content=body)
            assert response.status_code == 422, body
            assert response.text.startswith("Failed to deserialize the JSON body into the target")
    assert sim.ledger.rest_422 == 6 and sim.ledger.rest_weight_used == 0


def test_weights_round_per_item_extras_up() -> None:
    assert weight("allMids", 0) == weight("l2Book", 0) == weight("clearinghouseState", 0) == 2
    assert weight("meta", 0) == weight("vaultDetails", 0) == 20
    assert weight("recentTrades", 100) == 25 and weight("recentTrades", 101) == 26
    assert weight("userFills", 2000) == 120 and weight("fundingHistory", 1) == 21
    assert weight("candleSnapshot", 60) == 21 and weight("candleSnapshot", 61) == 22


async def test_weight_budget_answers_429_with_retry_after(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(weight_budget=100, **QUIET)
    statuses = [(await info(sim, {"type": "meta"})).status_code for _ in range(3)]  # 60
    statuses += [(await info(sim, {"type": "allMids"})).status_code for _ in range(21)]  # +40
    assert statuses == [200] * 23 + [429]
    refused = await info(sim, {"type": "meta"})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert sim.ledger.rest_weight_used == 100
    assert sim.ledger.rest_429 == {"allMids": 1, "meta": 1}


async def test_same_seed_serves_identical_state(make_sim: Callable[..., Any]) -> None:
    a, b = await make_sim(seed=7, **QUIET), await make_sim(seed=7, **QUIET)
    other = await make_sim(seed=8, **QUIET)
    assert a.addresses == b.addresses != other.addresses
    assert (await info(a, {"type": "meta"})).json() == (await info(b, {"type": "meta"})).json()
    for address in a.addresses[:25]:
        sa = (await info(a, {"type": "clearinghouseState", "user": address})).json()
        sb = (await info(b, {"type": "clearinghouseState", "user": address})).json()
        assert sa.pop("time") and sb.pop("time")
        assert sa == sb
    assert [t.tid for t in a.burst("SOL", 50)] == [t.tid for t in b.burst("SOL", 50)]


async def test_population_has_near_liquidation_positions_and_evolves(
    make_sim: Callable[..., Any],
) -> None:
    sim = await make_sim(**QUIET)
    _, ctxs = (await info(sim, {"type": "metaAndAssetCtxs"})).json()
    marks = {c: Decimal(ctx["markPx"]) for c, ctx in zip(sim.market.coins, ctxs, strict=True)}
    sizes, near = [], 0
    for address in sim.addresses[:150]:
        state = (await info(sim, {"type": "clearinghouseState", "user": address})).json()
        for item in state["assetPositions"]:
            pos = item["position"]
            sizes.append(Decimal(pos["positionValue"]))
            liq, mark = pos["liquidationPx"], marks[pos["coin"]]
            if liq is not None and abs(mark - Decimal(liq)) / mark <= Decimal("0.021"):
                near += 1
    assert near >= 3 and len(sizes) >= 150
    sizes.sort()
    assert sizes[-1] > 20 * sizes[len(sizes) // 2]  # power law: a few whales
    before = {a: dict(sim.population.accounts[a].positions) for a in sim.addresses}
    for _ in range(20):
        sim.evolve()
    after = {a: sim.population.accounts[a].positions for a in sim.addresses}
    closed = [(a, c) for a in before for c in before[a] if c not in after[a]]
    assert closed and any(set(after[a]) - set(before[a]) for a in before)
    address, coin = closed[0]
    state = (await info(sim, {"type": "clearinghouseState", "user": address})).json()
    assert coin not in {p["position"]["coin"] for p in state["assetPositions"]}


# --- WebSocket -------------------------------------------------------------------------------


async def test_acks_are_normalized_and_errors_are_frames(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with websockets.connect(sim.ws_url) as ws:
        ack = await subscribe(ws, {"coin": "BTC", "type": "l2Book"})
        assert ack == {
            "channel": "subscriptionResponse",
            "data": {
                "method": "subscribe",
                "subscription": {
                    "type": "l2Book",
                    "coin": "BTC",
                    "nSigFigs": None,
                    "mantissa": None,
                },
            },
        }
        assert (await recv(ws))["channel"] == "l2Book"  # current state right after the ack
        ack = await subscribe(ws, {"type": "trades", "coin": "SOL", "extra": 1})
        assert ack == fixture("ws_subscriptionResponse")["response"]
        await ws.send(json.dumps({"method": "ping"}))
        assert await recv(ws) == fixture("ws_pong")["response"]
        await ws.send(
            json.dumps({"method": "subscribe", "subscription": {"type": "trades", "coin": "SOL"}})
        )
        error = await recv(ws)
        assert error["channel"] == "error" and error["data"].startswith("Already subscribed")
        await ws.send("{not json")
        error = await recv(ws)
        assert error["channel"] == "error" and "Error parsing JSON" in error["data"]
        await ws.send(
            json.dumps({"method": "unsubscribe", "subscription": {"type": "trades", "coin": "SOL"}})
        )
        assert (await recv(ws))["data"] == {
            "method": "unsubscribe",
            "subscription": {"type": "trades", "coin": "SOL"},
        }
    assert len(sim.ledger.ws_errors_sent) == 2


async def test_every_ws_channel_has_the_recorded_shape(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    hype_ctx = fixture("info_metaAndAssetCtxs")["response"][1][3]
    expected = {
        "l2Book": fixture("ws_l2Book")["response"]["data"],
        "bbo": fixture("ws_bbo")["response"]["data"],
        "candle": fixture("ws_candle")["response"]["data"],
        "allMids": fixture("ws_allMids")["response"]["data"],
        "activeAssetCtx": {"coin": "HYPE", "ctx": hype_ctx},
    }
    async with websockets.connect(sim.ws_url) as ws:
        for kind, data in expected.items():
            sub = {"type": kind, "coin": "HYPE"} if kind != "allMids" else {"type": kind}
            if kind == "candle":
                sub["interval"] = "1m"
            await subscribe(ws, sub)
            got = (await recv_channel(ws, kind))["data"]
            assert keys(got) == keys(data), kind
            if kind == "activeAssetCtx":
                assert keys(got["ctx"]) == keys(data["ctx"])
        sim.tick()  # pushes again: l2Book always, the others when changed
        assert (await recv_channel(ws, "l2Book"))["data"]["coin"] == "HYPE"
    assert all(keys(level) == {"px", "sz", "n"} for level in sim.market.bbo("HYPE", 0)["bbo"])


async def test_ws_limits_answer_with_error_frames(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(max_subscriptions=2, max_ws_messages_per_minute=5, **QUIET)
    async with websockets.connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "trades", "coin": "BTC"})
        await subscribe(ws, {"type": "trades", "coin": "ETH"})
        await ws.send(
            json.dumps({"method": "subscribe", "subscription": {"type": "bbo", "coin": "BTC"}})
        )
        assert "more than 2 total subscriptions" in (await recv_channel(ws, "error"))["data"]
        for _ in range(2):  # messages 4 and 5 of 5
            await ws.send(json.dumps({"method": "ping"}))
            assert await recv(ws) == {"channel": "pong"}
        await ws.send(json.dumps({"method": "ping"}))
        assert (await recv(ws))["data"].startswith("Too many messages")


async def test_idle_socket_is_dropped_but_a_pinging_one_is_not(
    make_sim: Callable[..., Any],
) -> None:
    sim = await make_sim(idle_timeout=0.6, **QUIET)
    async with websockets.connect(sim.ws_url) as idle, websockets.connect(sim.ws_url) as busy:
        for _ in range(8):
            await busy.send(json.dumps({"method": "ping"}))
            await asyncio.sleep(0.2)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(idle.recv(), 1.0)
        await busy.send(json.dumps({"method": "ping"}))
        assert (await recv_channel(busy, "pong"))["channel"] == "pong"
    assert sim.ledger.ws_idle_drops == 1


async def test_new_trades_subscription_replays_recent_trades(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(replay_trades=30, **QUIET)
    sim.burst("ETH", 50)
    async with websockets.connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "trades", "coin": "ETH"})
        replay = (await recv_channel(ws, "trades"))["data"]
    expected = sim.ledger.valid_trades("ETH")[-30:]
    assert [(t["coin"], t["time"], t["tid"]) for t in replay] == [t.key for t in expected]
    assert sim.ledger.trade_count("ETH") == 50  # a replay is not a new trade


async def test_burst_of_same_millisecond_trades_is_distinct(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with websockets.connect(sim.ws_url, max_size=None) as ws:
        await subscribe(ws, {"type": "trades", "coin": "BTC"})
        burst = sim.burst("BTC", 1000)
        received = (await recv_channel(ws, "trades"))["data"]
    assert len(received) == 1000 and len({t["time"] for t in received}) == 1
    ledger = sim.ledger.valid_trades("BTC")
    assert len(ledger) == len({t.key for t in ledger}) == 1000
    assert [t.tid for t in ledger] == [t["tid"] for t in received] == [t.tid for t in burst]
    lows = [t.tid % 10**6 for t in ledger]
    assert len(set(lows)) < len(lows)
    assert all(0 <= t.tid < 2**50 for t in ledger)
    assert all(t.hash == "0x" + "0" * 64 or HEX_HASH.fullmatch(t.hash) for t in ledger)


async def test_trade_flow_draws_users_from_the_population(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(rate=300, evolve_interval=0, auto_liquidations=False)
    async with websockets.connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "trades", "coin": "BTC"})
        seen: list[dict[str, Any]] = []
        while len(seen) < 30:
            seen += (await recv_channel(ws, "trades"))["data"]
    known = set(sim.addresses) | {"0x010461c14e146ac35fe42271bdc1134ee31c703a"}
    assert all(set(t["users"]) <= known and t["users"][0] != t["users"][1] for t in seen)
    assert {(t["coin"], t["time"], t["tid"]) for t in seen} <= sim.ledger.trade_keys("BTC")
    assert all(Decimal(t["px"]) > 0 and Decimal(t["sz"]) > 0 for t in seen)


async def test_backstop_liquidation_side_comes_from_the_vault(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with websockets.connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "trades", "coin": "ETH"})
        long_liq = sim.backstop_liquidation(coin="ETH", side="long")
        long_trade = (await recv_channel(ws, "trades"))["data"][0]
        short_liq = sim.backstop_liquidation(coin="ETH", side="short")
        short_trade = (await recv_channel(ws, "trades"))["data"][0]
    assert long_trade["users"] == [HLP_LIQUIDATOR, long_liq.user] and long_trade["side"] == "B"
    assert short_trade["users"] == [short_liq.user, HLP_LIQUIDATOR] and short_trade["side"] == "A"
    assert (long_liq.side, short_liq.side) == ("long", "short")
    assert [r.method for r in sim.ledger.liquidations_of("ETH")] == ["backstop", "backstop"]
    assert long_liq.tid == long_trade["tid"] and long_liq.sz == long_trade["sz"]
    state = (await info(sim, {"type": "clearinghouseState", "user": long_liq.user})).json()
    assert "ETH" not in {p["position"]["coin"] for p in state["assetPositions"]}
    fills = (await info(sim, {"type": "userFills", "user": HLP_LIQUIDATOR})).json()
    assert [f["liquidation"]["liquidatedUser"] for f in fills[:2]] == [
        short_liq.user,
        long_liq.user,
    ]
    assert fills[1]["dir"].startswith("Liquidated") and fills[1]["dir"].endswith("Long")
    assert fills[1]["side"] == "B" and fills[1]["crossed"] is True and fills[1]["fee"] == "0.0"
    assert fills[1]["liquidation"]["method"] == "backstop"


async def test_market_liquidation_victim_is_the_taker(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    records = sim.market_liquidation(coin="SOL", side="long", parts=3)
    trades = sim.ledger.valid_trades("SOL")
    assert len(records) == len(trades) == 3 and len({t.hash for t in trades}) == 1
    victim = records[0].user
    assert all(t.side == "A" and t.seller == victim for t in trades)
    assert all(r.side == "long" and r.method == "market" for r in records)
    short = sim.market_liquidation(coin="SOL", side="short")[0]
    trade = sim.ledger.find_trade("SOL", short.time, short.tid)
    assert trade is not None and trade.side == "B" and trade.buyer == short.user
    fills = (await info(sim, {"type": "userFills", "user": victim})).json()
    liq_fills = [f for f in fills if "liquidation" in f]
    assert len(liq_fills) == 3 and all(f["crossed"] and f["side"] == "A" for f in liq_fills)


async def test_forced_disconnect_and_flow_while_disconnected(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with websockets.connect(sim.ws_url) as a, websockets.connect(sim.ws_url) as b:
        assert await sim.disconnect_all(reject_seconds=1.0) == 2
        for ws in (a, b):
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2.0)
    with pytest.raises(InvalidStatus):
        await websockets.connect(sim.ws_url)
    sim.burst("HYPE", 5)  # emitted while nobody is connected
    await asyncio.sleep(1.1)
    async with websockets.connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "trades", "coin": "HYPE"})
        assert len((await recv_channel(ws, "trades"))["data"]) == 5
    assert sim.ledger.ws_forced_disconnects == 2 and sim.ledger.ws_rejected_upgrades == 1


async def test_malformed_frames_are_flagged_in_the_ledger(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with websockets.connect(sim.ws_url) as ws:
        await subscribe(ws, {"type": "trades", "coin": "BTC"})
        sim.send_malformed("bad_px", "BTC", good=2)
        frame = (await recv_channel(ws, "trades"))["data"]
        sim.send_malformed("missing_tid", "BTC", good=2)
        frame2 = (await recv_channel(ws, "trades"))["data"]
        sim.send_malformed("not_json", "BTC", text="Websocket connection established.")
        assert await asyncio.wait_for(ws.recv(), 2) == "Websocket connection established."
        sim.send_error("boom")
        assert await recv(ws) == {"channel": "error", "data": "boom"}
    assert [t["px"] for t in frame].count("abc") == 1
    assert sum("tid" not in t for t in frame2) == 1
    assert [m.reason for m in sim.ledger.malformed] == ["bad_px", "missing_tid", "not_json"]
    valid = sim.ledger.trade_keys("BTC")
    assert len(valid) == 4 == sim.ledger.trade_count("BTC")
    assert {(t["coin"], t["time"], t["tid"]) for t in frame if t["px"] != "abc"} <= valid
    assert sim.ledger.malformed[0].raw["tid"] not in {k[2] for k in valid}


async def test_fast_push_batches_frames(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with websockets.connect(sim.ws_url, max_size=None) as ws:
        await subscribe(ws, {"type": "trades", "coin": "kPEPE"})
        result = await sim.fast_push(5000, batch=250, coin="kPEPE")
        sizes: list[int] = []
        while sum(sizes) < 5000:
            sizes.append(len((await recv_channel(ws, "trades"))["data"]))
    assert result["count"] == 5000 and result["frames"] == 20 and sizes == [250] * 20
    assert len(sim.ledger.trade_keys("kPEPE")) == 5000


async def test_unrecorded_fast_push_sends_valid_distinct_trades(
    make_sim: Callable[..., Any],
) -> None:
    """record=False: pre-built trades, still valid wire trades, counted but recorded nowhere."""
    sim = await make_sim(**QUIET, n_addresses=50)
    coins = [cs.name for cs in sim.market.active]
    async with websockets.connect(sim.ws_url, max_size=None) as ws:
        for coin in coins:
            await subscribe(ws, {"type": "trades", "coin": coin})
        result = await sim.fast_push(5000, batch=250, record=False)
        frames = [await asyncio.wait_for(ws.recv(), 2) for _ in range(result["frames"])]
        with pytest.raises(TimeoutError):  # nothing more than what was counted
            await asyncio.wait_for(ws.recv(), 0.2)
    messages = [parse_ws_message(f) for f in frames]
    batches = [m.trades for m in messages if isinstance(m, TradesMessage) and not m.rejected]
    assert len(batches) == len(messages) == 20
    assert all(len({t.coin for t in batch}) == 1 for batch in batches)
    trades = [t for batch in batches for t in batch]
    assert result["count"] == 5000 == len(trades) and len({t.coin for t in trades}) > 1
    assert len({(t.coin, t.time_ms, t.tid % 10**6) for t in trades}) == 5000  # also the slots
    assert max(t.tid for t in trades) < 2**50
    wire_keys = ["coin", "side", "px", "sz", "time", "hash", "tid", "users"]  # as burst sends
    assert list(json.loads(frames[0])["data"][0]) == wire_keys
    assert {t.buyer for t in trades} == set(sim.addresses) >= {t.seller for t in trades}
    for t in trades:
        cs = sim.market.coins[t.coin]
        assert t.sz % Decimal(10) ** -cs.sz_decimals == 0 and abs(t.px / Decimal(cs.mid) - 1) < 0.05
    summary = (await _clients[id(sim)].get("/_sim/ledger")).json()
    assert summary["trades"] == sim.ledger.trade_count() == 5000 and not sim.ledger.trades
    assert not any(sim.factory.recent[c] for c in coins) and not sim.fills.by_user


async def test_control_endpoint_over_http(make_sim: Callable[..., Any]) -> None:
    sim = await make_sim(**QUIET)
    async with httpx.AsyncClient(base_url=sim.url, verify=TLS) as client:

        async def control(**body: Any) -> httpx.Response:
            return await client.post("/_sim/control", json=body)

        burst = (await control(action="burst", coin="ETH", count=10)).json()
        assert burst["ok"] and len(burst["result"]) == 10
        liq = (await control(action="backstop_liquidation", coin="SOL", side="short")).json()
        assert liq["result"]["side"] == "short" and liq["result"]["method"] == "backstop"
        pushed = (await control(action="fast_push", count=300, batch=100)).json()
        assert pushed["result"]["count"] == 300
        assert (await control(action="set_rate", rate=5)).json()["ok"] and sim.rate == 5
        assert (await control(action="disconnect")).json()["result"] == 0
        assert (await control(action="nope")).status_code == 400
        assert (await control(action="burst", bogus=1)).status_code == 400
        summary = (await client.get("/_sim/ledger")).json()
        liqs = (await client.get("/_sim/ledger/liquidations")).json()
    assert summary["trades"] == 311 and summary["liquidations"] == 1
    assert summary["trades_by_coin"]["ETH"] >= 10 and liqs[0]["user"] == liq["result"]["user"]


def test_command_line_prints_its_urls() -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--port", "0", "--rate", "5"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        url = re.search(r"http://127\.0\.0\.1:\d+", lines[1])
        assert url and "ws://127.0.0.1:" in lines[2]
        response = httpx.post(f"{url.group(0)}/info", json={"type": "allMids"}, timeout=5)
        assert response.status_code == 200 and "BTC" in response.json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
