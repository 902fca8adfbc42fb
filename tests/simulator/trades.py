"""Trade generation: taker orders filled against makers, 50-bit tids, hashes, recording."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from .config import HLP_STRATEGY_A, ZERO_HASH, SimConfig
from .fills import Fills
from .ledger import Ledger, Row, row_of
from .market import CoinState, Market
from .population import Population

TID_BITS = 50
PARTS = (1, 1, 1, 1, 2, 2, 3, 5)  # makers filled by one taker order


class TradeFactory:
    """Builds WsTrade dicts and records each one once: ledger, recentTrades, fills, volume."""

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

    # --- identifiers -----------------------------------------------------------------------

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

        Fills are recorded here; pass both lists to `commit` to record the trades.
        """
        rng, market, fills_add = self.rng, self.market, self.fills.add
        addresses = self.population.addresses
        n_addr, rand = len(addresses), rng.random
        trades: list[dict[str, Any]] = []
        rows: list[Row] = []
        sz_step = 10.0**-cs.sz_decimals
        px_fmt, sz_fmt, name, tid = cs.px, cs.sz, cs.name, self.tid
        while len(trades) < n:
            market.walk(cs, rng.gauss(0.0, 1.0))
            bid, ask = cs.bid_ask()
            buys = rand() < 0.5
            taker = addresses[int(rand() * n_addr)]
            hash_ = self.new_hash()
            px = ask if buys else bid
            for _ in range(min(n - len(trades), rng.choice(PARTS))):
                maker = HLP_STRATEGY_A if rand() < 0.15 else addresses[int(rand() * n_addr)]
                if maker == taker:
                    maker = HLP_STRATEGY_A
                size = max(sz_step, round(50.0 * rng.paretovariate(1.2) / px / sz_step) * sz_step)
                buyer, seller = (taker, maker) if buys else (maker, taker)
                side, px_s, sz_s = "B" if buys else "A", px_fmt(px), sz_fmt(size)
                low = rows[0][2] % 10**6 if share_low and len(rows) == 1 else None
                tid_ = tid(name, time, low)
                row = (name, time, tid_, side, px_s, sz_s, buyer, seller, hash_)
                fills_add(taker, row, buys, True)
                fills_add(maker, row, not buys, False)
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
