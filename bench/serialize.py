"""Microseconds per point to serialize trades: the bare encoder, and the whole trade path
(PointBuilder: Decimal -> float, timestamp slot allocation, encoding)."""

from __future__ import annotations

import time
from decimal import Decimal

from db.line_protocol import encode_point
from process.points import PointBuilder
from validate import Trade

COUNT = 20_000


def trades(count: int = COUNT) -> list[Trade]:
    base = 1_764_835_613_064
    return [
        Trade(
            coin=("BTC", "ETH", "SOL", "HYPE")[i % 4],
            side="buy" if i % 3 else "sell",
            px=Decimal("84981.5") + i % 100,
            sz=Decimal("0.01234"),
            time_ms=base + i // 10,
            hash="0x" + "ab" * 32,
            tid=(i * 7919) % (1 << 50),
            buyer=f"0x{i:040x}",
            seller=f"0x{i + 1:040x}",
        )
        for i in range(count)
    ]


def _best(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run(count: int = COUNT, rounds: int = 5) -> dict[str, float]:
    batch = trades(count)
    tags = {"coin": "BTC", "side": "buy"}
    fields = {
        "px": 84981.5,
        "sz": 0.01234,
        "notional": 1048.67,
        "tid": 871239487123947,
        "buyer": "0x" + "8f" * 20,
        "seller": "0x" + "12" * 20,
    }

    def encode() -> None:
        for i in range(count):
            encode_point("trades", tags, fields, 1_717_171_717_123_456_789 + i)

    def build() -> None:
        PointBuilder().trades(batch)

    return {
        "encode_point_us": round(_best(encode, rounds) / count * 1e6, 3),
        "trade_point_us": round(_best(build, rounds) / count * 1e6, 3),
    }
