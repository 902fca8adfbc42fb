"""Which InfluxDB to use when the user configured none.

With `HYPERFLUX_INFLUX_URL` set, that server is used and nothing is ever started. Without it,
an InfluxDB answering at http://127.0.0.1:8086 is used; failing that, a private influxd is
started with its files under `<data dir>/influxdb`, bound to 127.0.0.1 (port 8086 when free),
and stopped when the job stops.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from db.local_server import INSTALL_HINT, LocalInfluxd, influxd_path
from utils.errors import InfluxUnavailableError
from utils.net import port_is_free

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8086"


def answers_ping(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=timeout).status_code == 204
    except httpx.HTTPError:
        return False


def resolve_influx(configured_url: str | None, data_dir: Path) -> tuple[str, LocalInfluxd | None]:
    """The URL to write to, and the server we started for it (None when we started nothing)."""
    if configured_url:
        return configured_url, None
    if answers_ping(DEFAULT_URL):
        log.info("using the InfluxDB that answers at %s", DEFAULT_URL)
        return DEFAULT_URL, None
    if influxd_path() is None:
        raise InfluxUnavailableError(
            f"no InfluxDB answers at {DEFAULT_URL} and influxd is not installed: {INSTALL_HINT}"
        )
    server = LocalInfluxd(
        Path(data_dir) / "influxdb",
        http_port=8086 if port_is_free(8086) else None,
        rpc_port=8088 if port_is_free(8088) else None,
    )
    server.start()
    return server.url, server
