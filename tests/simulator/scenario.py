"""Scenario controls (Python methods of `Simulator`), also reachable as POST /_sim/control."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from .config import HLP_LIQUIDATOR, HLP_STRATEGY_A, SimConfig
from .fills import Fills
from .ledger import Ledger, LiquidationRecord, MalformedRecord, TradeRecord, row_of
from .market import CoinState, Market
from .population import Account, Population, Position
from .trades import FLOOD_LOWS, TradeFactory
from .wire import dumps, fmt, frame, now_ms
from .ws import WsHub

# Mutations that turn one record of a good trades frame into a bad one.
MALFORMATIONS = {
    "bad_px": lambda t: t.update(px="abc"),
    "bad_sz": lambda t: t.update(sz="-"),
    "bad_tid": lambda t: t.update(tid="x"),
    "bad_time": lambda t: t.update(time="soon"),
    "bad_side": lambda t: t.update(side="X"),
    "bad_users": lambda t: t.update(users=t["users"][:1]),
    "missing_tid": lambda t: t.pop("tid"),
    "missing_px": lambda t: t.pop("px"),
}
ACTIONS = {
    "set_rate": "set_rate",
    "pause": "pause",
    "resume": "resume",
    "burst": "burst",
    "backstop_liquidation": "backstop_liquidation",
    "market_liquidation": "market_liquidation",
    "malformed": "send_malformed",
    "error": "send_error",
    "disconnect": "disconnect_all",
    "fast_push": "fast_push",
    "evolve": "evolve",
    "tick": "tick",
}


def jsonable(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return value._asdict()
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


class ScenarioControls:
    """Mixed into `Simulator`, which provides the attributes declared here."""

    config: SimConfig
    market: Market
    population: Population
    fills: Fills
    factory: TradeFactory
    ledger: Ledger
    hub: WsHub
    rate: float
    paused: bool
    scenario_rng: random.Random
    _background: set[asyncio.Task[Any]]

    def emit(self, coin: str, trades: list[dict[str, Any]]) -> None:
        """Push one trades frame (serialized once) to the coin's subscribers."""
        topic = ("trades", coin)
        if trades and self.hub.topics.get(topic):
            self.hub.broadcast(topic, frame("trades", trades))

    # --- flow ------------------------------------------------------------------------------

    def set_rate(self, rate: float) -> None:
        """Background flow in trades/s over all coins."""
        self.rate = float(rate)

    def pause(self) -> None:
        """Stop the background flow and automatic liquidations (pushes of books go on)."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def burst(
        self,
        coin: str = "BTC",
        count: int = 1000,
        time_ms: int | None = None,
        same_tid_mod: bool = True,
        batch: int | None = None,
    ) -> list[TradeRecord]:
        """`count` distinct trades in ONE millisecond; with `same_tid_mod` the 2nd trade shares
        tid % 10**6 with the 1st. Sent in frames of `batch` trades (default: one frame)."""
        cs = self.market.coins[coin]
        at = now_ms() if time_ms is None else time_ms
        trades, rows = self.factory.orders(cs, count, at, share_low=same_tid_mod)
        self.factory.commit(coin, trades, rows)
        step = batch or len(trades) or 1
        for i in range(0, len(trades), step):
            self.emit(coin, trades[i : i + step])
        return [TradeRecord._make(r) for r in rows]

    async def fast_push(
        self, count: int, batch: int = 100, coin: str | None = None, record: bool = True
    ) -> dict[str, Any]:
        """Generate `count` valid trades as fast as possible in frames of up to `batch` trades
        (one coin each, by weight unless `coin`), waiting only for subscribers that fall behind.

        `record=False`: a cheap flood for throughput benchmarks (`trades.Flood`: ~0.2 us a
        trade to build, ~1 us with the send, instead of ~15 us): pre-built trades stamped with
        now and fresh tids, counted in the ledger's trade counts (`trade_count`, `/_sim/ledger`
        "trades") but recorded nowhere else: no ledger rows, fills, recentTrades/replay,
        candles or volume. The coin's price does not move during a flood.
        """
        if not record and batch > FLOOD_LOWS:
            raise ValueError(f"batch is at most {FLOOD_LOWS} with record=False")
        push = self._push_recorded if record else self._push_flood
        started, done, frames = time.perf_counter(), 0, 0
        while done < count:
            cs = self.market.coins[coin] if coin else self.factory.pick_coin()
            done += push(cs, min(batch, count - done))
            frames += 1
            await self.hub.wait_drained(("trades", cs.name))
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed else 0.0
        return {
            "count": done,
            "frames": frames,
            "seconds": elapsed,
            "rate": rate,
            "recorded": record,
        }

    def _push_recorded(self, cs: CoinState, n: int) -> int:
        trades, rows = self.factory.orders(cs, n, now_ms())
        self.factory.commit(cs.name, trades, rows)
        self.emit(cs.name, trades)
        return len(trades)

    def _push_flood(self, cs: CoinState, n: int) -> int:
        """One frame of unrecorded trades (built only if someone listens), counted."""
        topic = ("trades", cs.name)
        if self.hub.topics.get(topic):
            self.hub.broadcast(topic, self.factory.flood.frame(cs, n, now_ms()))
        self.ledger.trade_counts[cs.name] += n
        return n

    # --- liquidations ----------------------------------------------------------------------

    def backstop_liquidation(
        self,
        coin: str | None = None,
        side: str | None = None,
        user: str | None = None,
        vault: str = HLP_LIQUIDATOR,
    ) -> LiquidationRecord:
        """The liquidator vault takes over a position: it is the buyer when a long is liquidated
        and the seller when a short is; it is also the taker (`side` = the vault's side)."""
        acct, pos = self.population.pick_victim(coin, side, user)
        return self._backstop(acct, pos, vault)

    def market_liquidation(
        self,
        coin: str | None = None,
        side: str | None = None,
        user: str | None = None,
        parts: int = 1,
    ) -> list[LiquidationRecord]:
        """The victim's position is sold (long) or bought (short) into the book as the taker,
        filled by `parts` makers."""
        acct, pos = self.population.pick_victim(coin, side, user)
        return self._market(acct, pos, parts)

    def _backstop(self, acct: Account, pos: Position, vault: str) -> LiquidationRecord:
        cs, at, long = self.market.coins[pos.coin], now_ms(), pos.szi > 0
        px = cs.px(pos.liq_px if pos.liq_px is not None else cs.mark)
        size = cs.sz(abs(pos.szi))
        buyer, seller = (vault, acct.address) if long else (acct.address, vault)
        trade = self.factory.trade(
            cs, at, "B" if long else "A", px, size, buyer, seller, self.factory.new_hash()
        )
        liq = {"liquidatedUser": acct.address, "markPx": self._mark(cs), "method": "backstop"}
        margin = "Isolated" if pos.isolated else "Cross"
        label = f"Liquidated {margin} {'Long' if long else 'Short'}"
        row = row_of(trade)
        self.fills.add(vault, row, long, True, liq, label)
        self.fills.add(acct.address, row, not long, False, liq)
        self.population.close(acct.address, pos.coin)
        self.population.absorb(vault, pos.coin, float(size) if long else -float(size), float(px))
        self.factory.commit(cs.name, [trade])
        record = self._record(trade, long, acct.address, "backstop", vault, liq["markPx"])
        self.emit(cs.name, [trade])
        return record

    def _market(self, acct: Account, pos: Position, parts: int) -> list[LiquidationRecord]:
        cs, at, long = self.market.coins[pos.coin], now_ms(), pos.szi > 0
        step = 10.0**-cs.sz_decimals
        total = round(abs(pos.szi) / step)
        parts = max(1, min(parts, total))
        bid, ask = cs.bid_ask()
        px = bid if long else ask
        hash_ = self.factory.new_hash()
        liq = {"liquidatedUser": acct.address, "markPx": self._mark(cs), "method": "market"}
        trades, records = [], []
        for i in range(parts):
            units = total // parts + (1 if i < total % parts else 0)
            maker = self.scenario_rng.choice(self.population.addresses)
            if maker == acct.address:
                maker = HLP_STRATEGY_A
            buyer, seller = (maker, acct.address) if long else (acct.address, maker)
            t = self.factory.trade(
                cs, at, "A" if long else "B", cs.px(px), cs.sz(units * step), buyer, seller, hash_
            )
            row = row_of(t)
            self.fills.add(acct.address, row, not long, True, liq)
            self.fills.add(maker, row, long, False, liq)
            pos.szi -= units * step if long else -units * step
            trades.append(t)
            records.append(self._record(t, long, acct.address, "market", maker, liq["markPx"]))
            px += -cs.tick if long else cs.tick
        self.population.close(acct.address, pos.coin)
        self.factory.commit(cs.name, trades)
        self.emit(cs.name, trades)
        return records

    @staticmethod
    def _mark(cs: CoinState) -> str:
        return fmt(cs.mark, min(6, cs.decimals + 1))

    def _record(
        self, t: dict[str, Any], long: bool, user: str, method: str, other: str, mark: str
    ) -> LiquidationRecord:
        side = "long" if long else "short"
        record = LiquidationRecord(
            t["coin"],
            t["time"],
            t["tid"],
            side,
            t["px"],
            t["sz"],
            user,
            method,
            other,
            mark,
            t["hash"],
        )
        self.ledger.liquidations.append(record)
        return record

    def liquidate_crossed(self) -> list[LiquidationRecord]:
        """Liquidate every trader position whose liquidationPx the mark reached (30 % backstop)."""
        out: list[LiquidationRecord] = []
        for acct, pos in self.population.crossed():
            if self.scenario_rng.random() < 0.3:
                out.append(self._backstop(acct, pos, HLP_LIQUIDATOR))
            else:
                out.extend(self._market(acct, pos, self.scenario_rng.randint(1, 3)))
        return out

    # --- faults ----------------------------------------------------------------------------

    def send_malformed(
        self, kind: str = "bad_px", coin: str | None = "BTC", good: int = 2, text: str = "{not json"
    ) -> MalformedRecord:
        """`not_json`: the raw `text` to the coin's trades subscribers (all sockets if coin is
        None). Other kinds (see MALFORMATIONS): a trades frame of `good` valid trades with one
        bad record in the middle; the valid ones count as trades, the bad one does not."""
        at = now_ms()
        if kind == "not_json":
            if coin is None:
                self.hub.send_all(text)
            else:
                self.hub.broadcast(("trades", coin), text)
            self.ledger.add_malformed(coin, text, kind, at)
            return self.ledger.malformed[-1]
        if coin is None or kind not in MALFORMATIONS:
            raise ValueError(f"unknown malformation {kind!r} (or no coin)")
        cs = self.market.coins[coin]
        goods, rows = self.factory.orders(cs, good, at)
        self.factory.commit(coin, goods, rows)
        bid, _ = cs.bid_ask()
        buyer, seller = self.scenario_rng.sample(self.population.addresses, 2)
        bad = self.factory.trade(
            cs, at, "A", cs.px(bid), cs.sz(1.0), buyer, seller, self.factory.new_hash()
        )
        MALFORMATIONS[kind](bad)
        records = [*goods[: good // 2], bad, *goods[good // 2 :]]
        self.hub.broadcast(("trades", coin), frame("trades", records))
        self.ledger.add_malformed(coin, bad, kind, at)
        return self.ledger.malformed[-1]

    def send_error(self, text: str = "Simulated server error") -> int:
        """An error frame to every socket; returns how many got it."""
        self.ledger.ws_errors_sent.append(text)
        return self.hub.send_all(dumps({"channel": "error", "data": text}))

    async def disconnect_all(
        self, abrupt: bool = True, reject_seconds: float = 0.0, count: int | None = None
    ) -> int:
        """Drop every socket now (TCP reset, or a 1012 close frame if not `abrupt`), or only the
        `count` oldest ones; upgrades are refused with 503 for `reject_seconds` (the sockets
        left open are not touched). The flow goes on unless paused."""
        count = await self.hub.disconnect_all(abrupt, reject_seconds, count)
        self.ledger.ws_disconnect_events.append((now_ms(), count))
        return count

    # --- HTTP ------------------------------------------------------------------------------

    async def control(self, request: web.Request) -> web.Response:
        """POST /_sim/control {"action": name, ...keyword arguments}; fast_push takes
        "wait": false to return at once."""
        try:
            body = json.loads(await request.read())
            action = body.pop("action")
            wait = body.pop("wait", True)
            result = getattr(self, ACTIONS[action])(**body)
            if inspect.isawaitable(result):
                if wait:
                    result = await result
                else:
                    self._spawn(result)
                    result = {"started": True}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return web.json_response({"ok": False, "error": repr(exc)}, status=400)
        return web.json_response({"ok": True, "result": jsonable(result)}, dumps=dumps)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
