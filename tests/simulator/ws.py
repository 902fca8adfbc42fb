"""WebSocket /ws: subscriptions with normalized acks, ping/pong, limits, idle drop, fan-out.

Every frame is serialized once and queued to each recipient's outbox; one writer task per socket
drains it, so a broadcast never awaits a client and frames keep their enqueue order (ack, then
replay, then live data).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .config import SimConfig
from .ledger import Ledger
from .market import INTERVAL_MS, Market
from .wire import dumps

Topic = tuple[Any, ...]
PONG = '{"channel":"pong"}'
COIN_CHANNELS = frozenset({"trades", "l2Book", "bbo", "candle", "activeAssetCtx"})
HIGH_WATER = 64  # frames queued on one socket before a fast push waits for it
LOW_WATER = 16


def normalize(sub: Any, market: Market) -> tuple[dict[str, Any], Topic] | str:
    """(normalized subscription as acked, topic key) or an error text."""
    if not isinstance(sub, dict) or not isinstance(sub.get("type"), str):
        return f"Invalid subscription: {dumps(sub)}"
    kind = sub["type"]
    if kind == "allMids":
        if sub.get("dex") not in (None, ""):
            return f"Unknown dex: {dumps(sub.get('dex'))}"
        return {"type": "allMids"}, ("allMids",)
    if kind not in COIN_CHANNELS:
        return f"Invalid subscription: {dumps(sub)}"
    coin = sub.get("coin")
    if not isinstance(coin, str) or coin not in market.coins:
        return f"Invalid subscription: {dumps(sub)}"
    if kind == "l2Book":
        n, m = sub.get("nSigFigs"), sub.get("mantissa")
        if n not in (None, 2, 3, 4, 5) or m not in (None, 1, 2, 5) or (m is not None and n != 5):
            return f"Invalid subscription: {dumps(sub)}"
        return {"type": kind, "coin": coin, "nSigFigs": n, "mantissa": m}, (kind, coin, n, m)
    if kind == "candle":
        interval = sub.get("interval")
        if interval not in INTERVAL_MS:
            return f"Invalid subscription: {dumps(sub)}"
        return {"type": kind, "coin": coin, "interval": interval}, (kind, coin, interval)
    return {"type": kind, "coin": coin}, (kind, coin)


class Connection:
    """One client socket: its subscriptions and its outbox of serialized frames."""

    def __init__(self, ws: web.WebSocketResponse, ip: str, transport: Any) -> None:
        self.ws = ws
        self.ip = ip
        self.transport = transport
        self.subs: dict[Topic, dict[str, Any]] = {}
        self.outbox: deque[str] = deque()
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.last_msg = time.monotonic()
        self.opened = self.last_msg
        self.closed = False
        self.writer: asyncio.Task[None] | None = None


class WsHub:
    """All sockets; `on_subscribe(topic)` returns the frames a new subscriber gets first."""

    def __init__(
        self,
        config: SimConfig,
        market: Market,
        ledger: Ledger,
        on_subscribe: Callable[[Topic], list[str]],
    ) -> None:
        self.config = config
        self.market = market
        self.ledger = ledger
        self.on_subscribe = on_subscribe
        self.conns: set[Connection] = set()
        self.topics: defaultdict[Topic, set[Connection]] = defaultdict(set)
        self.ip_subs: Counter[str] = Counter()
        self.msg_times: defaultdict[str, deque[float]] = defaultdict(deque)
        self.reject_until = 0.0
        self._closing: set[asyncio.Task[None]] = set()

    # --- connection lifecycle --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ip = request.remote or "unknown"
        if time.monotonic() < self.reject_until:
            self.ledger.ws_rejected_upgrades += 1
            return web.Response(status=503, text="simulated outage: try again later")
        if sum(1 for c in self.conns if c.ip == ip) >= self.config.max_connections:
            self.ledger.ws_rejected_upgrades += 1
            return web.Response(status=429, text="too many websocket connections from this IP")
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws, ip, request.transport)
        self.conns.add(conn)
        self.ledger.ws_connections += 1
        self.ledger.ws_opened.append(time.time_ns() // 1_000_000)
        conn.writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    conn.last_msg = time.monotonic()
                    self._on_message(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.last_msg = time.monotonic()
                    self.error(conn, "Binary frames are not supported")
                else:
                    break
        finally:
            self._drop(conn)
        return ws

    async def _write(self, conn: Connection) -> None:
        ws, outbox = conn.ws, conn.outbox
        try:
            while True:
                if not outbox:
                    conn.drained.set()
                    conn.wake.clear()
                    await conn.wake.wait()
                    continue
                await ws.send_str(outbox.popleft())
                self.ledger.frames_sent += 1
                if len(outbox) <= LOW_WATER:
                    conn.drained.set()
        except (ConnectionError, RuntimeError):
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.conns.discard(conn)
        for topic in conn.subs:
            self.topics[topic].discard(conn)
            if not self.topics[topic]:
                del self.topics[topic]
        self.ip_subs[conn.ip] -= len(conn.subs)
        conn.subs.clear()
        conn.outbox.clear()
        conn.drained.set()
        if conn.writer is not None and conn.writer is not asyncio.current_task():
            conn.writer.cancel()

    def _close_later(self, conn: Connection, code: int, abrupt: bool = False) -> None:
        """Stop sending to `conn` now; close it (frame + TCP close, or a bare TCP reset)."""
        self._drop(conn)
        if abrupt:
            if conn.transport is not None:
                conn.transport.abort()
            return
        task = asyncio.create_task(self._close(conn, code))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(conn: Connection, code: int) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            await asyncio.wait_for(conn.ws.close(code=code), 2.0)
        if conn.transport is not None and not conn.transport.is_closing():
            conn.transport.abort()

    async def disconnect_all(
        self, abrupt: bool = True, reject_seconds: float = 0.0, count: int | None = None
    ) -> int:
        """Drop every socket, or the `count` oldest (a TCP reset, or a 1012 close frame);
        refuse upgrades for a while."""
        self.reject_until = time.monotonic() + reject_seconds
        conns = sorted(self.conns, key=lambda c: c.opened)[:count]
        for conn in conns:
            self._close_later(conn, WSCloseCode.SERVICE_RESTART, abrupt)
        self.ledger.ws_forced_disconnects += len(conns)
        await asyncio.sleep(0)
        return len(conns)

    async def shutdown(self) -> None:
        for conn in list(self.conns):
            self._close_later(conn, WSCloseCode.GOING_AWAY)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def idle_loop(self) -> None:
        """Close sockets that sent no text/binary message for `idle_timeout` seconds."""
        idle = self.config.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 5))
            cutoff = time.monotonic() - idle
            for conn in [c for c in self.conns if c.last_msg < cutoff]:
                self.ledger.ws_idle_drops += 1
                self._close_later(conn, WSCloseCode.OK)

    # --- sending ---------------------------------------------------------------------------

    def send(self, conn: Connection, frame: str) -> None:
        outbox = conn.outbox
        outbox.append(frame)
        if len(outbox) == 1:
            conn.wake.set()
        if len(outbox) > HIGH_WATER:
            conn.drained.clear()
            if len(outbox) > self.config.max_outbox_frames:
                self.ledger.ws_slow_drops += 1
                self._close_later(conn, WSCloseCode.POLICY_VIOLATION, abrupt=True)

    def broadcast(self, topic: Topic, frame: str) -> int:
        conns = self.topics.get(topic)
        if not conns:
            return 0
        for conn in list(conns):
            self.send(conn, frame)
        return len(conns)

    def send_all(self, frame: str) -> int:
        for conn in list(self.conns):
            self.send(conn, frame)
        return len(self.conns)

    def error(self, conn: Connection, text: str) -> None:
        self.ledger.ws_errors_sent.append(text)
        self.send(conn, dumps({"channel": "error", "data": text}))

    async def wait_drained(self, topic: Topic) -> None:
        """Backpressure for fast pushes: wait until no subscriber of `topic` is far behind."""
        for conn in list(self.topics.get(topic, ())):
            if len(conn.outbox) > HIGH_WATER:
                await conn.drained.wait()

    # --- client messages -------------------------------------------------------------------

    def _allow(self, ip: str) -> bool:
        now = time.monotonic()
        times = self.msg_times[ip]
        while times and times[0] <= now - 60.0:
            times.popleft()
        if len(times) >= self.config.max_ws_messages_per_minute:
            return False
        times.append(now)
        return True

    def _on_message(self, conn: Connection, text: str) -> None:
        if not self._allow(conn.ip):
            limit = self.config.max_ws_messages_per_minute
            self.error(conn, f"Too many messages: at most {limit} per minute per IP")
            return
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        method = req.get("method") if isinstance(req, dict) else None
        if method == "ping":
            self.send(conn, PONG)
        elif method in ("subscribe", "unsubscribe") and isinstance(req, dict):
            self._subscription(conn, method, req.get("subscription"))
        else:
            self.error(conn, f"Error parsing JSON into valid websocket request: {text}")

    def _subscription(self, conn: Connection, method: str, sub: Any) -> None:
        parsed = normalize(sub, self.market)
        if isinstance(parsed, str):
            self.error(conn, parsed)
            return
        norm, topic = parsed
        if method == "subscribe":
            if topic in conn.subs:
                self.error(conn, f"Already subscribed: {dumps(sub)}")
                return
            if self.ip_subs[conn.ip] >= self.config.max_subscriptions:
                limit = self.config.max_subscriptions
                self.error(conn, f"Cannot track more than {limit} total subscriptions")
                return
            conn.subs[topic] = norm
            self.ip_subs[conn.ip] += 1
            self.topics[topic].add(conn)
        else:
            if topic not in conn.subs:
                self.error(conn, f"Already unsubscribed: {dumps(sub)}")
                return
            del conn.subs[topic]
            self.ip_subs[conn.ip] -= 1
            self.topics[topic].discard(conn)
        ack = {"channel": "subscriptionResponse", "data": {"method": method, "subscription": norm}}
        self.send(conn, dumps(ack))
        if method == "subscribe":
            for frame in self.on_subscribe(topic):
                self.send(conn, frame)
