"""Alerts that reach people: rules over position changes, liquidations and the position book,
delivered to the log, the `alerts` measurement and webhooks (JSON, Slack, Discord, Telegram).

- `rules`: the `alerts:` settings (`AlertsConfig`: rules, targets, delivery);
- `targets`: webhook formats and URL masking;
- `alert`: the `Alert` record; `match`: wallet and liquidation rules; `zone`: near-liquidation;
- `dedup`: one alert per event; `points`: the `alerts` measurement;
- `delivery`: per-target queues, retries and health; `engine`: `AlertEngine`, the entry API.
"""

from process.alerts.alert import Alert
from process.alerts.engine import AlertEngine
from process.alerts.rules import AlertsConfig, parse_alerts

__all__ = ["Alert", "AlertEngine", "AlertsConfig", "parse_alerts"]
