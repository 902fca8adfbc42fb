"""The asyncio adapter for pybreaker: awaited failures open it, the clock half-opens it."""

from __future__ import annotations

import asyncio

import pybreaker
import pytest

from utils.breaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    AsyncCircuitBreaker,
    CircuitOpenError,
)


class ServerError(Exception):
    pass


class Unprocessable(Exception):
    """Stands for a 422: the server works, the request was wrong."""


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Transitions(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.failures = 0
        self.successes = 0

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        self.seen.append((old_state.name if old_state else "", new_state.name))

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self.failures += 1

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self.successes += 1


async def fails(exc: Exception) -> None:
    await asyncio.sleep(0)  # suspended first: the exception is raised inside the await
    raise exc


async def succeeds(value: str = "ok") -> str:
    await asyncio.sleep(0)
    return value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def listener() -> Transitions:
    return Transitions()


@pytest.fixture
def breaker(clock: FakeClock, listener: Transitions) -> AsyncCircuitBreaker:
    return AsyncCircuitBreaker(
        "info:l2Book",
        fail_max=3,
        reset_timeout=30,
        is_failure=lambda exc: isinstance(exc, ServerError),
        listeners=[listener],
        clock=clock,
    )


async def test_opens_after_fail_max_awaited_failures_and_refuses_calls(
    breaker: AsyncCircuitBreaker, listener: Transitions, clock: FakeClock
) -> None:
    for expected_count in (1, 2):
        with pytest.raises(ServerError):
            await breaker.call(fails, ServerError("HTTP 500"))
        assert (breaker.state, breaker.fail_counter) == (STATE_CLOSED, expected_count)
    with pytest.raises(ServerError):  # the caller sees its own error, not pybreaker's
        await breaker.call(fails, ServerError("HTTP 500"))
    assert breaker.state == STATE_OPEN
    assert listener.seen == [("closed", "open")]
    assert listener.failures == 3

    clock.t += 10
    called = False

    async def must_not_run() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpenError) as refused:
        await breaker.call(must_not_run)
    assert not called
    assert str(refused.value) == (
        "circuit breaker info:l2Book is open after 3 failed calls in a row;"
        " it lets a trial call through in 20.0 s"
    )
    assert (refused.value.name, refused.value.retry_in) == ("info:l2Book", 20.0)
    assert breaker.retry_in() == 20.0


async def test_half_opens_after_the_timeout_and_a_successful_trial_closes_it(
    breaker: AsyncCircuitBreaker, listener: Transitions, clock: FakeClock
) -> None:
    for _ in range(3):
        with pytest.raises(ServerError):
            await breaker.call(fails, ServerError())
    clock.t += 29.9
    with pytest.raises(CircuitOpenError):
        await breaker.call(succeeds)
    clock.t += 0.1

    release = asyncio.Event()

    async def slow_trial() -> str:
        await release.wait()
        return "trial"

    trial = asyncio.ensure_future(breaker.call(slow_trial))
    await asyncio.sleep(0)
    assert breaker.state == STATE_HALF_OPEN
    with pytest.raises(CircuitOpenError, match="half-open and its trial call is still running"):
        await breaker.call(succeeds)  # one trial at a time
    release.set()
    assert await trial == "trial"
    assert breaker.state == STATE_CLOSED
    assert listener.seen == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    assert await breaker.call(succeeds, "again") == "again"


async def test_a_failed_trial_reopens_for_another_timeout(
    breaker: AsyncCircuitBreaker, listener: Transitions, clock: FakeClock
) -> None:
    for _ in range(3):
        with pytest.raises(ServerError):
            await breaker.call(fails, ServerError())
    clock.t += 30
    with pytest.raises(ServerError):
        await breaker.call(fails, ServerError())
    assert breaker.state == STATE_OPEN
    assert listener.seen[-2:] == [("open", "half-open"), ("half-open", "open")]
    assert breaker.retry_in() == 30.0
    clock.t += 30
    assert await breaker.call(succeeds) == "ok"
    assert breaker.state == STATE_CLOSED


async def test_exceptions_that_do_not_count_never_open_it(
    breaker: AsyncCircuitBreaker, listener: Transitions
) -> None:
    for _ in range(10):
        with pytest.raises(Unprocessable):
            await breaker.call(fails, Unprocessable("HTTP 422"))
    assert (breaker.state, breaker.fail_counter) == (STATE_CLOSED, 0)
    # pybreaker counts an excluded exception as a success: it resets the failure streak.
    for _ in range(2):
        with pytest.raises(ServerError):
            await breaker.call(fails, ServerError())
    with pytest.raises(Unprocessable):
        await breaker.call(fails, Unprocessable())
    assert breaker.fail_counter == 0
    assert listener.seen == []


async def test_cancelled_calls_record_nothing_and_free_the_trial(
    breaker: AsyncCircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        with pytest.raises(ServerError):
            await breaker.call(fails, ServerError())
    clock.t += 30
    trial = asyncio.ensure_future(breaker.call(asyncio.sleep, 60))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert breaker.state == STATE_HALF_OPEN
    assert await breaker.call(succeeds) == "ok"  # the next caller gets the trial
    assert breaker.state == STATE_CLOSED


async def test_results_of_calls_admitted_before_it_opened_are_ignored(
    breaker: AsyncCircuitBreaker, clock: FakeClock
) -> None:
    release = asyncio.Event()

    async def slow_success() -> str:
        await release.wait()
        return "late"

    late = asyncio.ensure_future(breaker.call(slow_success))
    await asyncio.sleep(0)
    for _ in range(3):
        with pytest.raises(ServerError):
            await breaker.call(fails, ServerError())
    assert breaker.state == STATE_OPEN
    release.set()
    assert await late == "late"  # the caller still gets its answer ...
    assert breaker.state == STATE_OPEN  # ... but it does not close the breaker


async def test_every_exception_counts_by_default(clock: FakeClock) -> None:
    breaker = AsyncCircuitBreaker("any", fail_max=1, reset_timeout=5, clock=clock)
    with pytest.raises(ValueError):
        await breaker.call(fails, ValueError())
    assert breaker.state == STATE_OPEN
    with pytest.raises(CircuitOpenError, match="open after 1 failed call;"):
        await breaker.call(succeeds)
