"""Query results as text for the `query` command: table, csv and json, exact strings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from db.reader import rows_to_frame
from utils.tabular import format_frame

H0 = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z in ns
HOUR_NS = 3_600 * 10**9


def funding_frame() -> pd.DataFrame:
    """Two settlements as read_from_influx returns them; the second has no premium."""
    rows = [
        {"time": H0 + 48_000_000, "coin": "BTC", "rate": 1.25e-05, "premium": 0.00031},
        {"time": H0 + HOUR_NS + 12_000_000, "coin": "BTC", "rate": -0.0002, "premium": None},
    ]
    return rows_to_frame(rows, ("coin", "rate", "premium"))


def test_table_aligns_numbers_right_and_text_left():
    assert format_frame(funding_frame(), "table") == (
        "time                      coin      rate  premium\n"
        "2024-05-01T12:00:00.048Z  BTC   1.25e-05  0.00031\n"
        "2024-05-01T13:00:00.012Z  BTC    -0.0002\n"
    )


def test_csv_has_a_header_iso_times_and_empty_missing_values():
    assert format_frame(funding_frame(), "csv") == (
        "time,coin,rate,premium\n"
        "2024-05-01T12:00:00.048Z,BTC,1.25e-05,0.00031\n"
        "2024-05-01T13:00:00.012Z,BTC,-0.0002,\n"
    )


def test_json_is_an_array_of_records_one_per_line():
    text = format_frame(funding_frame(), "json")
    assert text == (
        "[\n"
        '{"time": "2024-05-01T12:00:00.048Z", "coin": "BTC", "rate": 1.25e-05, '
        '"premium": 0.00031},\n'
        '{"time": "2024-05-01T13:00:00.012Z", "coin": "BTC", "rate": -0.0002, "premium": null}\n'
        "]\n"
    )
    assert json.loads(text)[1] == {
        "time": "2024-05-01T13:00:00.012Z",
        "coin": "BTC",
        "rate": -0.0002,
        "premium": None,
    }


def test_times_get_as_many_digits_as_they_need():
    """Whole seconds: none; trades in nanosecond slots of one millisecond: all nine."""
    candles = rows_to_frame(
        [
            {"time": H0, "coin": "ETH", "interval": "1h", "close": 3000.5, "trade_count": 12},
            {
                "time": H0 + HOUR_NS,
                "coin": "ETH",
                "interval": "1h",
                "close": 2999.0,
                "trade_count": 7,
            },
        ],
        ("coin", "interval", "close", "trade_count"),
    )
    assert format_frame(candles, "table") == (
        "time                  coin  interval   close  trade_count\n"
        "2024-05-01T12:00:00Z  ETH   1h        3000.5           12\n"
        "2024-05-01T13:00:00Z  ETH   1h        2999.0            7\n"
    )
    trades = rows_to_frame(
        [
            {"time": H0 + 5_000_000, "coin": "BTC", "side": "buy", "tid": 11, "buyer": "0xaa"},
            {"time": H0 + 5_000_001, "coin": "BTC", "side": "sell", "tid": 12, "buyer": "0xbb"},
        ],
        ("coin", "side", "tid", "buyer"),
    )
    assert format_frame(trades, "csv") == (
        "time,coin,side,tid,buyer\n"
        "2024-05-01T12:00:00.005000000Z,BTC,buy,11,0xaa\n"
        "2024-05-01T12:00:00.005000001Z,BTC,sell,12,0xbb\n"
    )


def test_empty_results_keep_their_header():
    empty = rows_to_frame([], ("coin", "rate", "premium"))
    assert format_frame(empty, "table") == "time  coin  rate  premium\n"
    assert format_frame(empty, "csv") == "time,coin,rate,premium\n"
    assert format_frame(empty, "json") == "[]\n"


def test_show_results_have_no_time_column():
    tags = rows_to_frame([{"value": "BTC"}, {"value": "kPEPE"}], time_index=False)
    assert format_frame(tags, "table") == "value\nBTC\nkPEPE\n"
    assert format_frame(tags, "json") == '[\n{"value": "BTC"},\n{"value": "kPEPE"}\n]\n'


def test_text_with_commas_and_quotes_is_quoted_in_csv():
    frame = rows_to_frame([{"time": H0, "reason": 'bad "px", dropped'}], ("reason",))
    assert format_frame(frame, "csv") == 'time,reason\n2024-05-01T12:00:00Z,"bad ""px"", dropped"\n'


def test_an_unknown_format_says_which_exist():
    with pytest.raises(ValueError, match="unknown format 'xml'; choose from table, csv, json"):
        format_frame(funding_frame(), "xml")
