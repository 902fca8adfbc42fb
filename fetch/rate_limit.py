"""One weighted request budget shared by every Hyperliquid REST caller (1200 weight per 60 s).

The exchange counts weight over *any* 60 s window, so a token bucket (full at start, refilling
during the minute) could let twice the budget through. This is a sliding-window log instead:

- `acquire(w)` reserves `w` (an upper bound of the request's weight); while the request is in
  flight the full reservation counts in every window.
- `settle(reservation, actual)` records the true weight at the *settle time* (when the answer
  came back) and releases the reservation: lower refunds, higher is recorded as spent.
- A reservation is granted only if `settled weight newer than 60 s + in flight + w <= limit`.

Why no 60 s window at the exchange can exceed `limit` (when `actual <= reserved`): the exchange
counts request i at a moment s_i between its grant g_i and its settle c_i. Take any window
[x, x + 60) and its request j granted last. At g_j each other request i of the window was either
in flight (counted as reserved >= actual) or settled with c_i >= s_i >= x > s_j - 60 >= g_j - 60,
i.e. still inside the log. The check at g_j therefore covered the whole window. Settling higher
than reserved can overshoot only by that excess, which the safety margin absorbs.

Waiting is first come, first served: the first waiter that does not fit is granted at the first
moment it fits, and later (smaller) waiters may only fill room it cannot use before then, so a
weight-60 request is never starved or even delayed by a stream of weight-2 ones.
`limited(max_fraction)` gives a caller a capped view (see `BudgetShare`).

Lanes (`lane(priority, cap)`): waiters are served in priority order (`Lane.BACKFILL` first,
`Lane.POSITIONS` last), FIFO within a lane, and a lane is granted weight only while the window
(everyone's use) stays within its cap. A lower lane may pass a waiting higher one only with room
the higher one cannot use before it fits anyway, so a higher lane never waits for a lower one;
and since every lane below the top has a cap under 1, the top lane always finds that headroom
free: a gap backfill is sent at once even while positions saturate what they may use.

`journal` (a `SpendJournal`) makes the window survive a crash: every grant and settle is
appended to a file, and a new budget starts with the weight its predecessor spent in the last
60 s (see fetch/spend_journal.py).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fetch.spend_journal import SpendJournal

WINDOW_SECONDS = 60.0
BACKFILL_LOOKAHEAD = 64
"""Waiters behind a waiting head examined for backfilling (bounds the work per event)."""


class Clock(Protocol):
    """Monotonic seconds and a matching sleep; tests inject a virtual clock."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Priority(IntEnum):
    """REST lanes in the order they are served (DESIGN.md: gap backfill first, positions last)."""

    BACKFILL = 0
    MARKET = 1
    HLP = 2
    PROFILES = 3
    POSITIONS = 4


LANE_CAPS: dict[Priority, float] = {
    Priority.BACKFILL: 1.0,
    Priority.MARKET: 0.95,
    Priority.HLP: 0.9,
    Priority.PROFILES: 0.8,
}
"""Share of the budget each lane may fill (positions: `jobs.positions_share`). The top lane's
headroom (5 % of 1080 = 54 weight) holds two recentTrades calls at any moment."""


class MonotonicClock:
    """`time.monotonic` (the clock asyncio itself uses) and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Window:
    """Weight counted over the trailing 60 s: settled (time, weight) entries + in-flight weight."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.log: deque[tuple[float, int]] = deque()  # sorted by time: settle times only grow
        self.settled = 0
        self.in_flight = 0

    def used(self, now: float) -> int:
        cutoff = now - WINDOW_SECONDS
        while self.log and self.log[0][0] <= cutoff:
            self.settled -= self.log.popleft()[1]
        return self.settled + self.in_flight

    def fit(self, now: float, weight: int, limit: int | None = None) -> tuple[float | None, int]:
        """When `weight` fits under `limit` (default: the window's), and the weight still free
        at that moment once it is in.

        The delay is 0 if it fits now, else seconds (> 0) until enough settled weight expires,
        or None if only a settle (in-flight weight coming back) can make room.
        """
        excess = self.used(now) + weight - (self.limit if limit is None else limit)
        if excess <= 0:
            return 0.0, -excess
        for stamp, spent in self.log:
            excess -= spent
            if excess <= 0:
                return max(stamp + WINDOW_SECONDS - now, 1e-6), -excess  # > 0 despite rounding
        return None, 0

    def record(self, now: float, reserved: int, actual: int) -> None:
        self.in_flight -= reserved
        if actual > 0:
            self.log.append((now, actual))
            self.settled += actual


