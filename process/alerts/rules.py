"""Alert rules and the `alerts:` section of the settings (`AlertsConfig`).

Three kinds of rule, each optionally limited to `coins` and naming its delivery `targets` (omitted:
every target; `[]`: the log and InfluxDB only):

- `wallet`: a change of a watched address's position (its `addresses`, and with `watchlist:
  true` every address on the watchlist; `changes`: any of entry, exit, flip,
  increase, decrease; default all), optionally only positions of at least `min_usd` (the larger
  of the sizes before and after, at the change's price) or changes of at least `min_change_usd`;
- `liquidation`: a liquidation of at least `min_usd` notional;
- `near_liquidation`: a position of at least `min_usd` (at the mark) whose mark is within
  `within_pct` % of its liquidation price (optionally only `addresses`). It alerts once per entry
  into that zone: again only after the mark went farther than `rearm_pct` (default `within_pct`)
  from it, or the position closed or flipped.

In YAML, `alerts:` holds `rules` (a list), `targets` (name -> target) and the delivery settings;
in the environment, HYPERFLUX_ALERTS holds the same as one JSON object.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from config.sections import parse_section
from config.values import parse_addresses, parse_coins
from process.alerts.targets import Target, check_name
from process.positions.book import ChangeKind

CHANGE_KINDS: tuple[ChangeKind, ...] = ("entry", "exit", "flip", "increase", "decrease")

Name = Annotated[str, BeforeValidator(check_name)]
Coins = Annotated[tuple[str, ...], BeforeValidator(parse_coins)]
Addresses = Annotated[tuple[str, ...], BeforeValidator(parse_addresses)]
Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _changes(value: object) -> object:
    """ "any" or "all" for every kind; a comma string like a list."""
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple) and any(item in ("any", "all") for item in value):
        return CHANGE_KINDS
    return value


class BaseRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name = ""
    """Shown in alerts; default `<kind>-<position in the list>`."""
    coins: Coins = ()
    """Only these coins; empty = every coin."""
    targets: tuple[Name, ...] | None = None
    """Target names; None = every target, () = the log and InfluxDB only."""

    def covers(self, coin: str) -> bool:
        return not self.coins or coin in self.coins


class WalletRule(BaseRule):
    kind: Literal["wallet"]
    addresses: Addresses = ()
    watchlist: bool = False
    """Also every address on the watchlist (`python main.py watch add`, the `watchlist`
    setting), as it is now."""
    changes: Annotated[tuple[ChangeKind, ...], BeforeValidator(_changes), Field(min_length=1)] = (
        CHANGE_KINDS
    )
    min_usd: Usd = 0.0
    min_change_usd: Usd = 0.0

    @model_validator(mode="after")
    def _watches_someone(self) -> WalletRule:
        if not self.addresses and not self.watchlist:
            raise ValueError("a wallet rule needs addresses or watchlist: true")
        return self


class LiquidationRule(BaseRule):
    kind: Literal["liquidation"]
    min_usd: Usd = 0.0


class NearLiquidationRule(BaseRule):
    kind: Literal["near_liquidation"]
    within_pct: Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)]
    rearm_pct: Annotated[float | None, Field(gt=0, lt=100, allow_inf_nan=False)] = None
    min_usd: Usd = 0.0
    addresses: Addresses = ()
    """Only these addresses; empty = every position in the book."""

    @property
    def rearm_at(self) -> float:
        """Distance (%) beyond which a position has left the zone."""
        return max(self.within_pct, self.rearm_pct or 0.0)


Rule = Annotated[WalletRule | LiquidationRule | NearLiquidationRule, Field(discriminator="kind")]


class AlertsConfig(BaseModel):
    """The `alerts:` section: rules, named targets, and how delivery behaves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[Rule, ...] = ()
    targets: dict[Name, Target] = Field(default_factory=dict)
    queue_size: Annotated[int, Field(gt=0)] = 1000
    """Alerts waiting per target; when full, the oldest is dropped (and counted)."""
    timeout: Seconds = 10.0
    """Seconds for one webhook request."""
    retry_base: Seconds = 1.0
    retry_cap: Seconds = 60.0
    """Retries wait from `retry_base` doubling up to `retry_cap` seconds, jittered."""
    near_liquidation_interval: Seconds = 60.0
    """Seconds between two checks of the position book (the caller schedules them)."""

    @model_validator(mode="after")
    def _names(self) -> AlertsConfig:
        named: list[Any] = []
        for index, rule in enumerate(self.rules, start=1):
            if not rule.name:
                rule = rule.model_copy(update={"name": f"{rule.kind}-{index}"})
            named.append(rule)
            for target in rule.targets or ():
                if target not in self.targets:
                    raise ValueError(f"rule {rule.name!r} names an unknown target {target!r}")
        names = [rule.name for rule in named]
        if duplicate := next((n for n in names if names.count(n) > 1), None):
            raise ValueError(f"two rules are named {duplicate!r}")
        object.__setattr__(self, "rules", tuple(named))  # frozen: set once, here
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    def targets_of(self, rule: BaseRule) -> tuple[str, ...]:
        return tuple(self.targets) if rule.targets is None else rule.targets


def parse_alerts(value: object) -> object:
    """The `alerts` setting (see `config.sections.parse_section`)."""
    return parse_section(value, AlertsConfig, "alerts", "rules, targets and delivery settings")
