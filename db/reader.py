"""Reading InfluxDB back: InfluxQL over the v1 `/query` API, as rows or pandas DataFrames.

Two readers share every pure step (statement check, parameter check, form, answer parsing,
frame building): `InfluxReader` is plain sync (httpx.Client), so notebooks can call it from
inside their running asyncio loop; `AsyncInfluxReader` is for engine jobs. Only one SELECT or
SHOW statement per request (see `db.queries.check_read_only`), every user value bound as a
`$param`.

Complete answers: every request asks for a chunked answer (`chunked=true`), which InfluxDB 1.x
streams as one JSON object per chunk of at most CHUNK_SIZE rows, without applying its `[http]
max-row-limit` (that limit only cuts non-chunked answers, and marks them `"partial": true`).
Each chunk but the last says `"partial": true` ("more follows"); an answer whose last chunk is
still partial (a server or proxy that ignored `chunked`, a stream cut short) raises
InfluxQueryError instead of returning part of the rows. One request per read, also for
GROUP BY and SHOW; paging with LIMIT/OFFSET would cost a request per page, and the server reads
every skipped row again for each page (quadratic).

Times are requested as epoch nanoseconds (trades get distinct nanosecond slots within their
millisecond, so ms would merge them) and become a UTC `DatetimeIndex` named `time`.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # pandas costs ~60 MB: imported only when a frame is built
    import pandas as pd

from db.client import (
    InfluxTarget,
    collect_rows,
    parse_query_response,
    partial_error,
    query_request,
    unreachable_error,
)
from db.queries import NamedQuery, check_bound_params, check_read_only, get_query
from db.schema import CANDLES, FUNDING, MEASUREMENTS
from db.storage import default_target
from utils.errors import InfluxQueryError

log = logging.getLogger(__name__)

EPOCH = "ns"
CHUNK_SIZE = 10_000
"""Rows per chunk of an answer (InfluxDB's own default): the size of one JSON object."""
_SPACE = re.compile(r"\s*")


def query_form(influxql: str, params: Mapping[str, Any] | None, db: str | None) -> dict[str, str]:
    """The POST /query form for one checked read statement (raises InfluxQueryError)."""
    form = query_request(check_read_only(influxql), db, check_bound_params(params), epoch=EPOCH)
    form["chunked"] = "true"
    form["chunk_size"] = str(CHUNK_SIZE)
    return form


def parse_chunked_response(response: httpx.Response) -> list[dict[str, Any]]:
    """The rows of a chunked answer (one JSON object per chunk; a plain answer is one chunk).

    Rows as `db.client.parse_query_response` gives them (series tags merged in, `_measurement`
    added). Raises InfluxQueryError with the server's message when the query failed, and when
    the answer ends while still marked partial.
    """
    if response.status_code != 200:
        return parse_query_response(response)  # raises with the server's reason
    text = response.text
    decoder = json.JSONDecoder()
    rows: list[dict[str, Any]] = []
    position = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if position == len(text):
        raise InfluxQueryError("InfluxDB answered 200 with an empty body")
    partial = False
    while position < len(text):
        try:
            body, position = decoder.raw_decode(text, position)
        except ValueError:
            if rows or partial:  # a stream cut in the middle of a chunk
                raise partial_error(len(rows)) from None
            raise InfluxQueryError("InfluxDB answered 200 with a body that is not JSON") from None
        position = _SPACE.match(text, position).end()  # type: ignore[union-attr]
        partial = collect_rows(body, rows)
    if partial:  # the last chunk still says "more follows"
        raise partial_error(len(rows))
    return rows


def is_select(influxql: str) -> bool:
    """SELECT results get a time index; SHOW results do not."""
    return check_read_only(influxql)[:6].upper() == "SELECT"


def prepare_named(
    name: str, params: Mapping[str, Any]
) -> tuple[NamedQuery, dict[str, Any], dict[str, Any]]:
    """A registered query with its bound parameters and unbound options."""
    query = get_query(name)
    return query, *query.resolve(params)


def named_frame(
    query: NamedQuery, rows: list[dict[str, Any]], options: Mapping[str, Any]
) -> pd.DataFrame:
    """A named query's answer as a frame, cut to its `limit` (a warning when that left rows out).

    `frame.attrs` says what was asked: `query`, `limit` and `truncated` (whether more rows
    matched than `limit`). Plain-row queries come newest first with one row more than `limit`
    (see `NamedQuery.statement`); the others are cut after their transform.
    """
    limit: int = options["limit"]
    truncated = False
    if query.limit_in_influxql:
        rows.reverse()  # ORDER BY time DESC: oldest first again
        if limit and len(rows) > limit:
            del rows[0]  # the row asked for beyond the limit: the oldest
            truncated = True
    frame = query.finish(rows_to_frame(rows, query.columns), options)
    if limit and len(frame) > limit:
        frame = frame.iloc[:limit]
        truncated = True
    frame.attrs.update(query=query.name, limit=limit, truncated=truncated)
    if truncated:
        kept = "the newest" if query.limit_in_influxql else "the first of the answer"
        log.warning(
            "query %r: answer cut at limit=%d rows (%s kept; more matched): pass a larger "
            "limit (0: none) or a shorter window (start/end/hours)",
            query.name,
            limit,
            kept,
        )
    return frame


COINS_KEY = "coin"


def coins_statement(query: NamedQuery, params: Mapping[str, Any]) -> str | None:
    """The SHOW statement listing the coins stored in the query's measurement, when an empty
    answer to `params` should say whether the asset is known at all; None otherwise.

    The measurement's name is the query's constant (not input): InfluxQL cannot bind it."""
    if params.get("asset") is None or not query.measurement:
        return None
    return f'SHOW TAG VALUES FROM "{query.measurement}" WITH KEY = "{COINS_KEY}"'


BACKFILLED = frozenset({CANDLES.name, FUNDING.name})
"""Measurements filled by `python main.py backfill`, not by the running collector."""


def check_asset(query: NamedQuery, asset: str, rows: list[dict[str, Any]]) -> None:
    """Why a named query's answer for `asset` is empty, when the asset is the reason.

    `rows` answer `coins_statement`. An asset the measurement does not hold while it holds
    others (a typo, lower case) raises InfluxQueryError naming the closest coin it holds; a
    measurement that holds nothing yet logs a warning that says so (and how to fill it), and
    the empty answer stands.
    """
    coins = [str(row["value"]) for row in rows if row.get("key") == COINS_KEY]
    if asset in coins:
        return
    if not coins:
        fill = (
            f"`python main.py backfill --coins {asset} --datasets {query.measurement}` fills it"
            if query.measurement in BACKFILLED
            else "the collector writes it while it runs against this database"
        )
        log.warning(
            "query %r: nothing is stored in %r yet: %s", query.name, query.measurement, fill
        )
        return
    folded = {coin.casefold(): coin for coin in coins}
    closest = (
        folded.get(asset.casefold())
        or folded[difflib.get_close_matches(asset.casefold(), list(folded), n=1, cutoff=0.0)[0]]
    )
    raise InfluxQueryError(
        f"query {query.name!r}: unknown asset {asset!r} (no such coin in {query.measurement!r}; "
        f"coins are case-sensitive); closest known coin: {closest!r}"
    )


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
        return parse_chunked_response(response)

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
        frame = named_frame(query, self.rows(query.statement, bound), options)
        if frame.empty and (statement := coins_statement(query, params)):
            check_asset(query, params["asset"], self.rows(statement))
        return frame

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
        return parse_chunked_response(response)

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
        frame = named_frame(query, await self.rows(query.statement, bound), options)
        if frame.empty and (statement := coins_statement(query, params)):
            check_asset(query, params["asset"], await self.rows(statement))
        return frame

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
    raise InfluxQueryError listing what is allowed; so does an asset the measurement has never
    stored (naming the closest coin it has). The answer is complete up to the query's `limit`
    (`frame.attrs["truncated"]` and a warning when the limit left rows out).
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
        rows = reader.rows(influxql, params)
    measurements = {row.get("_measurement") for row in rows}
    return contract_floats(rows_to_frame(rows, time_index=is_select(influxql)), measurements)


def contract_floats(frame: pd.DataFrame, measurements: set[Any]) -> pd.DataFrame:
    """Float fields of the measurement contract as floats again: InfluxDB's JSON writes a
    whole-number float as `1`, so a column of them would come back as int64. Columns the
    contract does not name (aggregates such as `last`) are left as they came."""
    import pandas as pd

    floats = {
        field
        for name in measurements
        if (m := MEASUREMENTS.get(str(name))) is not None
        for field in m.fields
        if field not in m.ints
    }
    for column in frame.columns:
        if column in floats and pd.api.types.is_integer_dtype(frame[column]):
            frame[column] = frame[column].astype("float64")
    return frame
