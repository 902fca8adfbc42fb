"""JSON-RPC over HTTP to an EVM node (HyperEVM): paced, guarded by a breaker, retried.

Each attempt (1) passes the endpoint's circuit breaker (refused at once while open), (2) takes
one request from a requests-per-minute window (`fetch.rate_limit.WeightBudget`, weight 1 per
request: HyperEVM's public RPC allows 100 per minute), (3) is posted on one pooled
`httpx.AsyncClient`. Answers are sorted:

- 429 (honouring Retry-After, else the longest backoff), 5xx, timeouts, connection errors and
  JSON-RPC errors that say "rate limit": retried with capped, jittered backoff up to
  `max_attempts`; 5xx and transport errors count toward the breaker, 429 does not;
- other 4xx, and JSON-RPC errors (e.g. "block range too large"): `RpcError` at once;
- a 2xx body that is not a JSON-RPC answer: quarantined (source `evm:<method>`) and
  `RpcMalformedError`, not retried (the caller's next run asks again).

The URL may carry an API key: it is registered as a secret (masked in every log line) and no
message of this module contains it.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pybreaker

from fetch.rate_limit import Clock, MonotonicClock, WeightBudget
from utils.backoff import http_failure, retry_delay
from utils.breaker import AsyncCircuitBreaker, CircuitOpenError
from utils.errors import RpcError, RpcMalformedError
from utils.logging import register_secret
from utils.metrics import Sample
from utils.quarantine import Quarantine
from validate.evm import parse_envelope

log = logging.getLogger(__name__)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_breaker_failure(exc: BaseException) -> bool:
    """5xx answers, timeouts and connection errors open the breaker; 4xx and 429 do not."""
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, RpcError) and exc.status is not None and exc.status >= 500


@dataclass
class RpcStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    malformed: int = 0
    breaker_opened: int = 0


class EvmRpc:
    """One EVM JSON-RPC endpoint; `await rpc.call("eth_blockNumber", [])` returns `result`."""

    def __init__(
        self,
        url: str,
        *,
        requests_per_minute: int = 100,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        max_retry_after: float = 60.0,
        breaker_fail_max: int = 5,
        breaker_reset_timeout: float = 30.0,
        quarantine: Quarantine | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        register_secret(url)
        self._url = url
        self.clock: Clock = clock or MonotonicClock()
        self.pacer = WeightBudget(requests_per_minute, safety_margin=0.0, clock=self.clock)
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.quarantine = quarantine
        self.stats = RpcStats()
        self._ids = itertools.count(1)
        self._rng = rng or random.Random()
        self.breaker = AsyncCircuitBreaker(
            "evm:rpc",
            fail_max=breaker_fail_max,
            reset_timeout=breaker_reset_timeout,
            is_failure=is_breaker_failure,
            on_change=self._breaker_changed,
            clock=self.clock.now,
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
            headers={"Content-Type": "application/json"},
            transport=transport,
        )

    def _breaker_changed(self, state: str) -> None:
        if state == pybreaker.STATE_OPEN:
            self.stats.breaker_opened += 1

    def samples(self) -> list[Sample]:
        stats = self.stats
        return [
            Sample("evm_requests_total", "counter", "EVM JSON-RPC requests", stats.requests),
            Sample("evm_rate_limited_total", "counter", "EVM 429 answers", stats.rate_limited),
            Sample("evm_retries_total", "counter", "EVM requests retried", stats.retries),
        ]

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        """The `result` of one call (may be None). Raises RpcError, RpcMalformedError or
        CircuitOpenError."""
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)},
            separators=(",", ":"),
        ).encode()
        attempt = 1
        last_error: Exception | None = None
        while True:
            try:
                return await self.breaker.call(self._attempt, method, body)
            except CircuitOpenError as err:
                raise err from last_error
            except RpcMalformedError:
                raise
            except (RpcError, httpx.TransportError) as err:
                last_error = err
                retryable = not isinstance(err, RpcError) or err.retryable
                if attempt >= self.max_attempts or not retryable:
                    raise self._final_error(method, err, attempt) from None
                delay = self._retry_delay(attempt, err)
                log.info(
                    "evm %s: attempt %d failed (%s); retrying in %.1f s",
                    method,
                    attempt,
                    _describe(err),
                    delay,
                )
            self.stats.retries += 1
            attempt += 1
            await self.clock.sleep(delay)

    async def _attempt(self, method: str, body: bytes) -> Any:
        reservation = await self.pacer.acquire(1)
        sent = 1
        try:
            self.stats.requests += 1
            try:
                response = await self._http.post(self._url, content=body)
            except _NOT_SENT:
                sent = 0
                raise
            if not response.is_success:
                raise self._status_error(method, response)
            try:
                envelope = parse_envelope(response.content)
            except ValueError as exc:
                self.stats.malformed += 1
                if self.quarantine is not None:
                    self.quarantine.add(f"evm:{method}", str(exc), response.content)
                raise RpcMalformedError(
                    f"EVM node answered {method} with something that is not JSON-RPC ({exc});"
                    " quarantined",
                    method=method,
                ) from None
            if envelope.error is not None:
                error = envelope.error
                raise RpcError(
                    f"EVM node refused {method}: {error.message[:200]} (code {error.code})",
                    method=method,
                    code=error.code,
                )
            return envelope.result
        finally:
            self.pacer.settle(reservation, sent)

    def _status_error(self, method: str, response: httpx.Response) -> RpcError:
        status = response.status_code
        message, retry_after = http_failure(
            status,
            response.text,
            response.reason_phrase,
            response.headers.get("Retry-After"),
            limit=200,
        )
        if status == 429:
            self.stats.rate_limited += 1
        return RpcError(message, method=method, status=status, retry_after=retry_after)

    def _retry_delay(self, attempt: int, err: Exception) -> float:
        known = isinstance(err, RpcError)
        return retry_delay(
            attempt,
            status=err.status if known else None,
            retry_after=err.retry_after if known else None,
            base=self.backoff_base,
            cap=self.backoff_cap,
            max_retry_after=self.max_retry_after,
            rng=self._rng,
        )

    def _final_error(self, method: str, err: Exception, attempts: int) -> RpcError:
        if isinstance(err, RpcError) and not err.retryable:
            return err
        tries = "attempt" if attempts == 1 else "attempts"
        return RpcError(
            f"EVM call {method} failed after {attempts} {tries}: {_describe(err)}",
            method=method,
            status=err.status if isinstance(err, RpcError) else None,
            code=err.code if isinstance(err, RpcError) else None,
        )


def _describe(err: Exception) -> str:
    """Without the URL: httpx puts it in some messages, and it may hold an API key."""
    if isinstance(err, RpcError):
        return str(err)
    return type(err).__name__
