"""InfoClient against a real local HTTP server that answers from a script.

The server is a stand-in for Hyperliquid's failure modes (429 with Retry-After, 5xx, 422, a
stall); end-to-end tests against the Hyperliquid simulator live elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from fetch import weights
from fetch.rate_limit import WeightBudget
from fetch.rest import InfoClient, InfoRequestError
from utils.backoff import parse_retry_after
from utils.breaker import CircuitOpenError
from utils.net import free_port

UNKNOWN_VARIANT = "Failed to deserialize the JSON body into the target type: unknown variant `x`"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering


class ScriptedServer:
    """POST /info answers the next scripted `Reply` (then `default`); records every request."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[tuple[float, dict]] = []  # (monotonic time, JSON body)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def types(self) -> list[str]:
        return [body["type"] for _, body in self.requests]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the exchange

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/info"
                assert self.headers["Content-Type"] == "application/json"
                server.requests.append((time.monotonic(), body))
                reply = server.script.popleft() if server.script else server.default
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        return Handler


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted.start()
    yield scripted
    scripted.stop()


def make_client(url: str, **kwargs: object) -> InfoClient:
    options: dict = {
        "budget": WeightBudget(1200, safety_margin=0.1),
        "timeout": 2.0,
        "backoff_base": 0.05,
        "backoff_cap": 0.1,
    }
    options.update(kwargs)
    return InfoClient(url, **options)


L2BOOK = {"type": "l2Book", "coin": "BTC", "nSigFigs": None, "mantissa": None}


async def test_retries_429_honouring_retry_after_then_500_then_succeeds(
    server: ScriptedServer,
) -> None:
    server.script.extend(
        [
            Reply(429, b"rate limited", {"Retry-After": "1"}),
            Reply(500, b"internal error"),
            Reply(200, b'{"coin":"BTC","levels":[[],[]]}'),
        ]
    )
    async with make_client(server.url) as client:
        body = await client.post(L2BOOK)

    assert body == b'{"coin":"BTC","levels":[[],[]]}'
    assert [b for _, b in server.requests] == [L2BOOK] * 3
    (t429, _), (t500, _), (t200, _) = server.requests
    assert t500 - t429 >= 1.0  # Retry-After: 1
    assert t200 - t500 < 1.0  # jittered backoff, capped at 0.1 s
    assert client.stats.requests == {"l2Book": 3}
    assert (client.stats.retries, client.stats.rate_limited) == (2, 1)
    assert client.stats.weight_used == 6  # every answered attempt costs the base weight 2
    assert client.budget.used_last_60s() == 6
    assert client.breaker("l2Book").fail_counter == 0  # the success reset the 500


async def test_422_is_raised_at_once_never_retried(server: ScriptedServer) -> None:
    server.script.append(Reply(422, UNKNOWN_VARIANT.encode()))
    async with make_client(server.url) as client:
        with pytest.raises(InfoRequestError) as refused:
            await client.post({"type": "x"})

    assert str(refused.value) == (
        "Hyperliquid refused info request 'x' (malformed body or unknown type, not retried):"
        f" HTTP 422: {UNKNOWN_VARIANT}"
    )
    assert (refused.value.info_type, refused.value.status) == ("x", 422)
    assert len(server.requests) == 1
    assert client.stats.retries == 0
    assert client.budget.used_last_60s() == 20  # an unknown type weighs 20
    assert client.breaker("x").state == "closed"


async def test_a_stall_beyond_the_timeout_is_retried(server: ScriptedServer) -> None:
    server.script.extend([Reply(delay=1.5), Reply(body=b'{"BTC":"1.0"}')])
    async with make_client(server.url, timeout=0.3) as client:
        started = time.monotonic()
        body = await client.post({"type": "allMids"})
        elapsed = time.monotonic() - started

    assert body == b'{"BTC":"1.0"}'
    assert 0.3 <= elapsed < 1.5
    assert len(server.requests) == 2
    assert client.stats.retries == 1
    assert client.stats.weight_used == 4  # the timed-out request may have been counted
    assert client.breaker("allMids").fail_counter == 0


async def test_item_weights_are_reserved_high_and_settled_exactly(server: ScriptedServer) -> None:
    fills = json.dumps([{"tid": i} for i in range(45)]).encode()
    candles = json.dumps([{"t": i} for i in range(61)]).encode()
    server.script.extend([Reply(body=fills, delay=0.3), Reply(body=candles)])
    async with make_client(server.url) as client:
        pending = asyncio.ensure_future(client.post({"type": "userFills", "user": "0x1"}))
        await asyncio.sleep(0.15)
        in_flight = client.budget.used_last_60s()
        await pending
        after_fills = client.budget.used_last_60s()
        request = {"coin": "BTC", "interval": "1m", "startTime": 0, "endTime": 3_600_000}
        await client.post({"type": "candleSnapshot", "req": request})

    assert in_flight == 120  # 20 + 2000 fills / 20, reserved before the answer
    assert after_fills == 23  # 20 + ceil(45 / 20)
    assert client.budget.used_last_60s() == 23 + 22  # 20 + ceil(61 / 60)
    assert client.stats.weight_used == 45


