"""Line protocol: exact strings for the rules, and hostile points round-tripped through influxd."""

from __future__ import annotations

import enum
import itertools
import math
import re
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from db.line_protocol import (
    INT64_MAX,
    INT64_MIN,
    TIME_MAX_NS,
    TIME_MIN_NS,
    FieldValue,
    encode_point,
)
from db.local_server import LocalInfluxd
from tests.conftest import influxql

_example_dbs = itertools.count(1)


def write(url: str, db: str, body: str) -> httpx.Response:
    return httpx.post(
        f"{url}/write", params={"db": db, "precision": "ns"}, content=body.encode(), timeout=30
    )


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier: backslash, double quote and newline escaped."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# --- exact strings -------------------------------------------------------------------------


def test_typical_trade_point() -> None:
    line = encode_point(
        "trades",
        {"side": "buy", "coin": "BTC"},
        {
            "px": 67234.5,
            "sz": 0.01234,
            "notional": 829.67373,
            "tid": 871239487123947,
            "buyer": "0x8f3a",
            "seller": "0x1234",
        },
        1717171717123456789,
    )
    assert line == (
        "trades,coin=BTC,side=buy px=67234.5,sz=0.01234,notional=829.67373,"
        'tid=871239487123947i,buyer="0x8f3a",seller="0x1234" 1717171717123456789'
    )


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "expected"),
    [
        ("a b,c=d", {}, {"f": 1}, "a\\ b\\,c=d f=1i 0"),
        ('m"x', {}, {"f": 1}, 'm"x f=1i 0'),
        ("m", {"k,e y=": "v,a l=ue"}, {"f": 1}, "m,k\\,e\\ y\\==v\\,a\\ l\\=ue f=1i 0"),
        ("m", {}, {"f,i e=ld": 1}, "m f\\,i\\ e\\=ld=1i 0"),
        ("m", {}, {'f"k': 1}, 'm f"k=1i 0'),
        ("m", {"t": 'a"b'}, {"f": 1}, 'm,t=a"b f=1i 0'),
        ("m", {"t": "a\\b"}, {"f": 1}, "m,t=a\\b f=1i 0"),
        ("m", {"t": "a\\,b"}, {"f": 1}, "m,t=a\\\\,b f=1i 0"),
        ("m", {}, {"s": 'say "hi" \\o/'}, 'm s="say \\"hi\\" \\\\o/" 0'),
        ("m", {}, {"s": "ends with \\"}, 'm s="ends with \\\\" 0'),
        ("m", {}, {"s": "two\nlines\r\tand NUL \x00"}, 'm s="two\nlines\r\tand NUL \x00" 0'),
        ("m", {}, {"s": ""}, 'm s="" 0'),
        ("m😀", {"ключ": "値🚀"}, {"é": "ü"}, 'm😀,ключ=値🚀 é="ü" 0'),
        ("m", {"b": "2", "a": "1", "c": "3"}, {"f": 1}, "m,a=1,b=2,c=3 f=1i 0"),
        ("m", {"a": "", "b": None}, {"f": 1}, "m f=1i 0"),
        ("m", {}, {"t": True, "f": False}, "m t=true,f=false 0"),
        ("m", {}, {"max": INT64_MAX, "min": INT64_MIN}, f"m max={INT64_MAX}i,min={INT64_MIN}i 0"),
        (
            "m",
            {},
            {"a": 1.0, "b": 1e16, "c": 5e-324, "d": -0.0},
            "m a=1.0,b=1e+16,c=5e-324,d=-0.0 0",
        ),
        ("m", {}, {"a": 0.1 + 0.2}, "m a=0.30000000000000004 0"),
        ("m", {}, {"liq_px": None, "szi": 2.5}, "m szi=2.5 0"),
    ],
)
def test_exact_lines(measurement: str, tags: dict, fields: dict, expected: str) -> None:
    assert encode_point(measurement, tags, fields, 0) == expected


