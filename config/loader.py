"""`load_settings`: config/default.yaml < a user YAML file < HYPERFLUX_* environment variables.

Layered here rather than by pydantic-settings' sources (no longer a dependency): only this
loader knows where each value came from, which a one-line error about a bad value must name.

Every value keeps the name the user gave it (`HYPERFLUX_METRICS_PORT`, `my.yaml: influx.timeout`)
so that a bad one is reported as one line naming that key, the value (`***` for secrets) and what
is allowed. An environment variable set to the empty string counts as unset.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from config.settings import Settings
from utils.errors import ConfigError
from utils.logging import MASK, redact

DEFAULTS_FILE = Path(__file__).with_name("default.yaml")
ENV_PREFIX = "HYPERFLUX_"
CONFIG_ENV = "HYPERFLUX_CONFIG"
SECTIONS = ("influx", "hl", "jobs", "profiles", "engines", "log")
_YAML_PATHS = {"coins": "hl.coins"}  # fields whose flat name is not section + "_" + key
_MAX_SHOWN = 80


@dataclass(frozen=True)
class Key:
    """Where one setting may be written: its YAML path and its environment variable names."""

    field: str
    yaml_path: str
    env_names: tuple[str, ...]


def _make_keys() -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for field in Settings.model_fields:
        section, _, rest = field.partition("_")
        default_path = f"{section}.{rest}" if section in SECTIONS else field
        yaml_path = _YAML_PATHS.get(field, default_path)
        flat_names = (field, yaml_path.replace(".", "_"))
        env_names = tuple(dict.fromkeys(ENV_PREFIX + name.upper() for name in flat_names))
        keys[yaml_path] = Key(field, yaml_path, env_names)
    return keys


KEYS = _make_keys()
"""Every setting by YAML path ("influx.batch_size", "data_dir")."""


@dataclass(frozen=True)
class _Value:
    raw: object
    label: str  # how the user named it: "HYPERFLUX_METRICS_PORT" or "my.yaml: influx.timeout"


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """The settings from the defaults, then `config_file` (else $HYPERFLUX_CONFIG), then `env`.

    `env` defaults to `os.environ`. Raises ConfigError (one line) for a missing, unreadable or
    invalid file, an unknown key in a file, or a value that is not allowed.
    """
    env = os.environ if env is None else env
    values = _read_yaml(DEFAULTS_FILE, repr(str(DEFAULTS_FILE)))
    if config_file is not None:
        values.update(_read_yaml(Path(config_file), repr(str(config_file))))
    elif env.get(CONFIG_ENV):
        values.update(_read_yaml(Path(env[CONFIG_ENV]), f"{env[CONFIG_ENV]!r} (from {CONFIG_ENV})"))
    values.update(_read_env(env))

    try:
        return Settings(**{field: value.raw for field, value in values.items()})
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
    # Raised outside the `except` so that no traceback chain carries pydantic's dump of inputs.
    raise ConfigError(_describe(problems, values))


def unknown_env_vars(env: Mapping[str, str] | None = None) -> list[str]:
    """HYPERFLUX_* variables in `env` that no setting reads (likely typos worth a warning)."""
    env = os.environ if env is None else env
    known = {name for key in KEYS.values() for name in key.env_names} | {CONFIG_ENV}
    return sorted(name for name in env if name.startswith(ENV_PREFIX) and name not in known)


def _read_env(env: Mapping[str, str]) -> dict[str, _Value]:
    values: dict[str, _Value] = {}
    for key in KEYS.values():
        given = [name for name in key.env_names if env.get(name, "").strip()]
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(given)} are both set: set only one of them")
        if given:
            values[key.field] = _Value(env[given[0]], given[0])
    return values


def _read_yaml(path: Path, shown: str) -> dict[str, _Value]:
    """The settings in one YAML file by field name; `shown` is how messages name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {shown} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {shown} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"config file {shown} cannot be read: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {shown} is not valid YAML: {_yaml_problem(exc)}") from None

    values: dict[str, _Value] = {}
    for yaml_path, raw in _flatten(document, shown):
        key = KEYS.get(yaml_path)
        if key is None:
            close = difflib.get_close_matches(yaml_path, KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"config file {shown}: unknown key {yaml_path}{hint}")
        values[key.field] = _Value(raw, f"{path}: {yaml_path}")
    return values


def _flatten(document: object, shown: str) -> Iterator[tuple[str, object]]:
    """(dotted path, value) for each key of a YAML document of sections and top-level keys."""
    if document is None:
        return
    if not isinstance(document, dict):
        raise ConfigError(f"config file {shown} must hold a mapping of keys, not a list or value")
    for name, value in document.items():
        if str(name) not in SECTIONS:
            yield str(name), value
        elif isinstance(value, dict):
            yield from ((f"{name}.{key}", item) for key, item in value.items())
        elif value is not None:  # an empty section (all keys commented out) is fine
            raise ConfigError(f"config file {shown}: {name} must be a section of keys")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and position, without the quoted line (it may hold a secret)."""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _describe(problems: list[ErrorDetails], values: Mapping[str, _Value]) -> str:
    """One line for the first bad value, naming any others."""
    first = _describe_one(problems[0], values)
    labels = [values[str(problem["loc"][0])].label for problem in problems[1:]]
    return first + (f" (also not valid: {', '.join(labels)})" if labels else "")


def _describe_one(problem: ErrorDetails, values: Mapping[str, _Value]) -> str:
    field = str(problem["loc"][0])
    value = values[field]
    shown = MASK if field in Settings.SECRET_FIELDS else _truncate(redact(repr(value.raw)))
    message = f"{value.label}={shown} is not valid: expected {Settings.expected(field)}"
    if problem["type"] == "value_error":
        message += f" ({problem.get('ctx', {}).get('error')})"
    return redact(message)


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
