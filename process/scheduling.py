"""Every periodic job runs here, on APScheduler's asyncio scheduler, guarded and measured.

Each job has `max_instances=1` (a slow run is never overlapped by the next), coalescing (missed
runs collapse into one) and a misfire grace time. A job that raises is logged on one line (with a
traceback only for unexpected errors, which are bugs) and simply runs again at its next time; it
never stops the scheduler. Per job: last success time, last duration, runs and failures.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from utils.errors import HyperfluxError
from utils.metrics import Sample

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
REPEAT_WARNING_EVERY = 300.0
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass
class JobStats:
    runs: int = 0
    failures: int = 0
    last_success: float = 0.0  # Unix seconds
    last_duration: float = 0.0  # seconds
    last_error: str = ""  # empty after a success
    last_warned: float = 0.0  # monotonic


class JobRunner:
    def __init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.stats: dict[str, JobStats] = {}
        self._running: set[asyncio.Task[object]] = set()

    def add(self, name: str, job: Job, every: float, *, start_now: bool = True) -> None:
        """Run `job` every `every` seconds (first run at once unless `start_now` is False)."""
        self.stats[name] = JobStats()
        first_run = {"next_run_time": datetime.now(UTC)} if start_now else {}  # None = paused
        self.scheduler.add_job(
            self._guarded(name, job),
            "interval",
            seconds=every,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(every)),
            **first_run,
        )

    def _guarded(self, name: str, job: Job) -> Job:
        stats = self.stats[name]

        async def run() -> None:
            started = time.monotonic()
            stats.runs += 1
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                log.debug("job %s cancelled at shutdown", name)
                return  # the end of this job's own task: nothing above it to tell
            except HyperfluxError as exc:
                stats.failures += 1
                # the same failure with other numbers ("trial call in 20.0 s") is a repeat
                repeated = _shape(str(exc)) == _shape(stats.last_error)
                stats.last_error = str(exc)
                quiet = repeated and time.monotonic() - stats.last_warned < REPEAT_WARNING_EVERY
                if not quiet:
                    stats.last_warned = time.monotonic()
                    log.warning(
                        "job %s failed: %s; it runs again at its next time%s",
                        name,
                        exc,
                        " (same failure as before; repeats are logged every 5 min)"
                        if repeated
                        else "",
                    )
            except Exception as exc:
                stats.failures += 1
                stats.last_error = repr(exc)
                log.exception("job %s failed unexpectedly; it runs again at its next time", name)
            else:
                if stats.last_error:
                    log.info("job %s works again", name)
                stats.last_success = time.time()
                stats.last_error = ""
            finally:
                stats.last_duration = time.monotonic() - started
                self._running.discard(task)  # type: ignore[arg-type]

        return run

    def start(self) -> None:
        self.scheduler.start()

    async def shutdown(self, grace: float = 2.0) -> None:
        """Stop scheduling; runs still going after `grace` seconds are cancelled.

        APScheduler's own shutdown cancels the tasks of the runs it started, and a task
        cancelled before its first step never reaches the job's guard: APScheduler then logs the
        CancelledError as a job failure with a traceback. So: pause, let every started task
        enter its guard, cancel only inside the guard, and shut APScheduler down once none is
        left."""
        if not self.scheduler.running:
            return
        self.scheduler.pause()
        await asyncio.sleep(0)  # runs submitted just now take their first step
        running = list(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self.scheduler.shutdown(wait=False)

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for name, stats in self.stats.items():
            labels = {"job": name}
            out += [
                Sample("job_runs_total", "counter", "job runs", stats.runs, labels),
                Sample(
                    "job_failures_total", "counter", "job runs that failed", stats.failures, labels
                ),
                Sample(
                    "job_last_success_timestamp_seconds",
                    "gauge",
                    "Unix time of the job's last successful run",
                    stats.last_success,
                    labels,
                ),
                Sample(
                    "job_duration_seconds",
                    "gauge",
                    "duration of the job's last run",
                    stats.last_duration,
                    labels,
                ),
            ]
        return out


def _shape(message: str) -> str:
    return _NUMBER.sub("#", message)
