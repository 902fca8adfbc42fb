"""Reading InfluxDB back: InfluxQL over the v1 `/query` API, as rows or pandas DataFrames.

Two readers share every pure step (statement check, parameter check, form, frame building):
`InfluxReader` is plain sync (httpx.Client), so notebooks can call it from inside their running
asyncio loop; `AsyncInfluxReader` is for engine jobs. Only one SELECT or SHOW statement per
request (see `db.queries.check_read_only`), every user value bound as a `$param`.

Times are requested as epoch nanoseconds (trades get distinct nanosecond slots within their
millisecond, so ms would merge them) and become a UTC `DatetimeIndex` named `time`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # pandas costs ~60 MB: imported only when a frame is built
    import pandas as pd

from db.client import InfluxTarget, parse_query_response, query_request, unreachable_error
from db.queries import NamedQuery, check_bound_params, check_read_only, get_query
from db.storage import default_target

EPOCH = "ns"


def query_form(influxql: str, params: Mapping[str, Any] | None, db: str | None) -> dict[str, str]:
    """The POST /query form for one checked read statement (raises InfluxQueryError)."""
    return query_request(check_read_only(influxql), db, check_bound_params(params), epoch=EPOCH)


def is_select(influxql: str) -> bool:
    """SELECT results get a time index; SHOW results do not."""
    return check_read_only(influxql)[:6].upper() == "SELECT"


def prepare_named(
    name: str, params: Mapping[str, Any]
) -> tuple[NamedQuery, dict[str, Any], dict[str, Any]]:
    """A registered query with its bound parameters and unbound options."""
    query = get_query(name)
    return query, *query.resolve(params)


def rows_to_frame(
    rows: list[dict[str, Any]], columns: Sequence[str] = (), *, time_index: bool = True
) -> pd.DataFrame:
    """Rows as a DataFrame indexed by UTC `time` (from epoch ns), declared columns first.

    `_measurement` is kept only when the rows come from more than one measurement. An empty
    result keeps the declared columns (and an empty UTC index when `time_index`).
    """
    import pandas as pd

    if not rows:
        index = pd.DatetimeIndex([], tz="UTC", name="time") if time_index else None
        return pd.DataFrame(columns=list(columns), index=index)
    frame = pd.DataFrame.from_records(rows)
    if "_measurement" in frame and frame["_measurement"].nunique(dropna=False) <= 1:
        frame = frame.drop(columns="_measurement")
    if "time" in frame:
        times = pd.to_datetime(frame.pop("time").astype("int64"), unit="ns", utc=True)
        frame.index = pd.DatetimeIndex(times, name="time")
    if columns:
        extra = [c for c in frame.columns if c not in columns]
        frame = frame.reindex(columns=[*columns, *extra])
    return frame


def _resolve(target: InfluxTarget | None) -> InfluxTarget:
    """The given target, else the configured one (HYPERFLUX_INFLUX_URL, or the local default)."""
    return target if target is not None else default_target()


class InfluxReader:
    """Sync reader (httpx.Client): safe to call from a notebook's running event loop."""

    def __init__(self, target: InfluxTarget, client: httpx.Client | None = None) -> None:
        self.target = target
        self._client = client or target.sync_client()
        self._owns_client = client is None

    def rows(self, influxql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One read statement's rows (series tags merged in, `_measurement` added)."""
        form = query_form(influxql, params, self.target.db)
        try:
            response = self._client.post("/query", data=form)
        except httpx.TransportError as exc:
            raise unreachable_error(self.target.url, exc) from None
        return parse_query_response(response)

    def frame(
        self,
        influxql: str,
        params: Mapping[str, Any] | None = None,
        columns: Sequence[str] = (),
    ) -> pd.DataFrame:
        rows = self.rows(influxql, params)
        return rows_to_frame(rows, columns, time_index=is_select(influxql))

    def named(self, name: str, **params: Any) -> pd.DataFrame:
        """A registered query (see `db.queries.QUERIES`) with validated parameters."""
        query, bound, options = prepare_named(name, params)
        return query.finish(self.frame(query.influxql, bound, query.columns), options)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> InfluxReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncInfluxReader:
    """The same reader for asyncio jobs (httpx.AsyncClient)."""

    def __init__(self, target: InfluxTarget, client: httpx.AsyncClient | None = None) -> None:
        self.target = target
        self._client = client or target.async_client()
        self._owns_client = client is None

    async def rows(
        self, influxql: str, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        form = query_form(influxql, params, self.target.db)
        try:
            response = await self._client.post("/query", data=form)
        except httpx.TransportError as exc:
            raise unreachable_error(self.target.url, exc) from None
        return parse_query_response(response)

    async def frame(
        self,
        influxql: str,
        params: Mapping[str, Any] | None = None,
        columns: Sequence[str] = (),
    ) -> pd.DataFrame:
        rows = await self.rows(influxql, params)
        return rows_to_frame(rows, columns, time_index=is_select(influxql))

    async def named(self, name: str, **params: Any) -> pd.DataFrame:
        query, bound, options = prepare_named(name, params)
        return query.finish(await self.frame(query.influxql, bound, query.columns), options)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncInfluxReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def read_from_influx(
    name: str, *, target: InfluxTarget | None = None, **params: Any
) -> pd.DataFrame:
    """A named query as a DataFrame, e.g. `read_from_influx("trades", asset="BTC", hours=6)`.

    Plain sync, so it works inside Jupyter's running loop. Unknown names and bad parameters
    raise InfluxQueryError listing what is allowed.
    """
    get_query(name).resolve(params)  # a bad name or parameter fails before any connection
    with InfluxReader(_resolve(target)) as reader:
        return reader.named(name, **params)


def raw_query(
    influxql: str,
    params: Mapping[str, Any] | None = None,
    target: InfluxTarget | None = None,
) -> pd.DataFrame:
    """Escape hatch: one SELECT or SHOW statement, values bound through `params` ($name)."""
    check_read_only(influxql)
    check_bound_params(params)
    with InfluxReader(_resolve(target)) as reader:
        return reader.frame(influxql, params)
