"""The InfluxDB v1 HTTP API (`/ping`, `/write`, `/query`): shared by writer, bootstrap and reader.

One code path for InfluxDB 1.x, 2.x (v1 compatibility) and 3.x Core; see DESIGN.md. Credentials
travel as HTTP Basic auth (2.x/3.x: any user name and the token as password) and are never logged.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from utils.errors import InfluxQueryError, InfluxUnavailableError


class InfluxUnreachableError(InfluxUnavailableError):
    """No answer from InfluxDB (refused, timed out, a 5xx from a proxy in front of it): it may
    come back. Unlike the other InfluxUnavailableError causes (wrong address, unsupported
    version) the storage starts anyway and collects into the spool meanwhile."""


@dataclass(frozen=True)
class InfluxTarget:
    """Where and how to reach one database."""

    url: str
    db: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    gzip: bool = False

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None and self.password is None:
            return None
        return (self.username or "hyperflux", self.password or "")

    def async_client(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """A client for this server; `transport` swaps the network (tests: httpx.MockTransport)."""
        return httpx.AsyncClient(
            base_url=self.url.rstrip("/"),
            auth=self.auth,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            transport=transport,
        )

    def sync_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url.rstrip("/"),
            auth=self.auth,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
        )

    def write_params(self) -> dict[str, str]:
        return {"db": self.db, "precision": "ns"}

    def write_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        return headers


def query_request(
    query: str,
    db: str | None,
    params: dict[str, Any] | None = None,
    epoch: str = "ms",
) -> dict[str, str]:
    """Form fields for POST /query; user values go in `params` (bound as `$name`)."""
    form = {"q": query, "epoch": epoch}
    if db:
        form["db"] = db
    if params:
        form["params"] = json.dumps(params)
    return form


def parse_query_response(response: httpx.Response) -> list[dict[str, Any]]:
    """The statements' results as rows: one dict per value row, with series tags merged in.

    Each row also carries `_measurement`, the series name. Raises InfluxQueryError with the
    server's own message when the query failed.
    """
    if response.status_code in (401, 403):
        raise InfluxQueryError(
            f"InfluxDB refused the query ({response.status_code}): "
            "check HYPERFLUX_INFLUX_USERNAME and HYPERFLUX_INFLUX_PASSWORD"
        )
    try:
        body = response.json()
    except ValueError:
        raise InfluxQueryError(
            f"InfluxDB answered {response.status_code} with a body that is not JSON"
        ) from None
    rows: list[dict[str, Any]] = []
    if collect_rows(body, rows):
        raise partial_error(len(rows))
    return rows


def collect_rows(body: Mapping[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Append the rows of one answer (or one chunk of it) to `rows`, series tags merged in and
    `_measurement` added; True if it is marked partial (more follows, or the server cut it).
    Raises InfluxQueryError with the server's message when the query failed."""
    if "error" in body:
        raise InfluxQueryError(f"InfluxDB refused the query: {body['error']}")
    partial = False
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQueryError(f"InfluxDB refused the query: {result['error']}")
        partial = partial or bool(result.get("partial"))
        for series in result.get("series", []):
            partial = partial or bool(series.get("partial"))
            columns = series["columns"]
            tags = series.get("tags", {})
            name = series.get("name")
            for values in series.get("values", []):
                row = dict(zip(columns, values, strict=True))
                row.update(tags)
                row["_measurement"] = name
                rows.append(row)
    return partial


def partial_error(rows: int) -> InfluxQueryError:
    return InfluxQueryError(
        f'InfluxDB sent only part of the answer ({rows} rows, marked "partial"): the server '
        "cut it, e.g. at its [http] max-row-limit because it (or a proxy) ignored chunked=true; "
        "set max-row-limit = 0 on the server, or ask for less (a shorter start/end window)"
    )


def public_url(url: str | httpx.URL) -> str:
    """The URL without user:password@ (safe to log or show)."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None)).rstrip("/")


def unreachable_error(url: str | httpx.URL, exc: httpx.TransportError) -> InfluxUnreachableError:
    """One line for a connection that failed, without credentials."""
    causes: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 10:  # the OS error sits a few links down
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        reason = "timed out"
    elif any(isinstance(c, ConnectionRefusedError) for c in causes):
        reason = "connection refused"
    elif any(isinstance(c, socket.gaierror) for c in causes):
        reason = "host name not found"
    else:
        reason = str(exc) or type(exc).__name__
    return InfluxUnreachableError(
        f"InfluxDB at {public_url(url)} is not reachable ({reason}): "
        "start it, or set HYPERFLUX_INFLUX_URL"
    )
