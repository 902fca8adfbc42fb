"""The REST weight spent in the last 60 s, kept on disk so that a crash does not forget it.

The exchange counts weight per IP over any 60 s; a collector restarted after SIGKILL that starts
with an empty window can spend its whole budget again within that minute and draw 429s. So every
grant and every settle of the `WeightBudget` is appended to `hl_weight.log` under the data dir,
one short line each, written to the OS at once but never fsync'd (a process crash loses nothing;
a power cut loses at most the page cache, and the machine's restart then takes longer than 60 s).

Lines: `g <id> <unix s> <weight>` (granted, in flight) and `s <id> <unix s> <weight>` (settled,
the true weight). Read back at start: a settled request counts from its settle time, a request
still in flight at the crash counts in full from now (the exchange may have counted it up to the
moment the process died). The file is rewritten with only the last minute's entries when it grows
past `compact_after` lines.

Without a readable record the budget starts as if the window were full (`full_if_missing`: the
data dir already holds a collector's state but no journal, e.g. after an upgrade): waiting one
minute once is cheap, a burst of 429s is not. A data dir that never ran a collector starts empty.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

FILE_NAME = "hl_weight.log"
WINDOW_SECONDS = 60.0


class SpendJournal:
    def __init__(
        self,
        path: Path,
        *,
        full_if_missing: bool = False,
        wall: Callable[[], float] = time.time,
        compact_after: int = 5000,
    ) -> None:
        self.path = path
        self.wall = wall
        self.compact_after = compact_after
        self._open: dict[int, tuple[float, int]] = {}  # id -> (granted at, weight)
        self._settled: deque[tuple[float, int]] = deque()  # (settled at, weight), for compaction
        self._next_id = 1
        self._lines = 0
        self._file: TextIO | None = None
        self._read_back = self._read(full_if_missing)

    def predecessor(self, full: int) -> list[tuple[float, int]]:
        """What was spent before this start: (seconds ago, weight) within the last 60 s, with
        `full` weight counted now when the record was missing or unreadable. Kept in the file
        until it is a minute old, so a second crash soon after still counts it."""
        now = self.wall()
        spent = [(now - at, full if weight is None else weight) for at, weight in self._read_back]
        self._settled.extend(sorted((now - ago, weight) for ago, weight in spent))
        self._rewrite()
        return spent

    def granted(self, weight: int) -> int:
        """Record a grant (the request may be sent from now on); returns its id."""
        entry_id = self._next_id
        self._next_id += 1
        now = self.wall()
        self._open[entry_id] = (now, weight)
        self._append(f"g {entry_id} {now:.3f} {weight}\n")
        return entry_id

    def settled(self, entry_id: int, actual: int) -> None:
        """Record a request's true weight, counted from now."""
        if self._open.pop(entry_id, None) is None:
            return
        now = self.wall()
        if actual > 0:
            self._settled.append((now, actual))
        self._append(f"s {entry_id} {now:.3f} {actual}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- file ------------------------------------------------------------------------------------

    def _append(self, line: str) -> None:
        if self._file is None and self._lines == 0:
            self._rewrite()
        if self._file is None:
            return
        try:
            self._file.write(line)
        except OSError as exc:  # a full disk must not stop collection; the budget still holds
            self._cannot_write(exc)
            return
        self._lines += 1
        if self._lines >= self.compact_after:
            self._rewrite()

    def _rewrite(self) -> None:
        """Keep only what still counts: requests in flight and the last minute's settles."""
        now = self.wall()
        while self._settled and self._settled[0][0] <= now - WINDOW_SECONDS:
            self._settled.popleft()
        lines = [f"g {i} {at:.3f} {w}\n" for i, (at, w) in self._open.items()]
        lines += [f"s 0 {at:.3f} {w}\n" for at, w in self._settled]
        self.close()
        try:
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text("".join(lines))
            os.replace(temporary, self.path)
            self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 - kept open, line-buffered
        except OSError as exc:
            self._cannot_write(exc)
        self._lines = len(lines) + 1

    def _cannot_write(self, exc: OSError) -> None:
        log.warning("cannot record REST weight in %s (%s): a crash may draw 429s", self.path, exc)
        self.close()

    def _read(self, full_if_missing: bool) -> list[tuple[float, int | None]]:
        """(unix time, weight) of what still counts; weight None: unknown, count it as full."""
        now = self.wall()
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return [(now, None)] if full_if_missing else []
        except OSError as exc:
            log.warning("cannot read %s (%s): waiting as if the budget was spent", self.path, exc)
            return [(now, None)]
        in_flight: dict[int, int] = {}
        spent: list[tuple[float, int | None]] = []
        try:
            for line in text.splitlines():
                kind, entry_id, at, weight = line.split()
                record = (int(entry_id), float(at), int(weight))
                if kind == "g":
                    in_flight[record[0]] = record[2]
                elif kind == "s":
                    in_flight.pop(record[0], None)
                    spent.append(record[1:])
                else:
                    raise ValueError(f"unknown entry {kind!r}")
        except ValueError:
            log.warning("%s is unreadable: waiting as if the budget was spent", self.path)
            return [(now, None)]
        # in flight when the process died: the exchange may have counted them until then
        spent += [(now, weight) for weight in in_flight.values()]
        return [(at, w) for at, w in spent if at > now - WINDOW_SECONDS and w != 0]
