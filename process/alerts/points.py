"""Alerts as `alerts` points (Grafana annotations read them back).

Tags `kind` (wallet, liquidation, near_liquidation) and `coin`; fields `event`, `rule` (the
names of the rules that matched, comma-separated), `address`, `side`, `size_usd`, `px`,
`liq_px`, `distance_pct`, `tid` (int) and `text` (the alert's one line); None values are left
out. Stamped at the event's millisecond, each alert in its own nanosecond slot of its series
(`TimestampAllocator`, keyed by the alert's event key), so two alerts of one millisecond are two
points. The definition: `db.schema.ALERTS`.
"""

from __future__ import annotations

from db.schema import ALERTS
from db.timestamps import TimestampAllocator
from process.alerts.alert import Alert

MEASUREMENT = ALERTS.name


class AlertPoints:
    def __init__(self, allocator: TimestampAllocator | None = None) -> None:
        self.allocator = allocator or TimestampAllocator()
        self.skipped = 0

    def line(self, alert: Alert) -> str | None:
        """The alert's point, or None (counted in `skipped`) if InfluxDB could not store it."""
        time_ns = self.allocator.allocate(
            (MEASUREMENT, alert.kind, alert.coin), alert.time_ms, alert.key
        )
        try:
            return ALERTS.line({"kind": alert.kind, "coin": alert.coin}, alert.fields(), time_ns)
        except (TypeError, ValueError):
            self.skipped += 1
            return None
