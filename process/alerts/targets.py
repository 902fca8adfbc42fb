"""Webhook targets: where alerts are POSTed, in which format, and how they are named in logs.

Four kinds: `json` (generic: the alert as a JSON object), `slack` (`{"text": ...}`), `discord`
(`{"content": ...}`) and `telegram` (`{api_url}/bot<token>/sendMessage` with `chat_id` and `text`).
URLs and tokens are `SecretStr`: a settings dump shows `**********`. Logs and errors name a
target by `masked()`: the scheme and host only, the path shown as `***` (webhook URLs carry their
secret in the path), or `https://api.telegram.org/bot***/sendMessage`; `scrub()` removes the
secrets from any other text (an exception's message) before it is logged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from utils.logging import MASK

TELEGRAM_API = "https://api.telegram.org"
MAX_TEXT = {"slack": 4000, "discord": 2000, "telegram": 4096}
"""Longest message text each service takes (Slack truncates past 40k; kept short anyway)."""

_TARGET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_name(value: object) -> object:
    """A target or rule name: 1-64 letters, digits, `_`, `.`, `-` (it labels metrics)."""
    if isinstance(value, str) and not _TARGET_NAME.fullmatch(value):
        raise ValueError("use 1 to 64 letters, digits, _ . or -")
    return value


def _webhook_url(value: object) -> object:
    """An http(s) URL with a host and no user:password; a ?query is allowed (some services put a
    token there). The message never quotes the URL: it may hold a secret."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value  # pydantic reports the wrong type
    url = value.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("user:password in the URL is not allowed")
    if parts.fragment:
        raise ValueError("the URL must not have a #fragment")
    return url


def _token(value: object) -> object:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str) and (not value.strip() or any(c in value for c in "/?# \t\n")):
        raise ValueError("the bot token is empty or has / ? # or spaces")
    return value.strip() if isinstance(value, str) else value


def _chat_id(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def host_of(url: str) -> str:
    """`scheme://host[:port]` of `url`, without user info, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def mask_path(url: str) -> str:
    """`url` with everything after the host shown as `***` (`https://hooks.slack.com/***`)."""
    parts = urlsplit(url)
    rest = parts.path.strip("/") or parts.query
    return host_of(url) + (f"/{MASK}" if rest else "")


WebhookUrl = Annotated[SecretStr, BeforeValidator(_webhook_url)]


class BaseTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def endpoint(self) -> str:
        """The URL to POST to (a secret)."""
        raise NotImplementedError

    def masked(self) -> str:
        """The endpoint as logs show it."""
        return mask_path(self.endpoint())

    def secrets(self) -> tuple[str, ...]:
        """Every text of this target that must never be logged, longest first."""
        url = self.endpoint()
        parts = urlsplit(url)
        found = {url, parts.path, parts.query, quote(url, safe="")}
        return tuple(sorted((s for s in found if len(s.strip("/")) > 0), key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """`text` with this target's URL and secrets masked."""
        text = text.replace(self.endpoint(), self.masked())
        for secret in self.secrets():
            text = text.replace(secret, MASK)
        return text

    def body(self, text: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON body of one alert: `text` is its one line, `payload` its fields."""
        raise NotImplementedError


class JsonTarget(BaseTarget):
    """Generic webhook: the alert's fields as a JSON object (`id` identifies the alert, so a
    receiver can drop the rare duplicate of a retried request; see `delivery`)."""

    kind: Literal["json"]
    url: WebhookUrl

    def endpoint(self) -> str:
        return self.url.get_secret_value()

    def body(self, text: str, payload: dict[str, Any]) -> dict[str, Any]:
        return payload


class SlackTarget(BaseTarget):
    """A Slack incoming webhook (`https://hooks.slack.com/services/...`)."""

    kind: Literal["slack"]
    url: WebhookUrl

    def endpoint(self) -> str:
        return self.url.get_secret_value()

    def body(self, text: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"text": text[: MAX_TEXT["slack"]]}


class DiscordTarget(BaseTarget):
    """A Discord webhook (`https://discord.com/api/webhooks/<id>/<token>`)."""

    kind: Literal["discord"]
    url: WebhookUrl

    def endpoint(self) -> str:
        return self.url.get_secret_value()

    def body(self, text: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"content": text[: MAX_TEXT["discord"]]}


class TelegramTarget(BaseTarget):
    """A Telegram bot: `sendMessage` to `chat_id` (a number, or `@channelname`)."""

    kind: Literal["telegram"]
    token: Annotated[SecretStr, BeforeValidator(_token)]
    chat_id: Annotated[str, BeforeValidator(_chat_id), Field(min_length=1)]
    api_url: Annotated[str, BeforeValidator(_webhook_url)] = TELEGRAM_API

    def endpoint(self) -> str:
        return f"{self.api_url.rstrip('/')}/bot{self.token.get_secret_value()}/sendMessage"

    def masked(self) -> str:
        return f"{host_of(self.api_url)}/bot{MASK}/sendMessage"

    def secrets(self) -> tuple[str, ...]:
        token = self.token.get_secret_value()
        return tuple(sorted({token, quote(token, safe="")}, key=len, reverse=True))

    def body(self, text: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "text": text[: MAX_TEXT["telegram"]],
            "disable_web_page_preview": True,
        }


Target = Annotated[
    JsonTarget | SlackTarget | DiscordTarget | TelegramTarget, Field(discriminator="kind")
]
