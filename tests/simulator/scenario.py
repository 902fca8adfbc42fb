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

from .config import HLP_LIQUIDATOR, SimConfig
from .fills import Fills
from .ledger import Ledger, LiquidationRecord, MalformedRecord, Row, TradeRecord, row_of
from .market import CoinState, Market
from .population import Account, Population, Position
from .trades import FLOOD_LOWS, TradeFactory
from .wire import dumps, fmt, frame, now_ms
from .ws import WsHub

BACKSTOP_PX_BAND = 0.05  # a backstop trades at the liquidation price if this near the mark

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
    "trade": "trade",
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
        at = self.factory.now() if time_ms is None else time_ms
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
        trades, rows = self.factory.orders(cs, n, self.factory.now())
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

    # --- positions --------------------------------------------------------------------------

    def trade(
        self,
        coin: str,
        buyer: str,
        seller: str,
        px: float | str,
        sz: float | str,
        side: str = "B",
        time_ms: int | None = None,
    ) -> TradeRecord:
        """One trade between two given accounts (`side`: "B" the buyer took, "A" the seller
        did), settled and recorded like any other and sent to subscribers."""
        cs = self.market.coins[coin]
        buyer, seller = buyer.lower(), seller.lower()
        if buyer == seller or side not in ("A", "B"):
            raise ValueError("a trade needs two different accounts and side A or B")
        at = self.factory.now() if time_ms is None else time_ms
        t = self.factory.trade(
            cs, at, side, cs.px(float(px)), cs.sz(float(sz)), buyer, seller, self.factory.new_hash()
        )
        row = row_of(t)
        self.factory.settle(cs, row)
        self.factory.commit(coin, [t], [row])
        self.emit(coin, [t])
        return TradeRecord._make(row)

    def evolve(self) -> list[TradeRecord]:
        """One step of position churn: `evolve_fraction` of the traders close, open or resize a
        position, each through a taker order filled by makers and recorded like any trade (an
        opening also deposits its margin: `ledger.transfers`). Returns the trades."""
        population, at = self.population, self.factory.now()
        out: dict[str, tuple[list[dict[str, Any]], list[Row]]] = {}
        for _ in range(max(1, int(len(population.addresses) * self.config.evolve_fraction))):
            wish = population.evolution()
            if wish is None:
                continue
            acct, cs, target, near = wish
            pos = acct.positions.get(cs.name)
            signed = round(target - (pos.szi if pos is not None else 0.0), cs.sz_decimals)
            if signed == 0.0:
                continue
            usd = acct.usd
            trades, rows = self._order(acct.address, cs, signed, at, population.rng, 1)
            opened = acct.positions.get(cs.name)
            if near is not None and opened is not None:
                population.fund_opening(acct, opened, usd - acct.usd, near, at)
            got = out.setdefault(cs.name, ([], []))
            got[0].extend(trades)
            got[1].extend(rows)
        records: list[TradeRecord] = []
        for coin, (trades, rows) in out.items():
            self.factory.commit(coin, trades, rows)
            self.emit(coin, trades)
            records.extend(TradeRecord._make(r) for r in rows)
        return records

    def _order(
        self,
        taker: str,
        cs: CoinState,
        signed: float,
        at: int,
        rng: random.Random,
        parts: int,
        liquidation: dict[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], list[Row]]:
        """A settled taker order against `parts` makers (HLP for big ones)."""
        makers = [self.population.maker(rng, taker, cs, -signed / parts) for _ in range(parts)]
        return self.factory.taker_order(cs, taker, signed, at, makers, liquidation)

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
        acct, pos = self._victim(coin, side, user)
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
        acct, pos = self._victim(coin, side, user)
        return self._market(acct, pos, parts)

    def _victim(
        self, coin: str | None, side: str | None, user: str | None
    ) -> tuple[Account, Position]:
        """The requested position, else the one closest to liquidation, else one opened now
        (a taker order on the tape, margined 1-2 % from its liquidation price)."""
        found = self.population.find_victim(coin, side, user)
        if found is not None:
            return found
        acct, cs, long = self.population.victim_slot(coin, side, user)
        at, rng = self.factory.now(), self.scenario_rng
        held = acct.positions.get(cs.name)
        target = self.population.new_size(cs, long)
        signed = round(target - (held.szi if held is not None else 0.0), cs.sz_decimals)
        usd = acct.usd
        trades, rows = self._order(acct.address, cs, signed, at, rng, 1)
        pos = acct.positions[cs.name]
        self.population.fund_opening(acct, pos, usd - acct.usd, True, at)
        self.factory.commit(cs.name, trades, rows)
        self.emit(cs.name, trades)
        return acct, pos

    def _backstop(self, acct: Account, pos: Position, vault: str) -> LiquidationRecord:
        """One trade at the liquidation price (the mark if that is not within 5 % of it): the
        vault takes the position as taker without fee."""
        cs, at, long = pos.cs, self.factory.now(), pos.szi > 0
        mark, liq = cs.mark, pos.liq_px
        near = liq is not None and abs(liq / mark - 1.0) <= BACKSTOP_PX_BAND
        px = cs.px(liq if near and liq is not None else mark)
        buyer, seller = (vault, acct.address) if long else (acct.address, vault)
        trade = self.factory.trade(
            cs, at, "B" if long else "A", px, cs.sz(abs(pos.szi)), buyer, seller,
            self.factory.new_hash(),
        )  # fmt: skip
        liq_obj = {"liquidatedUser": acct.address, "markPx": self._mark(cs), "method": "backstop"}
        label = (
            f"Liquidated {'Isolated' if pos.isolated else 'Cross'} {'Long' if long else 'Short'}"
        )
        row = row_of(trade)
        labels = (label, None) if long else (None, label)
        self.factory.settle(cs, row, liq_obj, backstop=True, labels=labels)
        self.factory.commit(cs.name, [trade], [row])
        record = self._record(trade, long, acct.address, "backstop", vault, liq_obj["markPx"])
        self.emit(cs.name, [trade])
        return record

    def _market(self, acct: Account, pos: Position, parts: int) -> list[LiquidationRecord]:
        cs, at, long = pos.cs, self.factory.now(), pos.szi > 0
        liq = {"liquidatedUser": acct.address, "markPx": self._mark(cs), "method": "market"}
        step = 10.0**-cs.sz_decimals
        parts = max(1, min(parts, round(abs(pos.szi) / step)))
        trades, rows = self._order(acct.address, cs, -pos.szi, at, self.scenario_rng, parts, liq)
        records = [
            self._record(
                t, long, acct.address, "market", t["users"][0 if long else 1], liq["markPx"]
            )
            for t in trades
        ]
        self.factory.commit(cs.name, trades, rows)
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
        """Liquidate the positions whose liquidation price the mark crossed (equity below
        maintenance margin; every account but HLP's): 30 % backstop, else market orders; a
        cross account's positions largest first until it is above maintenance again."""
        out: list[LiquidationRecord] = []
        for acct, pos in self.population.crossed():
            if acct.positions.get(pos.coin) is not pos:
                continue
            if not pos.isolated and acct.cross_equity() >= acct.cross_maintenance():
                continue
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
        at = self.factory.now()
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
