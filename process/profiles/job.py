"""Job: refresh wallet profiles, the most important addresses first, on the profiles lane.

Each run walks `priority()` in order (the caller's: e.g. watched addresses, then by account
value), skips addresses refreshed less than `refresh_ms` ago (or failed less than `retry_ms`
ago), and for at most `per_run` of them fetches the fills of the last `window_ms` (paging.py),
computes the profile (figures.py) and writes one `wallet_profiles` point. It starts no further
address once the run's pages cost `max_weight_per_run` (an address already begun is finished).

The job spends only what its source's lane grants: give it `HyperliquidInfo` on
`budget.lane(Priority.PROFILES)`, which is served after gap backfill, market data and HLP and
only while the window is under 80 % of the budget, so profiles never delay market data. A
failure (`HyperfluxError`) ends the run and is raised for the runner to log; that address is
tried again after `retry_ms`, the others go on next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from db.timestamps import TimestampAllocator
from process.profiles.figures import DAY_MS, Profile, profile_of
from process.profiles.lines import profile_line
from process.profiles.paging import PAGE_FILLS, REACHABLE_FILLS, FillSource, fetch_window
from process.profiles.style import Thresholds
from process.storage_ports import PointSink
from utils.clock import now_ms
from utils.errors import HyperfluxError
from utils.metrics import Sample

log = logging.getLogger(__name__)
HOUR_MS = 3_600_000


@dataclass
class ProfilesJob:
    """`await job()` once per run (see the module docstring); `is_bot(address)` answers from
    the latest profile of each address."""

    source: FillSource
    writer: PointSink
    priority: Callable[[], Iterable[str]]
    window_ms: int = 7 * DAY_MS
    refresh_ms: int = 6 * HOUR_MS
    retry_ms: int = HOUR_MS // 6
    per_run: int = 5
    max_weight_per_run: int = 240
    max_pages: int = REACHABLE_FILLS // PAGE_FILLS
    thresholds: Thresholds = field(default_factory=Thresholds)
    allocator: TimestampAllocator = field(default_factory=TimestampAllocator)
    clock: Callable[[], int] = now_ms
    on_profile: Callable[[Profile], None] | None = None
    written: int = 0
    fills_fetched: int = 0
    pages: int = 0
    weight: int = 0
    failures: int = 0
    _due: dict[str, int] = field(default_factory=dict)  # address -> when it may run again
    _bots: set[str] = field(default_factory=set)

    def is_bot(self, address: str) -> bool:
        return address.lower() in self._bots

    def resume(self, address: str, profiled_ms: int, bot: bool) -> None:
        """A profile written before a restart: refreshed `refresh_ms` after it, not at once."""
        self._due[address] = profiled_ms + self.refresh_ms
        if bot:
            self._bots.add(address)

    async def __call__(self) -> None:
        now = self.clock()
        self._due = {a: due for a, due in self._due.items() if due > now}
        done = spent = 0
        for address in self.priority():
            if done >= self.per_run or spent >= self.max_weight_per_run:
                break
            address = address.lower()
            if address in self._due:
                continue
            done += 1
            try:
                spent += await self.refresh(address)
            except HyperfluxError as exc:
                self.failures += 1
                self._due[address] = self.clock() + self.retry_ms
                raise HyperfluxError(f"wallet profile of {address} not refreshed: {exc}") from exc

    async def refresh(self, address: str) -> int:
        """Fetch, compute and write the profile of one address now; returns the weight its
        pages cost."""
        end = self.clock()
        window = await fetch_window(
            self.source, address, end - self.window_ms, end, max_pages=self.max_pages
        )
        profile = profile_of(
            address,
            window.fills,
            window.start_ms,
            window.end_ms,
            self.thresholds,
            truncated=window.truncated,
        )
        self.writer.write([profile_line(profile, end, self.allocator)])
        self._due[address] = end + self.refresh_ms
        if profile.bot:
            self._bots.add(address)
        else:
            self._bots.discard(address)
        self.written += 1
        self.fills_fetched += len(window.fills)
        self.pages += window.pages
        self.weight += window.weight
        if self.on_profile is not None:
            self.on_profile(profile)
        return window.weight

    def samples(self) -> list[Sample]:
        return [
            Sample("wallet_profiles_written_total", "counter", "profiles written", self.written),
            Sample(
                "wallet_profile_fills_total",
                "counter",
                "fills fetched for profiles",
                self.fills_fetched,
            ),
            Sample(
                "wallet_profile_weight_total",
                "counter",
                "REST weight of profile pages",
                self.weight,
            ),
            Sample(
                "wallet_profile_failures_total",
                "counter",
                "profiles not refreshed (errors)",
                self.failures,
            ),
            Sample(
                "wallet_profile_bots", "gauge", "profiled addresses flagged bot", len(self._bots)
            ),
        ]
