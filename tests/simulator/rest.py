"""POST /info: the read-only request types, their weights and the per-IP weight budget.

Weights follow API.md section 4. The per-item extras are rounded UP: recentTrades, userFills,
userFillsByTime and fundingHistory cost 20 + ceil(items / 20); candleSnapshot costs
20 + ceil(candles / 60). A request is served only if its full weight fits the sliding window;
otherwise it gets 429 with Retry-After (whole seconds until enough weight has expired) and is not
charged. Malformed requests (422) are not charged either.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import history
from .config import SimConfig
from .fills import Fills
from .ledger import CtxPoll, Ledger, PositionsServed
from .market import INTERVAL_MS, Market
from .population import Population
from .trades import TradeFactory
from .vaults import vault_details
from .wire import dumps, now_ms

LIGHT = frozenset({"l2Book", "allMids", "clearinghouseState", "orderStatus", "exchangeStatus"})
PER_20 = frozenset({"recentTrades", "userFills", "userFillsByTime", "fundingHistory"})
MAX_FILLS = 2000
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
DESERIALIZE = "Failed to deserialize the JSON body into the target type"

Served = tuple[Any, int, Callable[[], None] | None]  # payload, items, ledger hook once accepted


def weight(kind: str, items: int) -> int:
    base = 2 if kind in LIGHT else 20
    if kind in PER_20:
        base += math.ceil(items / 20)
    elif kind == "candleSnapshot":
        base += math.ceil(items / 60)
    return base


class BadRequest(Exception):
    """Becomes a 422 with the deserialization text."""


class WeightLimiter:
    """Sliding-window weight budget per IP."""

    def __init__(self, budget: int, window: float) -> None:
        self.budget = budget
        self.window = window
        self.used: defaultdict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def take(self, ip: str, w: int, now: float) -> int | None:
        """None if `w` was charged, else the Retry-After in whole seconds."""
        entries = self.used[ip]
        while entries and entries[0][0] <= now - self.window:
            entries.popleft()
        total = sum(x for _, x in entries)
        if total + w <= self.budget:
            entries.append((now, w))
            return None
        freed, wait = 0, self.window
        for t, x in entries:
            freed += x
            if total - freed + w <= self.budget:
                wait = t + self.window - now
                break
        return max(1, math.ceil(wait))


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is None:
        raise BadRequest(f"missing field `{name}`")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadRequest(f"invalid type for field `{name}`")
    return value


def _address(body: dict[str, Any], name: str) -> str:
    value = _field(body, name, str)
    if not ADDRESS.fullmatch(value):
        raise BadRequest(f"invalid address in field `{name}`")
    return value.lower()


def _opt_int(body: dict[str, Any], name: str) -> int | None:
    return None if body.get(name) is None else _field(body, name, int)


class InfoApi:
    def __init__(
        self,
        config: SimConfig,
        market: Market,
        population: Population,
        fills: Fills,
        factory: TradeFactory,
        ledger: Ledger,
    ) -> None:
        self.config = config
        self.market = market
        self.population = population
        self.fills = fills
        self.factory = factory
        self.ledger = ledger
        self.limiter = WeightLimiter(config.weight_budget, config.weight_window)
        self.handlers: dict[str, Callable[[dict[str, Any], int], Served]] = {
            "meta": self._meta,
            "metaAndAssetCtxs": self._meta_and_ctxs,
            "allMids": self._all_mids,
            "clearinghouseState": self._clearinghouse,
            "recentTrades": self._recent_trades,
            "l2Book": self._l2_book,
            "candleSnapshot": self._candles,
            "fundingHistory": self._funding,
            "userFills": self._user_fills,
            "userFillsByTime": self._user_fills_by_time,
            "vaultDetails": self._vault,
        }

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise BadRequest("expected a JSON object")
            kind = _field(body, "type", str)
            handler = self.handlers.get(kind)
            if handler is None:
                raise BadRequest(f"unknown variant `{kind}`")
            if body.get("dex") not in (None, ""):
                raise BadRequest("unknown dex")
            now = now_ms()
            payload, items, hook = handler(body, now)
        except (ValueError, BadRequest) as exc:
            self.ledger.rest_422 += 1
            return web.Response(status=422, text=f"{DESERIALIZE}: {exc}")
        w = weight(kind, items)
        retry = self.limiter.take(request.remote or "unknown", w, time.monotonic())
        if retry is not None:
            self.ledger.rest_429[kind] += 1
            return web.Response(
                status=429, text="rate limited", headers={"Retry-After": str(retry)}
            )
        self.ledger.rest_requests[kind] += 1
        self.ledger.rest_weight[kind] += w
        self.ledger.rest_served.append((now, kind))
        if hook is not None:
            hook()
        return web.Response(body=dumps(payload).encode(), content_type="application/json")

    def _coin(self, body: dict[str, Any]) -> str:
        return _field(body, "coin", str)

    # --- handlers: (body, now) -> (payload, items for the weight, ledger hook) --------------

    def _meta(self, body: dict[str, Any], now: int) -> Served:
        return self.market.meta(), 0, None

    def _meta_and_ctxs(self, body: dict[str, Any], now: int) -> Served:
        ctxs = [self.market.asset_ctx(c) for c in self.market.coins]
        poll = CtxPoll(now, dict(zip(self.market.coins, ctxs, strict=True)))
        return [self.market.meta(), ctxs], 0, lambda: self.ledger.ctx_polls.append(poll)

    def _all_mids(self, body: dict[str, Any], now: int) -> Served:
        return self.market.all_mids(), 0, None

    def _clearinghouse(self, body: dict[str, Any], now: int) -> Served:
        user = _address(body, "user")
        state = self.population.clearinghouse_state(user, now)
        served = PositionsServed(now, user, [p["position"] for p in state["assetPositions"]])
        return state, 0, lambda: self.ledger.positions.append(served)

    def _recent_trades(self, body: dict[str, Any], now: int) -> Served:
        recent = self.factory.recent.get(self._coin(body))
        trades = list(recent)[-self.config.recent_trades :] if recent else []
        if self.config.recent_trades_newest_first:
            trades.reverse()
        return trades, len(trades), None

    def _l2_book(self, body: dict[str, Any], now: int) -> Served:
        coin = self._coin(body)
        n, m = _opt_int(body, "nSigFigs"), _opt_int(body, "mantissa")
        if n not in (None, 2, 3, 4, 5) or m not in (None, 1, 2, 5) or (m and n != 5):
            raise BadRequest("invalid nSigFigs/mantissa")
        if coin not in self.market.coins:
            return None, 0, None
        return self.market.l2_book(coin, now, n, m), 0, None

    def _candles(self, body: dict[str, Any], now: int) -> Served:
        req = _field(body, "req", dict)
        coin, interval = self._coin(req), _field(req, "interval", str)
        if interval not in INTERVAL_MS:
            raise BadRequest(f"unknown variant `{interval}`")
        start = _field(req, "startTime", int)
        end = _opt_int(req, "endTime")
        if coin not in self.market.coins:
            return [], 0, None
        rows = history.candles(self.market, coin, interval, start, now if end is None else end, now)
        return rows, len(rows), None

    def _funding(self, body: dict[str, Any], now: int) -> Served:
        coin = self._coin(body)
        start, end = _field(body, "startTime", int), _opt_int(body, "endTime")
        if coin not in self.market.coins:
            return [], 0, None
        rows = history.funding_history(self.market, coin, start, end, now)
        return rows, len(rows), None

    def _user_fills(self, body: dict[str, Any], now: int) -> Served:
        fills = self.fills.user_fills(_address(body, "user"))[:MAX_FILLS]
        return fills, len(fills), None

    def _user_fills_by_time(self, body: dict[str, Any], now: int) -> Served:
        user = _address(body, "user")
        start, end = _field(body, "startTime", int), _opt_int(body, "endTime")
        fills = self.fills.user_fills(user, start, end)[:MAX_FILLS]
        return fills, len(fills), None

    def _vault(self, body: dict[str, Any], now: int) -> Served:
        vault = _address(body, "vaultAddress")
        user = body.get("user")
        user = user.lower() if isinstance(user, str) else None
        return vault_details(self.population, vault, user, now), 0, None
