"""`Alert`: one event worth telling people about, with its one-line text and its fields.

An alert is built once per event (`key` identifies the event; see `dedup`) and carries the
rules that matched it and the union of their targets. The same figures go to the log line, the
`alerts` point and the webhook payloads, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import blake2b
from typing import Any, Literal

AlertKind = Literal["wallet", "liquidation", "near_liquidation"]
Key = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Alert:
    """`event`: the change kind (wallet), the method (liquidation) or `near` (near_liquidation).
    `side` is the position's (a wallet change: after it, or before an exit)."""

    key: Key
    kind: AlertKind
    event: str
    coin: str
    time_ms: int
    text: str
    rules: tuple[str, ...]
    targets: tuple[str, ...]
    address: str | None = None
    side: str | None = None
    size_usd: float | None = None
    px: float | None = None
    liq_px: float | None = None
    distance_pct: float | None = None
    tid: int | None = None

    @property
    def id(self) -> str:
        """A stable id of the event (the same in every run): receivers may drop duplicates."""
        return blake2b(repr(self.key).encode(), digest_size=8).hexdigest()

    def fields(self) -> dict[str, Any]:
        """The alert's figures by name, None where not known."""
        return {
            "event": self.event,
            "rule": ",".join(self.rules),
            "address": self.address,
            "side": self.side,
            "size_usd": self.size_usd,
            "px": self.px,
            "liq_px": self.liq_px,
            "distance_pct": self.distance_pct,
            "tid": self.tid,
            "text": self.text,
        }

    def payload(self) -> dict[str, Any]:
        """The generic webhook's JSON object."""
        time = datetime.fromtimestamp(self.time_ms / 1000, UTC).isoformat(timespec="milliseconds")
        return {
            "id": self.id,
            "kind": self.kind,
            "coin": self.coin,
            "time_ms": self.time_ms,
            "time": time.replace("+00:00", "Z"),
            "rules": list(self.rules),
            **{k: v for k, v in self.fields().items() if k != "rule"},
        }


def side_of(szi: Decimal) -> str | None:
    return "long" if szi > 0 else "short" if szi < 0 else None


def number(value: Decimal) -> str:
    """A decimal as plain text: `0.5`, `85000`, never `8.5E+4`."""
    return format(value.normalize(), "f") if value.is_finite() else str(value)


def price(value: Decimal) -> str:
    """A price to 6 significant digits, as plain text: `9230.77`, `85000`, `0.000012345`."""
    if not value.is_finite() or not value:
        return number(value)
    return number(value.quantize(Decimal(1).scaleb(value.adjusted() - 5)))


def usd(value: float) -> str:
    return f"{value:,.0f} USD"


def holding(szi: Decimal) -> str:
    """`long 2`, `short 0.5` or `flat`."""
    side = side_of(szi)
    return f"{side} {number(abs(szi))}" if side else "flat"


def tag(rules: tuple[str, ...]) -> str:
    return f"[{', '.join(rules)}]"
