"""The job runner: a failing job logs one line, repeats of the same failure are quiet."""

from __future__ import annotations

import asyncio
import logging

from process.scheduling import JobRunner
from utils.errors import HyperfluxError


async def test_a_failing_job_logs_once_then_quietly_keeps_running(caplog):
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 4:
            raise HyperfluxError(f"breaker is open; trial call in {30 - runs}.0 s")

    later: list[int] = []

    async def paused_at_first() -> None:
        later.append(1)

    runner = JobRunner()
    caplog.set_level(logging.INFO, logger="process.scheduling")
    runner.add("flaky", flaky, 0.1)
    runner.add("later", paused_at_first, 0.1, start_now=False)
    runner.start()
    await asyncio.sleep(0.75)
    await runner.shutdown()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "job flaky failed: breaker is open" in warnings[0]
    assert any("job flaky works again" in r.getMessage() for r in caplog.records)
    assert runner.stats["flaky"].failures == 4
    assert runner.stats["flaky"].last_success > 0
    assert later, "a job added with start_now=False must still run (not be added paused)"


async def test_a_stop_just_as_jobs_start_logs_no_traceback_and_cancels_them(caplog):
    """APScheduler cancels the tasks it started at shutdown; a task cancelled before its first
    step would be logged by it as a failed job with a CancelledError traceback."""
    finished: list[str] = []

    async def slow() -> None:
        await asyncio.sleep(30)
        finished.append("slow")

    for attempt in range(3):  # stop 0, 1 and 2 loop turns after the start
        runner = JobRunner()
        for i in range(5):
            runner.add(f"job{i}", slow, 1.0)
        runner.start()
        for _ in range(attempt):
            await asyncio.sleep(0)
        with caplog.at_level(logging.DEBUG):
            await asyncio.wait_for(runner.shutdown(grace=0.1), 1.0)
            await asyncio.sleep(0.05)
        assert not runner.scheduler.running
    assert finished == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text and "CancelledError" not in caplog.text
