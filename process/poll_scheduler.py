"""Which addresses to poll next with `clearinghouseState`, under a fixed poll rate.

Goal: the smallest USD-weighted mean age of the position snapshots, sum w_i * age_i / sum w_i.
Polling address i every T_i gives it a mean age of T_i / 2 at a cost of 1 / T_i polls per unit
time; minimizing sum w_i T_i / 2 subject to sum 1 / T_i = R (Lagrangian) gives
T_i = sqrt(2 lambda / w_i): poll each address at a rate proportional to sqrt(w_i).

`PollScheduler` realizes those rates without knowing R, by the index policy "poll the largest
w_i * age_i^2" (equivalently sqrt(w_i) * age_i), age being the time since the last successful
poll: whatever rate the budget allows, each address comes up when its index reaches a common
threshold, so in steady state it is polled every T_i ~ 1 / sqrt(w_i), smoothly (about once per
period, no bursts). Unlike a schedule of deadlines, the index also ranks what is overdue by what
a poll gains: after a restart (ages restored from the registry) or when a trade makes an old
snapshot matter, the largest w * age^2 goes first, and an address polled a moment ago comes
back after its own period instead of waiting behind a backlog of small overdue ones. Addresses
sit in weight classes (`_CLASSES_PER_OCTAVE` per doubling of sqrt(w)), oldest first in each;
`next_batch` merges the classes' heads by their index (lazy invalidation: stale items are
skipped), so it costs O(C + n log N) for C classes.

Weights: w_i = exposure * (1 + liq_k / max(distance, liq_eps)), distance being the smallest
|mark - liq| / mark among its positions (positions near liquidation are polled more often), and
exposure = max(notional, memory x typical notional, notional traded since the last poll,
floor_usd). A position only opens or changes through trades, which the trade stream shows
(`note_traded`): a trade raises the exposure at once, and an address that opened after a long
quiet spell has a large index because its snapshot is old. So an address with no trade since its
last poll is as it was polled (up to price moves), and `memory` (default 0.1) only hedges against
trades the stream missed (reconnects, coins not followed): a closed whale is still polled at
sqrt(0.1) ~ 1/3 of its open rate, without spending much on the flat majority. A trade does not
make an address due at once: trades are far more frequent than polls (on the simulated exchange
they would take the whole budget); its index decides. Never-polled addresses come first
(discovery, FIFO); failed ones wait out their backoff, then compete by their index (a failed
poll refreshed nothing, so their age keeps growing).

`FixedTierScheduler` is the baseline other tools use (30 s / 120 s / 600 s tiers by notional).
Both share one interface; all times are passed in (ms), so both can be simulated.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from process.registry import TYPICAL_HALF_LIFE_MS, backoff_ms, decayed_peak

_NEW, _QUEUED, _FLIGHT, _BACKOFF = range(4)
_CLASSES_PER_OCTAVE = 8
WATCH_BOOST = 100.0
"""A watched address's weight factor: polled sqrt(100) = 10x as often as its exposure alone
would give (a flat watched wallet too: its floor weight is boosted)."""
"""PollScheduler: weight classes per doubling of sqrt(weight) (within one, oldest first)."""


@dataclass(slots=True)
class _Entry:
    polled: bool = False
    last_polled_ms: int | None = None
    key: float = 0.0
    """Last successful poll time (ms); 0 if unknown."""
    token: int = 0
    """Matches the one live queue entry; older heap entries are stale and skipped."""
    where: int = _NEW
    failures: int = 0
    tier: int = 0
    """FixedTierScheduler: index into its tiers; PollScheduler: weight class."""
    root: float = 0.0
    """PollScheduler: sqrt(weight)."""
    notional: float = 0.0
    distance: float | None = None
    typical: float = 0.0
    """Decayed peak notional (`process.registry.decayed_peak`)."""
    traded: float = 0.0
    """Largest notional traded since the last poll (trade-stream hint)."""
    boost: float = 1.0
    """PollScheduler: weight factor of a watched address (`watch`)."""


class Scheduler:
    """The interface of both schedulers, and what they share: entries, discovery FIFO, backoff
    heap, tokens for lazy invalidation (a queue item is live only if its token is the entry's)."""

    def __init__(self, backoff_base_ms: int, backoff_cap_ms: int) -> None:
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self._entries: dict[str, _Entry] = {}
        self._new: deque[tuple[int, str]] = deque()
        self._backoff: list[tuple[int, int, str]] = []
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, address: object) -> bool:
        return address in self._entries

    @property
    def discovery_backlog(self) -> int:
        """Never-polled addresses waiting for their first poll (upper bound)."""
        return len(self._new)

    def add(
        self,
        address: str,
        *,
        last_polled_ms: int | None = None,
        notional_usd: float = 0.0,
        min_liq_distance: float | None = None,
        typical_usd: float = 0.0,
        retry_at_ms: int = 0,
    ) -> bool:
        """Start scheduling `address` (False if known); after a restart, restore its state."""
        if address in self._entries:
            return False
        entry = self._entries[address] = _Entry(last_polled_ms is not None, last_polled_ms)
        self._describe(entry, notional_usd, min_liq_distance, typical_usd)
        if retry_at_ms > 0:
            self._back_off(address, entry, retry_at_ms)
        elif entry.polled:
            self._restore(address, entry)
        else:
            self._enqueue(address, entry)
        return True

    def discard(self, address: str) -> bool:
        """Forget `address` (expired); its queue entries go stale. False if unknown."""
        return self._entries.pop(address, None) is not None

    def next_batch(self, now_ms: int, n: int) -> list[str]:
        """Up to `n` addresses to poll now; in flight until noted polled/failed or released."""
        raise NotImplementedError

    def note_polled(
        self, address: str, now_ms: int, notional_usd: float, min_liq_distance: float | None
    ) -> None:
        """A poll succeeded: failures cleared, weight updated, next poll scheduled."""
        entry = self._entries.get(address)
        if entry is None:
            self.add(address)
            entry = self._entries[address]
        self._polled(entry, now_ms, notional_usd, min_liq_distance)
        entry.polled, entry.failures, entry.last_polled_ms = True, 0, now_ms
        entry.where, entry.token = _QUEUED, self._token()
        self._push(address, entry)

    def note_failed(self, address: str, now_ms: int, retry_at_ms: int | None = None) -> None:
        """A poll failed: wait until `retry_at_ms` (default: exponential backoff from now)."""
        entry = self._entries.get(address)
        if entry is None:
            return
        entry.failures += 1
        if retry_at_ms is None:
            wait = backoff_ms(entry.failures, self.backoff_base_ms, self.backoff_cap_ms)
            retry_at_ms = now_ms + wait
        self._back_off(address, entry, retry_at_ms)

    def release(self, address: str) -> None:
        """An address from `next_batch` that will not be polled after all: back in its place."""
        entry = self._entries.get(address)
        if entry is not None and entry.where == _FLIGHT:
            self._enqueue(address, entry)

    def _describe(
        self, entry: _Entry, notional: float, distance: float | None, typical: float
    ) -> None:
        raise NotImplementedError

    def _polled(self, entry: _Entry, now_ms: int, notional: float, distance: float | None) -> None:
        raise NotImplementedError

    def _push(self, address: str, entry: _Entry) -> None:
        raise NotImplementedError

    def _restore(self, address: str, entry: _Entry) -> None:
        self._enqueue(address, entry)

    def _retry(self, address: str, entry: _Entry) -> None:
        self._enqueue(address, entry)

    def _token(self) -> int:
        self._tokens += 1
        return self._tokens

    def _enqueue(self, address: str, entry: _Entry) -> None:
        entry.token = self._token()
        if not entry.polled:
            entry.where = _NEW
            self._new.append((entry.token, address))
        else:
            entry.where = _QUEUED
            self._push(address, entry)

    def _back_off(self, address: str, entry: _Entry, retry_at_ms: int) -> None:
        entry.where, entry.token = _BACKOFF, self._token()
        heapq.heappush(self._backoff, (retry_at_ms, entry.token, address))

    def _release_backoff(self, now_ms: int) -> None:
        backoff, entries = self._backoff, self._entries
        while backoff and backoff[0][0] <= now_ms:
            _, token, address = heapq.heappop(backoff)
            entry = entries.get(address)
            if entry is not None and entry.token == token and entry.where == _BACKOFF:
                self._retry(address, entry)

    def _take_new(self, out: list[str], n: int) -> None:
        new, entries = self._new, self._entries
        while new and len(out) < n:
            token, address = new.popleft()
            entry = entries.get(address)
            if entry is not None and entry.token == token and entry.where == _NEW:
                entry.where = _FLIGHT
                out.append(address)


