"""Microseconds per trade to validate a realistic 50-trade WebSocket `trades` frame from raw bytes.

- fast_path: `parse_ws_message` on a valid frame (one `validate_json`, records built in Rust);
- with_rejects: the same frame with one bad record (whole-frame attempt, then record by record);
- wire_only: a wire-faithful TypedDict model (Decimal, "B"/"A", users list; no normalization,
  no time bounds), i.e. what normalization and the checks cost on top;
- json_loads: `json.loads` alone, for scale.

Each figure is the best of `rounds` timings of `calls` calls (the least disturbed by other load).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter
from typing_extensions import TypedDict

from validate import TradesMessage, parse_ws_message

TRADES = 50
NOW_MS = 1_764_835_613_064


class _WireTrade(TypedDict):
    coin: str
    side: Literal["B", "A"]
    px: Annotated[Decimal, Field(gt=0)]
    sz: Annotated[Decimal, Field(gt=0)]
    time: int
    hash: str
    tid: int
    users: tuple[str, str]


class _WireFrame(TypedDict):
    channel: Literal["trades"]
    data: list[_WireTrade]


_WIRE: TypeAdapter[_WireFrame] = TypeAdapter(_WireFrame)


def trades_frame(count: int = TRADES, seed: int = 7, bad: int = 0) -> bytes:
    """A `trades` frame like a busy HYPE second; the first `bad` records get px "abc"."""
    rng = random.Random(seed)
    users = [f"0x{rng.getrandbits(160):040x}" for _ in range(40)]
    trades = []
    for i in range(count):
        trades.append(
            {
                "coin": "HYPE",
                "side": rng.choice("BA"),
                "px": "abc" if i < bad else f"{35 + rng.random():.3f}",
                "sz": f"{rng.random() * 200:.2f}",
                "time": NOW_MS - 1000 + i * 20,
                "hash": f"0x{rng.getrandbits(256):064x}",
                "tid": rng.getrandbits(50),
                "users": rng.sample(users, 2),
            }
        )
    return json.dumps({"channel": "trades", "data": trades}, separators=(",", ":")).encode()


def run(calls: int = 200, rounds: int = 30) -> dict[str, float]:
    """The figures above, in microseconds per trade. Prints nothing.

    Rounds interleave the cases, so a burst of load on a shared machine hits all of them alike.
    """
    good = trades_frame()
    one_bad = trades_frame(bad=1)
    message = parse_ws_message(good, now_ms=NOW_MS)
    assert isinstance(message, TradesMessage) and len(message.trades) == TRADES
    message = parse_ws_message(one_bad, now_ms=NOW_MS)
    assert isinstance(message, TradesMessage) and len(message.rejected) == 1
    cases: dict[str, tuple[Callable[[], object], int]] = {
        "us_per_trade_fast_path": (lambda: parse_ws_message(good, now_ms=NOW_MS), calls),
        "us_per_trade_with_rejects": (
            lambda: parse_ws_message(one_bad, now_ms=NOW_MS),
            max(calls // 10, 1),
        ),
        "us_per_trade_wire_only": (lambda: _WIRE.validate_json(good), calls),
        "us_per_trade_json_loads": (lambda: json.loads(good), calls),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, (call, count) in cases.items():
            started = time.perf_counter()
            for _ in range(count):
                call()
            best[name] = min(best[name], (time.perf_counter() - started) / count)
    return {name: round(seconds / TRADES * 1e6, 3) for name, seconds in best.items()}