def test_time_bounds() -> None:
    assert encode_point("m", {}, {"f": 1}, TIME_MAX_NS).endswith(f" {TIME_MAX_NS}")
    assert encode_point("m", {}, {"f": 1}, TIME_MIN_NS).endswith(f" {TIME_MIN_NS}")
    for bad in (TIME_MAX_NS + 1, TIME_MIN_NS - 1):
        with pytest.raises(ValueError, match="outside"):
            encode_point("m", {}, {"f": 1}, bad)
    with pytest.raises(TypeError):
        encode_point("m", {}, {"f": 1}, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_point("m", {}, {"f": 1}, True)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="NaN and infinities"):
        encode_point("m", {}, {"f": value}, 0)


@pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1])
def test_int_outside_int64_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        encode_point("m", {}, {"f": value}, 0)


@pytest.mark.parametrize("fields", [{}, {"a": None}, {"a": None, "b": None}])
def test_point_without_fields_rejected(fields: dict) -> None:
    with pytest.raises(ValueError, match="no field"):
        encode_point("m", {"coin": "BTC"}, fields, 0)


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "reason"),
    [
        ("", {}, {"f": 1}, "empty"),
        ("a\nb", {}, {"f": 1}, "newline"),
        ("m\\", {}, {"f": 1}, "backslash"),
        ("#m", {}, {"f": 1}, "starts with"),
        ("\tm", {}, {"f": 1}, "starts with"),
        ("m\x00", {}, {"f": 1}, "CR or NUL"),
        ("m\r", {}, {"f": 1}, "CR or NUL"),
        ("m", {"t\r": "v"}, {"f": 1}, "CR or NUL"),
        ("m", {}, {"f\x00": 1}, "CR or NUL"),
        ("a\\,b", {}, {"f": 1}, "backslash before"),
        ('a\\"b', {}, {"f": 1}, "backslash before"),
        ("m", {"": "v"}, {"f": 1}, "empty"),
        ("m", {"t\n": "v"}, {"f": 1}, "newline"),
        ("m", {"t\\": "v"}, {"f": 1}, "backslash"),
        ("m", {"time": "v"}, {"f": 1}, "reserved"),
        ("m", {"t": "a\nb"}, {"f": 1}, "newline"),
        ("m", {"t": "ab\\"}, {"f": 1}, "backslash"),
        ("m", {}, {"": 1}, "empty"),
        ("m", {}, {"f\n": 1}, "newline"),
        ("m", {}, {"f\\": 1}, "backslash"),
        ("m", {}, {"time": 1}, "reserved"),
        ("m", {}, {"\tf": 1}, "starts with"),
        ("m", {}, {"a\\=b": 1}, "backslash before"),
    ],
)
def test_unrepresentable_names_rejected(
    measurement: str, tags: dict, fields: dict, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        encode_point(measurement, tags, fields, 0)


@pytest.mark.parametrize(
    ("tags", "fields"),
    [
        ({"coin": 1}, {"f": 1}),
        ({"coin": ["BTC"]}, {"f": 1}),
        ({}, {"f": Decimal("1.5")}),
        ({}, {"f": [1]}),
        ({}, {"f": b"bytes"}),
    ],
)
def test_unsupported_types_rejected(tags: dict, fields: dict) -> None:
    with pytest.raises(TypeError):
        encode_point("m", tags, fields, 0)


def test_subclasses_are_written_as_their_base_type() -> None:
    class Side(str, enum.Enum):  # noqa: UP042 - its str() is "Side.BUY", not "buy"
        BUY = "buy"

    class Tier(enum.IntEnum):
        TOP = 3

    class Price(float):
        def __repr__(self) -> str:
            return f"Price({float(self)})"

    line = encode_point(
        "m", {"side": Side.BUY}, {"tier": Tier.TOP, "px": Price(1.5), "s": Side.BUY}, 0
    )
    assert line == 'm,side=buy tier=3i,px=1.5,s="buy" 0'


def test_bool_is_not_an_int() -> None:
    assert encode_point("m", {}, {"f": True}, 0) == "m f=true 0"
    assert encode_point("m", {}, {"f": 1}, 0) == "m f=1i 0"


# --- why the rejected names are rejected: the server cannot store them ----------------------


@pytest.mark.parametrize(
    ("line", "measurement", "tag"),
    [
        ("#m f=1i 1", "#m", None),  # a comment: silently dropped
        ("\tm f=1i 1", "\tm", None),  # leading whitespace: stripped
        ("a\\\\,b f=1i 1", "a\\,b", None),  # backslash before comma: the backslash is lost
        ("m,t=a\nb f=1i 1", "m", "a\nb"),  # raw newline: the line is cut in two
        ("m,t=a\\\nb f=1i 1", "m", "a\nb"),  # escaped newline: stored with its backslash
        ("m,t=ab\\ f=1i 1", "m", "ab\\"),  # trailing backslash: escapes the separator
    ],
)
def test_names_that_are_rejected_cannot_be_stored(
    influxd: LocalInfluxd, influx_db: str, line: str, measurement: str, tag: str | None
) -> None:
    """The naive encoding of each rejected name is refused or stored as something else."""
    write(influxd.url, influx_db, line)
    stored = [row["name"] for row in influxql(influxd.url, "SHOW MEASUREMENTS", influx_db)]
    tags = [row.get("t") for row in influxql(influxd.url, "SELECT * FROM /.*/", influx_db)]
    assert (stored, tags) != ([measurement], [tag])


# --- hostile text ------------------------------------------------------------------------

HOSTILE = [",", "=", " ", '"', "\\", "\n", "\r", "\t", "#", "'", "\x00", "é", "😀", "中", "\u2028"]
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(HOSTILE), st.sampled_from(HOSTILE), st.characters(codec="utf-8")
    ),
    min_size=0,
    max_size=12,
)
_BACKSLASH_BEFORE_SPECIAL = re.compile(r'\\[,= "]')


