"""Synthetic history: candleSnapshot and fundingHistory, deterministic per (seed, coin, time)."""

from __future__ import annotations

import random
from typing import Any

from .market import BASE_FUNDING, INTERVAL_MS, CoinState, Market, bucket
from .wire import fmt

MAX_CANDLES = 5000  # newest candles kept per coin and interval
MAX_FUNDING_ROWS = 500  # rows per fundingHistory call
LISTING_MS = 1_688_169_600_000  # 2023-07-01: funding history starts here for every coin
HOUR_MS = 3_600_000


def _rng(seed: int, cs: CoinState, salt: int, t: int) -> random.Random:
    return random.Random((((seed * 1_000_003) + cs.index) * 7919 + salt) * 10**13 + t)


def candles(
    market: Market, coin: str, interval: str, start: int, end: int, now: int
) -> list[dict[str, Any]]:
    """Buckets overlapping [start, end], oldest first; the open bucket is the live one."""
    cs = market.coins[coin]
    ms = INTERVAL_MS[interval]
    t = max(bucket(start, interval)[0], bucket(now, interval)[0] - (MAX_CANDLES - 1) * ms)
    last = min(end, now)
    out: list[dict[str, Any]] = []
    while t <= last:
        if t + ms > now:
            out.append(market.live_candle(coin, interval, now))
        else:
            out.append(_synthetic(market.config.seed, cs, interval, t, ms))
        t += ms
    return out


def _synthetic(seed: int, cs: CoinState, interval: str, t: int, ms: int) -> dict[str, Any]:
    rng = _rng(seed, cs, 1 + ms // 60_000, t)
    o, c = cs.curve(t), cs.curve(t + ms)
    spread = 0.002 * (ms / 3_600_000) ** 0.5
    h = max(o, c) * (1 + spread * rng.random())
    low = min(o, c) * (1 - spread * rng.random())
    n = 0 if cs.spec.is_delisted else int(rng.uniform(5, 25) * cs.spec.weight * ms / 60_000)
    v = n * rng.uniform(300, 3000) / o
    return {
        "t": t,
        "T": t + ms - 1,
        "s": cs.name,
        "i": interval,
        "o": cs.px(o),
        "c": cs.px(c),
        "h": cs.px(h),
        "l": cs.px(low),
        "v": cs.sz(v),
        "n": n,
    }


def funding_history(
    market: Market, coin: str, start: int, end: int | None, now: int
) -> list[dict[str, Any]]:
    """Hourly settlements a few ms after the hour, both bounds inclusive, oldest first, <= 500."""
    cs = market.coins[coin]
    seed = market.config.seed
    last = now if end is None else min(end, now)
    hour = max(start, LISTING_MS) // HOUR_MS
    out: list[dict[str, Any]] = []
    while len(out) < MAX_FUNDING_ROWS:
        rng = _rng(seed, cs, 0, hour)
        time = hour * HOUR_MS + rng.randrange(0, 400)
        if time > last:
            break
        if time >= start:
            premium = rng.gauss(1.2e-4, 1e-4)
            rate = BASE_FUNDING if rng.random() < 0.7 else BASE_FUNDING + rng.gauss(0, 2e-5)
            out.append(
                {
                    "coin": coin,
                    "fundingRate": fmt(rate, 10),
                    "premium": fmt(premium, 8),
                    "time": time,
                }
            )
        hour += 1
    return out
