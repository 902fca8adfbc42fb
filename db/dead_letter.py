"""Lines InfluxDB refused for good (parse errors, field type conflicts), kept for a human to read.

JSON lines under `data/dead_letter/YYYY-MM-DD.jsonl`: `{"time", "reason", "line"}`. Nothing here is
retried: fix the cause, then re-post the `line` values if they matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from utils.jsonl import DailyJsonLines


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.count = 0
        self._files = DailyJsonLines(self.directory, ensure_ascii=False)

    def add(self, lines: Iterable[str], reason: str) -> int:
        now = datetime.now(UTC)
        stamp = now.isoformat()
        records = [{"time": stamp, "reason": reason, "line": line} for line in lines]
        added = self._files.append(records, now)
        self.count += added
        return added