class PollScheduler(Scheduler):
    """The index policy: poll the largest sqrt(weight) x age (module docstring).

    `rate_per_min` is accepted for compatibility and checked, but the policy needs no rate: the
    threshold the index must reach adapts to whatever rate the budget allows.
    """

    def __init__(
        self,
        *,
        floor_usd: float = 100.0,
        liq_k: float = 0.1,
        liq_eps: float = 0.002,
        memory: float = 0.1,
        memory_half_life_ms: int = TYPICAL_HALF_LIFE_MS,
        rate_per_min: float = 378.0,
        backoff_base_ms: int = 30_000,
        backoff_cap_ms: int = 3_600_000,
    ) -> None:
        if floor_usd <= 0 or liq_eps <= 0 or rate_per_min <= 0 or memory_half_life_ms <= 0:
            raise ValueError("floor_usd, liq_eps, rate_per_min and the half-life must be > 0")
        if liq_k < 0 or not 0 <= memory <= 1:
            raise ValueError("liq_k must be >= 0 and memory in [0, 1]")
        super().__init__(backoff_base_ms, backoff_cap_ms)
        self.floor_usd = floor_usd
        self.liq_k = liq_k
        self.liq_eps = liq_eps
        self.memory = memory
        self.memory_half_life_ms = memory_half_life_ms
        self.rate_per_min = rate_per_min
        self._classes: dict[int, list[tuple[float, int, str]]] = {}
        self._watched: frozenset[str] = frozenset()
        """Weight class -> heap of (last poll ms, token, address): oldest first."""
        self._items = 0
        """Items in the class heaps, stale ones included (compaction)."""

    def weight(
        self, notional_usd: float, min_liq_distance: float | None, typical_usd: float = 0.0
    ) -> float:
        """Priority weight: exposure (at least `memory` x typical, at least the floor), boosted
        near liquidation."""
        weight = max(notional_usd, self.memory * typical_usd, self.floor_usd)
        if min_liq_distance is not None and notional_usd > 0:
            weight *= 1 + self.liq_k / max(min_liq_distance, self.liq_eps)
        return weight

    def next_batch(self, now_ms: int, n: int) -> list[str]:
        """Up to `n` addresses to poll now: never-polled first, then the largest indexes.

        They are in flight until `note_polled`, `note_failed` or `release`.
        """
        self._release_backoff(now_ms)
        out: list[str] = []
        self._take_new(out, n)
        if len(out) < n:
            self._take_largest(out, n, now_ms)
        if self._items > 2 * len(self._entries) + 1024:
            self._compact()
        return out

    def note_traded(self, address: str, now_ms: int, notional_usd: float) -> None:
        """The trade stream saw `address` trade `notional_usd`: its position changed.

        Until the next poll its exposure is taken as at least the traded notional: a flat
        address (or a whale) that opens after a quiet spell has a large index at once, its
        snapshot being as old as its last poll.
        """
        entry = self._entries.get(address)
        if entry is None or not entry.polled or notional_usd <= entry.traded:
            return
        entry.traded = notional_usd
        tier = entry.tier
        self._reweigh(entry)
        if entry.tier != tier and entry.where == _QUEUED:
            entry.token = self._token()
            self._push(address, entry)

    def _take_largest(self, out: list[str], n: int, now_ms: int) -> None:
        """Pop the largest indexes: a merge of the class heaps' heads (the oldest of each)."""
        entries, classes = self._entries, self._classes
        heads: list[tuple[float, float, int, int]] = []
        for tier, heap in classes.items():
            if self._head(heap):
                polled_ms, token, address = heap[0]
                index = entries[address].root * (now_ms - polled_ms)
                heads.append((-index, polled_ms, token, tier))
        heapq.heapify(heads)
        while heads and len(out) < n:
            tier = heapq.heappop(heads)[3]
            heap = classes[tier]
            address = heapq.heappop(heap)[2]
            self._items -= 1
            entries[address].where = _FLIGHT
            out.append(address)
            if self._head(heap):
                polled_ms, token, address = heap[0]
                index = entries[address].root * (now_ms - polled_ms)
                heapq.heappush(heads, (-index, polled_ms, token, tier))
            elif not heap:
                del classes[tier]

    def _head(self, heap: list[tuple[float, int, str]]) -> bool:
        """Drop stale items from the top of `heap`; True if a live one is left there."""
        entries = self._entries
        while heap:
            _, token, address = heap[0]
            entry = entries.get(address)
            if entry is not None and entry.token == token and entry.where == _QUEUED:
                return True
            heapq.heappop(heap)
            self._items -= 1
        return False

    def _describe(
        self, entry: _Entry, notional: float, distance: float | None, typical: float
    ) -> None:
        entry.notional, entry.distance, entry.typical = notional, distance, max(typical, notional)
        entry.key = float(entry.last_polled_ms or 0)
        self._reweigh(entry)

    def _polled(self, entry: _Entry, now_ms: int, notional: float, distance: float | None) -> None:
        entry.typical = decayed_peak(
            entry.typical, entry.last_polled_ms, notional, now_ms, self.memory_half_life_ms
        )
        entry.notional, entry.distance, entry.traded = notional, distance, 0.0
        entry.key = float(now_ms)
        self._reweigh(entry)

    def watch(self, addresses: Iterable[str], boost: float = WATCH_BOOST) -> None:
        """Poll `addresses` with priority (weight x `boost`; added if new); every address
        watched before and not now goes back to its own weight."""
        wanted = frozenset(addresses)
        for address in wanted - self._watched:
            self.add(address)
        for address in wanted | self._watched:
            entry = self._entries.get(address)
            if entry is None:
                continue
            entry.boost = boost if address in wanted else 1.0
            tier = entry.tier
            self._reweigh(entry)
            if entry.tier != tier and entry.where == _QUEUED:
                entry.token = self._token()
                self._push(address, entry)
        self._watched = wanted

    def _reweigh(self, entry: _Entry) -> None:
        notional = max(entry.notional, entry.traded)
        root = math.sqrt(self.weight(notional, entry.distance, entry.typical) * entry.boost)
        entry.root = root
        entry.tier = math.floor(math.log2(root) * _CLASSES_PER_OCTAVE)

    def _push(self, address: str, entry: _Entry) -> None:
        heap = self._classes.get(entry.tier)
        if heap is None:
            heap = self._classes[entry.tier] = []
        heapq.heappush(heap, (entry.key, entry.token, address))
        self._items += 1

    def _compact(self) -> None:
        entries, classes = self._entries, self._classes
        for tier in list(classes):
            heap = [
                item
                for item in classes[tier]
                if (e := entries.get(item[2])) is not None
                and e.token == item[1]
                and e.where == _QUEUED
            ]
            if heap:
                heapq.heapify(heap)
                classes[tier] = heap
            else:
                del classes[tier]
        self._items = sum(len(heap) for heap in classes.values())


