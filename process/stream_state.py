"""What a restart must know about the trade stream, kept in `data/stream_state.json`.

- Per coin, the newest trade that can no longer be lost: its point is in InfluxDB, in the spool
  or dead-lettered (the writer's `durable_through` mark has passed it). A trade handed to the
  writer is not that yet: a SIGKILL loses what waits in memory. The restarted collector must
  reach back to this mark (replay, `recentTrades`) or record the stretch as a gap.
- The gaps still open: found, but their backfill has not answered, or what it brought is not
  durable yet. A crash in that moment would otherwise forget them; the restarted collector
  records each as a gap with its full bounds.

The file is rewritten (temporary file + rename, no fsync: a process crash loses nothing) when a
gap opens, and otherwise at most every `flush()` (the collector calls it every 2 s) if anything
changed. Cost on the trade path: one tuple appended per batch of trades.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "stream_state.json"
VERSION = 1


@dataclass(frozen=True)
class OpenGap:
    """A stretch of `coin` that may be missing: after `after_ms` up to `before_ms` included."""

    coin: str
    after_ms: int
    before_ms: int
    reason: str


class StreamState:
    def __init__(
        self,
        path: Path,
        accepted: Callable[[], int],
        durable: Callable[[], int],
    ) -> None:
        """`accepted` and `durable` are the writer's `accepted_lines` and `durable_through`."""
        self.path = path
        self._accepted = accepted
        self._durable = durable
        self.durable_trades: dict[str, int] = {}
        self._pending: deque[tuple[int, str, int]] = deque()  # (mark, coin, newest time)
        self._open: dict[tuple[str, int], tuple[OpenGap, int | None]] = {}  # gap, mark if closed
        self._dirty = False

    def load(self) -> tuple[dict[str, int], list[OpenGap]]:
        """The previous run's durable trade marks and the gaps it left open ({} and [] when
        there was none). A file that cannot be read is reported and ignored."""
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            trades = {str(coin): int(ms) for coin, ms in data["trades"].items()}
            gaps = [OpenGap(str(c), int(a), int(b), str(r)) for c, a, b, r in data["open_gaps"]]
        except FileNotFoundError:
            return {}, []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "%s is unreadable (%s): gaps around the last stop are judged from InfluxDB",
                self.path,
                exc,
            )
            return {}, []
        self.durable_trades = dict(trades)
        return trades, gaps

    def handed_over(self, coin: str, newest_ms: int) -> None:
        """Trades of `coin` up to `newest_ms` were just handed to the writer."""
        self._pending.append((self._accepted(), coin, newest_ms))

    def gap_opened(self, gap: OpenGap) -> None:
        self._open[(gap.coin, gap.after_ms)] = (gap, None)
        self._dirty = True
        self._save()

    def gap_closed(self, gap: OpenGap) -> None:
        """Its backfill answered; forgotten once what it brought (and its gap point) is
        durable."""
        key = (gap.coin, gap.after_ms)
        if key in self._open:
            self._open[key] = (gap, self._accepted())

    def flush(self) -> None:
        """Advance the marks to what is durable now; rewrite the file if anything changed."""
        durable = self._durable()
        pending, marks = self._pending, self.durable_trades
        while pending and pending[0][0] <= durable:
            _, coin, newest = pending.popleft()
            if newest > marks.get(coin, 0):
                marks[coin] = newest
                self._dirty = True
        for key, (_, closed_at) in list(self._open.items()):
            if closed_at is not None and closed_at <= durable:
                del self._open[key]
                self._dirty = True
        if self._dirty:
            self._save()

    def _save(self) -> None:
        data = {
            "version": VERSION,
            "trades": self.durable_trades,
            "open_gaps": [
                [g.coin, g.after_ms, g.before_ms, g.reason] for g, _ in self._open.values()
            ],
        }
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(data, separators=(",", ":")))
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning(
                "cannot write %s (%s): a crash now may leave a gap unrecorded", self.path, exc
            )
            return
        self._dirty = False