async def test_a_caller_can_count_items_and_use_a_share(server: ScriptedServer) -> None:
    server.script.append(Reply(body=b'{"fills":[1,2,3]}'))
    async with make_client(server.url) as client:
        share = client.budget.limited(0.5)
        await client.post(
            {"type": "recentTrades", "coin": "BTC"},
            items_estimate=100,
            count_items=lambda body: len(json.loads(body)["fills"]),
            budget=share,
        )
        assert share.used_last_60s() == client.budget.used_last_60s() == 21


async def test_the_breaker_opens_after_repeated_5xx_and_fails_fast(server: ScriptedServer) -> None:
    server.default = Reply(502, b"bad gateway")
    async with make_client(server.url, max_attempts=5, breaker_fail_max=3) as client:
        with pytest.raises(CircuitOpenError) as refused:
            await client.post(L2BOOK)
        assert len(server.requests) == 3  # the 4th attempt was refused by the breaker
        assert isinstance(refused.value.__cause__, InfoRequestError)
        assert str(refused.value).startswith(
            "circuit breaker info:l2Book is open after 3 failed calls in a row;"
        )
        started = time.monotonic()
        with pytest.raises(CircuitOpenError):
            await client.post(L2BOOK)
        assert time.monotonic() - started < 0.1
        assert len(server.requests) == 3

        server.default = Reply(body=b"{}")
        assert await client.post({"type": "allMids"}) == b"{}"  # other types are unaffected

    assert client.stats.breaker_transitions == {("l2Book", "open"): 1}
    assert client.stats.weight_used == 3 * 2 + 2


async def test_retries_give_up_after_max_attempts(server: ScriptedServer) -> None:
    server.default = Reply(503, b"  service\n unavailable  ")
    async with make_client(server.url, max_attempts=2) as client:
        with pytest.raises(InfoRequestError) as failed:
            await client.post({"type": "meta"})
    assert str(failed.value) == (
        "Hyperliquid info request 'meta' failed after 2 attempts: HTTP 503: service unavailable"
    )
    assert failed.value.status == 503
    assert len(server.requests) == 2


async def test_a_refused_connection_is_retried_and_costs_no_weight() -> None:
    async with make_client(f"http://127.0.0.1:{free_port()}", max_attempts=3) as client:
        with pytest.raises(InfoRequestError, match="failed after 3 attempts: ConnectError") as e:
            await client.post({"type": "meta"})
    assert isinstance(e.value.__cause__, httpx.ConnectError)
    assert client.stats.retries == 2
    assert client.budget.used_last_60s() == 0


# --- what a request costs (API.md section 4) ----------------------------------------------


def test_weight_table() -> None:
    assert [weights.base_weight(t) for t in ("l2Book", "allMids", "clearinghouseState")] == [2] * 3
    assert [weights.base_weight(t) for t in ("orderStatus", "spotClearinghouseState")] == [2, 2]
    assert weights.base_weight("exchangeStatus") == 2
    assert weights.base_weight("userRole") == 60
    assert [weights.base_weight(t) for t in ("meta", "metaAndAssetCtxs", "vaultDetails")] == [
        20
    ] * 3
    assert weights.request_weight("userFills", 0) == 20
    assert weights.request_weight("userFills", 1) == 21  # rounding undocumented: ceil
    assert weights.request_weight("userFills", 45) == 23
    assert weights.request_weight("userFills", 2000) == 120
    assert weights.request_weight("candleSnapshot", 60) == 21
    assert weights.request_weight("candleSnapshot", 61) == 22
    assert weights.request_weight("candleSnapshot", 5000) == 104
    assert weights.request_weight("l2Book", 500) == 2  # no per-item extra


def test_reservations_are_upper_bounds() -> None:
    reserve = weights.reserve_weight
    assert reserve({"type": "userFills", "user": "0x1"}) == 120  # newest 2000 fills
    assert reserve({"type": "userFillsByTime", "user": "0x1", "startTime": 0}) == 120
    assert reserve({"type": "fundingHistory", "coin": "BTC", "startTime": 0}) == 45  # 500 rows
    assert reserve({"type": "recentTrades", "coin": "BTC"}) == 120  # count unconfirmed: 2000
    assert reserve({"type": "recentTrades"}, max_items={"recentTrades": 100}) == 25
    assert reserve({"type": "userFunding"}, items_estimate=41) == 23
    assert reserve({"type": "allMids"}) == 2
    hour = {"coin": "BTC", "interval": "1m", "startTime": 0, "endTime": 3_600_000}
    assert reserve({"type": "candleSnapshot", "req": hour}) == 20 + 2  # 62 candles at most
    day = {**hour, "endTime": 86_400_000 * 30}
    assert reserve({"type": "candleSnapshot", "req": day}) == 104  # capped at 5000 candles
    open_end = {"coin": "BTC", "interval": "1h", "startTime": 0}
    assert reserve({"type": "candleSnapshot", "req": open_end}, now_ms=3_600_000 * 100) == 22
    month = {"coin": "BTC", "interval": "1M", "startTime": 0, "endTime": 86_400_000 * 365}
    assert reserve({"type": "candleSnapshot", "req": month}) == 21  # 28-day months: 15 at most
    assert reserve({"type": "candleSnapshot", "req": {"interval": "7m"}}) == 104


def test_retry_after_header() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert [parse_retry_after(v) for v in (None, "", "soon", "nan", "inf")] == [None] * 5
