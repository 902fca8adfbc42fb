"""Server bootstrap: find out which InfluxDB answers, and make sure the database exists.

`detect_server` reads the `/ping` headers. What each server sends (GET /ping):

| server                 | status | X-Influxdb-Version          | X-Influxdb-Build      |
|------------------------|--------|-----------------------------|-----------------------|
| 1.x OSS                | 204    | `1.8.10` (Debian: `1.6.7~rc0`) | `OSS`              |
| 1.x Enterprise         | 204    | `1.11.x`                    | `Enterprise` (or `ENT`) |
| 2.x OSS                | 204    | `v2.7.12` (leading `v`)     | `OSS`                 |
| InfluxDB Cloud (2.x)   | 204    | absent                      | absent                |
| 3.x Core / Enterprise  | 200 (JSON body) | `3.6.0`            | `Core` / `Enterprise` |

3.x may require the token on /ping too (401 without it) and answers 404 to HEAD, so GET is used.

Where retention can be set by hyperflux (`retention`, e.g. "30d", or "INF" = keep forever):

- 1.x: yes. `CREATE DATABASE` then `ALTER RETENTION POLICY <default> ... DURATION x DEFAULT`
  (the default policy is `autogen` unless an admin changed it). Needs an admin user when auth
  is on; a non-admin user gets a warning and the retention is left as it is. Minimum 1h; the shard
  group duration is shortened when the retention would be shorter than it.
- 2.x / Cloud: only when the bucket is created. The v1 API finds a bucket named like the
  database through its automatic ("virtual") DBRP mapping `db/autogen`. If the bucket is missing
  and the token may create buckets, it is created with the retention; an existing bucket's
  retention is never changed (`influx bucket update --retention`).
- 3.x Core / Enterprise: no. Databases are created by the first write; retention is set by the
  server admin (`influxdb3 create database --retention-period`), not over the v1 API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from config.values import DURATION_NS, duration_ns
from config.values import parse_retention as check_retention
from db.client import (
    InfluxTarget,
    InfluxUnreachableError,
    parse_query_response,
    public_url,
    query_request,
    unreachable_error,
)
from utils.errors import ConfigError, HyperfluxError, InfluxQueryError, InfluxUnavailableError

log = logging.getLogger(__name__)

CREDENTIALS_HINT = (
    "set HYPERFLUX_INFLUX_USERNAME and HYPERFLUX_INFLUX_PASSWORD "
    "(2.x/3.x: the API token goes in HYPERFLUX_INFLUX_PASSWORD)"
)

_DB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_VERSION_MAJOR = re.compile(r"v?(\d+)")
DAY_NS = DURATION_NS["d"]


@dataclass(frozen=True)
class ServerInfo:
    """What `/ping` said. `flavour` is the major version (1, 2 or 3)."""

    flavour: int
    edition: str  # "OSS", "Enterprise", "Core" or "Cloud"
    version: str  # as sent, e.g. "1.6.7~rc0", "v2.7.12", "3.6.0"; "" for Cloud
    build: str = ""  # X-Influxdb-Build as sent

    def __str__(self) -> str:
        return f"InfluxDB {self.version or self.flavour} {self.edition}"


def parse_ping(headers: httpx.Headers | dict[str, str]) -> ServerInfo:
    """ServerInfo from `/ping` response headers (names case-insensitive)."""
    headers = httpx.Headers(headers)
    version = headers.get("X-Influxdb-Version", "").strip()
    build = headers.get("X-Influxdb-Build", "").strip()
    if not version:
        return ServerInfo(flavour=2, edition="Cloud", version="", build=build)
    match = _VERSION_MAJOR.match(version)
    flavour = int(match.group(1)) if match else 0
    if flavour not in (1, 2, 3):
        raise InfluxUnavailableError(
            f"unsupported InfluxDB version {version!r} (build {build!r}): hyperflux needs 1.x, "
            "2.x or 3.x"
        )
    lowered = build.lower()
    if lowered in ("enterprise", "ent"):
        edition = "Enterprise"
    elif flavour == 3:
        edition = "Core"  # also when a packager put the version number in the build header
    else:
        edition = "OSS"
    return ServerInfo(flavour=flavour, edition=edition, version=version, build=build)


async def detect_server(client: httpx.AsyncClient) -> ServerInfo:
    """Which InfluxDB answers at the client's base URL (GET /ping)."""
    url = public_url(client.base_url)
    try:
        response = await client.get("/ping")
    except httpx.TransportError as exc:
        raise unreachable_error(url, exc) from None
    if response.status_code in (401, 403):
        raise HyperfluxError(
            f"InfluxDB at {url} refused the credentials ({response.status_code} on /ping): "
            + CREDENTIALS_HINT
        )
    if response.status_code >= 500:  # e.g. a proxy whose InfluxDB is down: it may come back
        raise InfluxUnreachableError(
            f"InfluxDB at {url} is not reachable (/ping answered {response.status_code}): "
            "start it, or set HYPERFLUX_INFLUX_URL"
        )
    if response.status_code not in (200, 204):
        raise InfluxUnavailableError(
            f"{url}/ping answered {response.status_code}: "
            "is HYPERFLUX_INFLUX_URL the InfluxDB HTTP API address?"
        )
    info = parse_ping(response.headers)
    if "X-Influxdb-Version" not in response.headers:
        await _check_speaks_influxql(client, url)
    log.info("connected to %s at %s", info, url)
    return info