@dataclass(eq=False)
class _Waiter:
    weight: int
    share: _Window | None
    granted: asyncio.Future[None]
    order: tuple[int, int]  # (priority, arrival): the queue is sorted by it
    cap: int  # the most the window may hold once this waiter is in (its lane's cap)


@dataclass(eq=False)
class Reservation:
    """Weight granted by `acquire`; hand it back to `settle` exactly once."""

    weight: int
    granted_at: float
    _windows: tuple[_Window, ...] = field(repr=False)
    settled: bool = False
    journal_id: int | None = None


class WeightBudget:
    """The shared budget: `limit * (1 - safety_margin)` weight usable in any 60 s."""

    def __init__(
        self,
        limit: int = 1200,
        *,
        safety_margin: float = 0.1,
        clock: Clock | None = None,
        journal: SpendJournal | None = None,
    ) -> None:
        if limit <= 0 or not 0 <= safety_margin < 1:
            raise ValueError("limit must be > 0 and safety_margin in [0, 1)")
        self.hard_limit = limit
        self.clock: Clock = clock or MonotonicClock()
        self._window = _Window(math.floor(limit * (1 - safety_margin)))
        self._queue: list[_Waiter] = []
        self._arrivals = itertools.count()
        self.journal = journal
        self._timer: asyncio.Future[None] | None = None
        self._timer_at: float | None = None
        self.spent_total = 0
        """Settled weight since start (hyperflux_hl_weight_used_total)."""
        self.overrun_total = 0
        """Weight settled above its reservation (estimates that were too low)."""
        if journal is not None:
            self.seed(journal.predecessor(self.limit))

    def seed(self, spent: Iterable[tuple[float, int]]) -> None:
        """Count weight spent before this budget existed: (seconds ago, weight), e.g. by a
        predecessor that crashed; it leaves the window when its 60 s are over."""
        now = self.clock.now()
        for ago, weight in sorted(spent, key=lambda item: -item[0]):
            if weight > 0 and ago < WINDOW_SECONDS:
                self._window.log.append((now - max(ago, 0.0), weight))
                self._window.settled += weight

    @property
    def limit(self) -> int:
        """Usable weight per 60 s (after the safety margin)."""
        return self._window.limit

    @property
    def waiting(self) -> int:
        """Callers queued for weight right now."""
        return len(self._queue)

    def used_last_60s(self) -> int:
        """Weight settled in the last 60 s plus weight reserved by requests still in flight."""
        return self._window.used(self.clock.now())

    async def acquire(self, weight: int) -> Reservation:
        """Wait (FIFO, in the market lane) until `weight` fits in the window, then reserve it."""
        return await self._acquire(weight, None)

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Record the request's true weight now and release its reservation.

        `actual` < reserved refunds the difference; > reserved records the excess as spent now;
        0 means the request was never sent.
        """
        if reservation.settled:
            raise RuntimeError("this reservation was already settled")
        if actual < 0:
            raise ValueError("actual weight must be >= 0")
        reservation.settled = True
        now = self.clock.now()
        for window in reservation._windows:
            window.record(now, reservation.weight, actual)
        if self.journal is not None and reservation.journal_id is not None:
            self.journal.settled(reservation.journal_id, actual)
        self.spent_total += actual
        self.overrun_total += max(0, actual - reservation.weight)
        self._dispatch()

    def reserve(self, weight: int) -> contextlib.AbstractAsyncContextManager[Reservation]:
        """`async with budget.reserve(w) as r:`; settles `r.weight` on exit unless settled."""
        return _reserve(self, weight)

    def limited(self, max_fraction: float) -> BudgetShare:
        """A view of this budget that never uses more than `max_fraction` of it in any 60 s."""
        return BudgetShare(self, max_fraction)

    def lane(self, priority: Priority, cap: float | None = None) -> Lane:
        """A lane of this budget: served in `priority` order, granted only while the window
        stays within `cap` of the budget (default `LANE_CAPS[priority]`)."""
        return Lane(self, priority, LANE_CAPS.get(priority, 1.0) if cap is None else cap)

    async def _acquire(
        self,
        weight: int,
        share: _Window | None,
        priority: Priority = Priority.MARKET,
        cap: int | None = None,
    ) -> Reservation:
        cap = self.limit if cap is None else cap
        limit = min(cap, self.limit if share is None else share.limit)
        if not 0 <= weight <= limit:
            raise ValueError(f"weight {weight} can never fit a budget of {limit} per 60 s")
        order = (int(priority), next(self._arrivals))
        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(weight, share, future, order, cap)
        bisect.insort(self._queue, waiter, key=lambda w: w.order)
        self._dispatch()
        windows = (self._window,) if share is None else (self._window, share)
        try:
            await waiter.granted
        except BaseException:
            if waiter.granted.done() and not waiter.granted.cancelled():
                for window in windows:  # granted, but our caller is gone: hand it back
                    window.in_flight -= weight
            elif waiter in self._queue:
                self._queue.remove(waiter)
            self._dispatch()
            raise
        journal_id = None if self.journal is None else self.journal.granted(weight)
        return Reservation(weight, self.clock.now(), windows, journal_id=journal_id)

    def _dispatch(self) -> None:
        """Grant waiters in queue order (priority, then arrival) while they fit, and arm a
        timer for the next expiry.

        The first waiter that does not fit under its lane's cap is the head: it is granted at
        the first moment it fits (time T). Waiters behind it may go first only if they fit now
        *and* still leave the head room at T ("backfilling": what they take now is still in the
        window at T), so the head is never delayed and cannot starve. A waiter whose share is
        full is skipped with the rest of its share, so a capped caller never blocks the queue.
        """
        now = self.clock.now()
        used = self._window.used(now)
        full_shares: set[int] = set()
        wake_in: list[float] = []
        head_slack: int | None = None  # room left at T once the head is in; None: no head yet
        lookahead = BACKFILL_LOOKAHEAD
        for waiter in list(self._queue):
            if waiter.granted.done():  # cancelled; its task has not run its cleanup yet
                self._queue.remove(waiter)
                continue
            if head_slack is not None:
                lookahead -= 1
                if lookahead < 0 or head_slack <= 0 or used >= self.limit:
                    break
            weight, share = waiter.weight, waiter.share
            if share is not None:
                if id(share) in full_shares:
                    continue
                delay, _ = share.fit(now, weight)
                if delay != 0.0:
                    full_shares.add(id(share))
                    wake_in += [] if delay is None else [delay]
                    continue
            free = waiter.cap - used
            if head_slack is None and weight > free:
                delay, head_slack = self._window.fit(now, weight, waiter.cap)
                if delay is None:
                    break  # the head waits for in-flight weight: T is unknown, nobody passes
                wake_in.append(delay)
                if share is not None:
                    full_shares.add(id(share))  # its share's later waiters must not pass it
                continue
            if head_slack is not None:
                if weight > min(head_slack, free):
                    continue
                head_slack -= weight
            self._queue.remove(waiter)
            used += weight
            self._window.in_flight += weight
            if share is not None:
                share.in_flight += weight
            waiter.granted.set_result(None)
        self._arm_timer(now + min(wake_in) if wake_in else None)

    def _arm_timer(self, wake_at: float | None) -> None:
        if wake_at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, wake_at
        if wake_at is not None:
            self._timer = asyncio.ensure_future(self._dispatch_at(wake_at))

    async def _dispatch_at(self, wake_at: float) -> None:
        await self.clock.sleep(wake_at - self.clock.now())
        self._timer, self._timer_at = None, None
        self._dispatch()


class BudgetShare:
    """A caller's capped view of a `WeightBudget`, e.g. `budget.limited(0.7)` for positions.

    Requests through the share are counted in the shared budget *and* in the share's own
    sliding window of `max_fraction * budget.limit` per 60 s (same accounting). They queue in
    the shared FIFO, but while the share is full its requests are skipped instead of blocking
    the queue: whatever the capped caller does, at least `(1 - max_fraction)` of the budget
    stays available to everyone else, and the capped caller keeps its place in line.
    """

    def __init__(self, budget: WeightBudget, max_fraction: float) -> None:
        if not 0 < max_fraction <= 1:
            raise ValueError("max_fraction must be in (0, 1]")
        self.budget = budget
        self.max_fraction = max_fraction
        self._window = _Window(math.floor(budget.limit * max_fraction))

    @property
    def clock(self) -> Clock:
        return self.budget.clock

    @property
    def limit(self) -> int:
        """Weight this share may use per 60 s."""
        return self._window.limit

    def used_last_60s(self) -> int:
        """This share's settled weight in the last 60 s plus its in-flight reservations."""
        return self._window.used(self.budget.clock.now())

    async def acquire(self, weight: int) -> Reservation:
        """Wait until `weight` fits this share and the shared budget; reserve it in both."""
        return await self.budget._acquire(weight, self._window)

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Same as `WeightBudget.settle`."""
        self.budget.settle(reservation, actual)

    def reserve(self, weight: int) -> contextlib.AbstractAsyncContextManager[Reservation]:
        """Same as `WeightBudget.reserve`, through this share."""
        return _reserve(self, weight)


class Lane:
    """A caller's lane of a `WeightBudget` (see the module docstring), e.g.
    `budget.lane(Priority.POSITIONS, cap=0.7)`: positions use what the lanes above leave, up
    to 70 % of the budget."""

    def __init__(self, budget: WeightBudget, priority: Priority, cap: float) -> None:
        if not 0 < cap <= 1:
            raise ValueError("a lane's cap must be in (0, 1]")
        self.budget = budget
        self.priority = priority
        self.cap = cap

    @property
    def clock(self) -> Clock:
        return self.budget.clock

    @property
    def limit(self) -> int:
        """The most the window may hold when this lane is granted weight."""
        return math.floor(self.budget.limit * self.cap)

    def used_last_60s(self) -> int:
        """The shared window's use (every lane's)."""
        return self.budget.used_last_60s()

    async def acquire(self, weight: int) -> Reservation:
        """Wait, in priority order, until `weight` fits under this lane's cap; reserve it."""
        return await self.budget._acquire(weight, None, self.priority, self.limit)

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Same as `WeightBudget.settle`."""
        self.budget.settle(reservation, actual)

    def reserve(self, weight: int) -> contextlib.AbstractAsyncContextManager[Reservation]:
        """Same as `WeightBudget.reserve`, in this lane."""
        return _reserve(self, weight)


Budget = WeightBudget | BudgetShare | Lane
"""Anything a request can draw weight from."""


@contextlib.asynccontextmanager
async def _reserve(budget: Budget, weight: int) -> AsyncIterator[Reservation]:
    reservation = await budget.acquire(weight)
    try:
        yield reservation
    finally:
        if not reservation.settled:
            budget.settle(reservation, reservation.weight)
