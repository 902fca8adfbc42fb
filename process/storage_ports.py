"""What process/ needs of the storage layer, as protocols (db.writer.InfluxWriter and
db.reader.AsyncInfluxReader satisfy them; tests may pass anything shaped alike)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class PointSink(Protocol):
    """Where lines of line protocol go (`InfluxWriter.write`)."""

    def write(self, lines: Iterable[str]) -> None: ...


class FlushablePointSink(PointSink, Protocol):
    async def flush(self) -> None: ...


class RowReader(Protocol):
    """Rows of one read statement, times in epoch ns (`AsyncInfluxReader.rows`)."""

    async def rows(
        self, influxql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...