TIERS: tuple[tuple[float, int], ...] = ((1_000_000.0, 30_000), (100_000.0, 120_000), (0.0, 600_000))
"""Baseline tiers: (minimum notional USD, poll period ms), largest first."""


class FixedTierScheduler(Scheduler):
    """The baseline: poll every 30 s / 120 s / 600 s by notional >= $1M / >= $100k / else.

    Only due addresses are polled (never-polled ones first). When the budget cannot cover every
    due poll, the most overdue go first: `overdue="absolute"` (default) ranks by time past due,
    `"relative"` by time past due divided by the period (which favours the short tiers).
    """

    def __init__(
        self,
        *,
        tiers: tuple[tuple[float, int], ...] = TIERS,
        overdue: Literal["absolute", "relative"] = "absolute",
        backoff_base_ms: int = 30_000,
        backoff_cap_ms: int = 3_600_000,
    ) -> None:
        super().__init__(backoff_base_ms, backoff_cap_ms)
        self.tiers = tiers
        self.overdue = overdue
        self._heaps: list[list[tuple[float, int, str]]] = [[] for _ in tiers]

    def tier(self, notional_usd: float) -> int:
        """Index into `tiers` for a notional."""
        for index, (minimum, _) in enumerate(self.tiers):
            if notional_usd >= minimum:
                return index
        return len(self.tiers) - 1

    def next_batch(self, now_ms: int, n: int) -> list[str]:
        """Up to `n` due addresses: never-polled first, then the most overdue."""
        self._release_backoff(now_ms)
        out: list[str] = []
        self._take_new(out, n)
        heaps, entries, relative = self._heaps, self._entries, self.overdue == "relative"
        while len(out) < n:
            best, best_score = -1, -math.inf
            for index, heap in enumerate(heaps):
                while heap and not self._valid(heap[0]):
                    heapq.heappop(heap)
                if not heap:
                    continue
                period = self.tiers[index][1]
                late = now_ms - heap[0][0] - period
                score = late / period if relative else late
                if late >= 0 and score > best_score:
                    best, best_score = index, score
            if best < 0:
                break
            _, _, address = heapq.heappop(heaps[best])
            entries[address].where = _FLIGHT
            out.append(address)
        return out

    def _describe(
        self, entry: _Entry, notional: float, distance: float | None, typical: float
    ) -> None:
        entry.tier, entry.key = self.tier(notional), float(entry.last_polled_ms or 0)

    def _polled(self, entry: _Entry, now_ms: int, notional: float, distance: float | None) -> None:
        entry.tier, entry.key = self.tier(notional), float(now_ms)

    def _valid(self, item: tuple[float, int, str]) -> bool:
        entry = self._entries.get(item[2])
        return entry is not None and entry.token == item[1] and entry.where == _QUEUED

    def _push(self, address: str, entry: _Entry) -> None:
        heapq.heappush(self._heaps[entry.tier], (entry.key, entry.token, address))
