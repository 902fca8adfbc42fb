"""Named InfluxQL queries for notebooks, dashboards and engines, and the read-only statement check.

Adding a query is one `register(NamedQuery(...))` declaration below. Every user-supplied value
reaches InfluxDB as a bound parameter (`$name` in the statement, the value in the request's
`params` JSON), never as text in the statement. Every query has a window, `time >= $start AND
time < $end`, bound as RFC3339 strings with nanoseconds (computed on this machine's UTC clock from
`hours`/`minutes`, or given as `start`/`end`): InfluxDB 1.x only binds a duration when it is sent
as a typed object, which 3.x does not understand, while an RFC3339 string works everywhere. Every
query has a row `limit` too: plain-row queries end in `ORDER BY time DESC LIMIT $limit` (the
newest rows kept), the reduced ones (GROUP BY, transform) are cut by the reader.
"""

from __future__ import annotations

import calendar
import math
import re
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where frames are handled, not by the collector
    import pandas as pd

from db.schema import (
    ACCOUNT_EQUITY,
    ASSET_CTX,
    CANDLES,
    CVD,
    CVD_WINDOWS,
    DEX_LIQUIDITY,
    DEX_POOLS,
    DEX_SWAPS,
    FUNDING,
    GLOBAL_METRICS,
    HLP_POSITIONS,
    LIQ_COVERAGE,
    LIQ_LEVELS,
    LIQ_LEVELS_KEYFRAME_MINUTES,
    LIQUIDATIONS,
    ORDER_FLOW,
    POSITION_CHANGES,
    POSITIONING,
    POSITIONS,
    SMART_MONEY,
    TRADES,
    WALLET_PROFILES,
    Measurement,
)
from utils.errors import InfluxQueryError
from validate.market import CANDLE_INTERVAL_MS

READ_STATEMENTS = ("SELECT", "SHOW")

_FIRST_WORD = re.compile(r"(SELECT|SHOW)(?![A-Za-z0-9_])", re.IGNORECASE)
# InfluxQL identifiers are ASCII letters, digits and `_`, so these boundaries find every INTO
# keyword the server could see (and, conservatively, also one inside a string or quoted name).
_INTO = re.compile(r"(?<![A-Za-z0-9_])INTO(?![A-Za-z0-9_])", re.IGNORECASE)
_BIND_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_RESERVED_PARAM_NAMES = frozenset({"name", "target"})  # taken by read_from_influx itself


def check_read_only(influxql: str) -> str:
    """The statement ready to send, or InfluxQueryError if it is not one SELECT or SHOW.

    Deliberately strict, because the text sent is the text checked: one statement (a `;` is
    allowed only at the very end), starting with SELECT or SHOW (no leading comment), and no
    `INTO` anywhere (SELECT ... INTO writes). A literal that needs `;` or `into` can be bound
    as a `$param` instead.
    """
    statement = influxql.strip()
    if statement.endswith(";"):
        statement = statement[:-1].rstrip()
    if not statement:
        raise InfluxQueryError("empty query: give one SELECT or SHOW statement")
    if ";" in statement:
        raise InfluxQueryError(
            "one statement per query: `;` is allowed only at the end "
            "(pass a value containing `;` as a bound $param)"
        )
    if not _FIRST_WORD.match(statement):
        first = statement.split(maxsplit=1)[0][:40]
        raise InfluxQueryError(
            f"only read statements are allowed (SELECT, SHOW), not {first!r}: "
            "the query must start with SELECT or SHOW"
        )
    if _INTO.search(statement):
        raise InfluxQueryError(
            "SELECT ... INTO writes data and is not allowed here "
            "(pass a value containing 'into' as a bound $param)"
        )
    return statement


class ExactRegex(str):
    """A bound value sent as a regular expression that matches exactly this text (every
    character escaped; empty: anything). Only code makes one: see `check_bound_params`."""

    def bound(self) -> dict[str, str]:
        return {"regex": f"^{re.escape(self)}$" if self else ".*"}


