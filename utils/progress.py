"""A tiny terminal progress bar: `candles BTC  [#####.....] 52 %  1,234 points`.

On a TTY the line is redrawn in place with `\\r`; on anything else (a log file, CI) a new line is
written each time the bar crosses another tenth, so logs stay short.
"""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """One bar for one task; `update()` as work advances, `close()` once at the end."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        unit: str = "points",
        width: int = 10,
        tty: bool | None = None,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.width = width
        self.tty = self.stream.isatty() if tty is None else tty
        self.fraction = 0.0
        self.count = 0
        self._last_tenth = -1  # non-TTY: the last tenth a line was written for
        self._drawn = 0  # TTY: length of the line on screen
        self._closed = False

    def render(self, suffix: str = "") -> str:
        filled = min(self.width, int(self.fraction * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        percent = int(self.fraction * 100)
        text = f"{self.label}  [{bar}] {percent} %  {self.count:,} {self.unit}"
        return f"{text}  {suffix}" if suffix else text

    def update(self, fraction: float, count: int | None = None) -> None:
        """Set the done fraction (clamped to 0..1) and, optionally, the count shown."""
        self.fraction = min(1.0, max(0.0, fraction))
        if count is not None:
            self.count = count
        if self.tty:
            self._redraw(self.render())
            return
        tenth = int(self.fraction * 10)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.render() + "\n")
            self.stream.flush()

    def close(self, suffix: str = "") -> None:
        """Draw the final state (with `suffix`, e.g. an error) and end the line."""
        if self._closed:
            return
        self._closed = True
        if self.tty:
            self._redraw(self.render(suffix))
            self.stream.write("\n")
        elif suffix or int(self.fraction * 10) > self._last_tenth:
            self.stream.write(self.render(suffix) + "\n")
        self.stream.flush()

    def _redraw(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
