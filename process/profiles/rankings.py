"""`smart_money`: who is making money, ranked, written every run.

For each profiled address (the latest `wallet_profiles` of each; bots left out unless asked):

- pnl over a window = realized PnL net of fees of the round trips closed in the window (the
  profile's: the last 24 h, or the whole profile window, 7 d by default) + the unrealized PnL of
  the open positions now (the position book, at the latest marks). Deposits and withdrawals do
  not count: this is trading PnL, not equity change. A profile is as old as its refresh (6 h by
  default): `profiled_ms` says when it was computed.
- roe = pnl / account value now (left out while the account value is unknown or not positive).

The top `top` by pnl and by roe of each window are written as one point each (tags window, by,
rank). The latest profiles are read back from InfluxDB at start (`restore`), so a restart keeps
the rankings and the profiles' refresh schedule.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from db.schema import SMART_MONEY, WALLET_PROFILES
from db.timestamps import NS_PER_MS
from process.profiles.figures import DAY_MS, Profile
from process.storage_ports import PointSink
from utils.clock import now_ms
from utils.metrics import Sample

log = logging.getLogger(__name__)

RANKED_BY = ("pnl", "roe")


@dataclass(frozen=True, slots=True)
class Standing:
    """What a ranking needs of one profile."""

    address: str
    realized: Mapping[str, Decimal]  # window label -> realized PnL net of fees
    win_rate: float | None
    round_trips: int
    style: str
    bot: bool
    profiled_ms: int

    @classmethod
    def of(cls, profile: Profile, profiled_ms: int, window_label: str) -> Standing:
        return cls(
            profile.address,
            {"24h": profile.realized_pnl_24h, window_label: profile.realized_pnl},
            profile.win_rate,
            profile.round_trips,
            profile.style,
            profile.bot,
            profiled_ms,
        )


@dataclass(frozen=True, slots=True)
class Ranked:
    address: str
    pnl: Decimal
    realized: Decimal
    unrealized: Decimal
    roe: float | None
    account_value: Decimal | None
    standing: Standing


AccountNow = Callable[[str], tuple[Decimal, Decimal] | None]
"""address -> (account value, unrealized PnL) now, None when the account is unknown."""


def window_label(window_ms: int) -> str:
    """ "7d" for the default profile window; hours when not a whole number of days."""
    days, rest = divmod(window_ms, DAY_MS)
    return f"{days}d" if not rest else f"{window_ms / 3_600_000:g}h"


class SmartMoney:
    def __init__(
        self,
        writer: PointSink,
        account_now: AccountNow,
        *,
        window_ms: int = 7 * DAY_MS,
        top: int = 50,
        include_bots: bool = False,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.writer = writer
        self.account_now = account_now
        self.window = window_label(window_ms)
        self.window_ms = window_ms
        self.top = top
        self.include_bots = include_bots
        self.clock = clock
        self.standings: dict[str, Standing] = {}
        self.runs = 0
        self.written = 0

    @property
    def windows(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("24h", self.window)))

    def profiled(self, profile: Profile) -> None:
        """A profile just computed (`ProfilesJob.on_profile`)."""
        self.standings[profile.address] = Standing.of(profile, self.clock(), self.window)

    def restore(self, rows: Iterable[Mapping[str, Any]]) -> list[Standing]:
        """The latest profile of each address from `wallet_profiles` rows (`restore_query`),
        oldest first; returns the standings restored."""
        latest: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            address = row.get("address")
            if not address or row.get("realized_pnl") is None:
                continue
            if address not in latest or row["time"] >= latest[address]["time"]:
                latest[address] = row
        for address, row in latest.items():
            if address in self.standings:  # profiled since the start: newer
                continue
            realized = {self.window: Decimal(repr(row["realized_pnl"]))}
            realized["24h"] = Decimal(repr(row.get("realized_pnl_24h") or 0.0))
            self.standings[address] = Standing(
                address,
                realized,
                row.get("win_rate"),
                int(row.get("round_trips") or 0),
                row.get("style") or "unknown",
                bool(row.get("bot")),
                row["time"] // NS_PER_MS,
            )
        return [self.standings[a] for a in latest if a in self.standings]

    def restore_query(self) -> tuple[str, dict[str, Any]]:
        """InfluxQL and parameters reading every profile of the last window back."""
        from db.queries import rfc3339_ns  # db.queries imports pandas: only when restoring

        columns = ("address", "realized_pnl", "realized_pnl_24h", "win_rate", "round_trips")
        select = ", ".join(f'"{c}"' for c in (*columns, "bot", "style"))
        start = rfc3339_ns((self.clock() - self.window_ms) * NS_PER_MS)
        query = f'SELECT {select} FROM "{WALLET_PROFILES.name}" WHERE time >= $start'
        return query, {"start": start}

    def ranking(self) -> dict[tuple[str, str], list[Ranked]]:
        """(window, by) -> the top `top`, best first."""
        accounts: dict[str, tuple[Decimal, Decimal] | None] = {}
        out: dict[tuple[str, str], list[Ranked]] = {}
        for window in self.windows:
            rows = []
            for standing in self.standings.values():
                if standing.bot and not self.include_bots:
                    continue
                if standing.address not in accounts:
                    accounts[standing.address] = self.account_now(standing.address)
                now = accounts[standing.address]
                value, unrealized = (None, Decimal(0)) if now is None else now
                realized = standing.realized.get(window, Decimal(0))
                pnl = realized + unrealized
                roe = float(pnl / value) if value is not None and value > 0 else None
                rows.append(
                    Ranked(standing.address, pnl, realized, unrealized, roe, value, standing)
                )
            out[(window, "pnl")] = heapq.nlargest(self.top, rows, key=lambda r: r.pnl)
            with_roe = [r for r in rows if r.roe is not None]
            out[(window, "roe")] = heapq.nlargest(self.top, with_roe, key=lambda r: r.roe or 0.0)
        return out

    async def __call__(self) -> None:
        """Rank and write (one point per rank; the time is the run's)."""
        time_ns = self.clock() * NS_PER_MS
        lines = []
        for (window, by), rows in self.ranking().items():
            for rank, row in enumerate(rows, 1):
                tags = {"window": window, "by": by, "rank": str(rank)}
                fields = {
                    "address": row.address,
                    "pnl": float(row.pnl),
                    "realized_pnl": float(row.realized),
                    "unrealized_pnl": float(row.unrealized),
                    "roe": row.roe,
                    "account_value": _float(row.account_value),
                    "win_rate": row.standing.win_rate,
                    "round_trips": row.standing.round_trips,
                    "style": row.standing.style,
                    "profiled_ms": row.standing.profiled_ms,
                }
                lines.append(SMART_MONEY.line(tags, fields, time_ns))
        self.runs += 1
        self.written += len(lines)
        if lines:
            self.writer.write(lines)

    def samples(self) -> list[Sample]:
        return [
            Sample("smart_money_ranked", "gauge", "profiled addresses ranked", len(self.standings)),
            Sample("smart_money_points_total", "counter", "smart_money points", self.written),
        ]


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
