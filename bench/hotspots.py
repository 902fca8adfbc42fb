"""Where the collector's CPU goes: py-spy samples of a running process, summarized.

`record(pid, seconds, path)` starts `py-spy record --format raw --nonblocking` (the target is not
paused, so sampling barely slows it; py-spy itself takes a few % of a core) and returns the
process; `summarize(path)` reads the collapsed stacks ("root;...;leaf count" per line, frames as
"function (file:line)") and returns, as percentages of the samples in which the process was
running Python code (idle waits are not sampled):

- `stages`: each sample goes to the stage of its innermost frame that belongs to a known stage
  (`STAGES`, checked leaf to root), so a trade's path splits into validation, dedupe, timestamp
  slots, line protocol, liquidation detection, address discovery, writer, WebSocket, event loop;
- `self_top`: functions by self time (the leaf frame; C code shows up as its Python caller);
- `inclusive_top`: functions by time spent in them or below.

py-spy is a development tool, not a project requirement: `.venv/bin/pip install py-spy`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (stage, file fragment, function names or None for any), checked in order for each frame.
STAGES: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    ("validation (parse_ws_message, pydantic)", "validate/", None),
    ("validation (parse_ws_message, pydantic)", "pydantic", None),
    ("dedupe (TradeDeduper.fresh)", "fetch/dedupe.py", None),
    ("timestamp slots (TimestampAllocator)", "db/timestamps.py", None),
    ("line protocol (encode_point)", "db/line_protocol.py", None),
    ("points (PointBuilder: float(), Decimal, dicts)", "process/points.py", None),
    ("liquidation detection", "process/liquidations.py", None),
    ("address discovery: registry", "process/registry.py", None),
    ("address discovery: poll scheduler", "process/poll_scheduler.py", None),
    ("address discovery: PositionsJob.discover", "process/jobs.py", frozenset({"discover"})),
    ("trade sink (TradeSink.__call__)", "process/jobs.py", frozenset({"__call__"})),
    ("writer: join + post (httpx)", "db/writer.py", frozenset({"_deliver", "_sender"})),
    ("writer: join + post (httpx)", "httpx/", None),
    ("writer: join + post (httpx)", "httpcore/", None),
    ("writer: join + post (httpx)", "h11/", None),
    ("writer: buffer (write, cut, enqueue)", "db/writer.py", None),
    ("WebSocket supervisor (handle_frame, _deliver)", "fetch/ws.py", None),
    ("WebSocket receive (websockets library)", "websockets/", None),
    ("positions and other jobs", "process/", None),
    ("positions and other jobs", "fetch/", None),
    ("positions and other jobs", "apscheduler/", None),
    ("logging", "logging/", None),
    ("asyncio event loop", "asyncio/", None),
    ("asyncio event loop", "selectors.py", None),
)


def available() -> str | None:
    """The py-spy executable (next to this Python, or on PATH), or None."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: int, path: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` at `rate` Hz into `path` (collapsed stacks)."""
    binary = available()
    if binary is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    command = [binary, "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate)]
    command += ["--format", "raw", "--nonblocking", "-o", str(path)]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _parse(frame: str) -> tuple[str, str]:
    """("function", "file") of "function (file:line)"."""
    name, _, rest = frame.partition(" (")
    return name, rest.rsplit(":", 1)[0]


def stage_of(frames: list[tuple[str, str]]) -> str:
    for name, file in reversed(frames):
        method = name.rsplit(".", 1)[-1]  # py-spy names methods Class.method
        for stage, fragment, names in STAGES:
            if fragment in file and (names is None or method in names):
                return stage
    return "other"


def summarize(path: Path, top: int = 15) -> dict[str, object]:
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(f) for f in stack.split(";")]
        total += count
        stages[stage_of(frames)] += count
        name, file = frames[-1]
        self_time[f"{name} ({file})"] += count
        for label in {f"{n} ({f})" for n, f in frames}:
            inclusive[label] += count

    def percent(counter: Counter[str], n: int | None = None) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common(n)}

    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "stages": percent(stages),
        "self_top": percent(self_time, top),
        "inclusive_top": percent(inclusive, top),
    }