async def _check_speaks_influxql(client: httpx.AsyncClient, url: str) -> None:
    """Only InfluxDB Cloud answers /ping without a version header; any other server that does
    (a web server answering 200 to every path) is not InfluxDB. Every InfluxDB answers /query
    with a JSON object, even to refuse it."""
    try:
        response = await client.get("/query", params={"q": "SHOW DATABASES"})
    except httpx.TransportError as exc:
        raise unreachable_error(url, exc) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        raise HyperfluxError(
            f"{url} is not InfluxDB: /ping has no X-Influxdb-Version header and /query answered "
            f"{response.status_code} with {kind} instead of JSON; set HYPERFLUX_INFLUX_URL to the "
            "InfluxDB HTTP API address (e.g. http://HOST:8086)"
        )


def check_db_name(name: str) -> str:
    if not _DB_NAME.fullmatch(name):
        raise ConfigError(
            f"database name {name!r} is not allowed: use 1-64 letters, digits, _ or - "
            "(HYPERFLUX_INFLUX_DB)"
        )
    return name


def parse_retention(retention: str) -> int | None:
    """Retention in nanoseconds; None for INF (keep forever) or empty (leave as is)."""
    try:
        text = check_retention(retention)
    except ValueError as exc:
        raise ConfigError(
            f"HYPERFLUX_INFLUX_RETENTION={retention!r} is not valid: expected INF or a duration "
            f"of at least 1h such as 30d, 12w or 720h ({exc})"
        ) from None
    return None if text in (None, "INF") else duration_ns(text)


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a duration as InfluxDB prints it ("720h0m0s", "1h30m0s", "0s")."""
    return round(sum(float(n) * DURATION_NS[unit] for n, unit in _GO_DURATION_PART.findall(text)))


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier (names are validated first; this is the backstop)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_shard_duration(retention_ns: int) -> str:
    """InfluxDB's own choice of shard group duration for a retention (1h, 1d or 7d)."""
    if retention_ns < 2 * DAY_NS:
        return "1h"
    return "1d" if retention_ns <= 180 * DAY_NS else "7d"


class _Forbidden(HyperfluxError):
    """403: authenticated, but the user may not run that statement."""


async def _run(client: httpx.AsyncClient, statement: str) -> list[dict[str, Any]]:
    """One administrative statement (never user input beyond validated names)."""
    url = public_url(client.base_url)
    try:
        response = await client.post("/query", data=query_request(statement, None))
    except httpx.TransportError as exc:
        raise unreachable_error(url, exc) from None
    if response.status_code == 401:
        raise HyperfluxError(f"InfluxDB at {url} refused the credentials (401): {CREDENTIALS_HINT}")
    if response.status_code >= 500:
        raise InfluxUnreachableError(
            f"InfluxDB at {url} is not reachable (/query answered {response.status_code}): "
            "start it, or set HYPERFLUX_INFLUX_URL"
        )
    if response.status_code == 403:
        try:
            detail = response.json().get("error", "")
        except ValueError:
            detail = response.text[:200]
        raise _Forbidden(f"InfluxDB at {url} refused the statement (403): {detail}")
    return parse_query_response(response)


