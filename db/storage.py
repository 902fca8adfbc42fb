"""The storage layer opened from settings: which server, bootstrapped, with a running writer.

`async with open_storage(settings) as storage:` resolves the InfluxDB to use (starting the
embedded one when none is configured), detects its flavour, makes the database ready, starts the
writer (which first replays anything left in the spool), and on exit flushes or spools every point
and stops what it started.

It starts in any weather: when the configured InfluxDB does not answer, one line says so, the
writer starts held (every point goes to the spool) and a background task retries with capped
backoff; once the server answers, the database is bootstrapped, `storage.server` is known,
`storage.ready` is set and the writer replays the spool. A server that answers but is not a
usable InfluxDB (not InfluxDB at all, credentials refused, a bad database name) is a
configuration error: `open_storage` raises a one-line HyperfluxError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from config import Settings, load_settings
from db.bootstrap import ServerInfo, detect_server, ensure_database
from db.client import InfluxTarget, InfluxUnreachableError, public_url
from db.dead_letter import DeadLetters
from db.embedded import DEFAULT_URL, resolve_influx
from db.local_server import LocalInfluxd
from db.spool import Spool
from db.writer import InfluxWriter
from utils.backoff import jittered_backoff
from utils.errors import HyperfluxError

log = logging.getLogger(__name__)

BOOTSTRAP_RETRY_BASE = 0.5
BOOTSTRAP_RETRY_CAP = 30.0


class Storage:
    """What `open_storage` yields. `server` is None until InfluxDB answered and the database is
    ready; `ready` is set (and the writer released) at that moment."""

    def __init__(
        self,
        target: InfluxTarget,
        server: ServerInfo | None,
        writer: InfluxWriter,
        embedded: LocalInfluxd | None,
    ) -> None:
        self.target = target
        self.writer = writer
        self.embedded = embedded
        self.ready = asyncio.Event()
        self._server: ServerInfo | None = None
        if server is not None:
            self._bootstrapped(server)

    @property
    def server(self) -> ServerInfo | None:
        """The InfluxDB flavour and version, once it has answered."""
        return self._server

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the database is bootstrapped; False when `timeout` s passed first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return self.ready.is_set()

    def _bootstrapped(self, server: ServerInfo) -> None:
        self._server = server
        self.ready.set()
        self.writer.release()


def target_from_settings(settings: Settings, url: str) -> InfluxTarget:
    password = settings.influx_password
    return InfluxTarget(
        url=url,
        db=settings.influx_db,
        username=settings.influx_username,
        password=password.get_secret_value() if password else None,
        timeout=settings.influx_timeout,
        gzip=settings.influx_gzip_enabled(url),
    )


def default_target(settings: Settings | None = None) -> InfluxTarget:
    """The configured InfluxDB, else the local default URL: what notebooks read from."""
    settings = settings or load_settings()
    return target_from_settings(settings, settings.influx_url or DEFAULT_URL)


def open_spool(settings: Settings) -> Spool:
    return Spool(
        settings.spool_dir,
        max_bytes=settings.influx_spool_max_bytes,
        policy=settings.influx_spool_full_policy,
    )


async def bootstrap(target: InfluxTarget, retention: str | None) -> ServerInfo:
    """Detect the server and make the database ready (raises HyperfluxError)."""
    async with target.async_client() as client:
        info = await detect_server(client)
        await ensure_database(client, target, info, retention)
    return info


@contextlib.asynccontextmanager
async def open_storage(
    settings: Settings,
    close_timeout: float = 10.0,
    *,
    on_replayed: Callable[[list[str]], None] | None = None,
    retry_cap: float = BOOTSTRAP_RETRY_CAP,
) -> AsyncIterator[Storage]:
    """Storage with a started writer. `on_replayed` is given to the writer before it starts, so
    it also sees the segments an earlier run left in the spool (set later, it may miss some);
    `retry_cap` caps the seconds between bootstrap tries while InfluxDB does not answer."""
    url, embedded = resolve_influx(settings.influx_url, settings.data_dir)
    try:
        target = target_from_settings(settings, url)
        retention = settings.influx_retention
        try:
            info: ServerInfo | None = await bootstrap(target, retention)
        except InfluxUnreachableError as exc:
            info = None
            log.warning(
                "%s; collecting points into the spool at %s meanwhile, and the database is "
                "bootstrapped when the server answers",
                exc,
                settings.spool_dir,
            )
        storage: Storage | None = None

        async def create_database() -> bool:
            assert storage is not None and storage.server is not None
            async with target.async_client() as client:
                await ensure_database(client, target, storage.server, retention)
            return True

        writer = InfluxWriter(
            target,
            open_spool(settings),
            DeadLetters(settings.dead_letter_dir),
            batch_size=settings.influx_batch_size,
            flush_interval=settings.influx_flush_interval,
            max_pending=settings.influx_max_pending_points,
            on_database_missing=create_database,
            on_replayed=on_replayed,
        )
        if info is None:
            writer.hold()
        else:
            log.info("writing to %s, database %r", info, target.db)
        storage = Storage(target, info, writer, embedded)
        await writer.start()
        retry = None
        if info is None:
            retry = asyncio.create_task(
                _bootstrap_when_up(storage, retention, retry_cap), name="storage-bootstrap"
            )
        try:
            yield storage
        finally:
            if retry is not None:
                retry.cancel()
                await asyncio.gather(retry, return_exceptions=True)
            await writer.close(close_timeout)
    finally:
        if embedded is not None:
            embedded.stop()


async def _bootstrap_when_up(storage: Storage, retention: str | None, cap: float) -> None:
    """Retry the bootstrap with capped jittered backoff until it succeeds, then release the
    writer. Unreachable tries are silent (the start said so once); any other failure is logged
    once per distinct message and retried at the cap."""
    url = public_url(storage.target.url)
    attempt = 0
    said = ""
    while True:
        attempt += 1
        await asyncio.sleep(jittered_backoff(attempt, base=BOOTSTRAP_RETRY_BASE, cap=cap))
        try:
            info = await bootstrap(storage.target, retention)
        except InfluxUnreachableError:
            continue
        except HyperfluxError as exc:
            message = str(exc)
            attempt = max(attempt, 64)  # a configuration matter: retry slowly
        except Exception as exc:  # a bug must not leave the writer held for good
            message = f"bootstrap of InfluxDB at {url} failed: {exc!r}"
            attempt = max(attempt, 64)
        else:
            storage._bootstrapped(info)
            log.info(
                "InfluxDB at %s answers (%s): database %r ready; replaying %d spooled points",
                url,
                info,
                storage.target.db,
                storage.writer.spool.points,
            )
            return
        if message != said:
            said = message
            log.error("%s; points keep going to the spool until this is fixed", message)
