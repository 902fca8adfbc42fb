"""The shared weight budget: no 60 s window over budget, full throughput, FIFO, capped shares.

Simulations run on an event loop with virtual time: when nothing is ready to run, the loop jumps
straight to its next timer, so 10 simulated minutes take well under a second and every instant
is exact (all simulated durations are multiples of 1/64 s, exact in binary floating point).
The simulated exchange counts each request at a moment between its grant and its answer, which
is when the client settles its true weight.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetch.rate_limit import Budget, Lane, Priority, WeightBudget
from fetch.spend_journal import SpendJournal

T = TypeVar("T")


class _SkipAheadSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls real I/O without blocking; where the loop would sleep, virtual time jumps."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if not events:
            if timeout is None:
                raise RuntimeError("deadlock: no timer scheduled and nothing ready to run")
            self.loop.virtual_now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.virtual_now = 0.0
        selector = _SkipAheadSelector()
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.virtual_now


class VirtualClock:
    def __init__(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop

    def now(self) -> float:
        return self.loop.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def run_virtual(make: Callable[[VirtualClock], Coroutine[Any, Any, T]]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(make(VirtualClock(runner.get_loop())))  # type: ignore[arg-type]


# --- a simulated exchange and its callers -------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A request type: weight reserved before, and a draw of the true weight after."""

    name: str
    reserve: int
    actual: Callable[[random.Random], int]


L2BOOK = Kind("l2Book", 2, lambda rng: 2)
STATE = Kind("clearinghouseState", 2, lambda rng: 2)
META = Kind("meta", 20, lambda rng: 20)
USER_ROLE = Kind("userRole", 60, lambda rng: 60)
# userFills reserves the 2000-fill bound (20 + 100) and settles lower: 20 + ceil(fills / 20).
FILLS = Kind("userFills", 120, lambda rng: 20 + math.ceil(rng.randint(0, 2000) / 20))
# An estimate that was too low: reserve 22, settle 22..25 (the excess eats the margin).
UNDER = Kind("recentTrades", 22, lambda rng: rng.randint(22, 25))
MIXED = (L2BOOK, L2BOOK, L2BOOK, META, META, META, FILLS, UNDER, USER_ROLE)

LATENCIES = (0.015625, 0.0625, 0.125, 0.25, 0.5)  # seconds, multiples of 1/64
THINK = (0.0, 0.015625, 0.125, 0.5, 1.0)


@dataclass(frozen=True)
class Sent:
    caller: str
    granted: float
    counted: float  # when the exchange counted it: between grant and answer
    reserved: int
    actual: int


async def caller(
    name: str,
    budget: Budget,
    kinds: tuple[Kind, ...],
    until: float,
    rng: random.Random,
    sent: list[Sent],
    clock: VirtualClock,
) -> None:
    while clock.now() < until:
        kind = rng.choice(kinds)
        reservation = await budget.acquire(kind.reserve)
        granted = clock.now()
        await clock.sleep(rng.choice(LATENCIES))
        counted = clock.now()
        await clock.sleep(rng.choice(LATENCIES))
        actual = kind.actual(rng)
        budget.settle(reservation, actual)
        sent.append(Sent(name, granted, counted, kind.reserve, actual))
        await clock.sleep(rng.choice(THINK))


def windows(sent: list[Sent]) -> list[tuple[float, int, int]]:
    """(start, weight, overrun) of every 60 s window [t, t + 60) starting at a counted request.

    The busiest window of any start always begins at some request, so these are all we need.
    """
    ordered = sorted(sent, key=lambda s: s.counted)
    result = []
    end = 0
    weight = overrun = 0
    for start in range(len(ordered)):
        t0 = ordered[start].counted
        while end < len(ordered) and ordered[end].counted < t0 + 60:
            weight += ordered[end].actual
            overrun += max(0, ordered[end].actual - ordered[end].reserved)
            end += 1
        result.append((t0, weight, overrun))
        weight -= ordered[start].actual
        overrun -= max(0, ordered[start].actual - ordered[start].reserved)
    return result


def per_minute(sent: list[Sent], minute: int) -> int:
    return sum(s.actual for s in sent if 60 * minute <= s.counted < 60 * (minute + 1))


