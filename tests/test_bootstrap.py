"""Bootstrap: server detection from /ping, database creation and retention on a real 1.x influxd."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest

from db.bootstrap import (
    ServerInfo,
    detect_server,
    ensure_database,
    parse_go_duration,
    parse_ping,
    parse_retention,
    quote_ident,
)
from db.client import InfluxTarget, InfluxUnreachableError
from db.local_server import LocalInfluxd
from tests.conftest import influxql
from tests.test_db_storage import NotInflux
from utils.errors import ConfigError, HyperfluxError, InfluxUnavailableError
from utils.net import free_port

_names = itertools.count(1)

# (X-Influxdb-Version, X-Influxdb-Build) as sent by each server -> (flavour, edition). Sources:
# the real 1.6.7 here; influxdata/docs-v2 content/shared/identify-version.md; curl transcripts
# of 2.x servers; influxdb3_server's ping() handler (build "Core" unless built as Enterprise).
RECORDED_PINGS = [
    ("1.6.7~rc0", "OSS", 1, "OSS"),
    ("1.8.10", "OSS", 1, "OSS"),
    ("1.11.8", "Enterprise", 1, "Enterprise"),
    ("1.9.2-c1.9.2", "ENT", 1, "Enterprise"),
    ("v2.7.12", "OSS", 2, "OSS"),
    ("2.7.8", "OSS", 2, "OSS"),
    ("v2.3.0+SNAPSHOT.090f681737", "OSS", 2, "OSS"),
    (None, None, 2, "Cloud"),  # InfluxDB Cloud sends no version header
    ("3.6.0", "Core", 3, "Core"),
    ("3.8.4", "Enterprise", 3, "Enterprise"),
    ("3.3.0", "3.3.0", 3, "Core"),  # a distro build that put the version in the build header
]


@pytest.mark.parametrize(("version", "build", "flavour", "edition"), RECORDED_PINGS)
def test_ping_headers_of_every_major_version(
    version: str | None, build: str | None, flavour: int, edition: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if version is not None:
        headers["x-influxdb-version"] = version
    if build is not None:
        headers["X-Influxdb-Build"] = build

    assert parse_ping(headers) == ServerInfo(flavour, edition, version or "", build or "")


def test_ping_of_an_unsupported_version_says_which_versions_work() -> None:
    with pytest.raises(InfluxUnavailableError, match=r"needs 1\.x, 2\.x or 3\.x"):
        parse_ping({"X-Influxdb-Version": "0.13.0"})


def test_retention_and_duration_parsing() -> None:
    assert parse_retention("INF") is None
    assert parse_retention("inf") is None
    assert parse_retention("30d") == 30 * 86_400 * 10**9
    assert parse_retention("1h30m") == 5_400 * 10**9
    assert parse_retention("2w") == 14 * 86_400 * 10**9
    assert parse_go_duration("720h0m0s") == 30 * 86_400 * 10**9
    assert parse_go_duration("1h30m0s") == 5_400 * 10**9
    assert parse_go_duration("0s") == 0
    assert quote_ident('we"ird\\db') == '"we\\"ird\\\\db"'


@pytest.mark.parametrize("bad", ["30 days", "30d; DROP DATABASE x", "-1h", "1.5h", "30m", "d"])
def test_bad_retention_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_retention(bad)
    assert "\n" not in str(err.value)


def _policies(url: str, db: str, auth: tuple[str, str] | None = None) -> list[dict]:
    response = httpx.post(
        f"{url}/query", data={"q": f'SHOW RETENTION POLICIES ON "{db}"'}, auth=auth
    )
    series = response.json()["results"][0]["series"][0]
    return [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]


def _databases(url: str, auth: tuple[str, str] | None = None) -> list[str]:
    response = httpx.post(f"{url}/query", data={"q": "SHOW DATABASES"}, auth=auth)
    series = response.json()["results"][0]["series"][0]
    return [v[0] for v in series.get("values", [])]


@pytest.fixture
def fresh_db(influxd: LocalInfluxd) -> Iterator[str]:
    """A database name that does not exist yet; dropped afterwards."""
    name = f"boot-{next(_names)}"
    yield name
    influxql(influxd.url, f'DROP DATABASE "{name}"')


async def _bootstrap(url: str, db: str, retention: str | None = "INF", **auth: str) -> ServerInfo:
    target = InfluxTarget(url=url, db=db, **auth)
    async with target.async_client() as client:
        info = await detect_server(client)
        await ensure_database(client, target, info, retention)
    return info


async def test_detects_the_real_1x_server(influxd: LocalInfluxd) -> None:
    async with InfluxTarget(url=influxd.url, db="x").async_client() as client:
        info = await detect_server(client)
    assert (info.flavour, info.edition, info.build) == (1, "OSS", "OSS")
    assert info.version.startswith("1.6.7")


async def test_creates_the_database_once(influxd: LocalInfluxd, fresh_db: str) -> None:
    await _bootstrap(influxd.url, fresh_db)
    await _bootstrap(influxd.url, fresh_db)

    assert _databases(influxd.url).count(fresh_db) == 1
    assert [(p["name"], p["duration"], p["default"]) for p in _policies(influxd.url, fresh_db)] == [
        ("autogen", "0s", True)
    ]


async def test_applies_retention_to_the_default_policy(
    influxd: LocalInfluxd, fresh_db: str
) -> None:
    await _bootstrap(influxd.url, fresh_db, "30d")
    assert [(p["name"], p["duration"]) for p in _policies(influxd.url, fresh_db)] == [
        ("autogen", "720h0m0s")
    ]

    await _bootstrap(influxd.url, fresh_db, "INF")
    assert _policies(influxd.url, fresh_db)[0]["duration"] == "0s"


async def test_short_retention_also_shortens_the_shard_groups(
    influxd: LocalInfluxd, fresh_db: str
) -> None:
    await _bootstrap(influxd.url, fresh_db, "36h")
    policy = _policies(influxd.url, fresh_db)[0]
    assert (policy["duration"], policy["shardGroupDuration"], policy["default"]) == (
        "36h0m0s",
        "1h0m0s",
        True,
    )


async def test_retention_none_leaves_the_policy_alone(influxd: LocalInfluxd, fresh_db: str) -> None:
    await _bootstrap(influxd.url, fresh_db, "30d")
    await _bootstrap(influxd.url, fresh_db, None)
    assert _policies(influxd.url, fresh_db)[0]["duration"] == "720h0m0s"


async def test_a_database_without_default_policy_gets_one(
    influxd: LocalInfluxd, fresh_db: str
) -> None:
    influxql(influxd.url, f'CREATE DATABASE "{fresh_db}"')
    influxql(influxd.url, f'DROP RETENTION POLICY "autogen" ON "{fresh_db}"')

    await _bootstrap(influxd.url, fresh_db, "30d")

    assert [(p["name"], p["duration"], p["default"]) for p in _policies(influxd.url, fresh_db)] == [
        ("autogen", "720h0m0s", True)
    ]


@pytest.mark.parametrize("name", ['x"; DROP DATABASE y', "a b", "", "é", "x" * 65, "-x"])
async def test_a_bad_database_name_is_refused_before_any_request(
    influxd: LocalInfluxd, name: str
) -> None:
    before = _databases(influxd.url)
    with pytest.raises(ConfigError, match="is not allowed"):
        await _bootstrap(influxd.url, name)
    assert _databases(influxd.url) == before


async def test_unreachable_server_is_one_line_without_credentials() -> None:
    url = f"http://hyper:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(InfluxUnavailableError) as err:
        await _bootstrap(url, "x")
    assert str(err.value) == (
        f"InfluxDB at {url.replace('hyper:s3cret@', '')} is not reachable (connection refused): "
        "start it, or set HYPERFLUX_INFLUX_URL"
    )


@pytest.fixture
def auth_influxd(make_influxd: Callable[..., LocalInfluxd]) -> LocalInfluxd:
    """An influxd with auth on and one admin user `admin` / `x` (allowed without auth while
    no user exists)."""
    server = make_influxd(auth_enabled=True)
    influxql(server.url, "CREATE USER admin WITH PASSWORD 'x' WITH ALL PRIVILEGES")
    return server


async def test_auth_wrong_password_is_one_clear_line(auth_influxd: LocalInfluxd) -> None:
    with pytest.raises(HyperfluxError) as err:
        await _bootstrap(auth_influxd.url, "hf", username="admin", password="wrong-pw")
    message = str(err.value)
    assert message == (
        f"InfluxDB at {auth_influxd.url} refused the credentials (401): set "
        "HYPERFLUX_INFLUX_USERNAME and HYPERFLUX_INFLUX_PASSWORD "
        "(2.x/3.x: the API token goes in HYPERFLUX_INFLUX_PASSWORD)"
    )
    assert "wrong-pw" not in message


async def test_auth_right_password_creates_and_applies_retention(
    auth_influxd: LocalInfluxd,
) -> None:
    await _bootstrap(auth_influxd.url, "hf", "30d", username="admin", password="x")

    admin = ("admin", "x")
    assert "hf" in _databases(auth_influxd.url, admin)
    assert _policies(auth_influxd.url, "hf", admin)[0]["duration"] == "720h0m0s"


async def test_auth_non_admin_user(
    auth_influxd: LocalInfluxd, caplog: pytest.LogCaptureFixture
) -> None:
    admin = ("admin", "x")
    for statement in (
        "CREATE USER bob WITH PASSWORD 'b'",
        "CREATE DATABASE hf",
        "GRANT ALL ON hf TO bob",
    ):
        httpx.post(
            f"{auth_influxd.url}/query", data={"q": statement}, auth=admin
        ).raise_for_status()

    # The database exists: fine, but retention needs an admin, so it is only a warning.
    with caplog.at_level(logging.WARNING, logger="db.bootstrap"):
        await _bootstrap(auth_influxd.url, "hf", "30d", username="bob", password="b")
    assert "retention 30d not applied to 'hf'" in caplog.text
    assert _policies(auth_influxd.url, "hf", admin)[0]["duration"] == "0s"

    # A missing database cannot be created by bob: say what an admin must run.
    with pytest.raises(HyperfluxError) as err:
        await _bootstrap(auth_influxd.url, "other", username="bob", password="b")
    assert "requires admin privilege" in str(err.value)
    assert str(err.value).endswith('CREATE DATABASE "other"; GRANT ALL ON "other" TO <user>')
    assert "\n" not in str(err.value)


async def test_2x_path_explains_how_to_create_the_bucket(influxd: LocalInfluxd) -> None:
    # 1.6.7 has no v2 API (404), which is what a token without bucket rights meets too.
    target = InfluxTarget(url=influxd.url, db="hf2", password="token")
    async with target.async_client() as client:
        with pytest.raises(HyperfluxError) as err:
            await ensure_database(client, target, ServerInfo(2, "OSS", "v2.7.12", "OSS"), "30d")
    assert str(err.value) == (
        "cannot find or create bucket 'hf2' through the v2 API (404 Not Found): create it with "
        "`influx bucket create --name hf2 --retention 2592000s` (the v1 API then maps database "
        "'hf2' to it), or map an existing bucket with "
        "`influx v1 dbrp create --db hf2 --rp autogen --bucket-id <id> --default`"
    )
    assert "hf2" not in _databases(influxd.url)


async def test_2x_path_unreachable_is_one_line() -> None:
    target = InfluxTarget(url=f"http://127.0.0.1:{free_port()}", db="hf2", password="token")
    async with target.async_client() as client:
        with pytest.raises(InfluxUnavailableError, match=r"^InfluxDB v2 API at .* failed"):
            await ensure_database(client, target, ServerInfo(2, "Cloud", ""), "INF")


async def test_3x_needs_nothing_and_says_who_sets_retention(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = InfluxTarget(url=f"http://127.0.0.1:{free_port()}", db="hf3")  # never contacted
    async with target.async_client() as client:
        with caplog.at_level(logging.INFO, logger="db.bootstrap"):
            await ensure_database(client, target, ServerInfo(3, "Core", "3.6.0", "Core"), "30d")
    assert "retention is set by the server admin" in caplog.text


def _mock_client(answer: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return InfluxTarget(url="http://influx.test:8086", db="x").async_client(
        httpx.MockTransport(answer)
    )


async def test_a_web_server_that_is_not_influxdb_is_a_configuration_error() -> None:
    html = {"Content-Type": "text/html; charset=utf-8"}
    async with _mock_client(lambda r: httpx.Response(200, text="<html/>", headers=html)) as client:
        with pytest.raises(HyperfluxError) as err:
            await detect_server(client)
    assert not isinstance(err.value, InfluxUnreachableError)
    assert str(err.value) == (
        "http://influx.test:8086 is not InfluxDB: /ping has no X-Influxdb-Version header and "
        "/query answered 200 with text/html instead of JSON; set HYPERFLUX_INFLUX_URL to the "
        "InfluxDB HTTP API address (e.g. http://HOST:8086)"
    )


async def test_cloud_answers_ping_without_a_version_and_query_with_json() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(204)
        return httpx.Response(401, json={"code": "unauthorized", "message": "unauthorized access"})

    async with _mock_client(answer) as client:
        assert await detect_server(client) == ServerInfo(2, "Cloud", "", "")


async def test_a_5xx_on_ping_or_no_connection_is_unreachable_not_misconfigured() -> None:
    async with _mock_client(lambda r: httpx.Response(502, text="Bad Gateway")) as client:
        with pytest.raises(InfluxUnreachableError, match=r"not reachable \(/ping answered 502\)"):
            await detect_server(client)
    async with InfluxTarget(url=f"http://127.0.0.1:{free_port()}", db="x").async_client() as client:
        with pytest.raises(InfluxUnreachableError, match="connection refused"):
            await detect_server(client)


async def test_2x_path_against_a_server_that_is_not_influxdb_is_one_line() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotInflux)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        target = InfluxTarget(url=url, db="hf2", password="token")
        async with target.async_client() as client:
            with pytest.raises(HyperfluxError) as err:
                await ensure_database(client, target, ServerInfo(2, "Cloud", ""), "INF")
    finally:
        server.shutdown()
        server.server_close()
    message = str(err.value)
    assert message.startswith(f"{url} did not answer the InfluxDB v2 bucket API as InfluxDB does (")
    assert "is HYPERFLUX_INFLUX_URL an InfluxDB 2.x?" in message and "\n" not in message
