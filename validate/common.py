"""Building blocks shared by every Hyperliquid model: field types, time bounds, rejections.

Field types (all parse JSON text in Rust, no per-item Python unless noted):
- decimals (`Price`, `Size`, `Signed` ...) are `Decimal`, built from the wire's decimal strings
  exactly; NaN and infinities are refused. A JSON number (never sent today) is accepted through
  its shortest float repr.
- integers (`Int`, `Ms`) are strict: only JSON integers, never `1.0`, `"1"` or `true`.
- `Address` is lower-cased and must be 42 characters long.

Times are integer milliseconds since the Unix epoch (UTC). A record time (trade, fill, funding,
candle open) must lie in [`MIN_TIME_MS`, now + `MAX_AHEAD_MS`]; "now" is the `now_ms` given to a
parse function, else `clock()` (tests inject `now_ms`, so they never depend on the wall clock).

A `Rejected` is one record (or one whole payload) that did not validate: a one-line `reason`
("field.path: message") and the record's own JSON text, ready for `utils.quarantine`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BeforeValidator, Field, Strict, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import core_schema

from utils.quarantine import one_line

T = TypeVar("T")

MIN_TIME_MS = 1_654_041_600_000
"""2022-06-01T00:00:00Z: no Hyperliquid record is older."""
MAX_AHEAD_MS = 5 * 60 * 1000
"""A record time may be at most this far ahead of now (clock skew), else it is rejected."""
MAX_REASON_ERRORS = 3
MAX_REASON_CHARS = 400


def clock() -> int:
    """Wall-clock now in ms since the epoch; used when a parse function is given no `now_ms`."""
    return time.time_ns() // 1_000_000


def resolve_now(now_ms: int | None) -> int:
    """`now_ms`, or `clock()` when None (looked up at call time, so tests may replace `clock`)."""
    return clock() if now_ms is None else now_ms


# --- field types -------------------------------------------------------------------------------

Int = Annotated[int, Strict()]
Count = Annotated[int, Strict(), Field(ge=0)]
Ms = Int
"""Milliseconds since the Unix epoch (UTC)."""
Signed = Decimal
Price = Annotated[Decimal, Field(gt=0)]
Size = Annotated[Decimal, Field(gt=0)]
NonNegative = Annotated[Decimal, Field(ge=0)]
Coin = Annotated[str, StringConstraints(min_length=1)]
Address = Annotated[str, StringConstraints(to_lower=True, min_length=42, max_length=42)]

_SIDES = {"B": "buy", "A": "sell"}


class _WireSide:
    """Checks the wire code in Rust (only "B" or "A"), then maps it with one C-level dict lookup:
    no Python function call per record on the hot path."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            _SIDES.__getitem__, core_schema.literal_schema(list(_SIDES))
        )


Side = Annotated[Literal["buy", "sell"], _WireSide]
"""Wire "B" -> "buy", "A" -> "sell"; any other code is rejected."""


def _nan_to_none(value: object) -> object:
    return None if value == "NaN" else value


OptionalPrice = Annotated[NonNegative | None, BeforeValidator(_nan_to_none)]
"""A price that may be null (or the legacy string "NaN", read as null)."""


def _null_to_false(value: object) -> object:
    return False if value is None else value


Flag = Annotated[bool, Strict(), BeforeValidator(_null_to_false)]
"""A JSON boolean where null (seen in third-party samples) means false."""


# --- rejections --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record (or a whole payload) that failed validation.

    `reason`: one line, "field.path: message" per error. `raw_text`: the record's JSON text
    (compact re-serialisation for a record inside a batch, the frame text for a whole payload).
    """

    reason: str
    raw_text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", one_line(self.reason, MAX_REASON_CHARS))


def summarize(error: ValidationError, root: str = "(payload)") -> str:
    """One line from a pydantic error: "loc: msg" for the first few errors, "(+N more)".

    `root` names the location of an error about the value itself (an empty loc).
    """
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    parts = [
        f"{'.'.join(str(part) for part in item['loc']) or root}: {item['msg']}"
        for item in errors[:MAX_REASON_ERRORS]
    ]
    if len(errors) > MAX_REASON_ERRORS:
        parts.append(f"(+{len(errors) - MAX_REASON_ERRORS} more)")
    return one_line("; ".join(parts))


def text_of(raw: bytes | str) -> str:
    """A frame's text; undecodable bytes are kept as backslash escapes."""
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="backslashreplace")


