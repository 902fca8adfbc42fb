"""The event bus, and the optional channels (l2Book, bbo, activeAssetCtx) stored and published:
depth figures checked against an independent computation from the simulator's own frames."""

from __future__ import annotations

import asyncio
import itertools
import json
from decimal import Decimal as D

import pytest
import websockets

from db.schema import ASSET_CTX, BBO, BOOK_DEPTH, BOOK_LEVELS, DEPTH_BANDS_BPS
from process.bus import Event, EventBus
from process.live_channels import LiveChannels, book_depth
from process.points import PointBuilder
from process.positions.book import PositionBook
from tests.conftest import influxql
from tests.test_points import write
from tests.test_ws import Collected, running, stream_for, wait_for
from validate import L2Book, Level, Trade

QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False}


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def level(px: str, sz: str, n: int = 1) -> Level:
    return Level(px=D(px), sz=D(sz), n=n)


def test_depth_of_a_hand_made_book() -> None:
    book = L2Book(
        coin="BTC",
        bids=(level("99.5", "2"), level("99.0", "1"), level("98.0", "4")),
        asks=(level("100.5", "1"), level("101.0", "3"), level("103.0", "1")),
        time_ms=1,
    )
    depth = book_depth(book)
    assert depth is not None
    assert depth.mid == 100.0 and depth.spread_bps == 100.0
    # 0.1 % / 0.5 %: nothing within 99.9..100.1 / 99.5..100.5 but the best levels at 99.5, 100.5
    assert depth.bid_usd == {10: 0.0, 50: 199.0, 100: 298.0, 200: 690.0}
    assert depth.ask_usd == {10: 0.0, 50: 100.5, 100: 403.5, 200: 403.5}
    assert depth.imbalance(10) is None
    assert depth.imbalance(200) == pytest.approx((690 - 403.5) / (690 + 403.5))
    assert (depth.bid_reach_bps, depth.ask_reach_bps) == (200.0, 300.0)
    assert book_depth(L2Book(coin="BTC", bids=(), asks=book.asks)) is None


async def test_bus_filters_by_kind_and_coin_and_drops_the_oldest() -> None:
    bus = EventBus()
    assert not bus.wants("trade")
    btc = bus.subscribe(["trade"], ["BTC"], name="btc", buffer=3)
    every = bus.subscribe(name="all")
    assert bus.wants("trade") and bus.wants("gap")
    for i in range(5):
        bus.publish("trade", "BTC", i, i)
    bus.publish("trade", "ETH", 9, 9)
    bus.publish("gap", None, 10, "g")
    assert [e.data for e in btc.drain()] == [2, 3, 4]  # the two oldest were dropped
    assert (btc.received, btc.dropped) == (5, 2)
    assert [e.kind for e in every.drain()] == ["trade"] * 6 + ["gap"]
    btc.close()
    assert not bus.wants("trade") or every in bus._by_kind["trade"]
    bus.publish("liquidation", "BTC", 11, "x")
    every.close()
    assert [e async for e in every] == [Event("liquidation", "BTC", 11, "x")]  # then it ends
    assert not bus.wants("liquidation")
    samples = {(s.name, s.labels.get("consumer")): s.value for s in bus.samples()}
    assert samples[("events_published_total", None)] == 8
    with pytest.raises(ValueError, match="unknown event kinds"):
        bus.subscribe(["trades"])  # type: ignore[list-item]


def test_events_are_json_ready_with_exact_decimals() -> None:
    trade = Trade(
        coin="BTC",
        side="buy",
        px=D("97000.5"),
        sz=D("0.00011"),
        time_ms=5,
        hash="0x" + "0" * 64,
        tid=7,
        buyer="0x" + "a" * 40,
        seller="0x" + "b" * 40,
    )
    data = Event("trade", "BTC", 5, trade).to_dict()
    assert json.loads(json.dumps(data))["data"] == {
        "coin": "BTC",
        "side": "buy",
        "px": "97000.5",
        "sz": "0.00011",
        "time_ms": 5,
        "hash": "0x" + "0" * 64,
        "tid": 7,
        "buyer": "0x" + "a" * 40,
        "seller": "0x" + "b" * 40,
    }


async def _frames(url: str, subscriptions: list[dict], into: list[dict], ready: asyncio.Event):
    """An independent client: every frame of `subscriptions`, as sent."""
    async with websockets.connect(url) as ws:
        for sub in subscriptions:
            await ws.send(json.dumps({"method": "subscribe", "subscription": sub}))
        ready.set()
        async for raw in ws:
            message = json.loads(raw)
            if message.get("channel") in ("l2Book", "bbo", "activeAssetCtx"):
                into.append(message)


