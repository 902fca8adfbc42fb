"""Backfill candles and funding history from Hyperliquid REST into InfluxDB.

The window is the last `days` ending at `now_ms`:
- candles: closed candles only (the open one would be stored half-built); the start is aligned
  down to the interval, so 2 days of `1h` are exactly 48 candles. The exchange keeps only the
  newest 5000 candles per coin and interval (`1m` reaches back ~3.5 days), so an older start is
  moved up to the oldest kept candle and the report says so. Requests cover at most 5000 candles
  each and the next one starts after the newest candle received.
- funding: settlements in [now - days, now]; pages of up to 500 rows, each starting 1 ms after
  the last settlement received; a page shorter than 500 rows is the last one.

Points are stamped with the exchange's own times (see process/history.py), so a re-run writes
the same points again and duplicates nothing. The weight budget lives in the injected source
(HyperliquidInfo shares the client's budget); records it rejects are quarantined there. A coin
that fails is logged and reported, and the backfill goes on with the next one. Arguments are
checked before anything is fetched or written (`check_interval` also on its own, so a caller can
check `--interval` before it connects anywhere): a bad one raises `BackfillArgumentError`, a
`HyperfluxError` whose message is the one line to show.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from process.history import INTERVAL_MS, candle_lines, funding_lines
from process.storage_ports import FlushablePointSink as PointSink
from utils.errors import HyperfluxError
from utils.progress import ProgressBar
from validate import Candle, FundingRate

log = logging.getLogger(__name__)

DATASETS = ("candles", "funding")
DEFAULT_INTERVAL = "1h"
MAX_CANDLES = 5000
"""The exchange keeps the newest 5000 candles per coin and interval (API.md 2.10)."""
FUNDING_PAGE = 500
"""fundingHistory answers at most 500 rows per request (API.md 2.9)."""
DAY_MS = 86_400_000


class BackfillArgumentError(HyperfluxError, ValueError):
    """A backfill argument that is not allowed; `str(err)` names it and what is allowed."""


def check_interval(interval: str) -> str:
    """`interval` if it is a candle interval, else BackfillArgumentError naming the choices."""
    if interval not in INTERVAL_MS:
        choices = ", ".join(INTERVAL_MS)
        raise BackfillArgumentError(
            f"unknown candle interval {interval!r} (--interval); choose from {choices}"
        )
    return interval


class HistorySource(Protocol):
    """What the backfill fetches from; `fetch.info.HyperliquidInfo` is one."""

    async def candles(
        self, coin: str, interval: str, start_ms: int, end_ms: int
    ) -> list[Candle]: ...

    async def funding_history(
        self, coin: str, start_ms: int, end_ms: int | None = None
    ) -> list[FundingRate]: ...


@dataclass
class BackfillResult:
    """One dataset of one coin: points written, requests sent, and what went wrong if anything."""

    dataset: str
    coin: str
    points: int = 0
    requests: int = 0
    first_ms: int | None = None
    """Time of the oldest point written (candle open time, settlement time)."""
    last_ms: int | None = None
    error: str | None = None
    note: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return "ok" if self.points else "empty"


@dataclass
class BackfillReport:
    start_ms: int
    """Start of the requested window (now - days), before any alignment or clamping."""
    end_ms: int
    interval: str
    results: list[BackfillResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """dataset -> coin -> points written."""
        counts: dict[str, dict[str, int]] = {}
        for r in self.results:
            counts.setdefault(r.dataset, {})[r.coin] = r.points
        return counts

    @property
    def points(self) -> int:
        return sum(r.points for r in self.results)

    @property
    def failed(self) -> list[BackfillResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def empty(self) -> list[BackfillResult]:
        """Datasets that answered without error but held nothing (e.g. an unknown coin)."""
        return [r for r in self.results if r.status == "empty"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def result(self, dataset: str, coin: str) -> BackfillResult:
        for r in self.results:
            if r.dataset == dataset and r.coin == coin:
                return r
        raise KeyError((dataset, coin))

    def summary(self) -> str:
        """One line per dataset and coin, then a total."""
        lines = []
        for r in self.results:
            text = f"{r.dataset:<8} {r.coin:<10} {r.status:<6} {r.points:>7,} points"
            if r.error or r.note:
                text += f"  ({r.error or r.note})"
            lines.append(text)
        failed = f", {len(self.failed)} failed" if self.failed else ""
        lines.append(f"total {self.points:,} points{failed}")
        return "\n".join(lines)


async def backfill(
    source: HistorySource,
    writer: PointSink,
    coins: Iterable[str],
    days: float,
    datasets: Collection[str] = DATASETS,
    *,
    interval: str = DEFAULT_INTERVAL,
    now_ms: int | None = None,
    progress: TextIO | None = None,
    candle_page: int = MAX_CANDLES,
) -> BackfillReport:
    """Fetch the last `days` of `datasets` for each coin and write them; never raises per coin.

    `interval` is the candle interval (default 1h: 7 days = 168 candles, the 5000-candle cap
    reaches ~208 days back). `now_ms` ends the window (default: this machine's clock).
    `progress` is a stream to draw one bar per dataset and coin on (e.g. sys.stderr).
    `candle_page` caps the candles asked for per request (at most 5000). Raises
    BackfillArgumentError (a HyperfluxError and a ValueError) for a bad argument, before any
    request.
    """
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise BackfillArgumentError(
            f"unknown dataset {', '.join(unknown)}; choose from {', '.join(DATASETS)}"
        )
    check_interval(interval)
    if not days > 0:
        raise BackfillArgumentError(f"days must be > 0, got {days!r}")
    if not 1 <= candle_page <= MAX_CANDLES:
        raise BackfillArgumentError(f"candle_page must be 1 to {MAX_CANDLES}, got {candle_page}")

    end_ms = int(time.time() * 1000) if now_ms is None else now_ms
    report = BackfillReport(end_ms - round(days * DAY_MS), end_ms, interval)
    unique_coins = list(dict.fromkeys(coins))
    label_width = len("candles ") + max(map(len, unique_coins), default=0)  # bars line up
    for dataset in (d for d in DATASETS if d in datasets):
        for coin in unique_coins:
            result = BackfillResult(dataset, coin)
            report.results.append(result)
            label = f"{dataset} {coin}".ljust(label_width)
            bar = ProgressBar(label, stream=progress) if progress else None
            try:
                if dataset == "candles":
                    await _candles(source, writer, result, interval, report, candle_page, bar)
                else:
                    await _funding(source, writer, result, report, bar)
                await writer.flush()
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
                log.warning("backfill %s %s failed: %s", dataset, coin, result.error)
            if bar is not None:
                bar.close(result.error or result.note or "")
    return report


async def _candles(
    source: HistorySource,
    writer: PointSink,
    result: BackfillResult,
    interval: str,
    report: BackfillReport,
    page: int,
    bar: ProgressBar | None,
) -> None:
    step = INTERVAL_MS[interval]
    now = report.end_ms
    start = report.start_ms - report.start_ms % step
    oldest_kept = now - now % step - (MAX_CANDLES - 1) * step
    if start < oldest_kept:
        start = oldest_kept
        result.note = (
            f"{interval} candles reach back only {MAX_CANDLES} candles "
            f"({MAX_CANDLES * step / DAY_MS:g} days)"
        )
        log.info("backfill candles %s: %s", result.coin, result.note)
    cursor, newest = start, -1
    while cursor + step <= now:  # a candle opening at `cursor` can be closed by `now`
        window_end = min(cursor + page * step - 1, now)
        candles = await source.candles(result.coin, interval, cursor, window_end)
        result.requests += 1
        fresh = sorted(
            (c for c in candles if newest < c.open_ms and c.close_ms < now),
            key=lambda c: c.open_ms,
        )
        if fresh:
            fresh = list({c.open_ms: c for c in fresh}.values())
            newest = fresh[-1].open_ms
            _record(writer, result, candle_lines(fresh), fresh[0].open_ms, fresh[-1].open_ms)
            cursor = fresh[-1].close_ms + 1  # exact for 1M too, whose months vary in length
        else:
            cursor = window_end + 1
        if bar is not None:
            done = cursor + step > now
            bar.update(1.0 if done else (cursor - start) / (now - start), result.points)


async def _funding(
    source: HistorySource,
    writer: PointSink,
    result: BackfillResult,
    report: BackfillReport,
    bar: ProgressBar | None,
) -> None:
    start, end = report.start_ms, report.end_ms
    cursor = start
    while cursor <= end:
        rows = await source.funding_history(result.coin, cursor, end)
        result.requests += 1
        page = sorted((r for r in rows if cursor <= r.time_ms <= end), key=lambda r: r.time_ms)
        fresh = list({r.time_ms: r for r in page}.values())
        if fresh:
            _record(writer, result, funding_lines(fresh), fresh[0].time_ms, fresh[-1].time_ms)
            cursor = fresh[-1].time_ms + 1
        last = len(rows) < FUNDING_PAGE or not fresh
        if bar is not None:
            bar.update(1.0 if last else (cursor - start) / (end - start), result.points)
        if last:
            break


def _record(
    writer: PointSink, result: BackfillResult, lines: list[str], first_ms: int, last_ms: int
) -> None:
    writer.write(lines)
    result.points += len(lines)
    if result.first_ms is None:
        result.first_ms = first_ms
    result.last_ms = last_ms
