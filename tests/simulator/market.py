"""Market state per coin: a mean-reverting random walk, asset contexts, books, mids, candles."""

from __future__ import annotations

import math
import random
from typing import Any

from .config import CoinSpec, SimConfig
from .wire import fmt, price_decimals

BASE_FUNDING = 0.0000125  # hourly baseline rate (0.00125 %/h)


class CoinState:
    """Mutable state of one perp; floats inside, decimal strings only at the wire boundary."""

    __slots__ = (
        "anchor",
        "day_base",
        "day_ntl",
        "decimals",
        "funding",
        "index",
        "lot_scale",
        "mark_off",
        "mid",
        "name",
        "oi",
        "premium",
        "prev_day_px",
        "spec",
        "sz_decimals",
        "tick",
        "waves",
    )

    def __init__(self, index: int, spec: CoinSpec, rng: random.Random) -> None:
        self.index = index
        self.spec = spec
        self.name = spec.name
        self.sz_decimals = spec.sz_decimals
        self.lot_scale = 10.0**spec.sz_decimals  # lots per base unit: sizes are k / lot_scale
        self.anchor = spec.price
        self.mid = spec.price * math.exp(rng.gauss(0.0, 0.005))
        self.decimals = price_decimals(self.mid, spec.sz_decimals)
        self.tick = 10.0**-self.decimals
        self.premium = rng.gauss(0.0, 1.5e-4)
        self.funding = BASE_FUNDING
        self.mark_off = rng.gauss(0.0, 5e-5)
        self.oi = rng.uniform(0.5, 1.5) * 2e8 * spec.weight / spec.price
        self.prev_day_px = spec.price * (1.0 + rng.uniform(-0.04, 0.04))
        self.day_ntl = rng.uniform(0.5, 1.5) * 1e8 * spec.weight
        self.day_base = self.day_ntl / spec.price
        # (amplitude, period ms, phase) of the smooth curve that history candles follow
        self.waves = [
            (0.03, 9 * 86_400_000, rng.uniform(0, 2 * math.pi)),
            (0.015, 41 * 3_600_000, rng.uniform(0, 2 * math.pi)),
            (0.006, 5 * 3_600_000, rng.uniform(0, 2 * math.pi)),
        ]
        if spec.is_delisted:
            self.mid = spec.price
            self.oi = self.day_ntl = self.day_base = 0.0

    def bid_ask(self) -> tuple[float, float]:
        bid = math.floor(self.mid / self.tick) * self.tick
        return bid, bid + self.tick

    @property
    def mark(self) -> float:
        return self.mid * (1.0 + self.mark_off)

    def px(self, x: float) -> str:
        return fmt(x, self.decimals)

    def sz(self, x: float) -> str:
        return fmt(x, self.sz_decimals)

    def curve(self, t_ms: int) -> float:
        """The deterministic price path that synthetic history (candles) follows."""
        x = sum(a * math.sin(2 * math.pi * t_ms / p + ph) for a, p, ph in self.waves)
        return self.anchor * math.exp(x)


