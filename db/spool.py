"""A bounded on-disk FIFO of line-protocol batches that InfluxDB could not take yet.

One file per batch, named `<sequence>-<points>.lp`, written to a temporary name, fsync'd, renamed
and the directory fsync'd, so a batch is either wholly in the spool or not at all, even after a
crash. Segments are replayed oldest first and deleted only after InfluxDB acknowledged them, so a
segment that was being sent when the process died is simply sent again (same points, same
timestamps: the second write overwrites the first).

When the spool is full, `policy` decides what gives: `drop_oldest` (default) deletes the oldest
segments to make room, keeping the most recent data; `drop_newest` refuses the new batch. Either
way the loss is counted and logged at ERROR: it is the one place hyperflux loses accepted data.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

SpoolPolicy = Literal["drop_oldest", "drop_newest"]
_SEGMENT = re.compile(r"^(\d{16})-(\d+)\.lp$")
_BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """Bytes for people: "512 B", "12.3 MiB", "1 GiB" (binary units, one decimal, no ".0")."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _BINARY_UNITS:
        value /= 1024
        if round(value, 1) < 1024 or unit == _BINARY_UNITS[-1]:
            break
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class Segment:
    sequence: int
    points: int
    size: int
    path: Path


class Spool:
    """Thread-safe: the writer calls it from worker threads so disk I/O never blocks the loop."""

    def __init__(
        self, directory: Path, max_bytes: int = 1 << 30, policy: SpoolPolicy = "drop_oldest"
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.policy = policy
        self.dropped_points = 0
        self._lock = threading.Lock()
        self._segments: deque[Segment] = deque()
        self._sequences: set[int] = set()  # of `_segments`, for `in`
        self._bytes = 0
        self._points = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        found: list[Segment] = []
        for path in self.directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                seq, points = int(match[1]), int(match[2])
                found.append(Segment(seq, points, path.stat().st_size, path))
            elif path.name.endswith(".tmp"):
                path.unlink()  # a batch that never finished being spooled: it was not accepted
        found.sort(key=lambda s: s.sequence)
        self._segments.extend(found)
        self._sequences.update(s.sequence for s in found)
        self._bytes = sum(s.size for s in found)
        self._points = sum(s.points for s in found)
        self._next_sequence = found[-1].sequence + 1 if found else 0
        if found:
            log.info("spool holds %s from an earlier run", self.summary())

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def points(self) -> int:
        return self._points

    def __len__(self) -> int:
        return len(self._segments)

    def summary(self) -> str:
        """What waits, for people: "1200 points in 3 segments, 12.3 MiB of 1 GiB"."""
        return (
            f"{_count(self.points, 'point')} in {_count(len(self), 'segment')}, "
            f"{human_size(self.bytes)} of {human_size(self.max_bytes)}"
        )

    def __contains__(self, segment: Segment) -> bool:
        """Whether the segment still waits here (False once replayed or dropped)."""
        with self._lock:
            return segment.sequence in self._sequences

    def append(self, body: bytes, points: int) -> Segment | None:
        """Persist one batch durably; None when the policy refused it because the spool is full."""
        with self._lock:
            if not self._make_room(len(body), points):
                return None
            sequence = self._next_sequence
            self._next_sequence += 1
        path = self.directory / f"{sequence:016d}-{points}.lp"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._fsync_directory()
        segment = Segment(sequence, points, len(body), path)
        with self._lock:
            self._segments.append(segment)
            self._sequences.add(sequence)
            # appends from several threads may finish out of order; keep the queue sorted
            if len(self._segments) > 1 and self._segments[-2].sequence > sequence:
                self._segments = deque(sorted(self._segments, key=lambda s: s.sequence))
            self._bytes += len(body)
            self._points += points
        return segment

    def _make_room(self, size: int, points: int) -> bool:
        if self._bytes + size <= self.max_bytes:
            return True
        if self.policy == "drop_newest" or size > self.max_bytes:
            self.dropped_points += points
            log.error(
                "spool full (%d of %d bytes): dropped a new batch of %d points; "
                "bring InfluxDB back or raise influx.spool_max_bytes",
                self._bytes,
                self.max_bytes,
                points,
            )
            return False
        while self._segments and self._bytes + size > self.max_bytes:
            oldest = self._segments.popleft()
            self._sequences.discard(oldest.sequence)
            self._bytes -= oldest.size
            self._points -= oldest.points
            self.dropped_points += oldest.points
            oldest.path.unlink(missing_ok=True)
            log.error(
                "spool full (max %d bytes): dropped the oldest %d points to keep the newest; "
                "bring InfluxDB back or raise influx.spool_max_bytes",
                self.max_bytes,
                oldest.points,
            )
        return True

    def oldest(self) -> Segment | None:
        with self._lock:
            return self._segments[0] if self._segments else None

    def read(self, segment: Segment) -> bytes:
        return segment.path.read_bytes()

    def remove(self, segment: Segment) -> None:
        """Forget a segment once InfluxDB has acknowledged it."""
        with self._lock:
            try:
                self._segments.remove(segment)
            except ValueError:
                return  # already dropped by the full-spool policy
            self._sequences.discard(segment.sequence)
            self._bytes -= segment.size
            self._points -= segment.points
        segment.path.unlink(missing_ok=True)

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