async def ensure_database(
    client: httpx.AsyncClient,
    target: InfluxTarget,
    info: ServerInfo,
    retention: str | None = "INF",
    *,
    org: str | None = None,
) -> None:
    """Make `target.db` writable over the v1 API and apply `retention` where the server allows.

    `retention=None` leaves an existing retention alone (a new 1.x database keeps forever, a
    new 2.x bucket too). `org` (2.x only) picks the organization for a new bucket; by default
    the only one the token sees.
    """
    check_db_name(target.db)
    retention_ns = None if retention is None else parse_retention(retention)
    if info.flavour == 1:
        await _ensure_v1(client, target.db, retention, retention_ns)
    elif info.flavour == 2:
        await asyncio.to_thread(_ensure_bucket, target, retention or "INF", retention_ns, org)
    else:
        log.info(
            "%s creates database %r on the first write; its retention is set by the server "
            "admin (influxdb3 create database --retention-period), not by hyperflux",
            info,
            target.db,
        )


@dataclass(frozen=True)
class DatabaseState:
    """What `inspect_database` found. `exists` is None where the server creates the database on
    the first write (3.x); `retention` is the 1.x default policy's duration as the server prints
    it ("720h0m0s", "0s" = forever), "" when not known."""

    exists: bool | None
    retention: str = ""

    def retention_differs(self, retention: str | None) -> bool:
        """Whether `run` would change the retention to `retention` (None or "": leave it)."""
        if not retention or not self.retention:
            return False
        return parse_retention(retention) != (parse_go_duration(self.retention) or None)


async def inspect_database(
    client: httpx.AsyncClient, target: InfluxTarget, info: ServerInfo
) -> DatabaseState:
    """The read-only counterpart of `ensure_database` (for `check`): nothing is created or
    altered."""
    check_db_name(target.db)
    if info.flavour == 3:
        return DatabaseState(exists=None)
    if info.flavour == 2:
        return DatabaseState(exists=await asyncio.to_thread(_bucket_exists, target))
    quoted = quote_ident(target.db)
    try:
        if target.db not in {row["name"] for row in await _run(client, "SHOW DATABASES")}:
            return DatabaseState(exists=False)
        policies = await _run(client, f"SHOW RETENTION POLICIES ON {quoted}")
    except _Forbidden as exc:
        raise HyperfluxError(f"{exc}; the user needs READ on {quoted}") from None
    default = next((p for p in policies if p.get("default")), None)
    return DatabaseState(exists=True, retention=default["duration"] if default else "")


async def _ensure_v1(
    client: httpx.AsyncClient, db: str, retention: str | None, retention_ns: int | None
) -> None:
    quoted = quote_ident(db)
    try:
        existing = {row["name"] for row in await _run(client, "SHOW DATABASES")}
        if db not in existing:
            await _run(client, f"CREATE DATABASE {quoted}")
            log.info("created database %r", db)
    except _Forbidden as exc:
        raise HyperfluxError(
            f"{exc}; as an InfluxDB admin run: CREATE DATABASE {quoted}; "
            f"GRANT ALL ON {quoted} TO <user>"
        ) from None
    if retention is None:
        return
    try:
        policies = await _run(client, f"SHOW RETENTION POLICIES ON {quoted}")
        await _apply_retention(client, db, policies, retention, retention_ns)
    except _Forbidden as exc:
        log.warning("retention %s not applied to %r: %s (needs an admin user)", retention, db, exc)


async def _apply_retention(
    client: httpx.AsyncClient,
    db: str,
    policies: list[dict[str, Any]],
    retention: str,
    retention_ns: int | None,
) -> None:
    duration = "INF" if retention_ns is None else retention.strip()
    default = next((p for p in policies if p.get("default")), None)
    if default is None:
        shard = (
            ""
            if retention_ns is None
            else f" SHARD DURATION {default_shard_duration(retention_ns)}"
        )
        await _run(
            client,
            f'CREATE RETENTION POLICY "autogen" ON {quote_ident(db)} DURATION {duration} '
            f"REPLICATION 1{shard} DEFAULT",
        )
        log.info("created default retention policy autogen (%s) on %r", duration, db)
        return
    current = parse_go_duration(default["duration"]) or None
    if current == retention_ns:
        return
    shard = ""
    if retention_ns is not None and retention_ns < parse_go_duration(default["shardGroupDuration"]):
        shard = f" SHARD DURATION {default_shard_duration(retention_ns)}"
    try:
        await _run(
            client,
            f"ALTER RETENTION POLICY {quote_ident(default['name'])} ON {quote_ident(db)} "
            f"DURATION {duration}{shard} DEFAULT",
        )
    except InfluxQueryError as exc:
        raise HyperfluxError(f"retention {retention} not applied to {db!r}: {exc}") from None
    log.info(
        "retention of %r (policy %s) changed from %s to %s",
        db,
        default["name"],
        default["duration"],
        duration,
    )


