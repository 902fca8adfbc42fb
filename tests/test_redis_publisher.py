"""The Redis publisher against a real redis-server: bus events reach a real subscriber as their
exact JSON on their exact channels, streams keep about `stream_maxlen` entries, and an outage
drops (and counts) exactly what was published while Redis was down."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from process.bus import EventBus
from process.liquidations import LiquidationEvent
from process.outputs.redis_config import parse_redis
from process.outputs.redis_publisher import RedisPublisher
from tests.redis_server import LocalRedis
from validate import Trade

T0 = 1_767_225_600_000
BUYER, SELLER = "0x" + "ab" * 20, "0x" + "cd" * 20
PASSWORD = "pw-Redis-9f3e2c"


def trade(tid: int, coin: str = "BTC", at: int = T0) -> Trade:
    return Trade(
        coin=coin,
        side="buy",
        px=D("97123.5"),
        sz=D("0.0015"),
        time_ms=at,
        hash="0x" + "0" * 64,
        tid=tid,
        buyer=BUYER,
        seller=SELLER,
    )


class Listener:
    """A real subscriber: PSUBSCRIBEs `patterns` and keeps every message, (channel, data)."""

    def __init__(self, url: str, *patterns: str) -> None:
        self.client = Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.client.pubsub()
        self.patterns = patterns
        self.messages: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Listener:
        await self.pubsub.psubscribe(*self.patterns)
        confirmed = 0
        while confirmed < len(self.patterns):  # subscribed on the server from here on
            message = await self.pubsub.get_message(timeout=5)
            confirmed += message is not None and message["type"] == "psubscribe"
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "pmessage":
                self.messages.append((message["channel"], message["data"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()


@asynccontextmanager
async def listening(url: str, *patterns: str) -> AsyncIterator[Listener]:
    listener = await Listener(url, *patterns).start()
    try:
        yield listener
    finally:
        await listener.stop()


@asynccontextmanager
async def running(publisher: RedisPublisher, grace: float = 5.0) -> AsyncIterator[RedisPublisher]:
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        await publisher.close(grace)
        await task


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@contextmanager
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.DEBUG):
        yield


def publisher_for(url: str, bus: EventBus, **section: Any) -> RedisPublisher:
    return RedisPublisher(parse_redis({"url": url, "backoff_base": 0.05, **section}), bus)


async def test_every_event_arrives_once_as_its_json_on_its_channel(redis_server) -> None:
    bus = EventBus()
    publisher = publisher_for(
        redis_server.url, bus, channel_prefix="hl", events=["trade", "liquidation", "alert"]
    )
    liquidation = LiquidationEvent(
        "ETH", "long", "backstop", D("3012.4"), D("2.5"), 77, T0 + 5, user=SELLER
    )
    async with listening(redis_server.url, "hl:*") as listener, running(publisher):
        bus.publish_trades([trade(1), trade(2, "ETH", T0 + 1), trade(3, "xyz:TSLA", T0 + 2)])
        bus.publish("liquidation", "ETH", T0 + 5, liquidation)
        bus.publish("alert", None, T0 + 6, {"text": "account-wide"})
        bus.publish("bbo", "BTC", T0 + 7, {"not": "subscribed"})
        await until(lambda: len(listener.messages) == 5)
        await asyncio.sleep(0.2)  # nothing more comes
    assert listener.messages == [
        ("hl:trade:BTC", json.dumps(trade_json(1, "BTC", T0), separators=(",", ":"))),
        ("hl:trade:ETH", json.dumps(trade_json(2, "ETH", T0 + 1), separators=(",", ":"))),
        ("hl:trade:xyz:TSLA", json.dumps(trade_json(3, "xyz:TSLA", T0 + 2), separators=(",", ":"))),
        (
            "hl:liquidation:ETH",
            '{"kind":"liquidation","coin":"ETH","time_ms":1767225600005,"data":{"coin":"ETH",'
            '"side":"long","method":"backstop","px":"3012.4","sz":"2.5","tid":77,'
            f'"time_ms":1767225600005,"user":"{SELLER}"}}}}',
        ),
        (
            "hl:alert",
            '{"kind":"alert","coin":null,"time_ms":1767225600006,"data":{"text":"account-wide"}}',
        ),
    ]
    assert (publisher.published, publisher.dropped.total(), publisher.errors) == (5, 0, 0)
    assert not publisher.connected  # closed


def trade_json(tid: int, coin: str, at: int) -> dict[str, Any]:
    return {
        "kind": "trade",
        "coin": coin,
        "time_ms": at,
        "data": {
            "coin": coin,
            "side": "buy",
            "px": "97123.5",
            "sz": "0.0015",
            "time_ms": at,
            "hash": "0x" + "0" * 64,
            "tid": tid,
            "buyer": BUYER,
            "seller": SELLER,
        },
    }


async def test_streams_hold_every_coin_in_order_trimmed_to_about_maxlen(redis_server) -> None:
    bus = EventBus()
    publisher = publisher_for(redis_server.url, bus, streams=True, stream_maxlen=500)
    trades = [trade(tid, ("BTC", "ETH", "SOL")[tid % 3], T0 + tid) for tid in range(5000)]
    async with running(publisher):
        for start in range(0, len(trades), 250):
            bus.publish_trades(trades[start : start + 250])
            await asyncio.sleep(0)
        await until(lambda: publisher.published == 5000)
    client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        length = await client.xlen("hyperflux:trade")
        entries = await client.xrange("hyperflux:trade")
        kinds = await client.keys("hyperflux:*")
    finally:
        await client.aclose()
    assert 500 <= length < 500 + 100  # MAXLEN ~: whole nodes of 100 entries are trimmed
    tail = [json.loads(fields["data"])["data"]["tid"] for _, fields in entries]
    assert tail == list(range(5000 - length, 5000))  # the newest, every coin, in order
    assert kinds == ["hyperflux:trade"]  # one stream per kind


async def test_an_outage_drops_and_counts_exactly_what_came_while_redis_was_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = LocalRedis(tmp_path / "redis", password=PASSWORD)
    server.start()
    bus = EventBus()
    publisher = publisher_for(server.url, bus, backoff_max=0.3)
    try:
        with all_logs(caplog):
            async with running(publisher):
                async with listening(server.url, "hyperflux:trade:*") as before:
                    bus.publish_trades(trade(tid) for tid in range(100))
                    await until(lambda: len(before.messages) == 100)
                server.stop()
                for tid in range(100, 150):  # down: dropped, the first ones by a failed send
                    bus.publish_trades([trade(tid)])
                    await asyncio.sleep(0.01)
                await until(lambda: publisher.dropped["down"] == 50)
                server.start()
                async with listening(server.url, "hyperflux:trade:*") as after:
                    await until(lambda: publisher.connected)
                    bus.publish_trades(trade(tid) for tid in range(150, 250))
                    await until(lambda: len(after.messages) == 100)
    finally:
        server.stop()
    received = [json.loads(data)["data"]["tid"] for _, data in before.messages + after.messages]
    assert received == [*range(100), *range(150, 250)]
    assert (publisher.published, publisher.dropped["down"], publisher.reconnects) == (200, 50, 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "process.outputs.redis_publisher"]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert any("lost (ConnectionError" in line for line in lines)
    assert any("reachable again after" in line and "50 events dropped" in line for line in lines)
    assert lines[-1] == (
        "redis: 200 events published, 50 dropped while Redis was unreachable, "
        "0 not sent in the time given at stop"
    )
    for record in caplog.records:
        shown = record.getMessage() + (record.exc_text or "")
        assert PASSWORD not in shown and "Traceback" not in shown, record.name


async def test_redis_unreachable_at_start_then_up(tmp_path: Path, caplog) -> None:
    server = LocalRedis(tmp_path / "redis")
    bus = EventBus()
    publisher = publisher_for(server.url, bus, backoff_max=0.2)
    try:
        with all_logs(caplog):
            async with running(publisher):
                bus.publish_trades(trade(tid) for tid in range(10))
                await until(lambda: publisher.dropped["down"] == 10)
                server.start()
                async with listening(server.url, "hyperflux:*") as listener:
                    await until(lambda: publisher.connected)
                    bus.publish_trades([trade(10)])
                    await until(lambda: len(listener.messages) == 1)
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unreachable (ConnectionError" in warnings[0]
    assert publisher.reconnects == 0  # never connected before: nothing was lost


async def test_a_wrong_password_is_reported_once_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = LocalRedis(tmp_path / "redis", password=PASSWORD)
    server.start()
    wrong = "wrong-" + PASSWORD
    bus = EventBus()
    publisher = publisher_for(server.url.replace(PASSWORD, wrong), bus, backoff_max=0.1)
    try:
        with all_logs(caplog):
            async with running(publisher, grace=1.0):
                bus.publish_trades([trade(1)])
                await asyncio.sleep(0.5)  # a few attempts
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "AuthenticationError" in warnings[0], warnings
    assert (publisher.published, publisher.dropped["down"]) == (0, 1)
    for record in caplog.records:
        assert wrong not in record.getMessage(), record.name


async def test_close_publishes_what_is_buffered_and_gives_up_when_down(redis_server) -> None:
    bus = EventBus()
    publisher = publisher_for(redis_server.url, bus)
    async with listening(redis_server.url, "hyperflux:*") as listener:
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.connected)
        bus.publish_trades(trade(tid) for tid in range(3000))  # then stop at once
        await publisher.close(5.0)
        await task
        await until(lambda: len(listener.messages) == 3000)
    assert publisher.published == 3000

    down = publisher_for("redis://127.0.0.1:1/0", bus := EventBus())  # nothing listens there
    task = asyncio.create_task(down.run())
    bus.publish_trades(trade(tid) for tid in range(5))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await down.close(5.0)
    await task
    assert time.monotonic() - started < 0.5
    assert (down.published, down.dropped["down"], down.dropped["stop"]) == (0, 5, 0)
    samples = {(s.name, tuple(s.labels.values())): s.value for s in down.samples()}
    assert samples[("redis_dropped_total", ("down",))] == 5
    assert samples[("redis_connected", ())] == 0
