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
reconnect's replay and a `recentTrades` backfill; 200k records take about 70 MB (measured
~340 bytes per trade record, keys included).

Not thread-safe: use one allocator from one thread (the asyncio loop).
"""

from __future__ import annotations

from collections.abc import Hashable
from hashlib import blake2b
from itertools import islice, takewhile

SLOTS_PER_MS = 1_000_000
NS_PER_MS = 1_000_000

_STABLE_TYPES = (str, int, float, bytes, bool, type(None))


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
    """Gives every record a nanosecond timestamp inside its millisecond, unique per series."""

    def __init__(self, window_ms: int = 600_000, max_records: int = 200_000) -> None:
        if window_ms <= 0 or max_records <= 0:
            raise ValueError("window_ms and max_records must be positive")
        self.window_ms = window_ms
        self.max_records = max_records
        # (series, time_ms, record_key) -> time_ns, in insertion order (oldest first).
        self._assigned: dict[tuple[Hashable, int, Hashable], int] = {}
        # series -> every time_ns handed out in it (plain ints: the probe is one set look-up).
        self._taken: dict[Hashable, set[int]] = {}
        self._newest_ms: int | None = None
        self._sweep_at_ms: int | None = None
        self._horizon_ms: int | None = None

    def __len__(self) -> int:
        """Records currently remembered."""
        return len(self._assigned)

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
        e.g. `(tid,)` for a trade.
        """
        key = (series, time_ms, record_key)
        time_ns = self._assigned.get(key)
        if time_ns is not None:
            return time_ns

        taken = self._taken.get(series)
        if taken is None:
            taken = self._taken[series] = set()
        base = time_ms * NS_PER_MS
        slot = initial_slot(record_key)
        time_ns = base + slot
        probes = 0
        while time_ns in taken:
            probes += 1
            if probes == SLOTS_PER_MS:
                raise OverflowError(f"all {SLOTS_PER_MS} slots of {time_ms} ms in {series!r} used")
            slot = slot + 1 if slot < SLOTS_PER_MS - 1 else 0
            time_ns = base + slot
        taken.add(time_ns)
        self._assigned[key] = time_ns

        if self._newest_ms is None or time_ms > self._newest_ms:
            self._newest_ms = time_ms
            if self._sweep_at_ms is None:
                self._sweep_at_ms = time_ms + max(1, self.window_ms // 8)
            elif time_ms >= self._sweep_at_ms:
                self._sweep_at_ms = time_ms + max(1, self.window_ms // 8)
                self._evict(cutoff_ms=time_ms - self.window_ms)
        if len(self._assigned) > self.max_records:
            self._evict(cutoff_ms=None)
        return time_ns

    def seed(self, series: Hashable, time_ns: int, record_key: Hashable) -> bool:
        """Remember that `record_key` is stored at `time_ns` (a point read back from InfluxDB).

        Call it for the stored window before allocating replayed records; a replay of this
        record then gets exactly `time_ns`. Returns False (and changes nothing) when the record
        already has a timestamp or `time_ns` is taken by another record: the first one wins.
        """
        time_ms = time_ns // NS_PER_MS
        key = (series, time_ms, record_key)
        if key in self._assigned:
            return False
        taken = self._taken.get(series)
        if taken is None:
            taken = self._taken[series] = set()
        if time_ns in taken:
            return False
        taken.add(time_ns)
        self._assigned[key] = time_ns
        if len(self._assigned) > self.max_records:
            self._evict(cutoff_ms=None)
        return True

    def _evict(self, cutoff_ms: int | None) -> None:
        """Forget the oldest records: those before `cutoff_ms`, or (None) enough to get 10 %
        under `max_records`, so that the next eviction is many allocations away."""
        if cutoff_ms is None:
            victims = list(islice(self._assigned, len(self) - self.max_records * 9 // 10))
        else:
            victims = list(takewhile(lambda key: key[1] < cutoff_ms, self._assigned))
        for series, time_ms, record_key in victims:
            taken = self._taken[series]
            taken.discard(self._assigned.pop((series, time_ms, record_key)))
            if not taken:
                del self._taken[series]
            if self._horizon_ms is None or time_ms >= self._horizon_ms:
                self._horizon_ms = time_ms + 1
