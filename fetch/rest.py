"""Client for Hyperliquid's `POST /info`: shared weight budget, a breaker per type, retries.

Each attempt of a request: (1) passes the circuit breaker of its `type` (refused at once while
open), (2) reserves an upper bound of its weight in the shared budget, (3) is sent on one
keep-alive HTTP/1.1 connection pool, (4) settles its true weight: base weight for any answer or
timeout (the exchange may have counted it), base + per-item extra for a 2xx answer, 0 if the
connection never opened. Answers are sorted:

- 2xx: the raw body is returned (validation into models happens elsewhere);
- 429 (honouring Retry-After, else the longest backoff), 5xx, timeouts and connection errors:
  retried with capped, jittered backoff up to `max_attempts`; 5xx and transport errors count
  toward the breaker, 429 does not (the server is up; the budget is what needs fixing);
- 422 and every other 4xx: `InfoRequestError` at once, never retried, not a breaker failure.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from fetch import weights
from fetch.rate_limit import Budget, Clock, WeightBudget
from utils.backoff import http_failure, retry_delay
from utils.breaker import AsyncCircuitBreaker, CircuitOpenError
from utils.errors import HyperfluxError

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)

ItemCounter = Callable[[bytes], "int | None"]
"""Counts the items in a response body (None: unknown, the reservation is charged)."""

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class InfoRequestError(HyperfluxError):
    """Hyperliquid refused an info request, or it kept failing; the message says which."""

    def __init__(
        self,
        message: str,
        *,
        info_type: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.info_type = info_type
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """429 and 5xx are worth another try; other statuses are not."""
        return self.status is not None and (self.status == 429 or self.status >= 500)


def is_breaker_failure(exc: BaseException) -> bool:
    """5xx answers, timeouts and connection errors open breakers; 4xx (422, 429) do not."""
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, InfoRequestError) and exc.status is not None and exc.status >= 500


def count_list_items(content: bytes) -> int | None:
    """Items in a JSON array body (recentTrades, userFills, candleSnapshot ...), else None."""
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return len(data) if isinstance(data, list) else None


@dataclass
class InfoStats:
    """Counters for metrics (names as they would be exported)."""

    requests: Counter[str] = field(default_factory=Counter)
    """HTTP requests sent, by info type (hyperflux_hl_requests_total{type})."""
    retries: int = 0
    """Attempts that were retried (hyperflux_hl_retries_total)."""
    rate_limited: int = 0
    """429 answers received (hyperflux_hl_rate_limited_total)."""
    breaker_transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(info type, new state) -> count (hyperflux_hl_breaker_transitions_total{type,state})."""
    weight_used: int = 0
    """Weight settled by this client (hyperflux_hl_weight_used_total)."""


