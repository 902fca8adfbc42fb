"""Unique, repeatable nanosecond timestamps for records that share a millisecond.

InfluxDB identifies a point by measurement + tag set + timestamp and silently overwrites a point
with the same identity. Hyperliquid times are milliseconds and many records share one, so each
record gets its own nanosecond slot inside its millisecond, per series (the measurement and tag
set the point is written to, e.g. `("trades", coin, side)`):

- the first slot tried is a stable function of the record key (`initial_slot`): for an int key
  or a 1-tuple of an int (a trade's `(tid,)`), `key % 10**6`; otherwise blake2b of the key's repr.
  It never uses Python's salted `hash()`, so it is the same in every process;
- if that slot is taken by another record of the same series and millisecond, the next free slot
  is used (linear probing, wrapping inside the millisecond): `tid % 10**6` alone would let two
  distinct trades overwrite each other;
- the same (series, time_ms, record_key) always gets the same timestamp back, so a replay
  overwrites itself instead of adding a duplicate.

Probing depends on arrival order, so after a restart the state is rebuilt from what InfluxDB holds
(`seed`, one call per stored point) before replayed records are allocated again.

Memory is bounded two ways, both oldest first (in insertion order, which is time order for a
stream): records whose millisecond is more than `window_ms` behind the newest millisecond
allocated are forgotten, and at most `max_records` records are kept. A record allocated again after
it was forgotten still gets its `initial_slot` unless that collides, so a record that had to probe
could then land on its neighbour's slot: seed the window from InfluxDB before replaying anything
older than `horizon_ms`. The default window (10 minutes of data time) covers a WebSocket
reconnect's replay and a `recentTrades` backfill; 200k trade records take about 22 MB
(~110 bytes each, the tid included).

Not thread-safe: use one allocator from one thread (the asyncio loop).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from hashlib import blake2b
from itertools import islice, takewhile

SLOTS_PER_MS = 1_000_000
NS_PER_MS = 1_000_000

_STABLE_TYPES = (str, int, float, bytes, bool, type(None))
_FREE = object()  # a slot nobody holds (a record key may be None)


def initial_slot(record_key: Hashable) -> int:
    """The first slot (0..999_999) tried for a record: identical in every process and run.

    Record keys are ints, strs, bytes, floats, bools, None or tuples of them; other types have no
    repr that is guaranteed stable across runs and raise TypeError.
    """
    if type(record_key) is tuple and len(record_key) == 1:
        record_key = record_key[0]
    if type(record_key) is int:
        return record_key % SLOTS_PER_MS
    if not _is_stable(record_key):
        raise TypeError(
            f"record key {record_key!r} must be built from int, str, bytes, float, bool, None "
            "and tuples, whose repr is the same in every run"
        )
    digest = blake2b(repr(record_key).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SLOTS_PER_MS


def _is_stable(key: object) -> bool:
    if type(key) is tuple:
        return all(_is_stable(item) for item in key)
    return type(key) in _STABLE_TYPES


class TimestampAllocator:
    """Gives every record a nanosecond timestamp inside its millisecond, unique per series.

    State: per series, a dict time_ns -> record key in insertion order (one entry per record:
    the slot and who holds it), and `_moved`, the few records that had to probe, by
    (series, time_ms, record_key). A record is found at its initial slot or in `_moved`, so
    the common allocation is two dict look-ups and one insert.
    """

    def __init__(self, window_ms: int = 600_000, max_records: int = 200_000) -> None:
        if window_ms <= 0 or max_records <= 0:
            raise ValueError("window_ms and max_records must be positive")
        self.window_ms = window_ms
        self.max_records = max_records
        self._slots: dict[Hashable, dict[int, Hashable]] = {}
        self._moved: dict[tuple[Hashable, int, Hashable], int] = {}
        self._count = 0
        self._newest_ms: int | None = None
        self._sweep_at_ms: int | None = None
        self._horizon_ms: int | None = None

    def __len__(self) -> int:
        """Records currently remembered."""
        return self._count

    @property
    def horizon_ms(self) -> int | None:
        """Milliseconds before this one may have been forgotten (None: nothing forgotten yet).

        Replaying records older than this without seeding them first can move a record that
        had probed onto its neighbour's slot.
        """
        return self._horizon_ms

    def allocate(self, series: Hashable, time_ms: int, record_key: Hashable) -> int:
        """The record's timestamp in ns: `time_ms * 10**6 + slot`, the same on every call.

        `series` must include the tag set the point is written with (identity is per tag set),
        e.g. `("trades", coin, side)`; `record_key` identifies the record inside the series,
        e.g. `tid` for a trade.
        """
        slots = self._slots.get(series)
        if slots is None:
            slots = self._slots[series] = {}
        base = time_ms * NS_PER_MS
        if type(record_key) is int:  # the hot path (trades): initial_slot inlined
            time_ns = base + record_key % SLOTS_PER_MS
        else:
            time_ns = base + initial_slot(record_key)
        holder = slots.get(time_ns, _FREE)
        if holder is not _FREE and holder == record_key:
            return time_ns  # a replay
        moved = self._moved
        if moved:
            earlier = moved.get((series, time_ms, record_key))
            if earlier is not None:
                return earlier
        if holder is not _FREE:
            time_ns = self._probe(slots, series, time_ms, time_ns)
            moved[(series, time_ms, record_key)] = time_ns
        slots[time_ns] = record_key
        self._count += 1

        newest = self._newest_ms
        if newest is None or time_ms > newest:
            self._newest_ms = time_ms
            sweep_at = self._sweep_at_ms
            if sweep_at is None or time_ms >= sweep_at:
                self._sweep_at_ms = time_ms + max(1, self.window_ms // 8)
                if sweep_at is not None:
                    self._evict_before((time_ms - self.window_ms) * NS_PER_MS)
        if self._count > self.max_records:
            self._evict_oldest(self._count - self.max_records * 9 // 10)
        return time_ns

    @staticmethod
    def _probe(slots: dict[int, Hashable], series: Hashable, time_ms: int, time_ns: int) -> int:
        """The next free slot after `time_ns`, wrapping inside its millisecond."""
        base = time_ms * NS_PER_MS
        slot = time_ns - base
        for _ in range(SLOTS_PER_MS):
            slot = slot + 1 if slot < SLOTS_PER_MS - 1 else 0
            if base + slot not in slots:
                return base + slot
        raise OverflowError(f"all {SLOTS_PER_MS} slots of {time_ms} ms in {series!r} used")

    def seed(self, series: Hashable, time_ns: int, record_key: Hashable) -> bool:
        """Remember that `record_key` is stored at `time_ns` (a point read back from InfluxDB).

        Call it for the stored window before allocating replayed records; a replay of this
        record then gets exactly `time_ns`. Returns False (and changes nothing) when the record
        already has a timestamp or `time_ns` is taken by another record: the first one wins.
        """
        time_ms = time_ns // NS_PER_MS
        slots = self._slots.get(series)
        if slots is None:
            slots = self._slots[series] = {}
        initial = time_ms * NS_PER_MS + initial_slot(record_key)
        if slots.get(initial, _FREE) == record_key or (series, time_ms, record_key) in self._moved:
            return False
        if time_ns in slots:
            return False
        slots[time_ns] = record_key
        if time_ns != initial:
            self._moved[(series, time_ms, record_key)] = time_ns
        self._count += 1
        if self._count > self.max_records:
            self._evict_oldest(self._count - self.max_records * 9 // 10)
        return True

    def _evict_before(self, cutoff_ns: int) -> None:
        """Forget, in every series, the records inserted before its first one at or after
        `cutoff_ns` (a stream is inserted in time order)."""
        for series, slots in list(self._slots.items()):
            victims = list(takewhile(lambda time_ns: time_ns < cutoff_ns, slots))
            self._forget(series, slots, victims)

    def _evict_oldest(self, count: int) -> None:
        """Forget about `count` records, oldest first across series (each series' records in
        insertion order): enough to get 10 % under `max_records`, so that the next eviction is
        many allocations away."""
        heads = [(next(iter(s)), i, k) for i, (k, s) in enumerate(self._slots.items()) if s]
        heapq.heapify(heads)
        taken: dict[Hashable, int] = {}
        while count > 0 and heads:
            _, i, series = heads[0]
            slots, skip = self._slots[series], taken.get(series, 0)
            take = min(count, max(1, len(slots) // 8), len(slots) - skip)
            taken[series] = skip + take
            count -= take
            rest = list(islice(slots, skip + take, skip + take + 1))
            if rest:
                heapq.heapreplace(heads, (rest[0], i, series))
            else:
                heapq.heappop(heads)
        for series, n in taken.items():
            slots = self._slots[series]
            self._forget(series, slots, list(islice(slots, n)))

    def _forget(self, series: Hashable, slots: dict[int, Hashable], victims: list[int]) -> None:
        if not victims:
            return
        moved = self._moved
        for time_ns in victims:
            record_key = slots.pop(time_ns)
            if moved:
                moved.pop((series, time_ns // NS_PER_MS, record_key), None)
        self._count -= len(victims)
        if not slots:
            del self._slots[series]
        horizon = max(victims) // NS_PER_MS + 1  # the last victim need not be the newest
        if self._horizon_ms is None or horizon > self._horizon_ms:
            self._horizon_ms = horizon
