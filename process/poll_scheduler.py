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
(discovery), the largest notional seen in their trades first (arrival order among equals); an
account whose positions a recorded gap may have moved (`note_estimated`) weighs
`ESTIMATED_BOOST` times more until its next poll; failed ones wait out their backoff, then
compete by their index (a failed poll refreshed nothing, so their age keeps growing).

The facts an address is scheduled by (last poll, notional, nearest liquidation, typical notional,
failures) are its `process.registry.AddressState`, the one owner of them: with `states` the
scheduler shares the registry's map, and the poll path records a poll once (`record_poll`, then
`reschedule`); without it (benches, the library) it keeps its own and `note_polled` records.

`FixedTierScheduler` is the baseline other tools use (30 s / 120 s / 600 s tiers by notional).
Both share one interface; all times are passed in (ms), so both can be simulated.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import Literal

from process.registry import AddressState

_OFF, _NEW, _QUEUED, _FLIGHT, _BACKOFF = range(5)  # AddressState.queue; 0: not scheduled
_CLASSES_PER_OCTAVE = 8
"""PollScheduler: weight classes per doubling of sqrt(weight) (within one, oldest first)."""
WATCH_BOOST = 100.0
"""A watched address's weight factor: polled sqrt(100) = 10x as often as its exposure alone
would give (a flat watched wallet too: its floor weight is boosted)."""
ESTIMATED_BOOST = 16.0
"""Weight factor of an account a recorded gap may have moved, until its next poll: it comes up
sqrt(16) = 4x sooner than its exposure alone would bring it."""