class InfoClient:
    """`POST {api_url}/info` with one pooled `httpx.AsyncClient`; use as an async context manager.

    Every caller shares `budget` (default: a new 1200-per-minute budget with a 10 % margin);
    a job can pass its own lane (`budget.lane(...)`) per call.
    """

    def __init__(
        self,
        api_url: str,
        *,
        budget: WeightBudget | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        max_retry_after: float = 60.0,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 30.0,
        max_items: Mapping[str, int] | None = None,
        max_connections: int = 4,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.url = api_url.rstrip("/") + "/info"
        self.budget = budget or WeightBudget(weights.LIMIT_PER_MINUTE)
        self.clock = clock or self.budget.clock
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.breaker_fail_max = breaker_fail_max
        self.breaker_reset_timeout = breaker_reset_timeout
        self.max_items = dict(max_items or {})
        self.stats = InfoStats()
        self.breakers: dict[str, AsyncCircuitBreaker] = {}
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            headers={"Content-Type": "application/json"},
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, budget: WeightBudget | None = None, **kwargs: Any
    ) -> InfoClient:
        """A client for `settings.hl_api_url` under the configured weight budget and margin."""
        budget = budget or WeightBudget(
            settings.hl_weight_budget, safety_margin=settings.hl_weight_margin
        )
        return cls(settings.hl_api_url, budget=budget, **kwargs)

    async def __aenter__(self) -> InfoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    def breaker(self, info_type: str) -> AsyncCircuitBreaker:
        """The breaker of one request type (created on first use)."""
        breaker = self.breakers.get(info_type)
        if breaker is None:
            breaker = AsyncCircuitBreaker(
                f"info:{info_type}",
                fail_max=self.breaker_fail_max,
                reset_timeout=self.breaker_reset_timeout,
                is_failure=is_breaker_failure,
                on_change=lambda state: self._breaker_changed(info_type, state),
                clock=self.clock.now,
            )
            self.breakers[info_type] = breaker
        return breaker

    def _breaker_changed(self, info_type: str, state: str) -> None:
        self.stats.breaker_transitions[(info_type, state)] += 1

    async def post(
        self,
        payload: Mapping[str, Any],
        *,
        items_estimate: int | None = None,
        count_items: ItemCounter | None = None,
        budget: Budget | None = None,
    ) -> bytes:
        """Send one info request and return the raw body of its 2xx answer.

        `items_estimate` bounds the items the answer can hold (default: `weights.
        estimate_items`); `count_items` counts them in the body to settle the true weight
        (default: length of a JSON array). `budget` overrides the client's (e.g. a share).
        Raises `InfoRequestError` or `CircuitOpenError`.
        """
        info_type = payload.get("type")
        if not isinstance(info_type, str) or not info_type:
            raise ValueError("an info payload needs a non-empty string 'type'")
        budget = self.budget if budget is None else budget
        body = json.dumps(payload, separators=(",", ":")).encode()
        reserve = weights.reserve_weight(
            payload, items_estimate=items_estimate, max_items=self.max_items
        )
        reserve = min(reserve, budget.limit)
        breaker = self.breaker(info_type)
        attempt = 1
        last_error: Exception | None = None
        while True:
            try:
                return await breaker.call(
                    self._attempt, info_type, body, reserve, budget, count_items
                )
            except CircuitOpenError as err:
                raise err from last_error
            except (InfoRequestError, httpx.TransportError) as err:
                last_error = err
                if attempt >= self.max_attempts or (
                    isinstance(err, InfoRequestError) and not err.retryable
                ):
                    raise self._final_error(info_type, err, attempt) from err
                delay = self._retry_delay(attempt, err)
                log.info(
                    "info %s: attempt %d failed (%s); retrying in %.1f s",
                    info_type,
                    attempt,
                    _describe(err),
                    delay,
                )
            self.stats.retries += 1
            attempt += 1
            await self.clock.sleep(delay)

    async def _attempt(
        self,
        info_type: str,
        body: bytes,
        reserve: int,
        budget: Budget,
        count_items: ItemCounter | None,
    ) -> bytes:
        reservation = await budget.acquire(reserve)
        actual = weights.base_weight(info_type)
        try:
            self.stats.requests[info_type] += 1
            try:
                response = await self._http.post(self.url, content=body)
            except _NOT_SENT:
                actual = 0
                raise
            if not response.is_success:
                raise self._status_error(info_type, response)
            content = response.content
            if weights.has_item_extra(info_type):
                actual = reserve  # kept if the items cannot be counted
                items = (count_items or count_list_items)(content)
                if items is not None:
                    actual = weights.request_weight(info_type, items)
            return content
        finally:
            budget.settle(reservation, actual)
            self.stats.weight_used += actual

    def _status_error(self, info_type: str, response: httpx.Response) -> InfoRequestError:
        status = response.status_code
        message, retry_after = http_failure(
            status,
            response.text,
            response.reason_phrase,
            response.headers.get("Retry-After"),
            limit=300,
        )
        if status == 429:
            self.stats.rate_limited += 1
        return InfoRequestError(
            message, info_type=info_type, status=status, retry_after=retry_after
        )

    def _retry_delay(self, attempt: int, err: Exception) -> float:
        known = isinstance(err, InfoRequestError)
        return retry_delay(
            attempt,
            status=err.status if known else None,
            retry_after=err.retry_after if known else None,
            base=self.backoff_base,
            cap=self.backoff_cap,
            max_retry_after=self.max_retry_after,
            rng=self._rng,
        )

    def _final_error(self, info_type: str, err: Exception, attempts: int) -> InfoRequestError:
        status = err.status if isinstance(err, InfoRequestError) else None
        if status is not None and status < 500 and status != 429:
            hint = "malformed body or unknown type" if status == 422 else "request refused"
            message = f"Hyperliquid refused info request {info_type!r} ({hint}, not retried): "
        else:
            tries = "attempt" if attempts == 1 else "attempts"
            message = f"Hyperliquid info request {info_type!r} failed after {attempts} {tries}: "
        return InfoRequestError(message + _describe(err), info_type=info_type, status=status)


def _describe(err: Exception) -> str:
    if isinstance(err, InfoRequestError):
        return str(err)
    return f"{type(err).__name__} {err}".strip() if str(err) else type(err).__name__
