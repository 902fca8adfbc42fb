"""Input that failed validation, kept for a human to read instead of crashing a job.

JSON lines under `<directory>/YYYY-MM-DD.jsonl` (UTC date of the write), one per rejected record:
`{"time", "source", "reason", "raw"}`. `time` is the UTC write time with milliseconds, `source`
says where the input came from (e.g. "ws:trades", "info:userFills"), `reason` is one line (cut
at `MAX_REASON_CHARS`), `raw` the input text, cut at `max_raw_bytes` UTF-8 bytes with a
"...[truncated N bytes]" marker. Bytes that are not UTF-8 are kept as backslash escapes. Lines are
ASCII (non-ASCII as JSON escapes), so no character of the input can break a line for any reader.

Thread-safe: one lock guards the counters and the file append.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from utils.jsonl import DailyJsonLines

MAX_RAW_BYTES = 64 * 1024
MAX_REASON_CHARS = 500
TRUNCATED = "...[truncated {} bytes]"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Quarantine:
    """Appends rejected input to daily JSON-lines files and counts it, in total and per source."""

    def __init__(
        self,
        directory: Path | str,
        *,
        max_raw_bytes: int = MAX_RAW_BYTES,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.directory = Path(directory)
        self.max_raw_bytes = max_raw_bytes
        self._now = now
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._files = DailyJsonLines(self.directory)

    @property
    def count(self) -> int:
        """Records quarantined since start, all sources together."""
        with self._lock:
            return self._counts.total()

    @property
    def counts(self) -> dict[str, int]:
        """Records quarantined since start, per source (a copy)."""
        with self._lock:
            return dict(self._counts)

    def add(self, source: str, reason: str, raw: str | bytes) -> None:
        """Keep one rejected record (or frame) with the reason it was rejected."""
        now = self._now().astimezone(UTC)
        record = {
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "source": source,
            "reason": one_line(reason),
            "raw": self._clip(raw),
        }
        self._files.append([record], now)
        with self._lock:
            self._counts[source] += 1

    def _clip(self, raw: str | bytes) -> str:
        text = raw.decode("utf-8", errors="backslashreplace") if isinstance(raw, bytes) else raw
        data = text.encode("utf-8", errors="backslashreplace")  # lone surrogates -> escapes
        if len(data) <= self.max_raw_bytes:
            return data.decode("utf-8")
        # A cut inside a multi-byte character leaves a partial sequence at the end: drop it.
        head = data[: self.max_raw_bytes].decode("utf-8", errors="ignore")
        return head + TRUNCATED.format(len(data) - len(head.encode("utf-8")))


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` with every whitespace run (newlines included) as one space, cut at `limit`."""
    text = " ".join(text.split()) or "(no reason given)"
    return text if len(text) <= limit else text[: limit - 3] + "..."
