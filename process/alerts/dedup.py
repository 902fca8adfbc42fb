"""One alert per event: the keys of recent alerts, bounded, oldest forgotten first.

Keys: a position change is (address, coin, source, tid or the poll's snapshot time, kind); a
liquidation its trade (coin, time, tid); a near-liquidation entry (address, coin, side, check
time), which the zone state already makes unique. A replayed or re-detected event finds its key
and makes no second alert, as long as it comes back within the last `capacity` alerts.
"""

from __future__ import annotations

from collections.abc import Hashable


class RecentKeys:
    def __init__(self, capacity: int = 100_000) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self.capacity = capacity
        self._keys: dict[Hashable, None] = {}  # insertion order = age

    def add(self, key: Hashable) -> bool:
        """True if `key` is new (and now remembered), False if it was seen."""
        if key in self._keys:
            return False
        if len(self._keys) >= self.capacity:
            del self._keys[next(iter(self._keys))]
        self._keys[key] = None
        return True

    def __len__(self) -> int:
        return len(self._keys)
