"""Logging: plain, colour and JSON lines; secrets masked everywhere; set-up is idempotent."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime

import pytest

from utils.errors import ConfigError
from utils.logging import redact, register_secret, setup_logging

TOKEN = "tok-Zx81-secret-4711"
TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_plain_format_when_not_a_tty() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "auto", stream)
    logging.getLogger("db.writer").info("wrote %d points", 5000)
    logging.getLogger("fetch.ws").warning("reconnecting")
    logging.getLogger("db.writer").debug("hidden at INFO")
    assert len(lines(stream)) == 2
    assert re.fullmatch(rf"{TIMESTAMP} INFO  db\.writer: wrote 5000 points", lines(stream)[0])
    assert re.fullmatch(rf"{TIMESTAMP} WARNING fetch\.ws: reconnecting", lines(stream)[1])


def test_colour_on_a_tty_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = Terminal()
    setup_logging("INFO", "auto", terminal)
    logging.getLogger("db.writer").error("boom")
    red, reset = re.escape("\x1b[31m"), re.escape("\x1b[0m")
    line = rf"{TIMESTAMP} {red}ERROR{reset} db\.writer: boom{reset}\n"
    assert re.fullmatch(line, terminal.getvalue())

    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    setup_logging("INFO", "auto", terminal)
    logging.getLogger("db.writer").error("boom")
    assert re.fullmatch(rf"{TIMESTAMP} ERROR db\.writer: boom\n", terminal.getvalue())


def test_color_when_asked_even_without_a_tty() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "color", stream)
    logging.getLogger("x").info("hi")
    assert "\x1b[" in stream.getvalue()


def test_json_lines_parse_and_carry_fields() -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    log = logging.getLogger("db.writer")
    log.debug("flushed %s points", 5000, extra={"coin": "BTC", "points": 5000})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("write failed")

    first, second = (json.loads(line) for line in lines(stream))
    assert set(first) == {"ts", "level", "logger", "msg", "coin", "points"}
    assert first["level"] == "DEBUG"
    assert first["logger"] == "db.writer"
    assert first["msg"] == "flushed 5000 points"
    assert first["coin"] == "BTC"
    assert first["points"] == 5000
    assert re.fullmatch(TIMESTAMP, first["ts"])
    assert datetime.fromisoformat(first["ts"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]

    assert second["level"] == "ERROR"
    assert second["msg"] == "write failed"
    assert second["exc_info"].startswith("Traceback (most recent call last):")
    assert second["exc_info"].endswith("ZeroDivisionError: division by zero")


def test_registered_secret_is_masked_in_message_exception_and_extra() -> None:
    register_secret(TOKEN)
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    log = logging.getLogger("db.client")
    log.info("auth with %s", TOKEN, extra={"header": f"Token {TOKEN}"})
    try:
        raise RuntimeError(f"server said: bad token {TOKEN}")
    except RuntimeError:
        log.exception("request failed")

    assert TOKEN not in stream.getvalue()
    first, second = (json.loads(line) for line in lines(stream))
    assert first["msg"] == "auth with ***"
    assert first["header"] == "Token ***"
    assert second["exc_info"].endswith("RuntimeError: server said: bad token ***")


def test_url_encoded_form_of_a_secret_is_masked_too() -> None:
    register_secret("p@ss word")
    assert redact("GET /query?p=p%40ss%20word&u=x") == "GET /query?p=***&u=x"


def test_url_password_is_masked_in_plain_lines() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "plain", stream)
    logging.getLogger("main").info("InfluxDB at http://admin:hunter2@db.internal:8086/write?db=x")
    assert stream.getvalue().endswith(
        " INFO  main: InfluxDB at http://admin:***@db.internal:8086/write?db=x\n"
    )


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("https://user:pw@host", "https://user:***@host"),
        ("wss://:token@host/ws", "wss://:***@host/ws"),
        ("'http://u:p/w@h:1' and http://h2/x", "'http://u:***@h:1' and http://h2/x"),
        ("http://host:8086/write", "http://host:8086/write"),
        ("user:password@ without a scheme", "user:password@ without a scheme"),
    ],
)
def test_redact_urls(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_setup_twice_keeps_one_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", "plain", first)
    count = len(logging.getLogger().handlers)
    setup_logging("WARNING", "plain", second)
    assert len(logging.getLogger().handlers) == count

    logging.getLogger("x").warning("once")
    logging.getLogger("x").info("below WARNING")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1
    assert lines(second)[0].endswith(" x: once")


def test_noisy_libraries_are_quieted() -> None:
    setup_logging("DEBUG", "plain", io.StringIO())
    for name in ("httpx", "httpcore", "apscheduler"):
        assert logging.getLogger(name).level == logging.WARNING


@pytest.mark.parametrize(
    ("level", "fmt", "message"),
    [
        (
            "LOUD",
            "plain",
            "log level 'LOUD' is not valid: expected one of DEBUG, INFO, WARNING, ERROR",
        ),
        ("INFO", "xml", "log format 'xml' is not valid: expected one of auto, color, plain, json"),
    ],
)
def test_bad_level_or_format(level: str, fmt: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        setup_logging(level, fmt, io.StringIO())
    assert str(info.value) == message