class Scheduler:
    """The interface of both schedulers, and what they share: the addresses' states, the
    discovery heap, the backoff heap, tokens for lazy invalidation (a queue item is live only if
    its token is the state's)."""

    def __init__(self, states: dict[str, AddressState] | None = None) -> None:
        self._states: dict[str, AddressState] = {} if states is None else states
        self._shared = states is not None
        self._new: list[tuple[float, int, str]] = []  # (-notional traded, token, address)
        self._new_stale = 0  # items of `_new` superseded by a later one of the same address
        self._backoff: list[tuple[int, int, str]] = []
        self._tokens = 0

    def __len__(self) -> int:
        return sum(state.queue != _OFF for state in self._states.values())

    @property
    def states(self) -> dict[str, AddressState]:
        """Address -> state, scheduled or not (the registry's map when shared)."""
        return self._states

    def __contains__(self, address: object) -> bool:
        state = self._states.get(address)  # type: ignore[call-overload]
        return state is not None and state.queue != _OFF

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
        """Start scheduling `address` (False if it is already). An address whose state exists
        (the registry's) is scheduled by it; for a new one the keywords are its state (a
        restart, in benches)."""
        state = self._states.get(address)
        if state is None:
            state = self._states[address] = AddressState(
                address,
                0,
                last_poll_ms=last_polled_ms,
                notional_usd=notional_usd,
                typical_usd=max(typical_usd, notional_usd),
                min_liq_distance=min_liq_distance,
                next_allowed_ms=retry_at_ms,
            )
        elif state.queue != _OFF:
            return False
        self._place(state)
        return True

    def discard(self, address: str) -> bool:
        """Stop scheduling `address` (expired). Shared states stay the registry's to remove;
        its queue items go stale. False if unknown."""
        state = self._states.get(address) if self._shared else self._states.pop(address, None)
        if state is None:
            return False
        state.queue = _OFF
        return True

    def next_batch(self, now_ms: int, n: int) -> list[str]:
        """Up to `n` addresses to poll now; in flight until rescheduled or released."""
        raise NotImplementedError

    def note_polled(
        self, address: str, now_ms: int, notional_usd: float, min_liq_distance: float | None
    ) -> None:
        """A poll succeeded (recorded here: without a registry): failures cleared, weight
        updated, next poll scheduled."""
        state = self._states.get(address)
        if state is None:
            self.add(address)
            state = self._states[address]
        state.polled(now_ms, notional_usd, min_liq_distance)
        self.reschedule(address)

    def note_failed(self, address: str, now_ms: int, retry_at_ms: int | None = None) -> None:
        """A poll failed (recorded here: without a registry): wait until `retry_at_ms`
        (default: the state's exponential backoff from now)."""
        state = self._states.get(address)
        if state is None:
            return
        state.failed(now_ms, retry_at_ms)
        self.reschedule(address)

    def reschedule(self, address: str) -> None:
        """The address's state recorded a poll or a failure: its next poll goes where the state
        says (after its backoff, or by its new weight)."""
        state = self._states.get(address)
        if state is not None:
            self._place(state)

    def release(self, address: str) -> None:
        """An address from `next_batch` that will not be polled after all: back in its place."""
        state = self._states.get(address)
        if state is not None and state.queue == _FLIGHT:
            self._enqueue(state)

    def note_traded(self, address: str, now_ms: int, notional_usd: float) -> None:
        """The trade stream saw `address` trade `notional_usd`: its position changed.

        Until the next poll its exposure is taken as at least the traded notional, and a
        never-polled address waits for its first poll ranked by it. An address not scheduled
        (yet) keeps the figure for when it is.
        """
        state = self._states.get(address)
        if state is None or notional_usd <= state.traded_usd:
            return
        state.traded_usd = notional_usd
        if state.queue == _NEW:  # moves up
            self._enqueue(state)
            if self._new_stale > len(self._new) // 2 + 1024:
                self._compact_new()
        elif state.queue != _OFF and state.last_poll_ms is not None:
            self._reweighed(state)

    def note_estimated(self, addresses: Iterable[str]) -> None:
        """A recorded gap may have moved these accounts' positions: each weighs
        `ESTIMATED_BOOST` times more until its next poll."""
        for address in addresses:
            state = self._states.get(address)
            if state is not None and not state.estimated:
                state.estimated = True
                if state.queue != _OFF and state.last_poll_ms is not None:
                    self._reweighed(state)

    def _reweighed(self, state: AddressState) -> None:
        """The state's weight inputs changed: a queued item moves if its class did."""
        weight_class = state.weight_class
        self._describe(state)
        if state.weight_class != weight_class and state.queue == _QUEUED:
            state.token = self._token()
            self._push(state)

    def _describe(self, state: AddressState) -> None:
        raise NotImplementedError

    def _push(self, state: AddressState) -> None:
        raise NotImplementedError

    def _place(self, state: AddressState) -> None:
        self._describe(state)
        if state.next_allowed_ms > 0:
            self._back_off(state, state.next_allowed_ms)
        else:
            self._enqueue(state)

    def _token(self) -> int:
        self._tokens += 1
        return self._tokens

    def _enqueue(self, state: AddressState) -> None:
        if state.queue == _NEW:
            self._new_stale += 1  # its item in `_new` is superseded
        state.token = self._token()
        if state.last_poll_ms is None:
            state.queue = _NEW
            heapq.heappush(self._new, (-state.traded_usd, state.token, state.address))
        else:
            state.queue = _QUEUED
            self._push(state)

    def _back_off(self, state: AddressState, retry_at_ms: int) -> None:
        state.queue, state.token = _BACKOFF, self._token()
        heapq.heappush(self._backoff, (retry_at_ms, state.token, state.address))

    def _release_backoff(self, now_ms: int) -> None:
        backoff, entries = self._backoff, self._states
        while backoff and backoff[0][0] <= now_ms:
            _, token, address = heapq.heappop(backoff)
            state = entries.get(address)
            if state is not None and state.token == token and state.queue == _BACKOFF:
                self._enqueue(state)

    def _take_new(self, out: list[str], n: int) -> None:
        new, entries = self._new, self._states
        while new and len(out) < n:
            _, token, address = heapq.heappop(new)
            state = entries.get(address)
            if state is not None and state.token == token and state.queue == _NEW:
                state.queue = _FLIGHT
                out.append(address)
            elif self._new_stale:
                self._new_stale -= 1

    def _compact_new(self) -> None:
        """Drop the stale items of the discovery heap (a never-polled address moves up each
        time its traded notional grows): it stays within about twice the live ones."""
        entries = self._states
        self._new = [
            item
            for item in self._new
            if (state := entries.get(item[2])) is not None
            and state.token == item[1]
            and state.queue == _NEW
        ]
        heapq.heapify(self._new)
        self._new_stale = 0


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
        rate_per_min: float = 378.0,
        states: dict[str, AddressState] | None = None,
    ) -> None:
        if floor_usd <= 0 or liq_eps <= 0 or rate_per_min <= 0:
            raise ValueError("floor_usd, liq_eps and rate_per_min must be > 0")
        if liq_k < 0 or not 0 <= memory <= 1:
            raise ValueError("liq_k must be >= 0 and memory in [0, 1]")
        super().__init__(states)
        self.floor_usd = floor_usd
        self.liq_k = liq_k
        self.liq_eps = liq_eps
        self.memory = memory
        self.rate_per_min = rate_per_min
        self._classes: dict[int, list[tuple[float, int, str]]] = {}
        """Weight class -> heap of (last poll ms, token, address): oldest first."""
        self._watched: frozenset[str] = frozenset()
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

        They are in flight until rescheduled (`reschedule`, `note_polled`, `note_failed`) or
        released.
        """
        self._release_backoff(now_ms)
        out: list[str] = []
        self._take_new(out, n)
        if len(out) < n:
            self._take_largest(out, n, now_ms)
        if self._items > 2 * len(self._states) + 1024:
            self._compact()
        return out

    def _take_largest(self, out: list[str], n: int, now_ms: int) -> None:
        """Pop the largest indexes: a merge of the class heaps' heads (the oldest of each)."""
        entries, classes = self._states, self._classes
        heads: list[tuple[float, float, int, int]] = []
        for tier, heap in classes.items():
            if self._head(heap):
                polled_ms, token, address = heap[0]
                index = entries[address].weight_root * (now_ms - polled_ms)
                heads.append((-index, polled_ms, token, tier))
        heapq.heapify(heads)
        while heads and len(out) < n:
            tier = heapq.heappop(heads)[3]
            heap = classes[tier]
            address = heapq.heappop(heap)[2]
            self._items -= 1
            entries[address].queue = _FLIGHT
            out.append(address)
            if self._head(heap):
                polled_ms, token, address = heap[0]
                index = entries[address].weight_root * (now_ms - polled_ms)
                heapq.heappush(heads, (-index, polled_ms, token, tier))
            elif not heap:
                del classes[tier]

    def _head(self, heap: list[tuple[float, int, str]]) -> bool:
        """Drop stale items from the top of `heap`; True if a live one is left there."""
        entries = self._states
        while heap:
            _, token, address = heap[0]
            state = entries.get(address)
            if state is not None and state.token == token and state.queue == _QUEUED:
                return True
            heapq.heappop(heap)
            self._items -= 1
        return False

    def _describe(self, state: AddressState) -> None:
        notional = max(state.notional_usd, state.traded_usd)
        weight = self.weight(notional, state.min_liq_distance, state.typical_usd) * state.boost
        if state.estimated:
            weight *= ESTIMATED_BOOST
        state.weight_root = root = math.sqrt(weight)
        state.weight_class = math.floor(math.log2(root) * _CLASSES_PER_OCTAVE)

    def watch(self, addresses: Iterable[str], boost: float = WATCH_BOOST) -> None:
        """Poll `addresses` with priority (weight x `boost`; added if new); every address
        watched before and not now goes back to its own weight."""
        wanted = frozenset(addresses)
        for address in wanted - self._watched:
            self.add(address)
        for address in wanted | self._watched:
            state = self._states.get(address)
            if state is not None:
                state.boost = boost if address in wanted else 1.0
                self._reweighed(state)
        self._watched = wanted

    def _push(self, state: AddressState) -> None:
        heap = self._classes.get(state.weight_class)
        if heap is None:
            heap = self._classes[state.weight_class] = []
        heapq.heappush(heap, (float(state.last_poll_ms or 0), state.token, state.address))
        self._items += 1

    def _compact(self) -> None:
        entries, classes = self._states, self._classes
        for tier in list(classes):
            heap = [
                item
                for item in classes[tier]
                if (state := entries.get(item[2])) is not None
                and state.token == item[1]
                and state.queue == _QUEUED
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
        states: dict[str, AddressState] | None = None,
    ) -> None:
        super().__init__(states)
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
        heaps, entries, relative = self._heaps, self._states, self.overdue == "relative"
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
            entries[address].queue = _FLIGHT
            out.append(address)
        return out

    def _describe(self, state: AddressState) -> None:
        state.weight_class = self.tier(state.notional_usd)

    def _valid(self, item: tuple[float, int, str]) -> bool:
        state = self._states.get(item[2])
        return state is not None and state.token == item[1] and state.queue == _QUEUED

    def _push(self, state: AddressState) -> None:
        heapq.heappush(
            self._heaps[state.weight_class],
            (float(state.last_poll_ms or 0), state.token, state.address),
        )
