"""Logging set-up: one root handler (colour, plain or JSON lines) that never shows a secret.

`setup_logging()` is called once by `main.py` with the configured level and format; calling it
again replaces hyperflux's handler instead of adding a second one. Every record that reaches the
handler passes `SecretFilter`, which masks the password of any `scheme://user:password@` URL and
every value given to `register_secret()` (the app registers the InfluxDB password or token).
Timestamps are UTC with millisecond precision, e.g. `2026-11-21T12:00:00.123Z`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import traceback
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

import colorlog

from utils.errors import ConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("auto", "color", "plain", "json")
MASK = "***"
NOISY_LOGGERS = ("httpx", "httpcore", "apscheduler", "websockets")

# Greedy up to the last "@" before a space or quote: an unencoded "/" or "@" in a password
# (invalid, but seen) is still masked whole, at the cost of masking a little more than needed.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s'\"]*):[^\s'\"]*@")
_PLAIN_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
_COLOR_FORMAT = "%(asctime)s %(log_color)s%(levelname)-5s%(reset)s %(name)s: %(message)s"
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None
_secrets_lock = threading.Lock()
_handler: logging.Handler | None = None


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL-encoded form) wherever it appears in a log line from now on."""
    global _secrets_pattern
    if not value:
        return
    with _secrets_lock:
        _secrets.update({value, quote(value, safe="")})
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def redact(text: str) -> str:
    """`text` with URL passwords and registered secrets replaced by `***`."""
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    pattern = _secrets_pattern
    return pattern.sub(MASK, text) if pattern is not None else text


class SecretFilter(logging.Filter):
    """Redacts the message, exception text, stack and string `extra` fields of every record.

    The record is rewritten in place (message rendered, args dropped), so every handler after
    this one sees the redacted text too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in _extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class _UtcTimeMixin:
    """ISO 8601 UTC timestamps with milliseconds and a `Z` suffix."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_iso(record.created)


class PlainFormatter(_UtcTimeMixin, logging.Formatter):
    """`2026-11-21T12:00:00.123Z INFO  db.writer: message`, traceback on the following lines."""

    def __init__(self) -> None:
        super().__init__(_PLAIN_FORMAT)


class ColorFormatter(_UtcTimeMixin, colorlog.ColoredFormatter):
    """The plain layout with the level name coloured (always: the caller decided on colour)."""

    def __init__(self) -> None:
        super().__init__(_COLOR_FORMAT, force_color=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's `extra` fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extra_fields(record).items():
            payload.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc_info"] = record.exc_text
        if record.stack_info:
            payload["stack_info"] = record.stack_info
        return json.dumps(payload, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Send every log record to `stream` (default stderr) at `level` and above, in format `fmt`.

    `fmt`: "color", "plain", "json", or "auto" (colour when `stream` is a terminal and the
    NO_COLOR environment variable is not set, plain otherwise). Idempotent: a second call replaces
    the handler installed by the first. Handlers installed by others are left alone.
    """
    global _handler
    level_name = level.strip().upper()
    if level_name not in LEVELS:
        raise ConfigError(f"log level {level!r} is not valid: expected one of {', '.join(LEVELS)}")
    fmt_name = fmt.strip().lower()
    if fmt_name not in FORMATS:
        raise ConfigError(f"log format {fmt!r} is not valid: expected one of {', '.join(FORMATS)}")
    stream = sys.stderr if stream is None else stream

    handler = logging.StreamHandler(stream)
    handler.setFormatter(_formatter(fmt_name, stream))
    handler.addFilter(SecretFilter())

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level_name)
    _handler = handler
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # "skipped: maximum number of running instances reached" is how max_instances=1 works for a
    # job slower than its interval (the positions poller waits on its budget share): not news.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)


def _formatter(fmt: str, stream: IO[str]) -> logging.Formatter:
    if fmt == "auto":
        fmt = "color" if _is_tty(stream) and not os.environ.get("NO_COLOR") else "plain"
    if fmt == "color":
        return ColorFormatter()
    if fmt == "json":
        return JsonFormatter()
    return PlainFormatter()


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _utc_iso(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes added through `extra=` (everything a plain LogRecord does not have)."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and k[0] != "_"}
