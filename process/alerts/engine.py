"""`AlertEngine`: the entry API. Events in, alerts out to the log, InfluxDB and webhooks.

Call from the asyncio loop's thread (the collector's callbacks are):

- `position_changed(change)`: every `PositionChange` of the position book (`on_change`);
- `liquidation(event)`: every `LiquidationEvent` (backstops as detected, market ones confirmed);
- `check_book(book, now_ms)`: every `config.near_liquidation_interval` seconds;
- `run()` as a task for webhook delivery, `close()` at shutdown; `samples()` for metrics.

The three event calls never block and never raise: they match the rules, drop an event already
alerted (`dedup`), write one log line (logger `process.alerts`, INFO) and one `alerts` point,
and queue the alert for its targets (`delivery`), all synchronously and cheaply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable

import httpx

from process.alerts.alert import Alert
from process.alerts.dedup import RecentKeys
from process.alerts.delivery import Courier
from process.alerts.match import Matcher
from process.alerts.points import AlertPoints
from process.alerts.rules import AlertsConfig, NearLiquidationRule
from process.alerts.zone import NearLiquidationWatch
from process.liquidations import LiquidationEvent
from process.positions.book import PositionBook, PositionChange
from process.storage_ports import PointSink
from utils.logging import register_secret
from utils.metrics import Sample

log = logging.getLogger(__name__)
alert_log = logging.getLogger("process.alerts")
"""One INFO line per alert: `alert [rules] <what happened>`."""
MIN_REGISTERED = 8
"""Shorter target secrets (a URL path like `/hook`) are not masked in every log line, only in
the alerts' own lines: masking such common text everywhere would garble unrelated lines."""


class AlertEngine:
    def __init__(
        self,
        config: AlertsConfig,
        writer: PointSink | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        dedup_capacity: int = 100_000,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        """`writer` takes the `alerts` points (None: not stored). `client`: for webhooks (None:
        `run()` makes one with `config.timeout`, closed by `close()`). `on_alert` is told of
        every alert raised (the event bus)."""
        self.config = config
        self.writer = writer
        self.on_alert = on_alert
        self.matcher = Matcher(config)
        near = [rule for rule in config.rules if isinstance(rule, NearLiquidationRule)]
        self.zone = NearLiquidationWatch(near, self.matcher.targets)
        self.points = AlertPoints()
        self.seen = RecentKeys(dedup_capacity)
        self.couriers = {
            name: Courier(
                name,
                target,
                queue_size=config.queue_size,
                retry_base=config.retry_base,
                retry_cap=config.retry_cap,
            )
            for name, target in config.targets.items()
        }
        for target in config.targets.values():
            for secret in target.secrets():  # masked by the log handler too (third-party lines)
                if len(secret) >= MIN_REGISTERED:
                    register_secret(secret)
        self.raised: Counter[str] = Counter()  # by kind
        self.duplicates = 0
        self.errors = 0
        self._client = client
        self._own_client = client is None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    @property
    def watched(self) -> frozenset[str]:
        """Addresses the wallet rules watch (to poll with priority)."""
        return self.matcher.watched

    def set_watchlist(self, addresses: frozenset[str]) -> None:
        """The watchlist now (wallet rules with `watchlist: true`)."""
        self.matcher.set_watchlist(addresses)

    @property
    def checks_book(self) -> bool:
        """Whether any near-liquidation rule needs `check_book`."""
        return bool(self.zone.rules)

    # -- events (the trade path: synchronous, never raises) ---------------------------------

    def position_changed(self, change: PositionChange) -> None:
        try:
            alert = self.matcher.position_changed(change)
            if alert is not None:
                self._raise(alert)
        except Exception:
            self._error("a position change")

    def liquidation(self, event: LiquidationEvent) -> None:
        try:
            alert = self.matcher.liquidation(event)
            if alert is not None:
                self._raise(alert)
        except Exception:
            self._error("a liquidation")

    def check_book(self, book: PositionBook, now_ms: int) -> int:
        """Alert the positions that entered a near-liquidation zone; returns how many."""
        try:
            alerts = self.zone.check(book, now_ms)
        except Exception:
            self._error("the position book check")
            return 0
        return sum(self._raise(alert) for alert in alerts)

    def _raise(self, alert: Alert) -> bool:
        if not self.seen.add(alert.key):
            self.duplicates += 1
            return False
        self.raised[alert.kind] += 1
        alert_log.info("alert %s", alert.text)
        if self.writer is not None:
            line = self.points.line(alert)
            if line is not None:
                self.writer.write([line])
        for name in alert.targets:
            self.couriers[name].put(alert)
        if self.on_alert is not None:
            self.on_alert(alert)
        return True

    def _error(self, what: str) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:  # a bug: shown, never a flood
            log.exception("alerts: %s could not be handled (%d so far)", what, self.errors)

    # -- delivery ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver queued alerts to the webhooks until `close()` (run it as a task)."""
        if self._tasks:
            raise RuntimeError("AlertEngine.run() is already running")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.config.timeout)
        self._tasks = [
            asyncio.create_task(courier.run(self._client), name=f"alerts-{name}")
            for name, courier in self.couriers.items()
        ]
        try:
            await self._stop.wait()
        finally:
            await self._cancel()

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every queued alert to be delivered (or refused)."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, grace: float = 2.0) -> None:
        """Give queued alerts up to `grace` seconds, then stop delivery (undelivered: logged)."""
        if self._tasks:
            await self.drain(grace)
        self._stop.set()
        await self._cancel()
        if left := self.pending:
            log.warning("alerts: %d alerts not delivered at shutdown", left)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _cancel(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def pending(self) -> int:
        return sum(courier.pending for courier in self.couriers.values())

    def samples(self) -> list[Sample]:
        out = [
            Sample("alerts_total", "counter", "alerts raised", self.raised[kind], {"kind": kind})
            for kind in ("wallet", "liquidation", "near_liquidation")
        ]
        out.append(
            Sample("alert_duplicates_total", "counter", "events already alerted", self.duplicates)
        )
        for name, c in self.couriers.items():
            label = {"target": name}
            out += [
                Sample("alert_deliveries_total", "counter", "alerts delivered", c.sent, label),
                Sample(
                    "alert_dropped_total", "counter", "alerts dropped: queue full", c.dropped, label
                ),
                Sample(
                    "alert_rejected_total", "counter", "alerts refused (4xx)", c.rejected, label
                ),
                Sample(
                    "alert_failed_attempts_total",
                    "counter",
                    "webhook requests that failed",
                    c.failed_attempts,
                    label,
                ),
                Sample("alert_queue", "gauge", "alerts waiting for delivery", c.pending, label),
                Sample("alert_target_up", "gauge", "1 unless failing", int(not c.failing), label),
            ]
        return out
