"""InfluxDB line protocol: one point -> one line, with the exact escaping of the 1.x parser.

Every rule below was checked against the real server (Debian influxd 1.6.7) by
tests/test_line_protocol.py, which round-trips hostile text through a live influxd:

- measurement: comma and space are escaped; tag keys, tag values and field keys: comma, equals
  sign and space are escaped. A backslash is written as is (the parser does not unescape `\\\\`).
- string field values are double-quoted with backslash and double quote escaped; newlines, tabs,
  CR and NUL inside them are written raw and come back unchanged.
- integers get the `i` suffix (signed 64-bit only), booleans are `true`/`false`, floats are written
  with `repr` (shortest exact round trip); NaN and infinities are rejected (DESIGN: no NaN/inf).
- tags are written sorted by key (the order InfluxDB stores them in, which saves it a sort); a tag
  whose value is empty or None is left out, as is a field whose value is None (a null
  `liquidationPx` simply has no `liq_px` field). A point needs at least one field.

Names (measurement, tag keys, tag values, field keys) that no escaping can carry through the 1.x
parser are rejected with ValueError instead of being altered silently:

- any newline: a raw one ends the line, an escaped one keeps its backslash in the stored name;
- a trailing backslash: it escapes the separator that follows, so the line no longer parses;
- an empty measurement, tag key or field key, and the tag or field key `time` (1.x refuses it);
- a measurement starting with `#` (the line is taken for a comment and silently dropped), a
  measurement or field key starting with a tab (stripped as leading whitespace), and a
  measurement or field key with a backslash right before a comma, equals sign, space or double
  quote (the parser drops that backslash);
- a CR or NUL in a measurement, tag key or field key: stored fine, but InfluxQL reads CR as a
  newline and NUL as the end of the query, so no query could ever name it. (Tag values may hold
  them: queries pass values as bound parameters.)

Escaped series prefixes and field keys are cached (both are bounded sets in hyperflux), so the hot
path is dict look-ups, a type dispatch per field and one f-string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

FieldValue = bool | int | float | str

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# 1.x refuses the two extremes at each end: "time outside range".
TIME_MIN_NS = -(2**63) + 2
TIME_MAX_NS = 2**63 - 2

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_BACKSLASH_BEFORE_SPECIAL = re.compile(r'\\[,= "]')
_RESERVED_KEY = "time"

# Both caches are cleared when full: enough for every series and field key hyperflux writes,
# and bounded if a caller ever passes unbounded names.
_CACHE_LIMIT = 65_536  # the heatmap alone has 200 coins x 50 buckets = 10k series
_series_prefixes: dict[tuple[object, ...], str] = {}
_field_keys: dict[str, str] = {}


def encode_point(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    time_ns: int,
) -> str:
    """One line of line protocol, without the trailing newline; `time_ns` is Unix time in ns.

    Raises ValueError for a point InfluxDB would drop, refuse or store differently (see the
    module docstring) and TypeError for a value of an unsupported type.
    """
    cache_key = (measurement, *tags.items())
    try:
        prefix = _series_prefixes[cache_key]
    except KeyError:
        prefix = _series_prefix(measurement, tags, cache_key)
    except TypeError:  # an unhashable tag value: let the slow path say what is wrong
        prefix = _series_prefix(measurement, tags, None)

    body = ""  # ",key=value" per field; += on a local str is the fastest way to build it
    for key, value in fields.items():
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # NaN or +-inf
                raise ValueError(f"field {key!r} is {value!r}: NaN and infinities are not stored")
            body += f"{_field_keys.get(key) or _field_key(key)}{value!r}"
        elif kind is str:
            if "\\" in value or '"' in value:
                value = value.replace("\\", "\\\\").replace('"', '\\"')
            body += f'{_field_keys.get(key) or _field_key(key)}"{value}"'
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValueError(f"field {key!r} = {value} does not fit a signed 64-bit integer")
            body += f"{_field_keys.get(key) or _field_key(key)}{value}i"
        elif value is None:
            continue
        else:
            body += (_field_keys.get(key) or _field_key(key)) + _encode_other(key, value)
    if not body:
        raise ValueError(f"point in {measurement!r} has no field (None values are left out)")

    if type(time_ns) is not int or not TIME_MIN_NS <= time_ns <= TIME_MAX_NS:
        time_ns = _check_time(time_ns)
    return f"{prefix} {body[1:]} {time_ns}"


def series_prefix(measurement: str, tags: Mapping[str, str | None]) -> str:
    """`measurement,k1=v1,...` as `encode_point` writes it (for callers that format a known
    point shape themselves); ValueError for names line protocol cannot carry."""
    return _series_prefix(measurement, tags, None)


def _series_prefix(
    measurement: str, tags: Mapping[str, str | None], cache_key: tuple[object, ...] | None
) -> str:
    """`measurement,k1=v1,k2=v2` with keys sorted, escaped and checked; cached under `cache_key`."""
    name = _check_identifier(measurement, "measurement")
    if name[0] in "#\t":
        raise ValueError(f"measurement {name!r} starts with {name[0]!r}, which 1.x cannot store")
    if _BACKSLASH_BEFORE_SPECIAL.search(name):
        raise ValueError(f'measurement {name!r} has a backslash before , = space or "')
    parts = [name.translate(_MEASUREMENT_ESCAPES)]
    for key in sorted(tags):
        value = tags[key]
        if value is None or value == "":
            continue
        key = _check_identifier(key, "tag key")
        if key == _RESERVED_KEY:
            raise ValueError("tag key 'time' is reserved by InfluxDB")
        value = _check_name(value, f"tag {key!r} value")
        parts.append(f"{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}")
    prefix = ",".join(parts)
    if cache_key is not None:
        if len(_series_prefixes) >= _CACHE_LIMIT:
            _series_prefixes.clear()
        _series_prefixes[cache_key] = prefix
    return prefix


def _field_key(key: str) -> str:
    """`,key=` with the key escaped, checked once and cached."""
    name = _check_identifier(key, "field key")
    if name == _RESERVED_KEY:
        raise ValueError("field key 'time' is reserved by InfluxDB")
    if name[0] == "\t":
        raise ValueError(f"field key {name!r} starts with {name[0]!r}, which 1.x strips")
    if _BACKSLASH_BEFORE_SPECIAL.search(name):
        raise ValueError(f'field key {name!r} has a backslash before , = space or "')
    if len(_field_keys) >= _CACHE_LIMIT:
        _field_keys.clear()
    escaped = _field_keys[key] = f",{name.translate(_KEY_ESCAPES)}="
    return escaped


def _check_name(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError(f"{what} is empty")
    if "\n" in text:
        raise ValueError(f"{what} {text!r} contains a newline, which line protocol cannot carry")
    if text[-1] == "\\":
        raise ValueError(f"{what} {text!r} ends with a backslash, which line protocol cannot carry")
    return str.__str__(text)  # a plain str, also for str enums and other subclasses


def _check_identifier(text: object, what: str) -> str:
    name = _check_name(text, what)
    if "\r" in name or "\x00" in name:
        raise ValueError(f"{what} {name!r} contains CR or NUL, which no InfluxQL query can name")
    return name


def _encode_other(key: str, value: object) -> str:
    """bool, and subclasses of the field types (IntEnum, str enums, numpy.float64): bool first."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise ValueError(f"field {key!r} = {number} does not fit a signed 64-bit integer")
        return f"{number}i"
    if isinstance(value, float):
        number = float(value)
        if number - number != 0.0:
            raise ValueError(f"field {key!r} is {number!r}: NaN and infinities are not stored")
        return repr(number)
    if isinstance(value, str):
        text = str.__str__(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    raise TypeError(
        f"field {key!r} has unsupported type {type(value).__name__} (use bool, int, float or str)"
    )


def _check_time(time_ns: object) -> int:
    if isinstance(time_ns, bool) or not isinstance(time_ns, int):
        raise TypeError(f"time_ns must be an int of nanoseconds, got {type(time_ns).__name__}")
    number = int(time_ns)
    if not TIME_MIN_NS <= number <= TIME_MAX_NS:
        raise ValueError(f"time_ns {number} is outside InfluxDB's range")
    return number
