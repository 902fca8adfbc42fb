"""Wallet and liquidation rules applied to single events: an event -> at most one `Alert`.

Built for the trade path: a position change of an unwatched address costs one dict look-up.
When several rules match one event, they make one alert, sent to the union of their targets.
"""

from __future__ import annotations

from collections.abc import Sequence

from process.alerts.alert import Alert, holding, number, price, side_of, tag, usd
from process.alerts.rules import AlertsConfig, BaseRule, LiquidationRule, WalletRule
from process.liquidations import LiquidationEvent
from process.positions.book import PositionChange


class Matcher:
    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self._wallet: dict[str, list[WalletRule]] = {}
        self._liquidation: list[LiquidationRule] = []
        self.set_watchlist(frozenset())
        self._liquidation = [r for r in config.rules if isinstance(r, LiquidationRule)]

    def set_watchlist(self, addresses: frozenset[str]) -> None:
        """The watchlist now: the wallet rules with `watchlist: true` apply to these."""
        wallet: dict[str, list[WalletRule]] = {}
        for rule in self.config.rules:
            if isinstance(rule, WalletRule):
                for address in dict.fromkeys(
                    (*rule.addresses, *(addresses if rule.watchlist else ()))
                ):
                    wallet.setdefault(address, []).append(rule)
        self._wallet = wallet

    @property
    def watched(self) -> frozenset[str]:
        """Addresses some wallet rule watches (worth polling with priority)."""
        return frozenset(self._wallet)

    def targets(self, rules: Sequence[BaseRule]) -> tuple[str, ...]:
        """The targets of `rules`, each once, in the order of the config."""
        wanted = {name for rule in rules for name in self.config.targets_of(rule)}
        return tuple(name for name in self.config.targets if name in wanted)

    def position_changed(self, change: PositionChange) -> Alert | None:
        rules = self._wallet.get(change.address)
        if rules is None:
            return None
        matched = [rule for rule in rules if _wallet_matches(rule, change)]
        if not matched:
            return None
        before, after, px = change.szi_before, change.szi_after, change.px
        size = max(abs(before), abs(after)) * px if px is not None else None
        names = tuple(rule.name for rule in matched)
        text = f"{tag(names)} wallet {change.address} {change.coin} {change.kind}: "
        text += f"{holding(before)} -> {holding(after)}"
        if px is not None and size is not None:
            text += f" at {price(px)} ({usd(float(size))})"
        if change.source == "poll":
            text += ", found by a poll"
        event_id = change.tid if change.source == "trade" and change.tid is not None else None
        return Alert(
            key=(
                "wallet",
                change.address,
                change.coin,
                change.source,
                change.time_ms if event_id is None else event_id,
                change.kind,
            ),
            kind="wallet",
            event=change.kind,
            coin=change.coin,
            time_ms=change.time_ms,
            text=text,
            rules=names,
            targets=self.targets(matched),
            address=change.address,
            side=side_of(after) or side_of(before),
            size_usd=None if size is None else float(size),
            px=None if px is None else float(px),
            tid=change.tid,
        )

    def liquidation(self, event: LiquidationEvent) -> Alert | None:
        notional = event.notional
        matched = [
            rule
            for rule in self._liquidation
            if rule.covers(event.coin) and float(notional) >= rule.min_usd
        ]
        if not matched:
            return None
        names = tuple(rule.name for rule in matched)
        text = (
            f"{tag(names)} liquidation {event.coin}: {event.side} {number(event.sz)} at "
            f"{price(event.px)} ({usd(float(notional))}), {event.method}"
        )
        if event.user:
            text += f", {event.user}"
        return Alert(
            key=("liquidation", event.coin, event.time_ms, event.tid),
            kind="liquidation",
            event=event.method,
            coin=event.coin,
            time_ms=event.time_ms,
            text=text,
            rules=names,
            targets=self.targets(matched),
            address=event.user,
            side=event.side,
            size_usd=float(notional),
            px=float(event.px),
            tid=event.tid,
        )


def _wallet_matches(rule: WalletRule, change: PositionChange) -> bool:
    if change.kind not in rule.changes or not rule.covers(change.coin):
        return False
    if not (rule.min_usd or rule.min_change_usd):
        return True
    if change.px is None:  # a poll's change without an entry price: its size is unknown
        return False
    before, after, px = change.szi_before, change.szi_after, change.px
    if float(max(abs(before), abs(after)) * px) < rule.min_usd:
        return False
    return float(abs(after - before) * px) >= rule.min_change_usd
