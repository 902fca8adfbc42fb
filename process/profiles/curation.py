"""Auto-curation: profiled traders who pass the thresholds join the watchlist (source "auto").

Off unless `profiles.watch_max` > 0. A profile qualifies when it is not a bot, has at least
`min_trades` round trips in the window, a win rate of at least `min_win_rate` and a profit
factor of at least `min_profit_factor` (no losing trip counts as infinite). A qualifying
address is added while fewer than `max_wallets` were added this way (first come: the cap is a
budget of priority polls, not a ranking); an address the curation added leaves the watchlist
when a later profile no longer qualifies. Addresses the user added are never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from process.profiles.figures import Profile
from process.watchlist import Watchlist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurationRules:
    max_wallets: int = 0
    min_trades: int = 20
    min_win_rate: float = 0.6
    min_profit_factor: float = 1.5

    def qualifies(self, profile: Profile) -> bool:
        factor = profile.profit_factor
        return (
            not profile.bot
            and profile.round_trips >= self.min_trades
            and profile.win_rate is not None
            and profile.win_rate >= self.min_win_rate
            and (factor is None or factor >= self.min_profit_factor)
        )


def why(profile: Profile) -> str:
    """The label an added address gets: the figures that qualified it."""
    factor = "inf" if profile.profit_factor is None else f"{profile.profit_factor:.2f}"
    return (
        f"auto: {profile.round_trips} trips, win {profile.win_rate or 0:.0%}, PF {factor}, "
        f"{profile.realized_pnl:+,.0f} USD"
    )


class AutoWatch:
    """`profiled(profile)` after every profile (`ProfilesJob.on_profile`)."""

    def __init__(self, watchlist: Watchlist, rules: CurationRules) -> None:
        self.watchlist = watchlist
        self.rules = rules
        self.added = 0
        self.removed = 0

    def profiled(self, profile: Profile) -> None:
        if self.rules.max_wallets <= 0:
            return
        address, source = profile.address, self.watchlist.source_of(profile.address)
        if not self.rules.qualifies(profile):
            if source == "auto" and self.watchlist.curate(address, None):
                self.removed += 1
                log.info("watchlist: %s no longer qualifies (removed)", address)
            return
        if source is None and self.watchlist.curated() >= self.rules.max_wallets:
            return  # the cap is reached: first come
        if source in (None, "auto") and self.watchlist.curate(address, why(profile)):
            self.added += source is None
            if source is None:
                log.info("watchlist: %s added (%s)", address, why(profile))