def representable(name: str, position: str) -> bool:
    """The rules of db.line_protocol, spelled out independently: what 1.x can store exactly."""
    if not name or "\n" in name or name.endswith("\\"):
        return False
    if position != "tag value" and ("\r" in name or "\x00" in name):
        return False
    if position in ("measurement", "field key") and (
        name[0] == "\t" or _BACKSLASH_BEFORE_SPECIAL.search(name)
    ):
        return False
    if position == "measurement" and name[0] == "#":
        return False
    return not (position in ("tag key", "field key") and name == "time")


@settings(max_examples=600, deadline=None)
@given(name=hostile_text)
def test_rejection_matches_the_rules(name: str) -> None:
    cases = {
        "measurement": lambda: encode_point(name, {}, {"f": 1}, 0),
        "tag key": lambda: encode_point("m", {name: "v"}, {"f": 1}, 0),
        "tag value": lambda: encode_point("m", {"t": name}, {"f": 1}, 0),
        "field key": lambda: encode_point("m", {}, {name: 1}, 0),
    }
    for position, encode in cases.items():
        expected = representable(name, position) or (position == "tag value" and name == "")
        try:
            encode()
        except ValueError:
            assert not expected, (position, name)
        else:
            assert expected, (position, name)


def names(position: str) -> st.SearchStrategy[str]:
    return hostile_text.filter(lambda name: representable(name, position))


field_values = st.one_of(
    st.booleans(),
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
    hostile_text.map(lambda text: text + "\\"),  # a trailing backslash before the closing quote
)


Point = tuple[str, dict[str, str], dict[str, FieldValue], int]


@st.composite
def points(draw: st.DrawFn) -> Point:
    tags = draw(st.dictionaries(names("tag key"), names("tag value") | st.just(""), max_size=3))
    fields = draw(
        st.dictionaries(
            names("field key").filter(lambda key: key not in tags),
            field_values,
            min_size=1,
            max_size=4,
        )
    )
    time_ns = draw(
        st.one_of(
            st.integers(1_600_000_000_000_000_000, 1_600_000_100_000_000_000),
            st.sampled_from([TIME_MIN_NS, TIME_MAX_NS, 0, -1]),
        )
    )
    return draw(names("measurement")), tags, fields, time_ns