def assert_fills(sent: list[Sent], usable: int, largest_reservation: int) -> None:
    """Steady state (minutes 1-9 of 10): >= 95 % of `usable` per minute on average.

    A single minute can fall short by about the largest reservation: room the waiting head of
    the queue cannot use yet, and no smaller request behind it fits, stays unused.
    """
    minutes = [per_minute(sent, minute) for minute in range(1, 10)]
    assert sum(minutes) / len(minutes) >= 0.95 * usable, minutes
    assert min(minutes) >= usable - largest_reservation - 0.03 * usable, minutes


def assert_never_over(sent: list[Sent], usable: int, hard: int) -> None:
    for start, weight, overrun in windows(sent):
        assert weight <= usable + overrun, (start, weight, overrun)
        assert weight <= hard, (start, weight)


# --- simulations ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ten_minutes_of_mixed_callers_never_exceed_any_window_and_fill_the_budget(
    seed: int,
) -> None:
    async def main(clock: VirtualClock) -> tuple[WeightBudget, list[Sent]]:
        budget = WeightBudget(1200, safety_margin=0.1, clock=clock)
        sent: list[Sent] = []
        rng = random.Random(seed)
        await asyncio.gather(
            *(
                caller(f"c{i}", budget, MIXED, 600, random.Random(rng.random()), sent, clock)
                for i in range(40)
            )
        )
        return budget, sent

    budget, sent = run_virtual(main)
    assert budget.limit == 1080
    assert len(sent) > 350
    assert {s.reserved for s in sent} == {2, 20, 22, 60, 120}
    assert any(s.actual < s.reserved for s in sent)  # settled lower
    assert any(s.actual > s.reserved for s in sent)  # settled higher
    assert_never_over(sent, usable=1080, hard=1200)
    overruns = [overrun for _, _, overrun in windows(sent)]
    assert max(overruns) > 0
    assert_fills(sent, 1080, largest_reservation=120)
    assert budget.spent_total == sum(s.actual for s in sent)
    assert budget.overrun_total == sum(max(0, s.actual - s.reserved) for s in sent)
    assert budget.waiting == 0


@pytest.mark.parametrize("others", [0, 10])
def test_a_capped_share_never_exceeds_its_fraction_and_leaves_the_rest(others: int) -> None:
    async def main(clock: VirtualClock) -> list[Sent]:
        budget = WeightBudget(1200, safety_margin=0.1, clock=clock)
        positions = budget.limited(max_fraction=0.7)
        assert positions.limit == 756
        sent: list[Sent] = []
        rng = random.Random(11)
        positions_kinds = (STATE, STATE, STATE, META)  # clearinghouseState per address, meta
        await asyncio.gather(
            *(
                caller(
                    f"positions{i}",
                    positions,
                    positions_kinds,
                    600,
                    random.Random(rng.random()),
                    sent,
                    clock,
                )
                for i in range(30)
            ),
            *(
                caller(f"other{i}", budget, MIXED, 600, random.Random(rng.random()), sent, clock)
                for i in range(others)
            ),
        )
        return sent

    sent = run_virtual(main)
    share = [s for s in sent if s.caller.startswith("positions")]
    rest = [s for s in sent if not s.caller.startswith("positions")]
    assert_never_over(share, usable=756, hard=756)  # the share's kinds never settle higher
    assert_never_over(sent, usable=1080, hard=1200)
    if others:  # everyone busy: the budget fills, and the others get at least the 30 % left
        assert_fills(sent, 1080, largest_reservation=120)
        assert_fills(rest, 1080 - 756, largest_reservation=120)
    else:  # the capped job alone: it uses its share, and 30 % stays free
        assert_fills(share, 756, largest_reservation=20)


