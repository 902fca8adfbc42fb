"""Wallet profiles: round trips from an account's fills, figures over them, and the job that
refreshes them on the profiles lane and writes `wallet_profiles`.

- `round_trips.py`: FIFO matching per coin, flat to flat (pure)
- `figures.py`: win rate, profit factor, holds, drawdown, frequency (pure)
- `style.py`: style and bot flag thresholds (pure)
- `paging.py`: an account's fills over a window, paged by time
- `lines.py`: the `wallet_profiles` point
- `job.py`: `ProfilesJob`, called periodically by the scheduler
"""

from process.profiles.figures import Profile, max_drawdown, profile_of
from process.profiles.job import ProfilesJob
from process.profiles.lines import FIELDS, profile_line
from process.profiles.paging import FillSource, FillWindow, fetch_window
from process.profiles.round_trips import Matched, RoundTrip, match_round_trips
from process.profiles.style import STYLES, Style, Thresholds

__all__ = [
    "FIELDS",
    "STYLES",
    "FillSource",
    "FillWindow",
    "Matched",
    "Profile",
    "ProfilesJob",
    "RoundTrip",
    "Style",
    "Thresholds",
    "fetch_window",
    "match_round_trips",
    "max_drawdown",
    "profile_line",
    "profile_of",
]