def _bucket_how(target: InfluxTarget, retention_ns: int | None) -> str:
    """The commands that create or map the bucket by hand, for the error messages."""
    seconds = 0 if retention_ns is None else retention_ns // 1_000_000_000
    return (
        f"create it with `influx bucket create --name {target.db} --retention {seconds}s` "
        f"(the v1 API then maps database {target.db!r} to it), or map an existing bucket with "
        f"`influx v1 dbrp create --db {target.db} --rp autogen --bucket-id <id> --default`"
    )


@contextlib.contextmanager
def _v2_api(target: InfluxTarget, org: str | None, doing: str, how: str) -> Iterator[Any]:
    """An influxdb-client for the v2 API whose failures become one-line HyperfluxErrors."""
    import urllib3  # influxdb-client only loads for 2.x servers, off the hot path
    from influxdb_client import InfluxDBClient
    from influxdb_client.rest import ApiException

    with InfluxDBClient(
        url=public_url(target.url),
        token=target.password or "",
        org=org,
        timeout=round(target.timeout * 1000),
    ) as client:
        try:
            yield client
        except ApiException as exc:
            if exc.status == 401:
                raise HyperfluxError(
                    f"InfluxDB at {public_url(target.url)} refused the token (401): "
                    + CREDENTIALS_HINT
                ) from None
            raise HyperfluxError(
                f"cannot {doing} bucket {target.db!r} through the v2 API "
                f"({exc.status} {exc.reason}): {how}"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise InfluxUnreachableError(
                f"InfluxDB v2 API at {public_url(target.url)} failed "
                f"({type(exc).__name__}): start it, or set HYPERFLUX_INFLUX_URL"
            ) from None
        except (TypeError, ValueError, AttributeError) as exc:  # the answer was not the v2 API's
            raise HyperfluxError(
                f"{public_url(target.url)} did not answer the InfluxDB v2 bucket API as InfluxDB "
                f"does ({type(exc).__name__}): is HYPERFLUX_INFLUX_URL an InfluxDB 2.x? {how}"
            ) from None


def _ensure_bucket(
    target: InfluxTarget, retention: str, retention_ns: int | None, org: str | None
) -> None:
    """2.x: the bucket named like the database must exist; create it if the token may."""
    from influxdb_client import BucketRetentionRules

    how = _bucket_how(target, retention_ns)
    with _v2_api(target, org, "find or create", how) as client:
        buckets = client.buckets_api()
        if buckets.find_bucket_by_name(target.db) is not None:
            log.info("bucket %r exists; its retention is managed in InfluxDB", target.db)
            return
        orgs = client.organizations_api().find_organizations(**({"org": org} if org else {}))
        if len(orgs) != 1:
            names = ", ".join(sorted(o.name for o in orgs)) or "none visible to the token"
            raise HyperfluxError(
                f"bucket {target.db!r} is missing and the organization for it is unclear "
                f"({names}): {how}"
            )
        seconds = 0 if retention_ns is None else retention_ns // 1_000_000_000
        rules = [] if retention_ns is None else [BucketRetentionRules(every_seconds=seconds)]
        buckets.create_bucket(bucket_name=target.db, retention_rules=rules, org_id=orgs[0].id)
    log.info("created bucket %r (retention %s) in org %s", target.db, retention, orgs[0].name)


def _bucket_exists(target: InfluxTarget) -> bool:
    with _v2_api(target, None, "find", _bucket_how(target, None)) as client:
        return client.buckets_api().find_bucket_by_name(target.db) is not None
