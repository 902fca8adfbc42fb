"""Structured settings sections (`alerts`, `evm`, `redis`): one parser for all of them.

A section is a YAML mapping, or in the environment one JSON object. Its errors name the first
problem by its place (`rules[0].addresses: ...`) and never quote a value: these sections hold
URLs and tokens that may be secrets, and a key that is not a plain name (a URL written where a
name goes) is shown as `?`.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, SecretStr, ValidationError

_SHOWN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}|\[key\]")
Section = TypeVar("Section", bound=BaseModel)


def parse_section(value: object, model: type[Section], name: str, expected: str) -> Section:
    """`value` (None or "": the defaults; a JSON string; a mapping) as `model`; ValueError with
    one line otherwise. `expected` says what the mapping holds ("rules, targets and ...")."""
    if value is None or value == "":
        return model()
    if isinstance(value, model):
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("not a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError(f"not a mapping of {expected}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValueError(first_problem(exc, name)) from None


def first_problem(exc: ValidationError, name: str) -> str:
    """The first error of `exc` by its place, without the input; "(and N more)" after it."""
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    place = "".join(
        f"[{p}]" if isinstance(p, int) else f".{p if _SHOWN_KEY.fullmatch(p) else '?'}"
        for p in first["loc"]
    )
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{place.lstrip('.') or name}: {message}{more}"


def split_secret_url(value: object) -> tuple[str, SplitResult]:
    """A URL that may carry a secret (a password, an API key in its path), stripped, and its
    parts; ValueError that never quotes it when it is no URL or its port is not a number."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        raise ValueError("not a URL")
    url = value.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError("not a valid URL") from None
    return url, parts