def _expected_depth(data: dict) -> dict[str, float]:
    bids = [(float(x["px"]), float(x["sz"])) for x in data["levels"][0]]
    asks = [(float(x["px"]), float(x["sz"])) for x in data["levels"][1]]
    mid = (bids[0][0] + asks[0][0]) / 2
    out = {"mid": mid, "spread_bps": (asks[0][0] - bids[0][0]) / mid * 1e4}
    for bps in DEPTH_BANDS_BPS:
        bid = sum(px * sz for px, sz in bids if px >= mid * (1 - bps / 1e4))
        ask = sum(px * sz for px, sz in asks if px <= mid * (1 + bps / 1e4))
        out[f"bid_usd_{bps}bps"], out[f"ask_usd_{bps}bps"] = bid, ask
    return out


async def test_book_bbo_and_ctx_channels_are_stored_and_published(
    simulator, influxd, influx_db, tmp_path
) -> None:
    sim = await simulator(**QUIET, push_interval=0.25)
    bus = EventBus()
    books = bus.subscribe(["book"], ["BTC"], name="test")
    lines = Lines()
    book = PositionBook()
    book.set_market({"ETH": D("3000")}, {})
    live = LiveChannels(PointBuilder(), lines, bus, book=book, book_interval_ms=1000, book_levels=3)
    stream = stream_for(
        sim,
        Collected(),
        tmp_path,
        coins=["BTC", "ETH"],
        coin_channels=("l2Book", "bbo", "activeAssetCtx"),
        channel_coins=["BTC"],  # ETH: trades only
        on_message=live,
    )
    assert len(stream.subscriptions) == 2 + 3 + 1  # trades x2, BTC's three channels, allMids
    frames: list[dict] = []
    ready = asyncio.Event()
    channels = ("l2Book", "bbo", "activeAssetCtx")
    subs = [{"type": channel, "coin": "BTC"} for channel in channels]
    client = asyncio.create_task(_frames(sim.ws_url, subs, frames, ready))
    await ready.wait()
    async with running(stream):
        await wait_for(lambda: live.books_stored >= 4 and live.ctxs >= 2, timeout=15)
    client.cancel()
    write(influxd.url, influx_db, lines.lines)

    sent = {m["data"]["time"]: m["data"] for m in frames if m["channel"] == "l2Book"}
    stored = influxql(influxd.url, f"{BOOK_DEPTH.select()} ORDER BY time", influx_db)
    assert len(stored) == live.books_stored >= 4
    assert {row["coin"] for row in stored} == {"BTC"}
    times = [row["time"] // 1_000_000 for row in stored]
    assert all(b - a >= 1000 for a, b in itertools.pairwise(times))  # the interval
    # every push reaches both clients with the same time; only the snapshot each subscriber
    # gets right after subscribing is its own
    broadcast = [row for row in stored if row["time"] // 1_000_000 in sent]
    assert len(broadcast) >= len(stored) - 1
    for row in broadcast:
        expected = _expected_depth(sent[row["time"] // 1_000_000])
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    levels = influxql(
        influxd.url, f"{BOOK_LEVELS.select()} WHERE \"level\" = '0' AND \"side\" = 'ask'", influx_db
    )
    assert len(levels) == len(stored)
    for row in [row for row in levels if row["time"] // 1_000_000 in sent]:
        best = sent[row["time"] // 1_000_000]["levels"][1][0]
        assert (row["px"], row["sz"], row["n"]) == (float(best["px"]), float(best["sz"]), best["n"])
    published = [e for e in books.drain() if e.kind == "book"]
    assert len(published) == live.books >= len(stored)  # every snapshot published, some stored

    bbos = influxql(influxd.url, f"{BBO.select()} ORDER BY time", influx_db)
    sent_bbo = {m["data"]["time"]: m["data"]["bbo"] for m in frames if m["channel"] == "bbo"}
    assert 1 <= len(bbos) == live.bbos_stored
    matched = [row for row in bbos if row["time"] // 1_000_000 in sent_bbo]
    assert matched
    for row in matched:
        bid, ask = sent_bbo[row["time"] // 1_000_000]
        assert (row["bid_px"], row["ask_sz"]) == (float(bid["px"]), float(ask["sz"]))

    ctx_rows = influxql(influxd.url, f"{ASSET_CTX.select()}", influx_db)
    assert len(ctx_rows) == live.ctxs >= 2
    marks = {float(m["data"]["ctx"]["markPx"]) for m in frames if m["channel"] == "activeAssetCtx"}
    assert {row["mark_px"] for row in ctx_rows} <= marks
    assert set(book.marks) == {"ETH", "BTC"} and book.marks["ETH"] == D("3000")  # one coin moved
    assert float(book.marks["BTC"]) in marks  # to a mark the exchange sent
