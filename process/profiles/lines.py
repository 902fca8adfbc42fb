"""`wallet_profiles` points: one per address and refresh, tagged by style only (a bounded set);
the address is a field."""

from __future__ import annotations

from db.line_protocol import FieldValue
from db.schema import WALLET_PROFILES
from db.timestamps import TimestampAllocator
from process.profiles.figures import Profile

FIELDS = WALLET_PROFILES.fields


def profile_fields(profile: Profile) -> dict[str, FieldValue | None]:
    """The point's fields (None: left out, e.g. no profit factor without a losing trip)."""
    return {
        "address": profile.address,
        "bot": profile.bot,
        "fills": profile.fills,
        "unmatched_fills": profile.unmatched_fills,
        "round_trips": profile.round_trips,
        "wins": profile.wins,
        "win_rate": profile.win_rate,
        "profit_factor": profile.profit_factor,
        "realized_pnl": float(profile.realized_pnl),
        "realized_pnl_24h": float(profile.realized_pnl_24h),
        "fees": float(profile.fees),
        "gross_profit": float(profile.gross_profit),
        "gross_loss": float(profile.gross_loss),
        "max_drawdown": float(profile.max_drawdown),
        "avg_hold_s": profile.avg_hold_s,
        "median_hold_s": profile.median_hold_s,
        "avg_pnl_pct": profile.avg_pnl_pct,
        "trades_per_day": float(profile.trades_per_day),
        "fills_per_day": float(profile.fills_per_day),
        "window_start_ms": profile.start_ms,
        "window_end_ms": profile.end_ms,
        "truncated": profile.truncated,
    }


def profile_line(profile: Profile, time_ms: int, allocator: TimestampAllocator) -> str:
    """The point of `profile` computed at `time_ms`, in a nanosecond slot of its own (profiles
    of one style computed in one millisecond must not overwrite each other)."""
    name = WALLET_PROFILES.name
    time_ns = allocator.allocate((name, profile.style), time_ms, profile.address)
    return WALLET_PROFILES.line({"style": profile.style}, profile_fields(profile), time_ns)
