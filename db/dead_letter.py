"""Lines InfluxDB refused for good (parse errors, field type conflicts), kept for a human to read.

JSON lines under `data/dead_letter/YYYY-MM-DD.jsonl`: `{"time", "reason", "line"}`. Nothing here is
retried: fix the cause, then re-post the `line` values if they matter.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path


class DeadLetters:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.count = 0
        self._lock = threading.Lock()

    def add(self, lines: Iterable[str], reason: str) -> int:
        now = datetime.now(UTC)
        stamp = now.isoformat()
        records = [
            json.dumps({"time": stamp, "reason": reason, "line": line}, ensure_ascii=False)
            for line in lines
        ]
        if not records:
            return 0
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{now:%Y-%m-%d}.jsonl"
        with self._lock, open(path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(records) + "\n")
            self.count += len(records)
        return len(records)
