"""Trade generation: taker orders filled against makers, 50-bit tids, hashes, recording (each
trade settled on both parties' positions and cash); and a cheap unrecorded flood of pre-built
trades for throughput benchmarks (`Flood`), which moves nothing."""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

from .config import HLP_STRATEGY_A, ZERO_HASH, SimConfig
from .fills import Fills
from .ledger import Ledger, Row, row_of
from .market import CoinState, Market
from .population import MAKER_FEE, TAKER_FEE, Population
from .wire import dumps, now_ms

TID_BITS = 50
PARTS = (1, 1, 1, 1, 2, 2, 3, 5)  # makers filled by one taker order
FLOOD_POOL = 2048  # pre-built trades per coin (and at least as many buyer-seller pairs)
FLOOD_LOWS = 1 << 16  # distinct tid % 10**6 values, cycled by the flood's trade counter
TID_HIGH = 2**TID_BITS // 10**6  # tid = high * 10**6 + low stays below 2**50
MAX_REFUSED = 100  # takers refused for margin in a row before the check is waived
FLOOD_REPRICE = 0.002  # a pool is rebuilt once its coin's mid has moved this much (0.2 %)
Fragment = tuple[str, str]  # a trade's JSON up to its time, then up to its tid


class TradeFactory:
    """Builds WsTrade dicts and records each one once: positions and cash of both parties,
    fills and position changes (`settle`), then ledger, recentTrades, volume (`commit`)."""

    def __init__(
        self,
        config: SimConfig,
        market: Market,
        population: Population,
        ledger: Ledger,
        fills: Fills,
    ) -> None:
        self.config = config
        self.market = market
        self.population = population
        self.ledger = ledger
        self.fills = fills
        self.rng = random.Random(f"{config.seed}:flow")
        self.ids = random.Random(f"{config.seed}:ids")
        keep = max(config.recent_trades, config.replay_trades)
        self.recent: dict[str, deque[dict[str, Any]]] = {
            coin: deque(maxlen=keep) for coin in market.coins
        }
        self._ms: dict[str, int] = {}
        self._tids: dict[str, set[int]] = {}
        self._weights = [cs.spec.weight for cs in market.active]
        self.flood = Flood(config, population)
        self._fill = population.fill
        self._fills_by_user = fills.by_user
        self._deals = ledger.deals.append

    # --- identifiers -----------------------------------------------------------------------

    def now(self) -> int:
        """The time of a trade made now (never at or before a clearinghouseState served)."""
        return self.population.stamp(now_ms())

    def tid(self, coin: str, time: int, low: int | None = None) -> int:
        """A 50-bit pseudo-random tid unique within (coin, time); `low` forces tid % 10**6."""
        if self._ms.get(coin) != time:
            self._ms[coin] = time
            self._tids[coin] = set()
        seen = self._tids[coin]
        while True:
            if low is None:
                tid = self.ids.getrandbits(TID_BITS)
            else:
                tid = self.ids.randrange(2**TID_BITS // 10**6) * 10**6 + low
            if tid not in seen:
                seen.add(tid)
                return tid

    def new_hash(self) -> str:
        if self.ids.random() < self.config.zero_hash_fraction:
            return ZERO_HASH
        return f"0x{self.ids.getrandbits(256):064x}"

    # --- building --------------------------------------------------------------------------

    def trade(
        self,
        cs: CoinState,
        time: int,
        side: str,
        px: str,
        sz: str,
        buyer: str,
        seller: str,
        hash_: str,
        tid: int | None = None,
    ) -> dict[str, Any]:
        """A WsTrade dict; nothing is recorded (see `commit`)."""
        return {
            "coin": cs.name,
            "side": side,
            "px": px,
            "sz": sz,
            "time": time,
            "hash": hash_,
            "tid": self.tid(cs.name, time) if tid is None else tid,
            "users": [buyer, seller],
        }

    def settle(
        self,
        cs: CoinState,
        row: Row,
        liquidation: dict[str, str] | None = None,
        backstop: bool = False,
        labels: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """Move both parties of a trade row: positions, cash (taker fee for the side `side`
        names, maker fee for the other; none for a backstop's vault), then record the trade once
        (`Deal`) as both parties' fills and position changes. `labels` override the fills'
        `dir`."""
        _, _, _, side, px_s, sz_s, buyer, seller, _ = row
        px, sz = float(px_s), float(sz_s)
        notional = px * sz
        buyer_took = side == "B"
        taker_fee = 0.0 if backstop else notional * TAKER_FEE
        maker_fee = notional * MAKER_FEE
        bf, sf = (taker_fee, maker_fee) if buyer_took else (maker_fee, taker_fee)
        fill = self._fill
        b, s = fill(buyer, cs, sz, px, bf), fill(seller, cs, -sz, px, sf)
        assert b is not None and s is not None
        deal = (row, buyer_took, b, s, liquidation, None if labels == (None, None) else labels)
        self._deals(deal)
        by_user = self._fills_by_user
        for user in (buyer, seller):
            fills = by_user.get(user)
            if fills is None:
                fills = self.fills.of(user)
            fills.append(deal)

    def taker_order(
        self,
        cs: CoinState,
        taker: str,
        signed: float,
        time: int,
        makers: list[str],
        liquidation: dict[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], list[Row]]:
        """A taker order of `signed` base units (> 0 buys) at the touch, split over `makers`
        (equal lots, one tick further per maker, one hash); settled, not committed."""
        buys = signed > 0
        step = 10.0**-cs.sz_decimals
        total = round(abs(signed) / step)
        parts = max(1, min(len(makers), total))
        bid, ask = cs.bid_ask()
        px = ask if buys else bid
        hash_ = self.new_hash()
        trades, rows = [], []
        for i in range(parts):
            units = total // parts + (1 if i < total % parts else 0)
            buyer, seller = (taker, makers[i]) if buys else (makers[i], taker)
            t = self.trade(
                cs, time, "B" if buys else "A", cs.px(px), cs.sz(units * step), buyer, seller, hash_
            )
            row = row_of(t)
            self.settle(cs, row, liquidation)
            trades.append(t)
            rows.append(row)
            px += cs.tick if buys else -cs.tick
        return trades, rows

    def commit(
        self, coin: str, trades: list[dict[str, Any]], records: list[Row] | None = None
    ) -> None:
        """Record valid trades once: ledger, recentTrades/replay buffer, 24 h volume, candles."""
        rows = [row_of(t) for t in trades] if records is None else records
        self.ledger.add_trades(coin, rows)
        self.recent[coin].extend(trades)
        cs = self.market.coins[coin]
        on_trade = self.market.on_trade
        for row in rows:
            on_trade(cs, float(row[4]), float(row[5]), row[1])

    def orders(
        self, cs: CoinState, n: int, time: int, share_low: bool = False
    ) -> tuple[list[dict[str, Any]], list[Row]]:
        """Exactly `n` trades on one coin from taker orders that each sweep 1-5 makers, as wire
        dicts and ledger rows; with `share_low` the 2nd tid % 10**6 equals the 1st's.

        Trades are settled here (positions, cash, fills); pass both lists to `commit` to
        record them.
        """
        rng, market = self.rng, self.market
        addresses = self.population.addresses
        n_addr, rand = len(addresses), rng.random
        trades: list[dict[str, Any]] = []
        rows: list[Row] = []
        lot = cs.lot_scale
        px_fmt, sz_fmt, name, tid = cs.px, cs.sz, cs.name, self.tid
        # settle() inlined: both parties' positions and cash, then their sides of the trade
        fill, by_user, fills_of, deals = self._fill, self._fills_by_user, self.fills.of, self._deals
        refused = 0  # takers in a row refused for margin (then margin is not checked)
        while len(trades) < n:
            market.walk(cs, rng.gauss(0.0, 1.0))
            bid, ask = cs.bid_ask()
            buys = rand() < 0.5
            taker = addresses[int(rand() * n_addr)]
            hash_ = self.new_hash()
            px = ask if buys else bid
            side, px_s = "B" if buys else "A", px_fmt(px)
            pxf = float(px_s)
            for part in range(min(n - len(trades), rng.choice(PARTS))):
                maker = HLP_STRATEGY_A if rand() < 0.15 else addresses[int(rand() * n_addr)]
                if maker == taker:
                    maker = HLP_STRATEGY_A
                lots = round(50.0 * rng.paretovariate(1.2) / px * lot)
                sz = (lots if lots > 1 else 1) / lot  # == float(sz_s)
                sz_s = sz_fmt(sz)
                notional = pxf * sz
                taker_fee, maker_fee = notional * TAKER_FEE, notional * MAKER_FEE
                # a trader without the margin for what a fill adds: another trader sends the
                # order, or (past its first fill) the order ends; a maker's resting order is
                # not there (HLP's is)
                t = fill(taker, cs, sz if buys else -sz, pxf, taker_fee, refused < MAX_REFUSED)
                while t is None and not part and refused < MAX_REFUSED:
                    refused += 1
                    taker = addresses[int(rand() * n_addr)]
                    if taker != maker:
                        t = fill(taker, cs, sz if buys else -sz, pxf, taker_fee, True)
                if t is None:
                    break
                refused = 0
                m = fill(maker, cs, -sz if buys else sz, pxf, maker_fee, True)
                if m is None:
                    maker = HLP_STRATEGY_A
                    m = fill(maker, cs, -sz if buys else sz, pxf, maker_fee)
                    assert m is not None
                buyer, seller = (taker, maker) if buys else (maker, taker)
                low = rows[0][2] % 10**6 if share_low and len(rows) == 1 else None
                tid_ = tid(name, time, low)
                row = (name, time, tid_, side, px_s, sz_s, buyer, seller, hash_)
                deal = (row, buys, t, m, None, None) if buys else (row, buys, m, t, None, None)
                deals(deal)
                fills = by_user.get(taker)
                if fills is None:
                    fills = fills_of(taker)
                fills.append(deal)
                fills = by_user.get(maker)
                if fills is None:
                    fills = fills_of(maker)
                fills.append(deal)
                rows.append(row)
                trades.append(
                    {
                        "coin": name,
                        "side": side,
                        "px": px_s,
                        "sz": sz_s,
                        "time": time,
                        "hash": hash_,
                        "tid": tid_,
                        "users": [buyer, seller],
                    }
                )
                if rand() < 0.3:
                    px += cs.tick if buys else -cs.tick
                    px_s = px_fmt(px)
                    pxf = float(px_s)
        return trades, rows

    def pick_coin(self) -> CoinState:
        return self.rng.choices(self.market.active, self._weights)[0]

    def flow(self, n: int, time: int) -> dict[str, list[dict[str, Any]]]:
        """`n` trades spread over coins by weight, grouped per coin, committed."""
        per_coin: dict[str, list[dict[str, Any]]] = {}
        counts: dict[str, int] = {}
        for _ in range(n):
            cs = self.pick_coin()
            counts[cs.name] = counts.get(cs.name, 0) + 1
        for name, count in counts.items():
            trades, rows = self.orders(self.market.coins[name], count, time)
            self.commit(name, trades, rows)
            per_coin[name] = trades
        return per_coin


class Flood:
    """Valid wire trades at a fraction of `TradeFactory.orders`' cost, recorded nowhere.

    Trades are joined from pre-built JSON pieces: per coin a pool of `FLOOD_POOL` (side, px,
    sz, hash) heads from taker orders sweeping makers around the current mid (rebuilt when the
    mid has moved by `FLOOD_REPRICE`), read from a random start per frame; the time (one per
    frame); tid = a random high part per frame * 10**6 + a low part from a fixed shuffle of
    10**6, cycled by a run-long counter, so tids (and tid % 10**6, the collector's timestamp
    slot) never repeat within a coin's millisecond unless `FLOOD_LOWS` trades are flooded in
    one; and (buyer, seller), cycled over a shuffle of the whole population so every trader
    shows up within `len(addresses)` trades, as discovery needs with large populations.
    """

    def __init__(self, config: SimConfig, population: Population) -> None:
        self.config = config
        self.population = population
        self.rng = random.Random(f"{config.seed}:flood")
        self.seq = 0
        self.lows: list[str] = []  # doubled lists (any run is one slice), built on first use
        self.users: list[str] = []
        self.pools: dict[str, tuple[float, int, list[Fragment]]] = {}  # mid, decimals, pool

    def frame(self, cs: CoinState, n: int, time: int) -> str:
        """A trades frame of `n` (at most `FLOOD_LOWS`) trades of `cs` at `time`."""
        pool, lows, users = self._pool(cs, n), self._lows(), self._users(n)
        start = int(self.rng.random() * (len(pool) // 2))
        low, pair = self.seq % (len(lows) // 2), self.seq % (len(users) // 2)
        self.seq += n
        t, high = str(time), str(self.rng.randrange(1, TID_HIGH))
        trades = [
            f"{head}{t}{mid}{high}{lo}{who}"
            for (head, mid), lo, who in zip(
                pool[start : start + n], lows[low : low + n], users[pair : pair + n], strict=True
            )
        ]
        return '{"channel":"trades","data":[' + ",".join(trades) + "]}"

    def _lows(self) -> list[str]:
        if not self.lows:
            lows = [f"{low:06d}" for low in self.rng.sample(range(10**6), FLOOD_LOWS)]
            self.lows = lows + lows
        return self.lows

    def _users(self, n: int) -> list[str]:
        """`,"users":[buyer,seller]}` pieces: every trader a buyer once per len(addresses)."""
        if len(self.users) // 2 < n:
            addresses = self.population.addresses
            if len(addresses) < 2:
                raise ValueError("a flood needs at least 2 traders (n_addresses)")
            size, rand = max(FLOOD_POOL, len(addresses), n), self.rng.random
            order = self.rng.sample(addresses, len(addresses))
            pieces = []
            for i in range(size):
                buyer = order[i % len(order)]
                seller = order[(i + 1 + int(rand() * (len(order) - 1))) % len(order)]
                pieces.append(f',"users":["{buyer}","{seller}"]}}')
            self.users = pieces + pieces
        return self.users

    def _pool(self, cs: CoinState, n: int) -> list[Fragment]:
        """The coin's pool (doubled), rebuilt if too small or priced off the current mid."""
        cached = self.pools.get(cs.name)
        if cached is not None:
            mid, decimals, pool = cached
            fresh = abs(cs.mid / mid - 1.0) < FLOOD_REPRICE and decimals == cs.decimals
            if fresh and len(pool) // 2 >= n:
                return pool
        built = self.fragments(cs, max(FLOOD_POOL, n))
        self.pools[cs.name] = (cs.mid, cs.decimals, built + built)
        return built + built

    def fragments(self, cs: CoinState, n: int) -> list[Fragment]:
        """`n` trades of taker orders sweeping 1-5 makers (one hash, the taker's side and a
        price walking away from the touch) from a local walk of the mid."""
        rng, cfg = self.rng, self.config
        sz_step, mid, coin = 10.0**-cs.sz_decimals, cs.mid, dumps(cs.name)
        out: list[Fragment] = []
        while len(out) < n:
            g = rng.gauss(0.0, 1.0)
            mid *= math.exp(cfg.price_sigma * g - cfg.price_reversion * math.log(mid / cs.anchor))
            buys, hash_ = rng.random() < 0.5, self._hash()
            side = "B" if buys else "A"
            px = (math.floor(mid / cs.tick) + (1 if buys else 0)) * cs.tick
            head = f'{{"coin":{coin},"side":"{side}","px":"{cs.px(px)}","sz":"'
            for _ in range(min(n - len(out), rng.choice(PARTS))):
                size = max(sz_step, round(50.0 * rng.paretovariate(1.2) / px / sz_step) * sz_step)
                out.append((f'{head}{cs.sz(size)}","time":', f',"hash":"{hash_}","tid":'))
                if rng.random() < 0.3:
                    px += cs.tick if buys else -cs.tick
                    head = f'{{"coin":{coin},"side":"{side}","px":"{cs.px(px)}","sz":"'
        return out

    def _hash(self) -> str:
        if self.rng.random() < self.config.zero_hash_fraction:
            return ZERO_HASH
        return f"0x{self.rng.getrandbits(256):064x}"
