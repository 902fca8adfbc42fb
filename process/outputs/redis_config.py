"""The `redis:` section of the settings (`RedisConfig`): where and what the Redis publisher sends.

In YAML, `redis:` holds `url`, `channel_prefix`, `events`, `streams` and the delivery settings;
in the environment, HYPERFLUX_REDIS holds the same as one JSON object. No URL: the publisher is
off. The URL may carry a password: it is a SecretStr, never shown in a message (errors name the
key, never the value).
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from config.sections import parse_section, split_secret_url
from process.bus import KINDS, EventKind

DEFAULT_EVENTS: tuple[EventKind, ...] = ("trade", "liquidation", "alert", "gap")
"""Low-volume kinds a live consumer of market data wants; asset_ctx, book, bbo and
position_change are opt-in (book and bbo are the busiest streams of all)."""
SCHEMES = ("redis", "rediss", "unix")
_URL_STARTS = tuple(f"{scheme}://" for scheme in SCHEMES)
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")


def _url(value: object) -> object:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    url, parts = split_secret_url(value)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError("not a redis://, rediss:// or unix:// URL")
    if scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs the socket's path")
    if scheme != "unix" and not parts.hostname:
        raise ValueError(f"a {scheme}:// URL needs a host")
    return SecretStr(url)


def _events(value: object) -> object:
    if isinstance(value, str):
        value = [item for item in value.split(",") if item.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"not a non-empty list of event kinds from {', '.join(KINDS)}")
    kinds = [str(item).strip().lower() for item in value]
    if unknown := [kind for kind in kinds if kind not in KINDS]:
        raise ValueError(f"unknown event kind {unknown[0]!r}; known: {', '.join(KINDS)}")
    return tuple(dict.fromkeys(kinds))


def _prefix(value: object) -> object:
    if isinstance(value, str) and _PREFIX.fullmatch(value.strip()):
        return value.strip().rstrip(":")
    raise ValueError(
        "not a prefix of 1 to 64 letters, digits and _ . : / - (starting with a letter or digit)"
    )


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class RedisConfig(BaseModel):
    """The `redis:` section; see the README's "Live outputs: Redis"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Annotated[SecretStr | None, BeforeValidator(_url)] = None
    """redis://[user:password@]host:port/db, rediss:// (TLS) or unix:///path; None: off."""
    channel_prefix: Annotated[str, BeforeValidator(_prefix)] = "hyperflux"
    events: Annotated[tuple[EventKind, ...], BeforeValidator(_events)] = DEFAULT_EVENTS
    streams: bool = False
    """Also XADD each event to the stream `{prefix}:{kind}` (for consumers that must not miss
    messages while they are disconnected)."""
    stream_maxlen: Annotated[int, Field(ge=1, le=1_000_000_000)] = 100_000
    """Entries kept per stream, approximately (`MAXLEN ~`)."""
    buffer: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    """Events waiting for Redis; when full the oldest is dropped (counted)."""
    timeout: Seconds = 5.0
    """Seconds for connecting and for one round trip."""
    backoff_base: Seconds = 0.5
    """Seconds before the first reconnect; doubling up to `backoff_max`, jittered."""
    backoff_max: Seconds = 30.0

    @model_validator(mode="after")
    def _check(self) -> RedisConfig:
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must be at least backoff_base")
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def secrets(self) -> list[str]:
        """The password in the URL (userinfo or `?password=`), for the log filter."""
        if self.url is None:
            return []
        parts = urlsplit(self.url.get_secret_value())
        found = [unquote(parts.password)] if parts.password else []
        found += parse_qs(parts.query).get("password", [])
        return [secret for secret in found if secret]

    def target(self) -> str:
        """Where events go, safe to log: scheme://host:port/db without credentials or query."""
        if self.url is None:
            return "nowhere"
        parts = urlsplit(self.url.get_secret_value())
        if parts.scheme.lower() == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or ""
        port = parts.port or 6379
        return f"{parts.scheme.lower()}://{host}:{port}{parts.path or '/0'}"


def parse_redis(value: object) -> object:
    """The `redis` setting (see `config.sections.parse_section`); a bare URL stands for the
    section with that URL and the defaults. No value is ever quoted (the URL may hold a
    password)."""
    if isinstance(value, str) and value.strip().lower().startswith(_URL_STARTS):
        value = {"url": value}
    return parse_section(
        value, RedisConfig, "redis", "url, channel_prefix, events and delivery settings"
    )