def dump(value: Any) -> str:
    """Compact JSON text of an already-parsed value (how a bad record is quarantined)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def as_json(raw: bytes | str | Any) -> bytes | str:
    """JSON text of a payload: bytes and str pass through, a parsed value is serialised."""
    return raw if isinstance(raw, bytes | str) else dump(raw)


def load(raw: bytes | str) -> tuple[Any, Rejected | None]:
    """Parse JSON text: (value, None), or (None, Rejected) when it is not JSON at all."""
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError) as exc:
        return None, Rejected(one_line(f"not JSON: {exc}"), text_of(raw))


def reject_payload(expected: str, value: Any, raw: bytes | str) -> Rejected:
    """A Rejected for a whole payload whose top-level shape is wrong."""
    return Rejected(f"(payload): expected {expected}, got {type(value).__name__}", text_of(raw))


BatchResult = tuple[list[T], list[Rejected]]
"""What every batch parse returns: the good records, then one Rejected per bad record."""


# --- time bounds -------------------------------------------------------------------------------


def time_error(key: str, value: int, now_ms: int) -> str | None:
    """Why a record time is out of bounds, or None when it is fine. `key` is the wire name."""
    if value < MIN_TIME_MS:
        return f"{key}: {value} is before 2022-06-01, when Hyperliquid started"
    if value > now_ms + MAX_AHEAD_MS:
        return f"{key}: {value} is more than 5 minutes after now ({now_ms})"
    return None


# --- batches -----------------------------------------------------------------------------------


class Batch(Generic[T]):
    """Validates a JSON array of one record type; one bad record never drops the others.

    `parse` first validates the whole array in one `validate_json` call (the fast path). Only when
    that fails, or a record time is out of bounds, is every record validated on its own, from its
    own JSON text, so both paths judge a record the same way.
    """

    def __init__(self, item: Any, *, time_attr: str | None = None, time_key: str = "time") -> None:
        self.one: TypeAdapter[T] = TypeAdapter(item)
        self.many: TypeAdapter[list[T]] = TypeAdapter(list[item])  # type: ignore[valid-type]
        self._time: Callable[[Any], int] | None = attrgetter(time_attr) if time_attr else None
        self._time_key = time_key

    def parse(self, raw: bytes | str | Any, now_ms: int | None = None) -> BatchResult[T]:
        """Records of a JSON array given as text (or already parsed), plus the rejected ones."""
        now_ms = resolve_now(now_ms)
        raw = as_json(raw)
        try:
            records = self.many.validate_json(raw)
        except ValidationError:
            pass
        else:
            if self.times_ok(records, now_ms):
                return records, []
        items, broken = load(raw)
        if broken is not None:
            return [], [broken]
        if not isinstance(items, list):
            return [], [reject_payload("a JSON array", items, raw)]
        return self.parse_items(items, now_ms)

    def times_ok(self, records: Sequence[T], now_ms: int) -> bool:
        """True when every record time is within bounds (two C-level passes, no Python loop)."""
        if self._time is None or not records:
            return True
        times = list(map(self._time, records))
        return min(times) >= MIN_TIME_MS and max(times) <= now_ms + MAX_AHEAD_MS

    def parse_items(self, items: Sequence[Any], now_ms: int | None = None) -> BatchResult[T]:
        """Validate parsed records one by one (the slow path)."""
        good: list[T] = []
        rejected: list[Rejected] = []
        for item in items:
            result = self.check(item, now_ms)
            if isinstance(result, Rejected):
                rejected.append(result)
            else:
                good.append(result)
        return good, rejected

    def check(
        self, item: Any, now_ms: int | None = None, raw_text: str | None = None
    ) -> T | Rejected:
        """One parsed record as a record or a Rejected; `raw_text` defaults to `dump(item)`."""
        text = dump(item)
        try:
            record = self.one.validate_json(text)
        except ValidationError as exc:
            return Rejected(summarize(exc, "(record)"), text if raw_text is None else raw_text)
        if self._time is not None:
            reason = time_error(self._time_key, self._time(record), resolve_now(now_ms))
            if reason is not None:
                return Rejected(reason, text if raw_text is None else raw_text)
        return record
