"""Market liquidations, confirmed: a trade that looks like one is checked against the victim's
own fills before anything is written.

The trade stream has no liquidation flag (API.md 5.1). The detector flags a trade when its taker
cuts a tracked position at or past the liquidation price the position book computes; but the
book cannot see deposits, withdrawals or transfers between polls, so that price can be wrong
and ordinary trades would be written as liquidations. The exchange's answer is in the victim's
fills: the fill of a liquidated order carries `liquidation: {method: "market", ...}` (API.md
5.2). So each candidate waits here, and one `userFillsByTime` request over its millisecond
(weight ~21, the profiles lane: never ahead of gap backfill, market data or HLP) decides: the
fill with the candidate's `tid` and a market `liquidation` confirms it; anything else rejects it.

At most `per_run` candidates are checked a run (every second) and at most `max_pending` wait; in
a cascade larger than that the oldest are dropped and counted (`dropped`), never written
unconfirmed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from process.liquidations import LiquidationEvent
from process.points import PointBuilder
from process.storage_ports import PointSink
from utils.errors import HyperfluxError
from utils.metrics import Sample
from validate import Fill

log = logging.getLogger(__name__)


class FillSource(Protocol):
    async def user_fills_by_time(self, user: str, start_ms: int, end_ms: int) -> list[Fill]: ...


@dataclass
class LiquidationConfirmer:
    source: FillSource
    builder: PointBuilder
    writer: PointSink
    per_run: int = 10
    max_pending: int = 1000
    on_confirmed: Callable[[LiquidationEvent], None] | None = None
    candidates: int = 0
    confirmed: int = 0
    rejected: int = 0
    dropped: int = 0
    _pending: deque[LiquidationEvent] = field(default_factory=deque)

    def candidate(self, event: LiquidationEvent) -> None:
        """A trade the detector takes for a market liquidation (`event.user` is the victim)."""
        self.candidates += 1
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(event)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def samples(self) -> list[Sample]:
        return [
            Sample(
                "market_liquidation_candidates_total",
                "counter",
                "trades the book took for market liquidations",
                self.candidates,
            ),
            Sample(
                "market_liquidations_confirmed_total",
                "counter",
                "candidates the victim's fills confirmed",
                self.confirmed,
            ),
            Sample(
                "market_liquidations_rejected_total",
                "counter",
                "candidates the victim's fills showed were ordinary trades",
                self.rejected,
            ),
            Sample(
                "market_liquidations_dropped_total",
                "counter",
                "candidates dropped unchecked (more waited than max_pending)",
                self.dropped,
            ),
        ]

    async def __call__(self) -> None:
        failures: list[str] = []
        for _ in range(min(self.per_run, len(self._pending))):
            event = self._pending.popleft()
            try:
                fills = await self.source.user_fills_by_time(
                    event.user or "", event.time_ms, event.time_ms
                )
            except HyperfluxError as exc:
                self._pending.appendleft(event)  # tried again next run
                failures.append(str(exc))
                break
            if _confirms(fills, event):
                self.confirmed += 1
                self.writer.write(self.builder.liquidations([event]))
                if self.on_confirmed is not None:
                    self.on_confirmed(event)
            else:
                self.rejected += 1
                log.debug("not a liquidation (its fills say so): %s", event)
        if failures:
            raise HyperfluxError(f"liquidation candidates not checked: {failures[0]}")


def _confirms(fills: list[Fill], event: LiquidationEvent) -> bool:
    return any(
        fill.tid == event.tid
        and fill.coin == event.coin
        and fill.liquidation is not None
        and fill.liquidation.method == "market"
        for fill in fills
    )
