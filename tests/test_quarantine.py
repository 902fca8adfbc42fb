"""utils/quarantine.py: rejected input lands in daily JSON-lines files, counted and bounded."""

from __future__ import annotations

import ast
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from utils.quarantine import MAX_RAW_BYTES, Quarantine

NOON = datetime(2026, 11, 21, 12, 0, 0, 123456, tzinfo=UTC)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_record_is_one_json_line_in_the_file_of_its_utc_day(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "quarantine", now=lambda: NOON)
    quarantine.add("ws:trades", "px: Input should be a valid decimal", '{"px":"abc"}')
    assert [path.name for path in (tmp_path / "quarantine").iterdir()] == ["2026-11-21.jsonl"]
    assert lines(tmp_path / "quarantine" / "2026-11-21.jsonl") == [
        {
            "time": "2026-11-21T12:00:00.123Z",
            "source": "ws:trades",
            "reason": "px: Input should be a valid decimal",
            "raw": '{"px":"abc"}',
        }
    ]


def test_counts_in_total_and_per_source(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path)
    assert (quarantine.count, quarantine.counts) == (0, {})
    for source in ["ws:trades", "ws:trades", "info:userFills"]:
        quarantine.add(source, "bad", "{}")
    assert quarantine.count == 3
    assert quarantine.counts == {"ws:trades": 2, "info:userFills": 1}


def test_a_new_utc_day_starts_a_new_file(tmp_path: Path) -> None:
    times = iter([NOON, NOON + timedelta(hours=12)])
    quarantine = Quarantine(tmp_path, now=lambda: next(times))
    quarantine.add("a", "r", "1")
    quarantine.add("a", "r", "2")
    assert [line["raw"] for line in lines(tmp_path / "2026-11-21.jsonl")] == ["1"]
    assert [line["raw"] for line in lines(tmp_path / "2026-11-22.jsonl")] == ["2"]


def test_the_reason_is_kept_to_one_short_line(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path, now=lambda: NOON)
    quarantine.add("a", "3 validation errors\n  px\n    Input should be\tvalid", "x")
    quarantine.add("a", "y" * 2000, "x")
    quarantine.add("a", " \n", "x")
    reasons = [line["reason"] for line in lines(tmp_path / "2026-11-21.jsonl")]
    assert reasons[0] == "3 validation errors px Input should be valid"
    assert reasons[1] == "y" * 497 + "..."
    assert reasons[2] == "(no reason given)"


def test_bytes_that_are_not_utf8_are_kept_as_escapes(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path, now=lambda: NOON)
    quarantine.add("ws", "not JSON", b"\xff\xfe{\xc3\xa9")
    quarantine.add("ws", "lone surrogate", '"\ud800"')
    raws = [line["raw"] for line in lines(tmp_path / "2026-11-21.jsonl")]
    assert raws == ["\\xff\\xfe{é", '"\\ud800"']


def test_huge_input_is_cut_at_64_kib_with_a_marker(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path, now=lambda: NOON)
    quarantine.add("a", "big", "x" * (MAX_RAW_BYTES + 10))
    quarantine.add("a", "big", "x" + "é" * MAX_RAW_BYTES)  # 2 bytes each: cut inside the last
    quarantine.add("a", "fits", "x" * MAX_RAW_BYTES)
    big, wide, fits = (line["raw"] for line in lines(tmp_path / "2026-11-21.jsonl"))
    assert big == "x" * MAX_RAW_BYTES + "...[truncated 10 bytes]"
    kept = MAX_RAW_BYTES // 2 - 1
    assert wide == "x" + "é" * kept + f"...[truncated {2 * (MAX_RAW_BYTES - kept)} bytes]"
    assert fits == "x" * MAX_RAW_BYTES


def test_threads_adding_at_once_lose_nothing(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path, now=lambda: NOON)

    def add(thread: int) -> None:
        for i in range(200):
            quarantine.add(f"t{thread}", "r", json.dumps({"thread": thread, "i": i}))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert quarantine.count == 1600
    assert quarantine.counts == {f"t{n}": 200 for n in range(8)}
    records = [json.loads(line["raw"]) for line in lines(tmp_path / "2026-11-21.jsonl")]
    assert sorted((r["thread"], r["i"]) for r in records) == [
        (n, i) for n in range(8) for i in range(200)
    ]


def test_utils_quarantine_imports_no_other_project_package() -> None:
    source = (Path(__file__).parents[1] / "utils" / "quarantine.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    project = {"validate", "db", "fetch", "process", "config", "main", "bench", "tests"}
    assert imported & project == set()
