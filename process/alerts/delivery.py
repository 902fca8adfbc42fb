"""Webhook delivery: per target a bounded queue and one sender, retrying with backoff.

- Never blocks the caller: `put` appends to the target's queue (at most `queue_size` waiting;
  when full the oldest waiting alert is dropped and counted in `dropped`).
- One request at a time per target, in order. A 2xx answer is done: the alert is never sent
  again. 408, 429, 5xx, timeouts and connection errors are retried, the same alert first, with
  capped exponential backoff and jitter (`Retry-After` respected, up to `RETRY_AFTER_CAP`);
  while a target fails, new alerts wait behind the one being retried. Any other answer (a 4xx:
  a revoked webhook, a bad chat id) refuses the alert for good (`rejected`), no retry.
- At least once, not exactly once, in one case: a request that timed out (or lost its
  connection) after the receiver took it is sent again. The generic JSON payload carries a
  stable `id` per event, so such a receiver can drop the duplicate; Slack, Discord and Telegram
  would show it twice.
- A failing target is logged once: one WARNING when it starts failing, one INFO when it delivers
  again (with what was dropped or refused meanwhile), nothing per alert or per attempt. Every
  line names the target by its masked URL and passes error texts through `scrub`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

import httpx

from process.alerts.alert import Alert
from process.alerts.targets import BaseTarget
from utils.backoff import jittered_backoff, parse_retry_after

log = logging.getLogger(__name__)

RETRY_AFTER_CAP = 300.0
"""Longest wait a `Retry-After` header may ask for (seconds)."""
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool = False
    reason: str = ""
    retry_after: float | None = None


class Courier:
    """One target's queue, sender and health."""

    def __init__(
        self,
        name: str,
        target: BaseTarget,
        *,
        queue_size: int,
        retry_base: float,
        retry_cap: float,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.masked = target.masked()
        self.queue: deque[Alert] = deque()
        self.queue_size = queue_size
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.rng = rng or random.Random()
        self.sent = 0
        self.dropped = 0  # oldest waiting alerts dropped from a full queue
        self.rejected = 0  # refused by the receiver (4xx), not retried
        self.failed_attempts = 0
        self.failing = False
        self._failing_since = 0.0
        self._lost_before = 0  # dropped + rejected when it started failing
        self._inflight: Alert | None = None
        self._wake = asyncio.Event()

    def put(self, alert: Alert) -> None:
        """Queue `alert`; drops the oldest waiting one if the queue is full. Never blocks."""
        if len(self.queue) >= self.queue_size:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(alert)
        self._wake.set()

    @property
    def pending(self) -> int:
        """Alerts not delivered yet: waiting, and the one being sent."""
        return len(self.queue) + (self._inflight is not None)

    async def run(self, client: httpx.AsyncClient) -> None:
        """Send queued alerts until cancelled."""
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            alert = self.queue.popleft()
            self._inflight = alert
            try:
                await self._deliver(client, alert)
            except asyncio.CancelledError:  # stopped: it is still to be delivered
                self.queue.appendleft(alert)
                raise
            except Exception as exc:  # a bug: this alert is lost, the next ones still go
                self.rejected += 1
                log.error(  # no traceback: its message could quote the URL; scrubbed here
                    "alert target %s (%s): delivery failed: %s",
                    self.name,
                    self.masked,
                    self.target.scrub(f"{type(exc).__name__}: {exc}"),
                )
            finally:
                self._inflight = None

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        url = self.target.endpoint()
        body = self.target.body(alert.text, alert.payload())
        attempt = 0
        while True:
            outcome = await self._post(client, url, body)
            if outcome.ok:
                self.sent += 1
                self._recovered()
                return
            self.failed_attempts += 1
            self._failed(outcome.reason)
            if not outcome.retry:
                self.rejected += 1
                return
            attempt += 1
            delay = jittered_backoff(
                attempt, base=self.retry_base, cap=self.retry_cap, rng=self.rng
            )
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, RETRY_AFTER_CAP))
            await asyncio.sleep(delay)

    async def _post(self, client: httpx.AsyncClient, url: str, body: dict[str, object]) -> Outcome:
        try:
            response = await client.post(url, json=body)
        except httpx.TimeoutException as exc:
            return Outcome(False, True, f"timed out ({type(exc).__name__})")
        except (httpx.HTTPError, OSError) as exc:
            return Outcome(False, True, self.target.scrub(f"{type(exc).__name__}: {exc}"))
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True)
        retry = status >= 500 or status in _RETRY_STATUS
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if retry else None
        return Outcome(False, retry, f"HTTP {status}", retry_after)

    def _failed(self, reason: str) -> None:
        if self.failing:
            return
        self.failing = True
        self._failing_since = time.monotonic()
        self._lost_before = self.dropped + self.rejected
        log.warning(
            "alert target %s (%s) fails: %s; its alerts are retried with backoff (at most every "
            "%g s) and this is not logged again until it delivers",
            self.name,
            self.masked,
            self.target.scrub(reason),
            self.retry_cap,
        )

    def _recovered(self) -> None:
        if not self.failing:
            return
        self.failing = False
        lost = self.dropped + self.rejected - self._lost_before
        log.info(
            "alert target %s (%s) delivers again after %.0f s%s",
            self.name,
            self.masked,
            time.monotonic() - self._failing_since,
            f"; {lost} alerts were dropped or refused meanwhile" if lost else "",
        )