def test_a_weight_60_request_is_not_starved_by_a_stream_of_weight_2() -> None:
    async def main(clock: VirtualClock) -> tuple[list[int], list[tuple[int, float]], float]:
        budget = WeightBudget(1200, safety_margin=0.1, clock=clock)
        queued: list[int] = []
        granted: list[tuple[int, float]] = []

        async def request(seq: int, weight: int) -> None:
            queued.append(seq)
            reservation = await budget.acquire(weight)
            granted.append((seq, clock.now()))
            await clock.sleep(0.125)
            budget.settle(reservation, weight)

        tasks = []
        for seq in range(4000):  # a weight-2 request every 1/16 s: 32 per s, budget 18 per s
            if seq == 1000:
                tasks.append(asyncio.ensure_future(request(BIG, 60)))
            tasks.append(asyncio.ensure_future(request(seq, 2)))
            await clock.sleep(0.0625)
        await asyncio.gather(*tasks)
        return queued, granted, clock.now()

    BIG = -1
    queued, granted, _ = run_virtual(main)
    order = [seq for seq, _ in granted]
    ahead = set(queued[: queued.index(BIG)])
    big_at = order.index(BIG)
    assert ahead <= set(order[:big_at])  # everyone queued before it went first
    head_since = max(at for seq, at in granted if seq in ahead)
    assert granted[big_at][1] - head_since < 60  # then it waited less than a window
    assert [s for s in order if s != BIG] == [s for s in queued if s != BIG]  # equal: FIFO


def test_smaller_requests_fill_only_room_the_waiting_head_cannot_use() -> None:
    async def main(clock: VirtualClock) -> list[tuple[str, float]]:
        budget = WeightBudget(100, safety_margin=0.0, clock=clock)
        grants: list[tuple[str, float]] = []

        async def request(name: str, weight: int) -> None:
            await budget.acquire(weight)  # never settled: stays in flight
            grants.append((name, clock.now()))

        budget.settle(await budget.acquire(50), 50)  # (t=0, 50) expires at t=60
        await clock.sleep(10)
        budget.settle(await budget.acquire(30), 30)  # (t=10, 30) expires at t=70
        await clock.sleep(10)
        tasks = [asyncio.ensure_future(request("big", 60))]  # fits at t=60 with 10 to spare
        await clock.sleep(0)
        tasks.append(asyncio.ensure_future(request("small", 5)))  # fits now and at t=60
        tasks.append(asyncio.ensure_future(request("medium", 10)))  # would delay "big"
        await asyncio.gather(*tasks)
        return grants

    assert run_virtual(main) == [("small", 20.0), ("big", 60.0), ("medium", 70.0)]


def test_settle_lower_refunds_and_settle_higher_counts_from_the_answer() -> None:
    async def main(clock: VirtualClock) -> list[tuple[str, float, int]]:
        budget = WeightBudget(100, safety_margin=0.0, clock=clock)
        seen: list[tuple[str, float, int]] = []

        first = await budget.acquire(60)  # in flight: blocks 60 until settled
        second_task = asyncio.ensure_future(budget.acquire(50))
        await clock.sleep(5)
        assert not second_task.done()
        budget.settle(first, 30)  # lower: 30 + 50 fits now
        second = await second_task
        seen.append(("second", clock.now(), budget.used_last_60s()))
        await clock.sleep(1)
        budget.settle(second, 65)  # higher than the 50 reserved: 65 recorded at t=6
        seen.append(("settled", clock.now(), budget.used_last_60s()))
        third = await budget.acquire(10)  # 30 + 65 + 10 > 100: waits for t=5 + 60
        seen.append(("third", clock.now(), budget.used_last_60s()))
        budget.settle(third, 10)
        fourth = await budget.acquire(40)  # 65 + 10 + 40 > 100: waits for t=6 + 60
        seen.append(("fourth", clock.now(), budget.used_last_60s()))
        budget.settle(fourth, 0)  # never sent: refunds everything
        seen.append(("refunded", clock.now(), budget.used_last_60s()))
        assert (budget.spent_total, budget.overrun_total) == (105, 15)
        return seen

    assert run_virtual(main) == [
        ("second", 5.0, 80),
        ("settled", 6.0, 95),
        ("third", 65.0, 75),
        ("fourth", 66.0, 50),
        ("refunded", 66.0, 10),
    ]


def test_a_cancelled_head_leaves_the_queue_and_the_next_one_proceeds() -> None:
    async def main(clock: VirtualClock) -> float:
        budget = WeightBudget(100, safety_margin=0.0, clock=clock)
        async with budget.reserve(50):
            pass  # settled at t=0 with its reserved 50
        await budget.acquire(40)  # stays in flight
        big = asyncio.ensure_future(budget.acquire(55))  # head: fits at t=60 with 5 to spare
        small = asyncio.ensure_future(budget.acquire(10))  # fits now, but would delay the head
        await clock.sleep(1)
        assert not small.done()
        big.cancel()
        await small
        assert budget.waiting == 0
        return clock.now()

    assert run_virtual(main) == 1.0


