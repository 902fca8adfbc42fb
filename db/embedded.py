"""Which InfluxDB to use when the user configured none, and serving it after collection.

With `HYPERFLUX_INFLUX_URL` set, that server is used and nothing is ever started. Without it,
an InfluxDB answering at http://127.0.0.1:8086 is used; failing that, a private influxd is
started with its files under `<data dir>/influxdb`, bound to 127.0.0.1 (port 8086 when free),
and stopped when the job stops. `main.py influxdb` starts that same influxd alone, so what the
collector wrote can be read (Grafana, notebooks) once it has stopped.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx

from db.local_server import INSTALL_HINT, LocalInfluxd, influxd_path
from utils.errors import InfluxUnavailableError
from utils.net import port_is_free

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8086"
DEFAULT_RPC_PORT = 8088
SERVE_STOP_SECONDS = 1.5
"""SIGTERM to SIGKILL for the served influxd, so `influxdb` stops within 2 s (a killed influxd
loses nothing: every write it acknowledged is in its WAL)."""

_HTTP_BIND = re.compile(r'\[http\][^\[]*?bind-address = "([^"]+)"')


def answers_ping(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=timeout).status_code == 204
    except httpx.HTTPError:
        return False


def default_port() -> int:
    """The port of DEFAULT_URL, read at call time (the tests point DEFAULT_URL elsewhere)."""
    return urlsplit(DEFAULT_URL).port or 8086


def embedded_root(data_dir: Path) -> Path:
    return Path(data_dir) / "influxdb"


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
    port = default_port()
    server = LocalInfluxd(
        embedded_root(data_dir),
        http_port=port if port_is_free(port) else None,
        rpc_port=DEFAULT_RPC_PORT if port_is_free(DEFAULT_RPC_PORT) else None,
    )
    server.start()
    return server.url, server


def running_influxd(root: Path) -> tuple[int, str] | None:
    """The pid and URL of an influxd already running on the files under `root` (a collector's
    embedded server), found by its `-config` argument in /proc; None when there is none."""
    config = (root / "influxd.conf").resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"-config" not in args[1:-1]:
                continue
            argument = os.fsdecode(args[args.index(b"-config") + 1])
            if (entry / "cwd").resolve().joinpath(argument).resolve() != config:
                continue
        except OSError:  # gone meanwhile, or another user's
            continue
        try:
            bind = _HTTP_BIND.search(config.read_text())
        except OSError:
            bind = None
        return int(entry.name), f"http://{bind[1]}" if bind else "an unknown port"
    return None


def serving_server(configured_url: str | None, data_dir: Path) -> LocalInfluxd:
    """The collector's embedded influxd, not started: same files, same URL (DEFAULT_URL).

    Raises a one-line InfluxUnavailableError when there is nothing to serve (an external server
    is configured) or when the files or the port are in use."""
    root = embedded_root(data_dir)
    if configured_url:
        raise InfluxUnavailableError(
            f"HYPERFLUX_INFLUX_URL is set ({configured_url}): the data is on that server, "
            "there is no embedded influxd to serve"
        )
    if influxd_path() is None:
        raise InfluxUnavailableError(f"influxd is not installed: {INSTALL_HINT}")
    running = running_influxd(root)
    if running is not None:
        pid, url = running
        raise InfluxUnavailableError(
            f"influxd pid {pid} already serves {root} at {url} (a running collector's, or "
            "another `main.py influxdb`): read from it while it runs, or stop that first"
        )
    if answers_ping(DEFAULT_URL):
        raise InfluxUnavailableError(
            f"an InfluxDB already answers at {DEFAULT_URL} (a running collector's, or your "
            "own): a collector without HYPERFLUX_INFLUX_URL writes there, so read from it; "
            f"stop it to serve {root}"
        )
    port = default_port()
    if not port_is_free(port):
        raise InfluxUnavailableError(
            f"port {port} is taken by another process that is not InfluxDB: free it to serve "
            f"{root} at {DEFAULT_URL}"
        )
    return LocalInfluxd(
        root,
        http_port=port,
        rpc_port=DEFAULT_RPC_PORT if port_is_free(DEFAULT_RPC_PORT) else None,
    )


def lacks_database(url: str, db: str) -> bool:
    """Whether the server surely has no database `db` (False when it could not tell)."""
    try:
        response = httpx.get(f"{url}/query", params={"q": "SHOW DATABASES"}, timeout=5.0)
        series = response.json()["results"][0].get("series", [])
    except (httpx.HTTPError, ValueError, LookupError, AttributeError):
        return False
    return not any(row[0] == db for s in series for row in s.get("values", []))


def serve(
    configured_url: str | None, data_dir: Path, db: str, say: Callable[[str], None] = print
) -> int:
    """Serve the embedded influxd on `data_dir` until SIGINT/SIGTERM; `say` gets the one line
    telling where. Returns the exit status: 0 after a signal; the influxd dying on its own is
    an InfluxUnavailableError."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    server = serving_server(configured_url, data_dir)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        process = server.process
        assert process is not None
        if stop.is_set():  # a signal during the start-up
            return 0
        note = " (not created yet: `run` creates it)" if lacks_database(server.url, db) else ""
        say(
            f"serving {server.root} at {server.url}, database {db!r}{note}; "
            "stop with Ctrl-C or SIGTERM"
        )
        while not stop.wait(0.2):
            if process.poll() is not None:
                raise InfluxUnavailableError(
                    f"influxd exited with code {process.returncode} (log {server.log_path})"
                )
        return 0
    finally:
        server.stop(SERVE_STOP_SECONDS)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
