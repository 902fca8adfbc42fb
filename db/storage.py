"""The storage layer opened from settings: which server, bootstrapped, with a running writer.

`async with open_storage(settings) as storage:` resolves the InfluxDB to use (starting the
embedded one when none is configured), detects its flavour, makes the database ready, starts the
writer (which first replays anything left in the spool), and on exit flushes or spools every point
and stops what it started.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from config import Settings, load_settings
from db.bootstrap import ServerInfo, detect_server, ensure_database
from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.embedded import DEFAULT_URL, resolve_influx
from db.local_server import LocalInfluxd
from db.spool import Spool
from db.writer import InfluxWriter

log = logging.getLogger(__name__)


@dataclass
class Storage:
    target: InfluxTarget
    server: ServerInfo
    writer: InfluxWriter
    embedded: LocalInfluxd | None


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


@contextlib.asynccontextmanager
async def open_storage(settings: Settings, close_timeout: float = 10.0) -> AsyncIterator[Storage]:
    url, embedded = resolve_influx(settings.influx_url, settings.data_dir)
    try:
        target = target_from_settings(settings, url)
        async with target.async_client() as client:
            info = await detect_server(client)
            await ensure_database(client, target, info, settings.influx_retention)
        log.info("writing to %s, database %r", info, target.db)

        async def create_database() -> bool:
            async with target.async_client() as client:
                await ensure_database(client, target, info, settings.influx_retention)
            return True

        writer = InfluxWriter(
            target,
            open_spool(settings),
            DeadLetters(settings.dead_letter_dir),
            batch_size=settings.influx_batch_size,
            flush_interval=settings.influx_flush_interval,
            max_pending=settings.influx_max_pending_points,
            on_database_missing=create_database,
        )
        await writer.start()
        try:
            yield Storage(target, info, writer, embedded)
        finally:
            await writer.close(close_timeout)
    finally:
        if embedded is not None:
            embedded.stop()
