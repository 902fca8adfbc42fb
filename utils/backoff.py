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
