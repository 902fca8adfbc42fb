"""Near-liquidation rules: a periodic check of the position book, alerting once per entry into
the zone.

A position is in a rule's zone when its notional at the mark is at least `min_usd` and the mark
is within `within_pct` % of the liquidation price the book computes (`PositionBook.
liquidation_prices`; at or past it counts as within). It stays in the zone, without a new
alert, until the mark is farther than `rearm_at` % away, it falls under `min_usd`, or it closes
or flips (a new side is a new position). State is per (rule, address, coin, side); a position
in the zone of several rules at once makes one alert.

Cost: one pass over the book's accounts per check (only the rules' addresses when every rule
names some), the liquidation prices computed only for accounts holding a position large enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

from process.alerts.alert import Alert, holding, price, tag, usd
from process.alerts.rules import BaseRule, NearLiquidationRule
from process.positions.book import PositionBook

ZoneKey = tuple[str, str, str, str]  # rule name, address, coin, side


class NearLiquidationWatch:
    def __init__(
        self,
        rules: Sequence[NearLiquidationRule],
        targets: Callable[[Sequence[BaseRule]], tuple[str, ...]],
    ) -> None:
        self.rules = tuple(rules)
        self._targets = targets
        self._inside: set[ZoneKey] = set()
        self._min_usd = min((rule.min_usd for rule in self.rules), default=0.0)
        named = [set(rule.addresses) for rule in self.rules]
        self._addresses = None if not all(named) else frozenset().union(*named)

    @property
    def inside(self) -> int:
        """Positions (per rule) in the zone at the last check."""
        return len(self._inside)

    def check(self, book: PositionBook, now_ms: int) -> list[Alert]:
        """The positions that entered a zone since the last check, as alerts at `now_ms`."""
        if not self.rules:
            return []
        accounts, marks = book.accounts, book.marks
        addresses: Iterable[str] = accounts if self._addresses is None else self._addresses
        inside: set[ZoneKey] = set()
        alerts: list[Alert] = []
        for address in addresses:
            account = accounts.get(address)
            if account is None or not account.positions:
                continue
            sized: list[tuple[str, Decimal, Decimal, float]] = []
            for coin, position in account.positions.items():
                mark = marks.get(coin)
                if mark is not None and mark > 0 and position.units:
                    szi = position.szi
                    size = float(abs(szi) * mark)
                    if size >= self._min_usd:
                        sized.append((coin, szi, mark, size))
            if not sized:
                continue
            liquidation_prices = book.liquidation_prices(account)
            for coin, szi, mark, size in sized:
                liq_px = liquidation_prices.get(coin)
                if liq_px is None or liq_px <= 0:
                    continue
                distance = float((mark - liq_px if szi > 0 else liq_px - mark) / mark * 100)
                side = "long" if szi > 0 else "short"
                entered: list[NearLiquidationRule] = []
                for rule in self.rules:
                    if size < rule.min_usd or not rule.covers(coin):
                        continue
                    if rule.addresses and address not in rule.addresses:
                        continue
                    key = (rule.name, address, coin, side)
                    if distance <= rule.within_pct:
                        inside.add(key)
                        if key not in self._inside:
                            entered.append(rule)
                    elif distance <= rule.rearm_at and key in self._inside:
                        inside.add(key)
                if entered:
                    alerts.append(
                        self._alert(
                            entered, address, coin, szi, mark, liq_px, size, distance, now_ms
                        )
                    )
        self._inside = inside
        return alerts

    def _alert(
        self,
        rules: list[NearLiquidationRule],
        address: str,
        coin: str,
        szi: Decimal,
        mark: Decimal,
        liq_px: Decimal,
        size: float,
        distance: float,
        now_ms: int,
    ) -> Alert:
        names = tuple(rule.name for rule in rules)
        side = "long" if szi > 0 else "short"
        text = (
            f"{tag(names)} near liquidation {address} {coin}: {holding(szi)} ({usd(size)}), "
            f"mark {price(mark)} is {distance:.2f} % from liquidation at {price(liq_px)}"
        )
        return Alert(
            key=("near_liquidation", address, coin, side, now_ms),
            kind="near_liquidation",
            event="near",
            coin=coin,
            time_ms=now_ms,
            text=text,
            rules=names,
            targets=self._targets(rules),
            address=address,
            side=side,
            size_usd=size,
            px=float(mark),
            liq_px=float(liq_px),
            distance_pct=distance,
        )
