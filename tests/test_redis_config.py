"""The `redis:` section: from YAML or one JSON environment variable, off without a URL, errors
that name the key and never the password."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from process.bus import EventBus
from process.outputs import open_outputs
from process.outputs.redis_config import DEFAULT_EVENTS, RedisConfig, parse_redis
from process.outputs.redis_publisher import RedisPublisher
from utils.errors import ConfigError
from utils.logging import redact

PASSWORD = "s3cr3t-Redis-pw"


def test_without_a_url_there_is_no_publisher() -> None:
    settings = load_settings(env={})
    assert settings.redis == RedisConfig() and not settings.redis.enabled
    assert open_outputs(settings, EventBus()) == []


def test_the_redis_section_from_yaml_and_from_a_json_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(
        "redis:\n"
        f"  url: redis://:{PASSWORD}@cache.internal:6380/2\n"
        "  channel_prefix: hl\n"
        "  events: [trade, liquidation, bbo]\n"
        "  streams: on\n"
        "  stream_maxlen: 5000\n"
    )
    settings = load_settings(path, env={})
    redis = settings.redis
    assert redis.enabled and redis.url.get_secret_value().endswith("@cache.internal:6380/2")
    assert (redis.channel_prefix, redis.events) == ("hl", ("trade", "liquidation", "bbo"))
    assert (redis.streams, redis.stream_maxlen, redis.buffer) == (True, 5000, 10_000)
    assert redis.target() == "redis://cache.internal:6380/2"
    assert redis.secrets() == [PASSWORD]
    shown = settings.redacted()["redis"]
    assert shown["url"] == "**********" and PASSWORD not in json.dumps(settings.redacted())
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)

    env = {"HYPERFLUX_REDIS": json.dumps({"url": "redis://127.0.0.1", "events": "trade, gap"})}
    redis = load_settings(path, env=env).redis  # the variable replaces the section whole
    assert (redis.channel_prefix, redis.events, redis.streams) == (
        "hyperflux",
        ("trade", "gap"),
        False,
    )
    assert redis.target() == "redis://127.0.0.1:6379/0"


def test_defaults_are_the_low_volume_kinds() -> None:
    config = parse_redis({"url": "unix:///run/redis.sock?password=" + PASSWORD})
    assert config.events == DEFAULT_EVENTS == ("trade", "liquidation", "alert", "gap")
    assert (config.streams, config.stream_maxlen, config.backoff_base, config.backoff_max) == (
        False,
        100_000,
        0.5,
        30.0,
    )
    assert config.target() == "unix:///run/redis.sock"
    assert config.secrets() == [PASSWORD]
    assert parse_redis(None) == parse_redis("") == RedisConfig()


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"url": f"http://u:{PASSWORD}@h"}, "url: not a redis://, rediss:// or unix:// URL"),
        ({"url": f"redis://:{PASSWORD}@"}, "url: a redis:// URL needs a host"),
        ({"url": "redis://h", "events": ["trades"]}, "events: unknown event kind 'trades'"),
        ({"url": "redis://h", "events": []}, "events: not a non-empty list of event kinds"),
        ({"url": "redis://h", "channel_prefix": "a b"}, "channel_prefix: not a prefix"),
        ({"url": "redis://h", "stream_maxlen": 0}, "stream_maxlen: Input should be greater"),
        ({"url": "redis://h", "backoff_max": 0.1}, "backoff_max must be at least backoff_base"),
        ({"url": "redis://h", "channel": "x"}, "channel: Extra inputs are not permitted"),
    ],
)
def test_a_bad_redis_section_is_named_without_its_password(section: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env={"HYPERFLUX_REDIS": json.dumps(section)})
    message = str(error.value)
    assert message.startswith("HYPERFLUX_REDIS=*** is not valid: expected a redis section")
    assert problem in message and PASSWORD not in message
    assert "\n" not in message


def test_a_bare_url_is_the_section_with_defaults(tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@h:6379"
    assert load_settings(env={"HYPERFLUX_REDIS": url}).redis == parse_redis({"url": url})
    path = tmp_path / "my.yaml"
    path.write_text("redis: [redis://h]\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert str(error.value).endswith(
        "(not a mapping of url, channel_prefix, events and delivery settings)"
    )


def test_the_publisher_registers_the_password_with_the_log_filter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_redis({"url": f"redis://user:{PASSWORD}@127.0.0.1:1/0"})
    with caplog.at_level(logging.INFO):
        publisher = RedisPublisher(config, EventBus())
    assert publisher.target == "redis://127.0.0.1:1/0"
    assert redact(f"AUTH user {PASSWORD}") == "AUTH user ***"
