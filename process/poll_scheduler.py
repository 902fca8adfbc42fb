"""Which addresses to poll next with `clearinghouseState`, under a fixed poll rate.

Goal: the smallest USD-weighted mean age of the position snapshots, sum w_i * age_i / sum w_i.
Polling address i every T_i gives it a mean age of T_i / 2 at a cost of 1 / T_i polls per unit
time; minimizing sum w_i T_i / 2 subject to sum 1 / T_i = R (Lagrangian) gives
T_i = sqrt(2 lambda / w_i): poll each address at a rate proportional to sqrt(w_i).

`PollScheduler` realizes those rates without knowing R, by stride scheduling: each address has a
stride 1 / sqrt(w_i) and a pass (its key in a heap); the address with the smallest pass is
polled next and its pass becomes (virtual time) + stride, where virtual time is the pass of the
last address served. Over any stretch every address is polled in proportion to 1 / stride =
sqrt(w_i), whatever the rate the budget actually allows, and the schedule is smooth (each
address about once per period, no bursts). It is the deadline form of the index policy "poll the
largest w_i * age_i^2". `next_batch` pops the heap (lazy invalidation: stale entries are skipped),
so it costs O(n log N).

Weights: w_i = exposure * (1 + liq_k / max(distance, liq_eps)), distance being the smallest
|mark - liq| / mark among its positions (positions near liquidation are polled more often), and
exposure = max(notional, memory x typical notional, notional traded since the last poll,
floor_usd): a whale that closed is still watched (it tends to reopen big), a trade seen on the
stream (`note_traded`) moves a quiet address up at once, and flat addresses still get polled now
and then so new positions are found. Never-polled addresses come first (discovery, FIFO); failed
ones wait out their backoff, then go first.

`FixedTierScheduler` is the baseline other tools use (30 s / 120 s / 600 s tiers by notional).
Both share one interface; all times are passed in (ms), so both can be simulated.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

from process.registry import TYPICAL_HALF_LIFE_MS, backoff_ms, decayed_peak

_NEW, _QUEUED, _FLIGHT, _BACKOFF, _PENDING = range(5)


@dataclass(slots=True)
class _Entry:
    polled: bool = False
    last_polled_ms: int | None = None
    key: float = 0.0
    """PollScheduler: pass (virtual time); FixedTierScheduler: last poll time (ms)."""
    token: int = 0
    """Matches the one live queue entry; older heap entries are stale and skipped."""
    where: int = _NEW
    failures: int = 0
    tier: int = 0
    stride: float = 0.0
    """1 / sqrt(weight)."""
    start: float = 0.0
    """Virtual time of the last poll: pass = start + stride."""
    notional: float = 0.0
    distance: float | None = None
    typical: float = 0.0
    """Decayed peak notional (`process.registry.decayed_peak`)."""
    traded: float = 0.0
    """Largest notional traded since the last poll (trade-stream hint)."""


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
    """Stride scheduling on sqrt(weight): the optimal periodic schedule (module docstring).

    `rate_per_min` (polls per minute the budget allows) is used only to place addresses restored
    with a `last_polled_ms` (after a restart); the steady state does not depend on it.
    """

    def __init__(
        self,
        *,
        floor_usd: float = 100.0,
        liq_k: float = 0.1,
        liq_eps: float = 0.002,
        memory: float = 0.5,
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
        self.vtime = 0.0
        """Virtual time: the largest pass served so far."""
        self._heap: list[tuple[float, int, str]] = []
        self._pending: list[tuple[str, int]] = []
        self._sqrt_sum = 0.0

    def weight(
        self, notional_usd: float, min_liq_distance: float | None, typical_usd: float = 0.0
    ) -> float:
        """Priority weight: exposure (at least `memory` x typical, at least the floor), boosted
        near liquidation."""
        weight = max(notional_usd, self.memory * typical_usd, self.floor_usd)
        if min_liq_distance is not None and notional_usd > 0:
            weight *= 1 + self.liq_k / max(min_liq_distance, self.liq_eps)
        return weight

    def discard(self, address: str) -> bool:
        entry = self._entries.get(address)
        if entry is not None:
            self._sqrt_sum -= 1 / entry.stride
        return super().discard(address)

    def next_batch(self, now_ms: int, n: int) -> list[str]:
        """Up to `n` addresses to poll now: never-polled first, then the smallest passes.

        They are in flight until `note_polled`, `note_failed` or `release`.
        """
        if self._pending:
            self._place_pending(now_ms)
        self._release_backoff(now_ms)
        out: list[str] = []
        self._take_new(out, n)
        heap, entries = self._heap, self._entries
        while heap and len(out) < n:
            key, token, address = heapq.heappop(heap)
            entry = entries.get(address)
            if entry is not None and entry.token == token and entry.where == _QUEUED:
                entry.where = _FLIGHT
                self.vtime = max(self.vtime, key)
                out.append(address)
        if len(heap) > 2 * len(entries) + 1024:
            self._compact()
        return out

    def note_traded(self, address: str, now_ms: int, notional_usd: float) -> None:
        """The trade stream saw `address` trade `notional_usd`: its position changed.

        Until the next poll its exposure is taken as at least the traded notional, and its pass
        moves up to match (a whale opening after a quiet spell is polled within its period).
        """
        entry = self._entries.get(address)
        if entry is None or not entry.polled or notional_usd <= entry.traded:
            return
        entry.traded = notional_usd
        stride = entry.stride
        self._reweigh(entry)
        if entry.stride < stride and entry.where == _QUEUED:
            key = entry.start + entry.stride
            if key < entry.key:
                entry.key, entry.token = key, self._token()
                heapq.heappush(self._heap, (key, entry.token, address))

    def _describe(
        self, entry: _Entry, notional: float, distance: float | None, typical: float
    ) -> None:
        entry.notional, entry.distance, entry.typical = notional, distance, max(typical, notional)
        self._reweigh(entry)

    def _polled(self, entry: _Entry, now_ms: int, notional: float, distance: float | None) -> None:
        entry.typical = decayed_peak(
            entry.typical, entry.last_polled_ms, notional, now_ms, self.memory_half_life_ms
        )
        entry.notional, entry.distance, entry.traded = notional, distance, 0.0
        self._reweigh(entry)
        entry.start = self.vtime
        entry.key = self.vtime + entry.stride

    def _reweigh(self, entry: _Entry) -> None:
        notional = max(entry.notional, entry.traded)
        root = math.sqrt(self.weight(notional, entry.distance, entry.typical))
        if entry.stride:
            self._sqrt_sum -= 1 / entry.stride
        self._sqrt_sum += root
        entry.stride = 1 / root

    def _push(self, address: str, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.key, entry.token, address))

    def _restore(self, address: str, entry: _Entry) -> None:
        entry.where = _PENDING  # placed by the next `next_batch`, once every weight is known
        self._pending.append((address, entry.last_polled_ms or 0))

    def _retry(self, address: str, entry: _Entry) -> None:
        entry.key = min(entry.key, self.vtime)  # overdue: ahead of everything not yet due
        self._enqueue(address, entry)

    def _place_pending(self, now_ms: int) -> None:
        """Restored addresses: pass = vtime + stride - age in virtual time (rate R / S per ms)."""
        per_ms = self.rate_per_min / 60_000 / max(self._sqrt_sum, 1e-12)
        for address, last_ms in self._pending:
            entry = self._entries.get(address)
            if entry is None or entry.where != _PENDING:
                continue
            entry.start = self.vtime - max(0, now_ms - last_ms) * per_ms
            entry.key = entry.start + entry.stride
            entry.where, entry.token = _QUEUED, self._token()
            self._heap.append((entry.key, entry.token, address))
        self._pending.clear()
        heapq.heapify(self._heap)

    def _compact(self) -> None:
        entries = self._entries
        self._heap = [
            item
            for item in self._heap
            if (e := entries.get(item[2])) is not None and e.token == item[1] and e.where == _QUEUED
        ]
        heapq.heapify(self._heap)


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