class Market:
    """All coins of the universe in `meta.universe` order (delisted ones included)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(f"{config.seed}:market")
        self.coins: dict[str, CoinState] = {
            spec.name: CoinState(i, spec, self.rng) for i, spec in enumerate(config.coins)
        }
        self.active: list[CoinState] = [c for c in self.coins.values() if not c.spec.is_delisted]
        self._books: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
        # coin -> interval -> [t, T, o, h, l, c, v, n, interval] of the open bucket, per trade
        self.live_candles: dict[str, dict[str, list[Any]]] = {c: {} for c in self.coins}

    def walk(self, cs: CoinState, g: float) -> None:
        """One random-walk step (log space) pulled back towards the coin's anchor price."""
        cfg = self.config
        cs.mid *= math.exp(cfg.price_sigma * g - cfg.price_reversion * math.log(cs.mid / cs.anchor))

    def tick(self) -> None:
        """Advance the slow state (premium, funding, OI, mark offset); books are rebuilt lazily."""
        rng = self.rng
        for cs in self.active:
            cs.decimals = price_decimals(cs.mid, cs.sz_decimals)
            cs.tick = 10.0**-cs.decimals
            cs.premium = 0.9 * cs.premium + rng.gauss(0.0, 5e-5)
            cs.funding = max(-4e-4, min(4e-4, BASE_FUNDING + 0.05 * cs.premium))
            cs.mark_off = 0.8 * cs.mark_off + rng.gauss(0.0, 2e-5)
            cs.oi *= math.exp(rng.gauss(0.0, 0.002))
        self._books.clear()

    def on_trade(self, cs: CoinState, px: float, sz: float, time: int) -> None:
        cs.day_ntl += px * sz
        cs.day_base += sz
        for candle in self.live_candles[cs.name].values():
            if time > candle[1]:
                start, end = bucket(time, candle[8])
                candle[:8] = [start, end, px, px, px, px, 0.0, 0]
            if px > candle[3]:
                candle[3] = px
            if px < candle[4]:
                candle[4] = px
            candle[5] = px
            candle[6] += sz
            candle[7] += 1

    # --- wire payloads -------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        tables = {lev: 50 + i for i, lev in enumerate(sorted({c.max_leverage for c in self.cfgs}))}
        universe: list[dict[str, Any]] = []
        for spec in self.cfgs:
            entry: dict[str, Any] = {
                "szDecimals": spec.sz_decimals,
                "name": spec.name,
                "maxLeverage": spec.max_leverage,
                "marginTableId": tables[spec.max_leverage],
            }
            if spec.is_delisted:
                entry["isDelisted"] = True
            universe.append(entry)
        margin_tables = [
            [
                table_id,
                {
                    "description": f"tiered {lev}x",
                    "marginTiers": [
                        {"lowerBound": "0.0", "maxLeverage": lev},
                        {"lowerBound": fmt(lev * 5e6, 1), "maxLeverage": max(1, lev // 2)},
                    ],
                },
            ]
            for lev, table_id in tables.items()
        ]
        return {"universe": universe, "marginTables": margin_tables, "collateralToken": 0}

    @property
    def cfgs(self) -> list[CoinSpec]:
        return [cs.spec for cs in self.coins.values()]

    def asset_ctx(self, coin: str) -> dict[str, Any]:
        cs = self.coins[coin]
        if cs.spec.is_delisted:
            px = cs.px(cs.mid)
            return {
                "funding": "0.0",
                "openInterest": "0.0",
                "prevDayPx": px,
                "dayNtlVlm": "0.0",
                "premium": None,
                "oraclePx": px,
                "markPx": px,
                "midPx": None,
                "impactPxs": None,
                "dayBaseVlm": "0.0",
            }
        bid, ask = cs.bid_ask()
        fine = min(6, cs.decimals + 1)
        return {
            "funding": fmt(cs.funding, 10),
            "openInterest": cs.sz(cs.oi),
            "prevDayPx": cs.px(cs.prev_day_px),
            "dayNtlVlm": fmt(cs.day_ntl, 4),
            "premium": fmt(cs.premium, 10),
            "oraclePx": cs.px(cs.mid * (1.0 - cs.premium)),
            "markPx": fmt(cs.mark, fine),
            "midPx": fmt((bid + ask) / 2, fine),
            "impactPxs": [cs.px(bid - cs.tick), cs.px(ask + cs.tick)],
            "dayBaseVlm": cs.sz(cs.day_base),
        }

    def all_mids(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for cs in self.active:
            bid, ask = cs.bid_ask()
            out[cs.name] = fmt((bid + ask) / 2, min(6, cs.decimals + 1))
        return out

    def l2_book(
        self, coin: str, time: int, n_sig_figs: int | None = None, mantissa: int | None = None
    ) -> dict[str, Any]:
        """20 levels per side, cached until the next `tick()` so pushes and polls agree."""
        key = (coin, n_sig_figs, mantissa)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = self._build_book(self.coins[coin], n_sig_figs, mantissa)
        return {"coin": coin, "time": time, "levels": book["levels"]}

    def _build_book(
        self, cs: CoinState, n_sig_figs: int | None, mantissa: int | None
    ) -> dict[str, Any]:
        if cs.spec.is_delisted:
            return {"levels": [[], []]}
        rng = self.rng
        step = cs.tick
        if n_sig_figs:
            step = max(step, 10.0 ** (math.floor(math.log10(cs.mid)) + 1 - n_sig_figs))
            step *= mantissa or 1
        decimals = min(cs.decimals, max(0, -math.floor(math.log10(step) + 1e-9)))
        bid, ask = cs.bid_ask()
        start_bid = math.floor(bid / step + 1e-9) * step
        start_ask = math.ceil(ask / step - 1e-9) * step
        if start_ask <= start_bid:
            start_ask = start_bid + step
        sides: list[list[dict[str, Any]]] = []
        for start, sign in ((start_bid, -1), (start_ask, 1)):
            levels, px = [], start
            for _ in range(20):
                if px <= 0:
                    break
                notional = 2000.0 * rng.paretovariate(1.3) * cs.spec.weight
                size = max(notional / px, 10.0**-cs.sz_decimals)
                levels.append({"px": fmt(px, decimals), "sz": cs.sz(size), "n": rng.randint(1, 12)})
                px += sign * step * (1 if rng.random() < 0.8 else 2)
            sides.append(levels)
        return {"levels": sides}

    def bbo(self, coin: str, time: int) -> dict[str, Any]:
        bids, asks = self.l2_book(coin, time)["levels"]
        return {
            "coin": coin,
            "time": time,
            "bbo": [bids[0] if bids else None, asks[0] if asks else None],
        }

    def track_candle(self, coin: str, interval: str, time: int) -> list[Any]:
        """Start (or return) the live bucket of `coin`/`interval`; trades then update it."""
        live = self.live_candles[coin]
        candle = live.get(interval)
        if candle is None or time > candle[1]:
            start, end = bucket(time, interval)
            px = self.coins[coin].mid
            candle = live[interval] = [start, end, px, px, px, px, 0.0, 0, interval]
        return candle

    def live_candle(self, coin: str, interval: str, time: int) -> dict[str, Any]:
        t, end, o, h, low, c, v, n, _ = self.track_candle(coin, interval, time)
        cs = self.coins[coin]
        return {
            "t": t,
            "T": end,
            "s": coin,
            "i": interval,
            "o": cs.px(o),
            "c": cs.px(c),
            "h": cs.px(h),
            "l": cs.px(low),
            "v": cs.sz(v),
            "n": n,
        }


INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,  # 30 days: the simulator does not model calendar months
}


def bucket(time: int, interval: str) -> tuple[int, int]:
    """Open and close time (`t`, `T = t + interval - 1`) of the bucket holding `time`."""
    ms = INTERVAL_MS[interval]
    start = time - time % ms
    return start, start + ms - 1
