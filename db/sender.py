"""The InfluxDB write protocol: post line protocol to `/write` and sort every answer.

Telegraf's `plugins/outputs/influxdb/http.go` in small: `Sender.send(lines)` returns a typed
`Delivery` and never raises for anything the server or the network does (DESIGN.md):

- 2xx: `OK`, every line is in InfluxDB.
- 400 (partial write, parse error, field type conflict): the server kept the good lines; the batch
  is bisected until each refused line stands alone, and those go to the dead-letter files:
  `DEAD_LETTERED` (the rest is in InfluxDB; `dead_lettered` says how many were not).
- 404 database not found: `on_database_missing` (bootstrap) creates it once, then the lines are
  sent again; `HOLD` when it cannot.
- 413 body too large: split in halves until each part fits; a single line too large for the
  server is dead-lettered.
- 401/403: `HOLD` (the credentials need a human).
- 429, 5xx, other statuses, timeouts, connection errors: `RETRY`, with the server's Retry-After.

The HTTP client is injectable (`client=` an httpx.AsyncClient with its base_url, or `transport=`,
e.g. httpx.MockTransport), so every answer class can be staged without a server.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum

import httpx

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from utils.backoff import parse_retry_after

log = logging.getLogger(__name__)

MAX_SPLIT_DEPTH = 16
_DROPPED = re.compile(r"dropped=(\d+)")


class Outcome(Enum):
    OK = "ok"  # every line is in InfluxDB
    DEAD_LETTERED = "dead_lettered"  # settled, but some lines were refused for good
    RETRY = "retry"  # transient: back off and try again
    HOLD = "hold"  # needs a human (credentials, missing bucket): keep and retry slowly


@dataclass(frozen=True)
class Delivery:
    """What became of one `send()`.

    `written` and `dead_lettered` count the lines that reached InfluxDB or the dead-letter files
    during this call; after a split or bisection they can be non-zero even when the outcome is
    RETRY or HOLD (the whole batch is then sent again; a line written twice overwrites itself).
    """

    outcome: Outcome
    reason: str = ""
    retry_after: float | None = None  # seconds the server asked for (Retry-After)
    written: int = 0
    dead_lettered: int = 0

    @property
    def settled(self) -> bool:
        """Nothing of the batch needs sending again: each line is in InfluxDB or dead-lettered."""
        return self.outcome in (Outcome.OK, Outcome.DEAD_LETTERED)


def _settled(written: int, dead_lettered: int, reason: str = "") -> Delivery:
    if dead_lettered:
        return Delivery(Outcome.DEAD_LETTERED, reason, None, written, dead_lettered)
    return Delivery(Outcome.OK, written=written)


class Sender:
    def __init__(
        self,
        target: InfluxTarget,
        dead_letters: DeadLetters,
        *,
        on_database_missing: Callable[[], Awaitable[bool]] | None = None,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target = target
        self.dead_letters = dead_letters
        self.on_database_missing = on_database_missing
        self._client = client
        self._transport = transport
        self._owns_client = client is None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self.target.async_client(self._transport)
        return self._client

    async def send(self, lines: list[str]) -> Delivery:
        """Post `lines` (no trailing newlines) until the answer settles them or says wait."""
        return await self._post(lines, 0, created_db=False)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    async def _post(self, lines: list[str], depth: int, *, created_db: bool) -> Delivery:
        body = "\n".join(lines).encode("utf-8")
        if self.target.gzip:
            body = gzip.compress(body, compresslevel=1)
        try:
            response = await self.client.post(
                "/write",
                params=self.target.write_params(),
                content=body,
                headers=self.target.write_headers(),
            )
        except httpx.RemoteProtocolError as exc:
            if await self._answers_ping():
                # influxd echoes a refused line in a header; a control character in it makes the
                # answer unreadable. The batch, not the server, is the problem: find the line.
                message = f"unreadable answer to a write, likely a refused line ({exc})"
                return await self._rejected(lines, message, depth)
            return Delivery(Outcome.RETRY, f"InfluxDB unreachable ({type(exc).__name__})")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return Delivery(Outcome.RETRY, f"InfluxDB unreachable ({type(exc).__name__})")
        status = response.status_code
        if status < 300:
            return Delivery(Outcome.OK, written=len(lines))
        message = _error_text(response)
        if status == 400:
            return await self._rejected(lines, message, depth)
        if status == 413 and len(lines) > 1:
            return await self._split(lines, depth)
        if status == 413:
            reason = f"413: {message}"
            return _settled(0, self.dead_letters.add(lines, reason), reason)
        if status == 404 and "database not found" in message:
            can_create = self.on_database_missing is not None and not created_db
            if can_create and await self.on_database_missing():  # type: ignore[misc]
                return await self._post(lines, depth, created_db=True)
            return Delivery(Outcome.HOLD, f"database missing: {message}")
        if status in (401, 403):
            return Delivery(
                Outcome.HOLD,
                f"InfluxDB refused the credentials ({status}): set HYPERFLUX_INFLUX_USERNAME "
                "and HYPERFLUX_INFLUX_PASSWORD",
            )
        reason = f"InfluxDB answered {status}: {message}"
        return Delivery(
            Outcome.RETRY, reason, parse_retry_after(response.headers.get("Retry-After"))
        )

    async def _answers_ping(self) -> bool:
        try:
            return (await self.client.get("/ping")).status_code < 300
        except httpx.HTTPError:
            return False

    async def _split(self, lines: list[str], depth: int) -> Delivery:
        """Both halves in turn; stops at the first that does not settle."""
        middle = len(lines) // 2
        written = dead_lettered = 0
        reason = ""
        for half in (lines[:middle], lines[middle:]):
            result = await self._post(half, depth + 1, created_db=False)
            written += result.written
            dead_lettered += result.dead_lettered
            reason = reason or result.reason
            if not result.settled:
                return replace(result, written=written, dead_lettered=dead_lettered)
        return _settled(written, dead_lettered, reason)

    async def _rejected(self, lines: list[str], message: str, depth: int) -> Delivery:
        """A 400: the server kept what it could; find the refused lines by bisection.

        Sending a good line again is harmless (same identity, same values), so halves are simply
        re-sent until each refused line stands alone; those go to the dead-letter files.
        """
        if depth == 0:
            log.warning("InfluxDB refused part of a batch (dead-lettered): %s", message)
        if len(lines) == 1 or depth >= MAX_SPLIT_DEPTH or _all_dropped(message, len(lines)):
            return _settled(0, self.dead_letters.add(lines, message), message)
        return await self._split(lines, depth)


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text)).strip()
    except (ValueError, AttributeError):
        return response.text.strip()[:300] or response.reason_phrase


def _all_dropped(message: str, count: int) -> bool:
    """InfluxDB says `dropped=N`; when every line was dropped there is nothing left to find."""
    match = _DROPPED.search(message)
    return match is not None and int(match[1]) == count
