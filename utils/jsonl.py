"""Daily JSON-lines files (`DIR/YYYY-MM-DD.jsonl`, UTC days): the quarantine and the dead
letters, records a human reads later."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class DailyJsonLines:
    """Appends records, one JSON object a line, to the file of the record's UTC day."""

    def __init__(self, directory: Path | str, *, ensure_ascii: bool = True) -> None:
        self.directory = Path(directory)
        self.ensure_ascii = ensure_ascii
        self._lock = threading.Lock()

    def append(self, records: Iterable[Mapping[str, Any]], now: datetime) -> int:
        """Append `records` to `now`'s file in one write; returns how many."""
        lines = [json.dumps(record, ensure_ascii=self.ensure_ascii) for record in records]
        if not lines:
            return 0
        path = self.directory / f"{now.astimezone(UTC):%Y-%m-%d}.jsonl"
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        return len(lines)