def check_bound_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Bound values as sent: names like `asset`, values str, int, float (finite) or bool only.

    Objects are refused on purpose: InfluxDB 1.x reads `{"identifier": "coin"}` as a column
    name and `{"regex": ...}` as a regex, which would let a value change the query. The one
    exception is an `ExactRegex`, escaped here, so it matches its text and nothing else.
    """
    checked: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if not isinstance(key, str) or not _BIND_NAME.fullmatch(key):
            raise InfluxQueryError(f"bad parameter name {key!r}: use letters, digits and _")
        if isinstance(value, ExactRegex):
            checked[key] = value.bound()
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise InfluxQueryError(f"parameter {key!r} must be a finite number, got {value!r}")
        if not isinstance(value, str | int | float):  # bool is an int
            raise InfluxQueryError(
                f"parameter {key!r} must be a str, int, float or bool, got {type(value).__name__}"
            )
        checked[key] = value
    return checked


def rfc3339_ns(epoch_ns: int) -> str:
    """`2024-05-01T12:00:00.123456789Z` for an epoch in nanoseconds (UTC)."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


NO_END = "2262-04-11T23:47:16.854775806Z"
"""InfluxDB's last representable instant: the bound `$end` of a window without an end."""
_MIN_NS, _MAX_NS = -9_223_372_036_854_775_806, 9_223_372_036_854_775_806
_TIME_TEXT = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def parse_time(value: Any) -> int:
    """Epoch ns of an ISO 8601 / RFC3339 text (`2024-05-01`, `2024-05-01T12:00:00.5Z`, with an
    offset or without one: UTC) or of a datetime / pandas Timestamp (naive: UTC)."""
    if isinstance(value, datetime):
        whole = calendar.timegm(value.utctimetuple())
        ns = whole * 1_000_000_000 + value.microsecond * 1000 + getattr(value, "nanosecond", 0)
    elif isinstance(value, str) and (match := _TIME_TEXT.fullmatch(value.strip())):
        day, clock, fraction, offset = match.groups()
        offset = (offset or "+00:00").upper().replace("Z", "+00:00")
        if ":" not in offset:
            offset = f"{offset[:3]}:{offset[3:]}"
        try:
            moment = datetime.fromisoformat(f"{day}T{clock or '00:00'}{offset}")
        except ValueError as exc:
            raise ValueError(f"is not a valid time ({exc}): {value!r}") from None
        ns = calendar.timegm(moment.utctimetuple()) * 1_000_000_000
        ns += int((fraction or "").ljust(9, "0"))
    else:
        raise ValueError(
            "must be a time like 2024-05-01T12:00:00Z (ISO 8601; UTC unless it has an offset) "
            f"or a datetime, got {type(value).__name__} {value!r}"
        )
    if not _MIN_NS <= ns <= _MAX_NS:
        raise ValueError(f"is outside InfluxDB's time range (1677 to 2262): {value!r}")
    return ns


_REQUIRED: Any = object()
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


