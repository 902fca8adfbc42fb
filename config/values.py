"""Parsers for the kinds of values settings hold: URLs, coin lists, byte sizes, retention periods.

Each parser takes what a YAML file or an environment variable may hold and returns the clean
value, or raises ValueError whose text says what exactly is wrong (the caller adds which key and
what is allowed).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

HTTP_SCHEMES = ("http", "https")
WS_SCHEMES = ("ws", "wss")

HLP_PARENT = "0xdfc24b077bc1425ad1dea75bcb6f8158e10df303"
"""The HLP parent vault (its children are discovered from it)."""
WS_COIN_CHANNELS = ("l2Book", "bbo", "activeAssetCtx")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_COIN = re.compile(r"[A-Za-z0-9@:/._-]{1,32}")
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_PART = re.compile(r"(\d+)(ns|u|µ|ms|s|m|h|d|w)")
DURATION_NS = {
    "ns": 1,
    "u": 1_000,
    "µ": 1_000,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
    "d": 86400 * 10**9,
    "w": 7 * 86400 * 10**9,
}
_HOUR_NS = 3600 * 10**9


def check_url(value: str, schemes: tuple[str, ...]) -> str:
    """`value` without a trailing slash, if it is a `scheme://host[:port][/path]` URL."""
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"the scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("user:password in the URL is not allowed")
    if parts.query or parts.fragment:
        raise ValueError("the URL must not have a ?query or #fragment")
    return url


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_coins(value: object) -> list[str]:
    """A list of distinct coin names, in the order given, from "BTC, ETH" or a YAML list."""
    return _parse_list(value, _COIN.fullmatch, "has characters that are not allowed")


def parse_addresses(value: object) -> list[str]:
    """Distinct lower-case 0x addresses (40 hex digits) from "0x..,0x.." or a YAML list."""
    items = _parse_list(value, _ADDRESS.fullmatch, "is not a 0x address with 40 hex digits")
    return [a.lower() for a in items]


def parse_channels(value: object) -> list[str]:
    """Optional per-coin WebSocket channels, from "l2Book,bbo" or a YAML list."""
    why = f"is not one of {', '.join(WS_COIN_CHANNELS)}"
    return _parse_list(value, lambda item: item in WS_COIN_CHANNELS, why)


def _parse_list(value: object, allowed: Callable[[str], object], why: str) -> list[str]:
    """Distinct stripped strings in the order given; ValueError names the first bad item."""
    if isinstance(value, str):
        items: list[object] = value.split(",") if value.strip() else []
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"got a {type(value).__name__}")
    coins: list[str] = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise ValueError(f"item {position} ({item!r}) is not a string: quote it in YAML")
        coin = item.strip()
        if not coin:
            raise ValueError(f"item {position} is empty")
        if not allowed(coin):
            raise ValueError(f"item {position} ({coin!r}) {why}")
        if coin not in coins:
            coins.append(coin)
    return coins


def parse_size(value: object) -> int:
    """A number of bytes from an integer or a string like "1073741824", "512MiB", "1.5 GB"."""
    if isinstance(value, bool):
        raise ValueError("got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        unit = match["unit"].lower()
        if unit not in _SIZE_UNITS:
            raise ValueError(f"unknown unit {match['unit']!r}")
        size = int(float(match["number"]) * _SIZE_UNITS[unit])
    else:
        raise ValueError("not a number of bytes")
    if size <= 0:
        raise ValueError("the size must be greater than 0")
    return size


def duration_ns(text: str) -> int:
    """Nanoseconds of an InfluxQL duration such as "90d" or "1h30m" (already validated)."""
    return sum(int(number) * DURATION_NS[unit] for number, unit in _DURATION_PART.findall(text))


def parse_shard(text: str) -> tuple[int, int]:
    """(i, N) from "i/N" with 0 <= i < N; ValueError otherwise."""
    index, sep, count = text.strip().partition("/")
    index, count = index.strip(), count.strip()
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ValueError("not i/N with 0 <= i < N")
    return int(index), int(count)


def parse_retention(value: object) -> str | None:
    """None (leave as is), "INF" (keep forever), or an InfluxQL duration >= 1h such as "90d"."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"got a {type(value).__name__}")
    text = value.strip()
    if text.upper() == "INF":
        return "INF"
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError("not an InfluxQL duration (units: ns, u, ms, s, m, h, d, w)")
    if duration_ns(text) < _HOUR_NS:
        raise ValueError("InfluxDB refuses a retention shorter than 1h: use INF to keep forever")
    return text
