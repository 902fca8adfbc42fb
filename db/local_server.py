"""A private influxd (the Debian `influxdb` 1.x package) run as a child process.

Used twice: by `main.py` when no InfluxDB URL is configured (the embedded default) and by the
test fixtures. The generated config binds both listeners (HTTP and the RPC/backup one) to
127.0.0.1 on the given ports and turns reporting, monitoring, subscribers and continuous
queries off, so one instance never collides with another or with a server the user runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from utils.errors import InfluxUnavailableError
from utils.net import free_port
from utils.processes import terminate

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install it with `sudo apt-get install -y influxdb` (Debian/Ubuntu), "
    "or point HYPERFLUX_INFLUX_URL at a running InfluxDB"
)

_PR_SET_PDEATHSIG = 1


def influxd_path() -> str | None:
    return shutil.which("influxd") or (
        "/usr/bin/influxd" if os.access("/usr/bin/influxd", os.X_OK) else None
    )


def _die_with_parent() -> None:
    """Runs in the child before exec: new session (Ctrl-C in the terminal must not stop the
    server before the writer has flushed), and SIGTERM when the parent dies (no orphans)."""
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalInfluxd:
    """One influxd with its own directory, ports and config file; started and stopped by PID."""

    def __init__(
        self,
        root: Path,
        *,
        http_port: int | None = None,
        rpc_port: int | None = None,
        auth_enabled: bool = False,
        max_body_size: int = 25_000_000,
        max_row_limit: int = 0,
        log_level: str = "warn",
    ) -> None:
        self.root = Path(root)
        self.http_port = http_port or free_port()
        self.rpc_port = rpc_port or free_port()
        self.auth_enabled = auth_enabled
        self.max_body_size = max_body_size
        self.max_row_limit = max_row_limit  # rows of a non-chunked /query answer; 0: no limit
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def config_path(self) -> Path:
        return self.root / "influxd.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "influxd.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def render_config(self) -> str:
        root = self.root.resolve()
        return f"""\
reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[ifql]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.http_port}"
  auth-enabled = {str(self.auth_enabled).lower()}
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  max-body-size = {self.max_body_size}
  max-row-limit = {self.max_row_limit}

[logging]
  level = "{self.log_level}"
  suppress-logo = true
"""

    def start(self, timeout: float = 30.0) -> None:
        binary = influxd_path()
        if binary is None:
            raise InfluxUnavailableError(f"influxd is not installed: {INSTALL_HINT}")
        if self.process and self.process.poll() is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [binary, "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                preexec_fn=_die_with_parent,
            )
        self._wait_ready(timeout)
        log.info("started influxd pid %s at %s (files in %s)", self.pid, self.url, self.root)

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise InfluxUnavailableError(
                    f"influxd exited with code {self.process.returncode} at start-up "
                    f"(log {self.log_path}): {' | '.join(tail)}"
                )
            try:
                if httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise InfluxUnavailableError(
            f"influxd did not answer on {self.url} within {timeout:.0f} s (log {self.log_path})"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        terminate(process, timeout)
        log.info("stopped influxd pid %s", process.pid)

    def kill(self) -> None:
        """SIGKILL now: a crash, for tests."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)

    def __enter__(self) -> LocalInfluxd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
