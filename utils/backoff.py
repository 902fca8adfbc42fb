"""Retry delays: capped exponential backoff with jitter, and the HTTP `Retry-After` header."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime


def jittered_backoff(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (1 = first retry).

    The ceiling doubles per attempt from `base` up to `cap`; the delay is drawn uniformly from
    [ceiling / 2, ceiling] so that many clients failing together do not retry in lockstep.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by a `Retry-After` header (delta-seconds or an HTTP date), or None.

    `now` is the wall-clock time (Unix seconds) an HTTP date is measured from.
    """
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, when - (time.time() if now is None else now))
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def retry_delay(
    attempt: int,
    *,
    status: int | None,
    retry_after: float | None,
    base: float,
    cap: float,
    max_retry_after: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds before retry `attempt` of a failed request: the server's Retry-After when it
    gave one (at most `max_retry_after`); a 429 without it waits the longest backoff."""
    if retry_after is not None:
        return min(retry_after, max_retry_after)
    return jittered_backoff(attempt, base=cap if status == 429 else base, cap=cap, rng=rng)


def http_failure(
    status: int, body: str, reason: str, retry_after_header: str | None, *, limit: int
) -> tuple[str, float | None]:
    """("HTTP 503: <body on one line, cut at `limit`>", the Retry-After seconds of a 429 or
    5xx answer, else None)."""
    text = " ".join(body.split())[:limit] or reason
    retry_after = parse_retry_after(retry_after_header) if status == 429 or status >= 500 else None
    return f"HTTP {status}: {text}", retry_after