def assert_same_value(expected: object, got: object, where: str) -> None:
    """Exact equality that also keeps types apart (JSON gives 1 for the float 1.0)."""
    if isinstance(expected, bool):
        assert got is expected, where
    elif isinstance(expected, int):
        assert type(got) is int and got == expected, where
    elif isinstance(expected, float):
        assert type(got) in (int, float) and float(got) == expected, where
    else:
        assert type(got) is str and got == expected, where


@pytest.fixture(scope="module")
def http(influxd: LocalInfluxd) -> Iterator[httpx.Client]:
    """One client for the module: creating an httpx client costs ~50 ms here (its SSL context)."""
    with httpx.Client(base_url=influxd.url, timeout=30) as client:
        yield client


def one_type_per_column(batch: list[Point]) -> bool:
    """`SELECT * FROM a, b` merges columns by name and gives each column one type, so a key must
    not be a tag in one point and a field in another, nor a field of two types."""
    tag_keys = {key for _, tags, _, _ in batch for key in tags}
    field_types: dict[str, type] = {}
    for _, _, fields, _ in batch:
        for key, value in fields.items():
            if key in tag_keys or field_types.setdefault(key, type(value)) is not type(value):
                return False
    return True


@settings(max_examples=150, deadline=None)
@example(
    batch=[
        ("trades", {"coin": "BTC", "side": "buy"}, {"s": 'a\\"b\\', "n": -0.0, "i": 7}, 1),
        ('m x,y="\\z', {"t k": "a\\,b", "u": "\r\t\x00"}, {"a\\b": "\n", "f=": True}, 2),
        ("😀", {"🚀": "中"}, {"#": "", "é": INT64_MIN}, 3),
    ]
)
@given(
    batch=st.lists(
        points(),
        min_size=1,
        max_size=4,
        unique_by=(lambda point: point[0], lambda point: point[3]),
    ).filter(one_type_per_column)
)
def test_hostile_points_round_trip_through_influxd(
    influxd: LocalInfluxd, http: httpx.Client, batch: list[Point]
) -> None:
    """Each point in its own measurement and at its own time, all written in one request."""
    db = f"lp_{next(_example_dbs)}"
    http.post("/query", data={"q": f"CREATE DATABASE {quote_ident(db)}"}).raise_for_status()
    try:
        body = "\n".join(encode_point(*point) for point in batch)
        response = http.post("/write", params={"db": db, "precision": "ns"}, content=body.encode())
        assert response.status_code == 204, response.text

        sources = ", ".join(quote_ident(point[0]) for point in batch)
        rows = influxql(influxd.url, f"SELECT * FROM {sources}", db)
        # Columns are the union over all measurements: a point's own are the non-null ones.
        stored = {row["time"]: {k: v for k, v in row.items() if v is not None} for row in rows}
        assert len(rows) == len(batch) == len(stored)
        for measurement, tags, fields, time_ns in batch:
            row = stored[time_ns]
            expected_tags = {key: value for key, value in tags.items() if value}
            assert set(row) == {"time", *expected_tags, *fields}, measurement
            assert {key: row[key] for key in expected_tags} == expected_tags, measurement
            for key, value in fields.items():
                assert_same_value(value, row[key], f"{measurement!r}.{key!r}")

        shown = http.post("/query", data={"q": "SHOW MEASUREMENTS", "db": db}).json()
        names = [values[0] for values in shown["results"][0]["series"][0]["values"]]
        assert sorted(names) == sorted(point[0] for point in batch)
    finally:
        http.post("/query", data={"q": f"DROP DATABASE {quote_ident(db)}"}).raise_for_status()
