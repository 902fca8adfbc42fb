"""A bounded memory of trades already delivered, keyed on (coin, time, tid).

`tid` alone is not unique (it is a hash of the two order ids and repeats on other coins and at
other times), so the key carries the coin and the millisecond too (API.md section 7).
"""

from __future__ import annotations

from validate import Trade

TradeKey = tuple[str, int, int]


class TradeDeduper:
    """Remembers at least the last `capacity // 2` and at most `capacity` distinct trades.

    It only has to span what can arrive twice: the replay on subscribe (~30 trades a coin) and
    the overlap of a REST backfill with the stream. Replays older than that still cannot double
    in InfluxDB: the same trade gets the same timestamp, so it overwrites itself.

    Two generations of keys: new keys go into the current one; when it holds `capacity // 2`
    it becomes the previous one and the old previous one is dropped whole. Forgetting costs
    nothing per trade, and a frame without duplicates (nearly all) is checked and remembered
    by C-level set operations.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self._current: dict[TradeKey, None] = {}
        self._previous: dict[TradeKey, None] = {}
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def __contains__(self, key: TradeKey) -> bool:
        return key in self._current or key in self._previous

    def fresh(self, trades: list[Trade]) -> list[Trade]:
        """The trades not seen before, remembered from now on, in their original order."""
        keys = [(t.coin, t.time_ms, t.tid) for t in trades]
        current, previous = self._current, self._previous
        if current.keys().isdisjoint(keys) and previous.keys().isdisjoint(keys):
            before = len(current)
            current.update(dict.fromkeys(keys))
            if len(current) - before == len(keys):
                out = trades
            else:  # all new, but some twice within the frame: the first of each
                out, here = [], set()
                for trade, key in zip(trades, keys, strict=True):
                    if key not in here:
                        here.add(key)
                        out.append(trade)
                self.duplicates += len(trades) - len(out)
        else:
            out = []
            for trade, key in zip(trades, keys, strict=True):
                if key in current or key in previous:
                    self.duplicates += 1
                    continue
                current[key] = None
                out.append(trade)
        if len(current) >= self.capacity // 2:
            self._previous, self._current = current, {}
        return out
