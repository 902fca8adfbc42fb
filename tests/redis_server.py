"""A private redis-server (the Debian `redis-server` package) for tests: its own directory, a
free 127.0.0.1 port, no persistence, started and stopped by PID; `stop()` then `start()` brings
it back on the same port (an outage)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from utils.net import free_port
from utils.processes import terminate

INSTALL_HINT = (
    "redis-server is not installed: run `make test`, which installs the redis-server package"
)


def redis_server_path() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


class LocalRedis:
    def __init__(self, root: Path, port: int | None = None, password: str | None = None) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> None:
        binary = redis_server_path()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.root.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.root), "--logfile", "redis.log"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, cwd=self.root)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.root / "redis.log").read_text(errors="replace").splitlines()[-3:]
                raise RuntimeError(f"redis-server did not start on {self.port}: {log}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 10 s): clients see their connection closed."""
        process, self.process = self.process, None
        if process is not None:
            terminate(process, 10)
