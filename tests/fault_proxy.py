"""An HTTP proxy in front of a real influxd that injects faults: status codes, Retry-After, delays.

The database behind it is real; only the answers a real server gives under load or failure
(429, 503, a stall) are staged, because a healthy local influxd never produces them on demand.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import httpx


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0  # seconds to stall before answering (or before forwarding, if status is 0)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the writer's timeout) is part of the scenario, not an error."""


class LoopbackServer:
    """An HTTP server on a free loopback port, served from a thread while in a `with` block;
    subclasses give the handler class (`_handler`)."""

    def __init__(self) -> None:
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class FaultProxy(LoopbackServer):
    """Forwards to `upstream` unless a queued fault applies to the next /write request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: deque[Fault] = deque()
        self.write_times: list[float] = []
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/write"):
                    proxy.write_times.append(time.monotonic())
                    fault = proxy.faults.popleft() if proxy.faults else None
                    if fault is not None:
                        time.sleep(fault.delay)
                        if fault.status:
                            self.send_response(fault.status)
                            if fault.retry_after is not None:
                                self.send_header("Retry-After", fault.retry_after)
                            payload = b'{"error":"injected fault"}'
                            self.send_header("Content-Type", "application/json")
                            self.send_header("Content-Length", str(len(payload)))
                            self.end_headers()
                            self.wfile.write(payload)
                            return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                try:
                    upstream = httpx.request(
                        method,
                        proxy.upstream + self.path,
                        content=body,
                        headers=headers,
                        timeout=30,
                    )
                except httpx.HTTPError:  # upstream gone, e.g. a stalled request outlived its test
                    self.send_error(502)
                    return
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        return Handler
