"""A bounded memory of trades already delivered, keyed on (coin, time, tid).

`tid` alone is not unique (it is a hash of the two order ids and repeats on other coins and at
other times), so the key carries the coin and the millisecond too (API.md section 7).
"""

from __future__ import annotations

from itertools import islice

from validate import Trade

TradeKey = tuple[str, int, int]


class TradeDeduper:
    """Remembers the last `capacity` distinct trades; older ones are forgotten first.

    It only has to span what can arrive twice: the replay on subscribe (~30 trades a coin) and
    the overlap of a REST backfill with the stream. Replays older than that still cannot double
    in InfluxDB: the same trade gets the same timestamp, so it overwrites itself.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._seen: dict[TradeKey, None] = {}  # insertion-ordered; a plain dict is half the size
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: TradeKey) -> bool:
        return key in self._seen

    def fresh(self, trades: list[Trade]) -> list[Trade]:
        """The trades not seen before, remembered from now on, in their original order."""
        seen = self._seen
        out: list[Trade] = []
        for trade in trades:
            key = (trade.coin, trade.time_ms, trade.tid)
            if key in seen:
                self.duplicates += 1
                continue
            seen[key] = None
            out.append(trade)
        excess = len(seen) - self.capacity
        if excess > 0:
            for key in list(islice(seen, excess)):
                del seen[key]
        return out