@dataclass(frozen=True)
class Param:
    """One parameter of a named query.

    `bind_as` names the `$placeholder` it fills (default: its own name); `convert` turns the
    validated value into the bound value. A parameter with `bind=False` never reaches InfluxDB
    as itself: it goes to the query's `transform` (e.g. top n), or it is one of the window and
    limit parameters every query has (`start`, `end`, `hours`/`minutes`, `limit`), which
    `NamedQuery.resolve` turns into `$start`, `$end` and `$limit`. `parse` replaces the type
    check (times: text or datetime in, epoch ns out); `kind` is the type name shown.
    """

    name: str
    type: type[str] | type[float] | type[int] | type[bool]
    default: Any = _REQUIRED
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    max_length: int = 100
    bind_as: str | None = None
    convert: Callable[[Any], Any] | None = None
    bind: bool = True
    parse: Callable[[Any], Any] | None = None
    kind: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def placeholder(self) -> str:
        return self.bind_as or self.name

    @property
    def type_name(self) -> str:
        return self.kind or self.type.__name__

    def describe(self) -> str:
        text = f"{self.name}: {self.type_name}"
        if self.choices:
            text += f" in {{{', '.join(self.choices)}}}"
        if self.required:
            return text + " (required)"
        return text + (" (optional)" if self.default is None else f" = {self.default!r}")

    def from_text(self, text: str) -> Any:
        """A command-line value (`--param n=3`) converted to the declared type."""
        if self.parse is not None or self.type is str:
            return text
        if self.type is bool:
            if text.strip().lower() in _TRUE | _FALSE:
                return text.strip().lower() in _TRUE
            raise ValueError(f"must be a bool (true or false), got {text!r}")
        try:
            return self.type(text.strip())
        except ValueError:
            raise ValueError(f"must be {_a(self.type_name)}, got {text!r}") from None

    def validate(self, value: Any) -> Any:
        """The value, checked and coerced (int -> float); a one-line reason otherwise."""
        if self.parse is not None:
            return self.parse(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise ValueError(f"must be {_a(self.type_name)}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be <= {self.maximum}, got {value!r}")
        if isinstance(value, str):
            if not value or len(value) > self.max_length:
                raise ValueError(f"must be 1 to {self.max_length} characters, got {len(value)}")
            if self.choices and value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
        return value


DEFAULT_LIMIT = 1_000_000
"""Rows a history query returns at most unless told otherwise: a day of BTC trades fits (a few
hundred MB as a DataFrame); more is cut, the newest kept, with a warning."""
_LENGTHS = {"hours": 3_600_000_000_000, "minutes": 60_000_000_000}


@dataclass(frozen=True)
class NamedQuery:
    """A read query with a name, typed parameters and the columns it returns besides `time`.

    Every query has a time window and a row limit: its statement filters on
    `time >= $start AND time < $end`, and its parameters include `window(...)` and `limit(...)`.
    A query without `transform` or `GROUP BY` gets `ORDER BY time DESC LIMIT $limit` added (see
    `statement`): InfluxDB cuts the answer to the newest `limit` rows, and one more row is asked
    for, so that the reader knows when it did. The others are cut by the reader after the
    transform (`limit` first rows of the answer).
    """

    name: str
    influxql: str
    params: tuple[Param, ...]
    description: str
    example: str
    columns: tuple[str, ...] = ()
    ints: tuple[str, ...] = ()
    """Columns that are integers; every other numeric column is returned as float."""
    transform: Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame] | None = None
    """Applied to the frame with the unbound parameters (rows InfluxQL cannot reduce)."""
    lead_minutes: float = 0.0
    """The statement's `$start` is this much before the window's start (see liq_levels)."""
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)
    statement: str = field(init=False, repr=False, compare=False)
    """The statement sent: `influxql`, plus the newest-first LIMIT when InfluxDB applies it."""
    measurement: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})
        check_read_only(self.influxql)
        if len(self._by_name) != len(self.params):
            raise ValueError(f"query {self.name!r}: duplicate parameter names")
        if reserved := _RESERVED_PARAM_NAMES & set(self._by_name):
            raise ValueError(f"query {self.name!r}: reserved parameter names {sorted(reserved)}")
        if missing := {"start", "end", "hours", "limit"} - set(self._by_name):
            raise ValueError(f"query {self.name!r}: no {sorted(missing)} (use window(), limit())")
        statement = self.influxql
        if self.limit_in_influxql:
            statement += " ORDER BY time DESC LIMIT $limit"
        object.__setattr__(self, "statement", statement)
        found = re.search(r'FROM "([A-Za-z0-9_]+)"', self.influxql)
        object.__setattr__(self, "measurement", found.group(1) if found else "")
        placeholders = set(_PLACEHOLDER.findall(statement))
        bound = {p.placeholder for p in self.params if p.bind} | {"start", "end"}
        if self.limit_in_influxql:
            bound.add("limit")
        if placeholders != bound:
            raise ValueError(
                f"query {self.name!r}: $placeholders {sorted(placeholders)} "
                f"do not match the parameters' bindings {sorted(bound)}"
            )

    @property
    def limit_in_influxql(self) -> bool:
        """Whether InfluxDB applies `limit` (plain rows), or the reader after the transform."""
        return self.transform is None and "GROUP BY" not in self.influxql.upper()

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.describe() for p in self.params)})"

    def help_text(self) -> str:
        """Every parameter with its type, default and description, and an example."""
        width = max(len(p.name) for p in self.params)
        lines = [f"{self.name}: {self.description}", "", "parameters:"]
        for param in self.params:
            lines.append(f"  {param.name:<{width}}  {param.describe().split(': ', 1)[1]}")
            if param.description:
                lines += textwrap.wrap(
                    param.description,
                    100,
                    initial_indent=" " * (width + 4),
                    subsequent_indent=" " * (width + 4),
                )
        lines += ["", f"example: {self.example}"]
        return "\n".join(lines) + "\n"

    def from_text(self, given: Mapping[str, str]) -> dict[str, Any]:
        """Command-line values (text) converted by the parameters' declared types."""
        converted: dict[str, Any] = {}
        for key, text in given.items():
            param = self._by_name.get(key)
            if param is None:
                converted[key] = text  # resolve() names the unknown parameter
                continue
            try:
                converted[key] = param.from_text(text)
            except ValueError as exc:
                raise InfluxQueryError(
                    f"query {self.name!r}: parameter {key!r} {exc}; allowed: {self.signature()}"
                ) from None
        return converted

    def bind(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Validated bound parameters for `given` keyword arguments; InfluxQueryError otherwise."""
        return self.resolve(given)[0]

    def resolve(self, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(bound parameters, unbound options) for `given`; InfluxQueryError when invalid.

        The window: `start` (default: `end` or now, minus `hours` or `minutes`) to `end`
        (exclusive; default: none). `start` and a length are one choice, not both.
        """
        allowed = f"allowed: {self.signature()}"

        def error(problem: str) -> InfluxQueryError:
            return InfluxQueryError(f"query {self.name!r}: {problem}; {allowed}")

        if unknown := sorted(set(given) - set(self._by_name)):
            raise error(f"unknown parameter {', '.join(unknown)}")
        bound: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for param in self.params:
            if param.name in given and (given[param.name] is not None or param.required):
                try:
                    value = param.validate(given[param.name])
                except ValueError as exc:
                    raise error(f"parameter {param.name!r} {exc}") from None
            elif param.required:
                raise error(f"missing required parameter {param.name!r}")
            else:
                value = param.default
            if not param.bind:
                options[param.name] = value
                continue
            bound[param.placeholder] = param.convert(value) if param.convert else value
        chosen = [n for n in ("start", "hours", "minutes") if given.get(n) is not None]
        if len(chosen) > 1:
            raise error(f"give one of {' or '.join(chosen)}, not both")
        end_ns = options["end"]
        if options["start"] is not None:
            start_ns = options["start"]
        else:
            unit = chosen[0] if chosen else ("minutes" if "minutes" in options else "hours")
            anchor = end_ns if end_ns is not None else time.time_ns()
            start_ns = anchor - round(options[unit] * _LENGTHS[unit])
        if end_ns is not None and start_ns >= end_ns:
            raise error(f"start {rfc3339_ns(start_ns)} is not before end {rfc3339_ns(end_ns)}")
        options["window_start_ns"] = start_ns  # a transform may cut the lead off
        start_ns -= round(self.lead_minutes * _LENGTHS["minutes"])
        bound["start"] = rfc3339_ns(max(start_ns, _MIN_NS))
        bound["end"] = NO_END if end_ns is None else rfc3339_ns(end_ns)
        if self.limit_in_influxql:
            limit = options["limit"]
            bound["limit"] = limit + 1 if limit else 0  # one more: was anything left out?
        return bound, options

    def finish(self, frame: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
        """Whole-number floats come back from InfluxDB's JSON as ints: restore the floats."""
        import pandas as pd

        for column in frame.columns:
            if column not in self.ints and pd.api.types.is_integer_dtype(frame[column]):
                frame[column] = frame[column].astype("float64")
        return self.transform(frame, options) if self.transform else frame


QUERIES: dict[str, NamedQuery] = {}


def register(query: NamedQuery) -> NamedQuery:
    if query.name in QUERIES:
        raise ValueError(f"a query named {query.name!r} is already registered")
    QUERIES[query.name] = query
    return query


def get_query(name: str) -> NamedQuery:
    try:
        return QUERIES[name]
    except KeyError:
        raise InfluxQueryError(
            f"unknown query {name!r}; available: {', '.join(sorted(QUERIES))}"
        ) from None


def asset(description: str = "Hyperliquid coin, e.g. BTC, kPEPE, @107 (case-sensitive)") -> Param:
    return Param("asset", str, description=description)


def any_asset() -> Param:
    """An optional coin: left out, every coin (a cross-market answer). Bound as a regular
    expression (`"coin" =~ $asset_re`), which InfluxQL's bound parameters allow."""
    return Param(
        "asset",
        str,
        default=None,
        description="Hyperliquid coin, e.g. BTC (case-sensitive); omitted: every coin",
        bind_as="asset_re",
        convert=lambda coin: ExactRegex(coin or ""),
    )


def window(hours: float | None = 24.0, minutes: float | None = None) -> tuple[Param, ...]:
    """The window parameters: its length in `hours` (or, for the latest-state queries, in
    `minutes`, with `hours` as the alternative), `start` instead of a length, and `end`."""
    length = Param(
        "hours",
        float,
        default=hours,
        description="window length in hours, ending at end (default now)",
        minimum=1e-6,
        maximum=87_600.0,  # ten years
        bind=False,
    )
    lengths: tuple[Param, ...] = (length,)
    if minutes is not None:
        lengths = (
            Param(
                "minutes",
                float,
                default=minutes,
                description="only points newer than this many minutes before end (default now)",
                minimum=1e-3,
                maximum=10_080.0,
                bind=False,
            ),
            replace(length, default=None, description="the same window in hours, instead"),
        )
    times = (
        Param(
            "start",
            str,
            default=None,
            description="window start (ISO 8601, UTC unless an offset is given), instead of "
            "a length",
            bind=False,
            parse=parse_time,
            kind="time",
        ),
        Param(
            "end",
            str,
            default=None,
            description="window end, exclusive (default: none)",
            bind=False,
            parse=parse_time,
            kind="time",
        ),
    )
    return (*lengths, *times)


def limit(default: int = DEFAULT_LIMIT, kept: str = "the newest") -> Param:
    return Param(
        "limit",
        int,
        default=default,
        description=f"most rows returned, {kept} kept (0: no limit); a cut answer logs a "
        "warning and has frame.attrs['truncated'] = True",
        minimum=0,
        maximum=1_000_000_000,
        bind=False,
    )


WINDOW = "time >= $start AND time < $end"
"""Every named query's window, `$start` and `$end` bound by `NamedQuery.resolve`."""


def coin_window(measurement: Measurement, example: str) -> NamedQuery:
    """Every tag and field of one coin's points over the window."""
    return NamedQuery(
        name=measurement.name,
        influxql=f'{measurement.select()} WHERE "coin" = $asset AND {WINDOW}',
        params=(asset(), *window(), limit()),
        description=f"{measurement.description[0].upper()}{measurement.description[1:]}.",
        example=example,
        columns=measurement.columns,
        ints=measurement.ints,
    )


register(coin_window(TRADES, 'read_from_influx("trades", asset="BTC", hours=6)'))
register(coin_window(LIQUIDATIONS, 'read_from_influx("liquidations", asset="ETH", hours=24)'))
register(coin_window(ASSET_CTX, 'read_from_influx("asset_ctx", asset="SOL", hours=72)'))
register(coin_window(ORDER_FLOW, 'read_from_influx("order_flow", asset="BTC", hours=24)'))


CANDLE_INTERVALS = tuple(CANDLE_INTERVAL_MS)
"""The `interval` tag values of `candles`: Hyperliquid's candleSnapshot intervals."""

register(
    NamedQuery(
        name=CANDLES.name,
        influxql=(
            f'{CANDLES.select()} WHERE "coin" = $asset AND "interval" = $interval AND {WINDOW}'
        ),
        params=(
            asset(),
            Param(
                "interval",
                str,
                default="1h",
                description="candle interval",
                choices=CANDLE_INTERVALS,
            ),
            *window(),
            limit(),
        ),
        description="OHLCV candles of one coin and interval, stamped at their open time; "
        "volume in base units.",
        example='read_from_influx("candles", asset="BTC", hours=48, interval="1h")',
        columns=CANDLES.columns,
        ints=CANDLES.ints,
    )
)
register(coin_window(FUNDING, 'read_from_influx("funding", asset="ETH", hours=168)'))


POSITIONS_MINUTES = 20.0
"""The staleness cutoff of position snapshots: a position not polled for this long is left out."""


def latest_per_address(frame: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
    """Each address's position from its latest poll; closed ones (szi = 0) are dropped.

    A poll that flipped long to short wrote a closing point and an opening one in the same
    millisecond, so the whole latest millisecond counts, not only its last point.
    """
    import pandas as pd

    if frame.empty:
        return frame
    poll_ms = frame.index.asi8 // 1_000_000
    latest = (
        pd.Series(poll_ms, index=frame.index).groupby(frame["address"].to_numpy()).transform("max")
    )
    keep = (poll_ms == latest.to_numpy()) & (frame["szi"].to_numpy() != 0)
    result = frame[keep].sort_values("size_usd", ascending=False)
    n = options.get("n")
    return result.head(n) if n else result


register(
    replace(
        coin_window(ASSET_CTX, 'read_from_influx("asset_history", asset="BTC", hours=24)'),
        name="asset_history",
    )
)
register(
    NamedQuery(
        name="latest_positions",
        influxql=f'{POSITIONS.select()} WHERE "coin" =~ $asset_re AND {WINDOW}',
        params=(any_asset(), *window(minutes=POSITIONS_MINUTES), limit(0, kept="the largest")),
        description="Each tracked address's latest open position in one coin, or in every coin "
        "(largest first).",
        example='read_from_influx("latest_positions", asset="BTC", minutes=20)',
        columns=POSITIONS.columns,
        ints=POSITIONS.ints,
        transform=latest_per_address,
    )
)
register(
    NamedQuery(
        name="whales",
        influxql=f'{POSITIONS.select()} WHERE "coin" =~ $asset_re AND {WINDOW}',
        params=(
            any_asset(),
            Param(
                "n", int, default=20, description="how many", minimum=1, maximum=1000, bind=False
            ),
            *window(minutes=POSITIONS_MINUTES),
            limit(0, kept="the largest"),
        ),
        description="The n largest open positions in one coin, or over every coin, from the "
        "latest polls.",
        example='read_from_influx("whales", asset="ETH", n=10)',
        columns=POSITIONS.columns,
        ints=POSITIONS.ints,
        transform=latest_per_address,
    )
)
register(
    NamedQuery(
        name=CVD.name,
        influxql=f'{CVD.select()} WHERE "coin" = $asset AND "window" = $window AND {WINDOW}',
        params=(
            asset(),
            Param("window", str, default="5m", description="rolling window", choices=CVD_WINDOWS),
            *window(),
            limit(),
        ),
        description=f"{CVD.description[0].upper()}{CVD.description[1:]}.",
        example='read_from_influx("cvd", asset="BTC", hours=6, window="15m")',
        columns=CVD.columns,
        ints=CVD.ints,
    )
)
HEATMAP_LOOKBACK_MINUTES = LIQ_LEVELS_KEYFRAME_MINUTES + 1.0
"""How far back every non-empty level of `liq_levels` has a point: the heatmap engine writes
every level again at each keyframe and between them only the levels that changed, so the newest
picture is each level's latest point within a keyframe interval and a minute."""

_LEVEL_FIELDS = tuple(f for f in LIQ_LEVELS.fields if f != "price")


def latest_levels(frame: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
    """Levels whose latest point is not empty (an emptied level is written once with zero
    counts), lowest price first."""
    if frame.empty:
        return frame
    empty = (frame["long_count"] == 0) & (frame["short_count"] == 0)
    return frame[~empty].sort_values("price", kind="stable")


register(
    NamedQuery(
        name="liq_heatmap",
        # One selector and plain fields: the other fields come from the selected point, and
        # the row's time is that point's time.
        influxql=(
            'SELECT last("price") AS "price", '
            + ", ".join(f'"{f}"' for f in _LEVEL_FIELDS)
            + f' FROM "{LIQ_LEVELS.name}" WHERE "coin" = $asset AND {WINDOW} GROUP BY "level"'
        ),
        params=(
            asset(),
            *window(minutes=HEATMAP_LOOKBACK_MINUTES),
            limit(0, kept="the lowest levels"),
        ),
        description="The newest liquidation heatmap of one coin: per absolute price level (tag "
        "level = its lower edge), the USD liquidated there and the positions' counts, from each "
        f"level's latest point in the last `minutes` ({HEATMAP_LOOKBACK_MINUTES:.0f}: every "
        f"level is written at least every {LIQ_LEVELS_KEYFRAME_MINUTES} min); empty levels "
        "dropped, lowest price first. An ESTIMATE from tracked positions: "
        "liq_coverage says how much of the open interest they are.",
        example='read_from_influx("liq_heatmap", asset="BTC")',
        columns=("level", *LIQ_LEVELS.fields),
        ints=LIQ_LEVELS.ints,
        transform=latest_levels,
    )
)


register(
    NamedQuery(
        name=LIQ_LEVELS.name,
        influxql=f'{LIQ_LEVELS.select()} WHERE "coin" = $asset AND {WINDOW}',
        params=(asset(), *window(), limit()),
        description="The liquidation heatmap of one coin over time, as written: a point when a "
        f"level changed (every level again every {LIQ_LEVELS_KEYFRAME_MINUTES} min; an emptied "
        f"level once with zeros). Rows start {HEATMAP_LOOKBACK_MINUTES:.0f} min before the "
        "window so that each level's value carried forward "
        "(pivot on level, ffill) is known from the window's start.",
        example='read_from_influx("liq_levels", asset="BTC", hours=6)',
        columns=LIQ_LEVELS.columns,
        ints=LIQ_LEVELS.ints,
        lead_minutes=HEATMAP_LOOKBACK_MINUTES,
    )
)
register(coin_window(LIQ_COVERAGE, 'read_from_influx("liq_coverage", asset="BTC", hours=6)'))
register(
    NamedQuery(
        name=GLOBAL_METRICS.name,
        influxql=f"{GLOBAL_METRICS.select()} WHERE {WINDOW}",
        params=(*window(), limit()),
        description=f"{GLOBAL_METRICS.description[0].upper()}{GLOBAL_METRICS.description[1:]}.",
        example='read_from_influx("global_metrics", hours=24)',
        columns=GLOBAL_METRICS.columns,
        ints=GLOBAL_METRICS.ints,
    )
)
register(
    NamedQuery(
        name=HLP_POSITIONS.name,
        influxql=f"{HLP_POSITIONS.select()} WHERE {WINDOW}",
        params=(*window(), limit()),
        description="Positions of the HLP parent and child vaults (tag vault).",
        example='read_from_influx("hlp_positions", hours=6)',
        columns=HLP_POSITIONS.columns,
        ints=HLP_POSITIONS.ints,
    )
)
register(coin_window(POSITIONING, 'read_from_influx("positioning", asset="BTC", hours=24)'))

HLP_LEAD_MINUTES = 5.0
"""hlp_sentiment reads this much before the window (each vault's position at its start: the
vaults are polled every minute) and returns the window only."""


def hlp_net(frame: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
    """The HLP vaults' net position in the coin after each vault poll: every vault's latest
    signed size (a closed side's point is 0) summed; side long/short/flat; flip where the side
    differs from the last non-flat one before it."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(
            columns=["net_szi", "net_usd", "side", "flip", "vaults"],
            index=pd.DatetimeIndex([], tz="UTC", name="time"),
        )
    sign = frame["szi"].apply(lambda v: (v > 0) - (v < 0))
    signed = frame.assign(usd=frame["size_usd"] * sign)
    per_poll = signed.groupby([signed.index, "vault"])[["szi", "usd"]].sum()  # both sides of a flip
    szi = per_poll["szi"].unstack("vault").ffill()
    usd = per_poll["usd"].unstack("vault").ffill()
    out = pd.DataFrame(
        {
            "net_szi": szi.sum(axis=1),
            "net_usd": usd.sum(axis=1),
            "vaults": szi.notna().sum(axis=1).astype("int64"),
        }
    )
    out["side"] = out["net_szi"].apply(lambda v: "long" if v > 0 else "short" if v < 0 else "flat")
    held = out["side"].where(out["side"] != "flat").ffill()
    out["flip"] = held.ne(held.shift()) & held.shift().notna() & (out["side"] != "flat")
    out = out[out.index >= pd.Timestamp(options["window_start_ns"], unit="ns", tz="UTC")]
    out.index.name = "time"
    return out[["net_szi", "net_usd", "side", "flip", "vaults"]]


register(
    NamedQuery(
        name="hlp_sentiment",
        influxql=(
            'SELECT "vault", "szi", "size_usd" FROM "hlp_positions" '
            f'WHERE "coin" = $asset AND {WINDOW}'
        ),
        params=(asset(), *window(hours=24.0), limit(0)),
        description="The HLP vaults' net position in one coin over time (the parent and every "
        "child summed, as of each vault poll): net_szi (coin units, + long), net_usd, side "
        "long/short/flat, flip (True where HLP turned from one side to the other) and how many "
        "vaults are counted. `frame.flip.sum()` is the number of flips in the window.",
        example='read_from_influx("hlp_sentiment", asset="ETH", hours=48)',
        columns=("net_szi", "net_usd", "side", "flip", "vaults"),
        ints=("vaults",),
        transform=hlp_net,
        lead_minutes=HLP_LEAD_MINUTES,
    )
)


def latest_run(frame: pd.DataFrame, options: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of the newest ranking run only, best rank first."""
    if frame.empty:
        return frame
    latest = frame[frame.index == frame.index.max()]
    return latest.iloc[latest["rank"].astype(int).argsort(kind="stable")]


register(
    NamedQuery(
        name=SMART_MONEY.name,
        influxql=(f'{SMART_MONEY.select()} WHERE "window" = $window AND "by" = $by AND {WINDOW}'),
        params=(
            Param("window", str, default="24h", description="24h or the profile window (7d)"),
            Param("by", str, default="pnl", description="ranked by", choices=("pnl", "roe")),
            *window(minutes=15.0),
            limit(0, kept="the newest"),
        ),
        description="The newest smart-money ranking: the top profiled traders by PnL (realized "
        "net of fees in the window + unrealized now) or by ROE (PnL / account value), best "
        "first, from the latest run in the last `minutes` (runs every profiles.rank_interval).",
        example='read_from_influx("smart_money", window="7d", by="roe")',
        columns=SMART_MONEY.columns,
        ints=SMART_MONEY.ints,
        transform=latest_run,
    )
)
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _address(value: Any) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value.strip()):
        raise ValueError(f"must be a 0x address with 40 hex digits, got {value!r}")
    return value.strip().lower()


WALLET_MEASUREMENTS = (WALLET_PROFILES, ACCOUNT_EQUITY, POSITIONS, POSITION_CHANGES, SMART_MONEY)
register(
    NamedQuery(
        name="wallet",
        influxql=(
            "SELECT * FROM "
            + ", ".join(f'"{m.name}"' for m in WALLET_MEASUREMENTS)
            + f' WHERE "address" = $address AND {WINDOW}'
        ),
        params=(
            Param("address", str, description="0x address, 40 hex digits", parse=_address),
            *window(hours=24.0),
            limit(),
        ),
        description="Everything stored about one address in the window, one row per point, "
        "column _measurement saying which: its wallet profiles, account equity, position "
        "polls, position changes (every fill the book saw) and its smart_money ranks.",
        example='read_from_influx("wallet", address="0x...", hours=168)',
        columns=("_measurement",),
        ints=tuple(i for m in WALLET_MEASUREMENTS for i in m.ints),
    )
)


def pool_window(measurement: Measurement, example: str) -> NamedQuery:
    """Every tag and field of one HyperEVM pool's points over the window."""
    return NamedQuery(
        name=measurement.name,
        influxql=f'{measurement.select()} WHERE "pool" = $pool AND {WINDOW}',
        params=(
            Param("pool", str, description="the pool's label in the evm section, e.g. WHYPE/USDT0"),
            *window(),
            limit(),
        ),
        description=f"{measurement.description[0].upper()}{measurement.description[1:]}.",
        example=example,
        columns=measurement.columns,
        ints=measurement.ints,
    )


register(pool_window(DEX_POOLS, 'read_from_influx("dex_pools", pool="WHYPE/USDT0", hours=24)'))
register(pool_window(DEX_SWAPS, 'read_from_influx("dex_swaps", pool="WHYPE/USDT0", hours=6)'))
register(
    pool_window(DEX_LIQUIDITY, 'read_from_influx("dex_liquidity", pool="WHYPE/USDT0", hours=24)')
)