def test_a_waiter_cancelled_just_before_a_settle_is_skipped() -> None:
    async def main(clock: VirtualClock) -> tuple[int, int]:
        budget = WeightBudget(100, safety_margin=0.0, clock=clock)
        full = await budget.acquire(100)
        waiter = asyncio.ensure_future(budget.acquire(10))
        await clock.sleep(0)
        waiter.cancel()
        budget.settle(full, 50)  # dispatches before the cancelled task has cleaned up
        results = await asyncio.gather(waiter, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        return budget.waiting, budget.used_last_60s()

    assert run_virtual(main) == (0, 50)


def test_errors() -> None:
    async def main(clock: VirtualClock) -> None:
        budget = WeightBudget(1200, clock=clock)
        with pytest.raises(ValueError, match="can never fit"):
            await budget.acquire(1081)
        with pytest.raises(ValueError, match="can never fit"):
            await budget.limited(0.1).acquire(109)
        reservation = await budget.acquire(20)
        budget.settle(reservation, 20)
        with pytest.raises(RuntimeError, match="already settled"):
            budget.settle(reservation, 20)

    run_virtual(main)
    with pytest.raises(ValueError):
        WeightBudget(1200, safety_margin=1.0)
    with pytest.raises(ValueError):
        WeightBudget(1200).limited(0)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    callers=st.integers(1, 25),
    margin=st.sampled_from([0.0, 0.05, 0.1, 0.25]),
    kinds=st.lists(st.sampled_from([L2BOOK, META, FILLS, USER_ROLE]), min_size=1, max_size=4),
    fraction=st.sampled_from([None, 0.3, 0.7]),
)
def test_property_no_window_over_budget_when_estimates_are_upper_bounds(
    seed: int, callers: int, margin: float, kinds: list[Kind], fraction: float | None
) -> None:
    async def main(clock: VirtualClock) -> tuple[int, int, list[Sent]]:
        budget = WeightBudget(1200, safety_margin=margin, clock=clock)
        target: Budget = budget if fraction is None else budget.limited(fraction)
        sent: list[Sent] = []
        rng = random.Random(seed)
        await asyncio.gather(
            *(
                caller(f"c{i}", target, tuple(kinds), 180, random.Random(rng.random()), sent, clock)
                for i in range(callers)
            )
        )
        return budget.limit, target.limit, sent

    usable, share_limit, sent = run_virtual(main)
    assert all(s.actual <= s.reserved for s in sent)
    assert_never_over(sent, usable=share_limit, hard=min(usable, share_limit))


# --- lanes ----------------------------------------------------------------------------------


def test_a_backfill_requested_while_positions_saturate_the_budget_leaves_within_a_second() -> None:
    """Positions poll as fast as their lane allows, market data and HLP poll on their cadence;
    after every simulated WebSocket drop a gap backfill (recentTrades, 21 reserved) is sent
    at once, and no 60 s window ever exceeds the budget."""

    async def main(clock: VirtualClock) -> tuple[list[float], list[Sent]]:
        budget = WeightBudget(1200, safety_margin=0.1, clock=clock)
        positions = budget.lane(Priority.POSITIONS, cap=0.7)
        market = budget.lane(Priority.MARKET)
        hlp = budget.lane(Priority.HLP)
        backfill = budget.lane(Priority.BACKFILL)
        sent: list[Sent] = []
        waits: list[float] = []
        rng = random.Random(5)

        async def periodic(name: str, lane: Lane, kind: Kind, every: float) -> None:
            while clock.now() < 600:
                reservation = await lane.acquire(kind.reserve)
                granted = clock.now()
                await clock.sleep(0.0625)
                lane.settle(reservation, kind.reserve)
                sent.append(Sent(name, granted, granted + 0.03125, kind.reserve, kind.reserve))
                await clock.sleep(every)

        async def drops() -> None:
            await clock.sleep(90)  # the positions lane is full by now
            while clock.now() < 580:
                asked = clock.now()
                async with backfill.reserve(21):
                    waits.append(clock.now() - asked)
                    sent.append(Sent("backfill", clock.now(), clock.now(), 21, 21))
                await clock.sleep(rng.choice((7.0, 13.0, 29.0)))

        await asyncio.gather(
            *(
                caller(f"positions{i}", positions, (STATE,), 600, random.Random(i), sent, clock)
                for i in range(40)
            ),
            periodic("ctx", market, META, 10.0),
            periodic("hlp", hlp, META, 60.0),
            drops(),
        )
        return waits, sent

    waits, sent = run_virtual(main)
    assert len(waits) > 20
    assert max(waits) <= 1.0
    assert_never_over(sent, usable=1080, hard=1200)
    polls = [s for s in sent if s.caller.startswith("positions")]
    assert_never_over(polls, usable=756, hard=756)
    assert sum(s.actual for s in polls if 120 <= s.counted < 180) >= 756 - 120 - 60 - 40


