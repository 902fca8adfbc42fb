"""`Simulator`: one aiohttp server (POST /info, GET /ws, /_sim/*) plus the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from typing import Any

from aiohttp import web

from .config import HLP_CHILDREN, HLP_PARENT, SimConfig
from .fills import Fills
from .ledger import Ledger
from .market import Market
from .population import Population
from .rest import InfoApi
from .scenario import ScenarioControls, jsonable
from .trades import TradeFactory
from .wire import dumps, frame, now_ms
from .ws import Topic, WsHub


class Simulator(ScenarioControls):
    """A local Hyperliquid. `async with Simulator(seed=1, port=0) as sim:` then use `sim.url`
    (REST base, POST {url}/info) and `sim.ws_url`; keywords are `SimConfig` fields."""

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        self.config = cfg = replace(config or SimConfig(), **overrides)
        self.ledger = Ledger(cfg.ledger_max_trades, cfg.ledger_max_records)
        self.market = Market(cfg)
        self.population = Population(cfg, self.market, self.ledger)
        self.fills = Fills(self.population, cfg.max_user_fills)
        self.factory = TradeFactory(cfg, self.market, self.population, self.ledger, self.fills)
        self.hub = WsHub(cfg, self.market, self.ledger, self._on_subscribe)
        self.info = InfoApi(
            cfg, self.market, self.population, self.fills, self.factory, self.ledger
        )
        self.scenario_rng = random.Random(f"{cfg.seed}:scenario")
        self.rate = cfg.rate
        self.paused = False
        self.port = cfg.port
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._last_push: dict[Topic, str] = {}

    @property
    def addresses(self) -> list[str]:
        """Trader addresses of the population (vaults excluded)."""
        return self.population.addresses

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Simulator:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/info", self.info.handle)
        app.router.add_get("/ws", self.hub.handle)
        app.router.add_post("/_sim/control", self.control)
        app.router.add_get("/_sim/ledger", self._ledger_summary)
        app.router.add_get("/_sim/ledger/trades", self._ledger_trades)
        app.router.add_get("/_sim/ledger/liquidations", self._ledger_liquidations)
        app.router.add_get("/_sim/state", self._state)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        loops = [self._flow_loop(), self._push_loop(), self.hub.idle_loop()]
        if self.config.evolve_interval > 0:
            loops.append(self._evolve_loop())
        self._tasks = [asyncio.create_task(c) for c in loops]
        return self

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            task.cancel()
        for task in [*self._tasks, *self._background]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.hub.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- background loops ------------------------------------------------------------------

    async def _flow_loop(self) -> None:
        """Emit `rate` trades/s in blocks of `block_interval` seconds (one frame per coin)."""
        loop = asyncio.get_running_loop()
        last, carry = loop.time(), 0.0
        while True:
            await asyncio.sleep(self.config.block_interval)
            now = loop.time()
            elapsed, last = min(now - last, 1.0), now
            if self.paused or self.rate <= 0:
                carry = 0.0
                continue
            expected = self.rate * elapsed + carry
            n = int(expected)
            carry = expected - n
            if n:
                for coin, trades in self.factory.flow(n, self.factory.now()).items():
                    self.emit(coin, trades)

    async def _push_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.push_interval)
            self.tick()

    async def _evolve_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.evolve_interval)
            self.evolve()

    def tick(self) -> None:
        """Advance ctx/book state, run automatic liquidations, push the non-trade channels."""
        self.market.tick()
        self.population.refresh()
        if self.config.auto_liquidations and not self.paused:
            self.liquidate_crossed()
        at = now_ms()
        for topic in [t for t, conns in self.hub.topics.items() if conns and t[0] != "trades"]:
            data = self._topic_data(topic, at)
            if data is None:
                continue
            text = frame(topic[0], data)
            key = dumps(data["bbo"]) if topic[0] == "bbo" else text
            if topic[0] == "l2Book" or self._last_push.get(topic) != key:
                self._last_push[topic] = key
                self.hub.broadcast(topic, text)

    def _topic_data(self, topic: Topic, at: int) -> dict[str, Any] | None:
        kind, coin = topic[0], topic[1] if len(topic) > 1 else None
        if kind == "allMids":
            return {"mids": self.market.all_mids()}
        assert coin is not None
        if kind == "activeAssetCtx":
            return {"coin": coin, "ctx": self.market.asset_ctx(coin)}
        if self.market.coins[coin].spec.is_delisted:
            return None
        if kind == "l2Book":
            return self.market.l2_book(coin, at, topic[2], topic[3])
        if kind == "bbo":
            return self.market.bbo(coin, at)
        if kind == "candle":
            return self.market.live_candle(coin, topic[2], at)
        return None

    def _on_subscribe(self, topic: Topic) -> list[str]:
        """What a new subscriber gets right after the ack: trade replay or current state."""
        if topic[0] == "trades":
            replay = list(self.factory.recent[topic[1]])[-self.config.replay_trades :]
            return [frame("trades", replay)] if replay and self.config.replay_trades else []
        data = self._topic_data(topic, now_ms())
        return [] if data is None else [frame(topic[0], data)]

    # --- /_sim/* read side -----------------------------------------------------------------

    async def _ledger_summary(self, request: web.Request) -> web.Response:
        summary = self.ledger.summary()
        summary.update(rate=self.rate, paused=self.paused, sockets=len(self.hub.conns))
        return web.json_response(summary, dumps=dumps)

    async def _ledger_trades(self, request: web.Request) -> web.Response:
        coin = request.query.get("coin")
        limit = int(request.query.get("limit", "1000"))
        trades = self.ledger.valid_trades(coin)[-limit:] if limit > 0 else []
        return web.json_response(jsonable(trades), dumps=dumps)

    async def _ledger_liquidations(self, request: web.Request) -> web.Response:
        return web.json_response(jsonable(self.ledger.liquidations), dumps=dumps)

    async def _state(self, request: web.Request) -> web.Response:
        state = {
            "seed": self.config.seed,
            "coins": list(self.market.coins),
            "addresses": self.population.addresses,
            "hlp": {"parent": HLP_PARENT, "children": dict(HLP_CHILDREN)},
        }
        return web.json_response(state, dumps=dumps)
