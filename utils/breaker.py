"""An asyncio adapter for pybreaker (which only guards synchronous calls, or tornado's).

`AsyncCircuitBreaker.call(coro_fn, *args)` decides admission *before* the await and records the
outcome *after* it, by replaying the outcome through pybreaker's own `CircuitBreaker.call`. So
pybreaker's state machine does the counting: `fail_max`, `success_threshold`, excluded
exceptions (counted as successes, as pybreaker does), listeners and state changes all behave as
documented. Listeners' `before_call` fires when the outcome is recorded, after the await.

What the adapter adds:
- the open -> half-open decision uses an injectable monotonic clock (pybreaker compares
  `datetime.now()`, which tests cannot move); the adapter never lets pybreaker's open state run;
- half-open admits exactly one trial call at a time; others get `CircuitOpenError`;
- a result from a call admitted before the state changed is ignored (it says nothing about the
  new state), and a cancelled call records nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import ParamSpec, TypeVar

import pybreaker

from utils.errors import HyperfluxError

log = logging.getLogger(__name__)

STATE_CLOSED = pybreaker.STATE_CLOSED
STATE_OPEN = pybreaker.STATE_OPEN
STATE_HALF_OPEN = pybreaker.STATE_HALF_OPEN

P = ParamSpec("P")
T = TypeVar("T")


class CircuitOpenError(HyperfluxError):
    """A breaker refused a call; `retry_in` is the number of seconds until it lets one through."""

    def __init__(self, name: str, retry_in: float, failures: int | None = None) -> None:
        self.name = name
        self.retry_in = retry_in
        if failures is None:
            message = (
                f"circuit breaker {name} is half-open and its trial call is still running;"
                " retry after it finishes"
            )
        else:
            calls = "call" if failures == 1 else "calls in a row"
            message = (
                f"circuit breaker {name} is open after {failures} failed {calls};"
                f" it lets a trial call through in {retry_in:.1f} s"
            )
        super().__init__(message)


class _StateWatcher(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: AsyncCircuitBreaker) -> None:
        self.owner = owner

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state else "none"
        log.warning("circuit breaker %s: %s -> %s", cb.name, old, new_state.name)
        self.owner._on_state_change(new_state.name)


class AsyncCircuitBreaker:
    """One pybreaker `CircuitBreaker` guarding awaited calls (one per endpoint / request type).

    `is_failure(exc)` says which exceptions count toward `fail_max` (default: every
    `Exception`); the others pass through without opening the breaker. `clock` returns
    monotonic seconds and drives `reset_timeout`.
    """

    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        is_failure: Callable[[BaseException], bool] | None = None,
        listeners: Iterable[pybreaker.CircuitBreakerListener] = (),
        on_change: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.on_change = on_change
        self._clock = clock
        self._opened_at: float | None = None
        self._opened_after = 0
        self._generation = 0
        self._trial_running = False
        exclude = [] if is_failure is None else [lambda exc: not is_failure(exc)]
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=exclude,
            listeners=[_StateWatcher(self), *listeners],
            name=name,
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open"."""
        return self.breaker.current_state

    @property
    def fail_counter(self) -> int:
        return self.breaker.fail_counter

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 unless open)."""
        if self.state != STATE_OPEN or self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.breaker.reset_timeout - self._clock())

    async def call(
        self, coro_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await `coro_fn(*args, **kwargs)` if the breaker allows it, and record the outcome.

        Raises `CircuitOpenError` without calling `coro_fn` while open, or while half-open with
        a trial call already running. Exceptions of `coro_fn` propagate unchanged.
        """
        trial = self._admit()
        generation = self._generation
        try:
            result = await coro_fn(*args, **kwargs)
        except Exception as exc:
            self._record(generation, exc)
            raise
        finally:
            if trial:
                self._trial_running = False
        self._record(generation, None)
        return result

    def _admit(self) -> bool:
        """Refuse or admit a call; True if it is the half-open trial."""
        if self.state == STATE_OPEN:
            retry_in = self.retry_in()
            if retry_in > 0:
                raise CircuitOpenError(self.name, retry_in, self._opened_after)
            self.breaker.half_open()
        if self.state == STATE_HALF_OPEN:
            if self._trial_running:
                raise CircuitOpenError(self.name, 0.0)
            self._trial_running = True
            return True
        return False

    def _record(self, generation: int, exc: Exception | None) -> None:
        """Replay the awaited outcome through pybreaker's state machine."""
        if generation != self._generation or self.state == STATE_OPEN:
            return

        def replay() -> None:
            if exc is not None:
                raise exc

        try:
            self.breaker.call(replay)
        except Exception as err:
            if err is not exc:
                raise

    def _on_state_change(self, new_state: str) -> None:
        self._generation += 1
        if new_state == STATE_OPEN:
            self._opened_at = self._clock()
            self._opened_after = max(self.breaker.fail_counter, 1)
        if self.on_change is not None:
            self.on_change(new_state)

    def __repr__(self) -> str:
        return f"AsyncCircuitBreaker({self.name!r}, state={self.state!r})"
