"""A query result (pandas DataFrame with a UTC `time` index) as text: table, csv or json.

- times are ISO 8601 UTC with a `Z`, as precise as the frame needs: whole seconds, milliseconds,
  or nanoseconds (trades sit in nanosecond slots of their millisecond);
- floats use the shortest text that reads back exactly (`repr`), integers stay integers;
- a missing value (NaN, None: e.g. a point without `liq_px`) is empty in table and csv and
  `null` in json;
- a frame without a time index (SHOW results) is written without an index column.
Every format ends with a newline.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pandas as pd

FORMATS = ("table", "csv", "json")


def format_frame(frame: pd.DataFrame, fmt: str) -> str:
    """`frame` as `table` (aligned text), `csv` or `json` (an array, one record per line)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    header, rows = _cells(frame)
    if fmt == "csv":
        return _csv(header, rows)
    if fmt == "json":
        return _json(header, rows)
    return _table(header, rows)


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """Column names and rows of plain Python values (str times, int, float, str, bool, None)."""
    header = [str(c) for c in frame.columns]
    columns = [[_plain(v) for v in frame[c].tolist()] for c in frame.columns]
    if isinstance(frame.index, pd.DatetimeIndex):
        header.insert(0, frame.index.name or "time")
        columns.insert(0, _iso_times(frame.index))
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return header, rows


def _plain(value: Any) -> Any:
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return _iso_times(pd.DatetimeIndex([value]))[0]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _iso_times(index: pd.DatetimeIndex) -> list[str | None]:
    """ISO 8601 UTC with `Z`, with the fewest fraction digits (0, 3 or 9) every time needs."""
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    ns = [None if t is pd.NaT else t.value for t in index]
    known = [n for n in ns if n is not None]
    if all(n % 1_000_000_000 == 0 for n in known):
        digits = 0
    elif all(n % 1_000_000 == 0 for n in known):
        digits = 3
    else:
        digits = 9
    out: list[str | None] = []
    for t, n in zip(index, ns, strict=True):
        if n is None:
            out.append(None)
            continue
        text = t.strftime("%Y-%m-%dT%H:%M:%S")
        if digits:
            fraction = f"{n % 1_000_000_000:09d}"[:digits]
            text += f".{fraction}"
        out.append(text + "Z")
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """Aligned columns two spaces apart: numbers right-aligned, everything else left-aligned."""
    texts = [[_text(v) for v in row] for row in rows]
    widths = [len(h) for h in header]
    for row in texts:
        widths = [max(w, len(t)) for w, t in zip(widths, row, strict=True)]
    numeric = [
        bool(rows)
        and all(
            row[i] is None or (isinstance(row[i], int | float) and not isinstance(row[i], bool))
            for row in rows
        )
        for i in range(len(header))
    ]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "".join(line(row) + "\n" for row in [header, *texts])


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_text(v) for v in row] for row in rows)
    return buffer.getvalue()


def _json(header: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "[]\n"
    records = (json.dumps(dict(zip(header, row, strict=True))) for row in rows)
    return "[\n" + ",\n".join(records) + "\n]\n"