def test_a_higher_lane_is_served_before_lower_ones_that_came_earlier() -> None:
    async def main(clock: VirtualClock) -> list[str]:
        budget = WeightBudget(100, safety_margin=0.0, clock=clock)
        order: list[str] = []
        budget.settle(await budget.acquire(100), 100)  # full until t=60

        async def request(name: str, lane: Lane, weight: int) -> None:
            async with lane.reserve(weight):
                order.append(name)

        tasks = [
            asyncio.ensure_future(request("positions", budget.lane(Priority.POSITIONS, 1.0), 30)),
            asyncio.ensure_future(request("hlp", budget.lane(Priority.HLP, 1.0), 30)),
            asyncio.ensure_future(request("backfill", budget.lane(Priority.BACKFILL), 30)),
        ]
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(main) == ["backfill", "hlp", "positions"]


# --- the journal: the window survives a crash ---------------------------------------------


def test_a_budget_restarted_after_a_crash_counts_what_its_predecessor_spent(tmp_path) -> None:
    """A first budget spends for 90 s and 'crashes' with requests in flight (no close, no
    settle); a second one on the same journal starts at once. Counted together, no 60 s window
    exceeds the budget, and the second one waits only as long as the first one's weight needs."""

    async def main(clock: VirtualClock) -> tuple[list[Sent], list[Sent], float]:
        wall = lambda: 1_700_000_000 + clock.now()  # noqa: E731
        path = tmp_path / "hl_weight.log"
        first = WeightBudget(1200, clock=clock, journal=SpendJournal(path, wall=wall))
        before: list[Sent] = []
        tasks = [
            asyncio.ensure_future(
                caller(f"a{i}", first, MIXED, 90, random.Random(i), before, clock)
            )
            for i in range(20)
        ]
        await clock.sleep(90)
        for task in tasks:  # SIGKILL: requests in flight stay unsettled in the journal
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        in_flight = first.used_last_60s() - sum(s.actual for s in before if s.counted >= 30)
        assert in_flight >= 0
        second = WeightBudget(1200, clock=clock, journal=SpendJournal(path, wall=wall))
        assert second.used_last_60s() >= first.used_last_60s() - in_flight
        after: list[Sent] = []
        await asyncio.gather(
            *(
                caller(f"b{i}", second, MIXED, 300, random.Random(i), after, clock)
                for i in range(20)
            )
        )
        return before, after, in_flight

    before, after, _ = run_virtual(main)
    assert before and after
    assert_never_over(before + after, usable=1080, hard=1200)


def test_a_missing_or_unreadable_journal_starts_as_if_the_window_were_full(tmp_path) -> None:
    async def main(clock: VirtualClock) -> tuple[int, int, int]:
        wall = lambda: 1_700_000_000 + clock.now()  # noqa: E731
        fresh = WeightBudget(
            1200, clock=clock, journal=SpendJournal(tmp_path / "new.log", wall=wall)
        )
        upgraded = WeightBudget(
            1200,
            clock=clock,
            journal=SpendJournal(tmp_path / "old.log", wall=wall, full_if_missing=True),
        )
        (tmp_path / "bad.log").write_text("g 1 not-a-time 20\n")
        broken = WeightBudget(
            1200, clock=clock, journal=SpendJournal(tmp_path / "bad.log", wall=wall)
        )
        return fresh.used_last_60s(), upgraded.used_last_60s(), broken.used_last_60s()

    assert run_virtual(main) == (0, 1080, 1080)
