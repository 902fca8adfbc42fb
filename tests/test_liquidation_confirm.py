"""Market liquidations are written only when the victim's own fills confirm them."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from process.liquidation_confirm import LiquidationConfirmer
from process.liquidations import LiquidationEvent
from process.points import PointBuilder
from utils.errors import HyperfluxError
from validate import Fill, parse_user_fills

VICTIM = "0x" + "9a" * 20
T = 1_790_000_000_000


def fill(tid: int, method: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "coin": "ETH", "px": "2500.0", "sz": "1.5", "side": "A", "time": T,
        "startPosition": "3.0", "dir": "Close Long", "closedPnl": "-10.0",
        "hash": "0x" + "0" * 64, "oid": 1, "crossed": True, "fee": "1.6", "tid": tid,
        "feeToken": "USDC",
    }  # fmt: skip
    if method is not None:
        record["liquidation"] = {"liquidatedUser": VICTIM, "markPx": "2499.0", "method": method}
    return record


def event(tid: int) -> LiquidationEvent:
    return LiquidationEvent("ETH", "long", "market", D("2500.0"), D("1.5"), tid, T, VICTIM)


class Fills:
    def __init__(self, records: list[dict[str, Any]], fail: int = 0) -> None:
        parsed, rejected = parse_user_fills(records)
        assert not rejected
        self.fills, self.fail, self.asked = parsed, fail, []

    async def user_fills_by_time(self, user: str, start_ms: int, end_ms: int) -> list[Fill]:
        self.asked.append((user, start_ms, end_ms))
        if self.fail:
            self.fail -= 1
            raise HyperfluxError("Hyperliquid info request 'userFillsByTime' failed")
        return self.fills


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)


async def test_only_candidates_the_victims_fills_confirm_are_written() -> None:
    source = Fills([fill(7, "market"), fill(8, None), fill(9, "backstop")])
    sink = Lines()
    confirmer = LiquidationConfirmer(source, PointBuilder(), sink)
    for tid in (7, 8, 9, 10):  # a market fill; an ordinary one; a backstop; none at all
        confirmer.candidate(event(tid))
    await confirmer()
    assert (confirmer.confirmed, confirmer.rejected, confirmer.pending) == (1, 3, 0)
    assert len(sink.lines) == 1 and "tid=7i" in sink.lines[0]
    assert sink.lines[0].startswith("liquidations,coin=ETH,method=market,side=long ")
    assert source.asked == [(VICTIM, T, T)] * 4


async def test_a_failed_check_keeps_the_candidate_and_a_flood_drops_the_oldest() -> None:
    source = Fills([fill(1, "market"), fill(2, "market")], fail=1)
    sink = Lines()
    confirmer = LiquidationConfirmer(source, PointBuilder(), sink, per_run=1, max_pending=2)
    for tid in (0, 1, 2):
        confirmer.candidate(event(tid))
    assert (confirmer.candidates, confirmer.dropped, confirmer.pending) == (3, 1, 2)
    with pytest.raises(HyperfluxError, match="not checked"):
        await confirmer()
    assert confirmer.pending == 2 and sink.lines == []
    await confirmer()
    await confirmer()
    assert confirmer.confirmed == 2 and len(sink.lines) == 2
