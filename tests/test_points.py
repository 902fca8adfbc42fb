"""Records -> points: written to a real influxd and read back, every point is the contract."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest

from db.local_server import LocalInfluxd
from db.schema import (
    ASSET_CTX,
    HLP_EQUITY,
    HLP_POSITIONS,
    LIQUIDATIONS,
    POSITION_CHANGES,
    POSITIONS,
    TRADE_GAPS,
    TRADES,
    Measurement,
)
from process import LiquidationEvent, PointBuilder
from process.positions.book import PositionChange
from tests.conftest import influxql
from validate import (
    AssetCtx,
    ClearinghouseState,
    Trade,
    parse_clearinghouse_state,
    parse_meta_and_asset_ctxs,
)

FIXTURES = Path(__file__).parent / "fixtures" / "hyperliquid"
MS = 1_717_171_717_123
NS = MS * 10**6
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
VAULT = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"


@dataclass(frozen=True)
class Gap:
    coin: str
    after_ms: int
    before_ms: int
    reason: str


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())["response"]


def state() -> ClearinghouseState:
    parsed, rejected = parse_clearinghouse_state(fixture("info_clearinghouseState"))
    assert parsed is not None and not rejected
    return parsed


def trade(tid: int, side: str = "buy", coin: str = "BTC", px: str = "84981", sz: str = "0.5"):
    return Trade(coin, side, Decimal(px), Decimal(sz), MS, "0x" + "0" * 64, tid, ALICE, BOB)


def write(url: str, db: str, lines: list[str]) -> None:
    response = httpx.post(
        f"{url}/write", params={"db": db, "precision": "ns"}, content="\n".join(lines).encode()
    )
    assert response.status_code == 204, response.text


def select(url: str, db: str, m: Measurement) -> list[dict[str, Any]]:
    return influxql(url, f"{m.select()} ORDER BY time", db)


def field_types(url: str, db: str, m: Measurement) -> dict[str, str]:
    rows = influxql(url, f'SHOW FIELD KEYS FROM "{m.name}"', db)
    return {row["fieldKey"]: row["fieldType"] for row in rows}


def tag_keys(url: str, db: str, m: Measurement) -> set[str]:
    return {row["tagKey"] for row in influxql(url, f'SHOW TAG KEYS FROM "{m.name}"', db)}


def test_trades_are_the_contract_with_exact_values_and_types(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    builder = PointBuilder()
    lines = builder.trades(
        [trade(7_000_001, "buy"), trade(8_000_001, "sell", "ETH", "2707.04", "1.25")]
    )

    write(influxd.url, influx_db, lines)

    assert select(influxd.url, influx_db, TRADES) == [
        {
            "time": NS + 1,
            "coin": "BTC",
            "side": "buy",
            "px": 84981.0,
            "sz": 0.5,
            "notional": 42490.5,
            "tid": 7_000_001,
            "buyer": ALICE,
            "seller": BOB,
        },
        {
            "time": NS + 1,  # another series: the same slot is free
            "coin": "ETH",
            "side": "sell",
            "px": 2707.04,
            "sz": 1.25,
            "notional": 3383.8,
            "tid": 8_000_001,
            "buyer": ALICE,
            "seller": BOB,
        },
    ]
    assert tag_keys(influxd.url, influx_db, TRADES) == set(TRADES.tags)
    assert field_types(influxd.url, influx_db, TRADES) == {
        "px": "float",
        "sz": "float",
        "notional": "float",
        "tid": "integer",
        "buyer": "string",
        "seller": "string",
    }


def test_a_thousand_trades_in_one_millisecond_are_a_thousand_points_even_when_replayed(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    # pairs of distinct tids that share tid % 10**6: ms * 10**6 + tid % 10**6 would collide
    tids = [residue + 10**6 * k for residue in range(500) for k in (1, 2)]
    trades = [trade(tid, "buy" if i % 3 else "sell") for i, tid in enumerate(tids)]
    builder = PointBuilder()

    first = builder.trades(trades)
    replay = builder.trades(list(reversed(trades)))
    write(influxd.url, influx_db, first)
    write(influxd.url, influx_db, replay)

    assert len(first) == 1000
    assert sorted(replay) == sorted(first)
    rows = influxql(influxd.url, 'SELECT COUNT("tid") FROM "trades" GROUP BY "side"', influx_db)
    assert {row["side"]: row["count"] for row in rows} == {"buy": 666, "sell": 334}
    stored = {row["tid"] for row in select(influxd.url, influx_db, TRADES)}
    assert stored == set(tids)


def test_liquidations_have_user_only_when_known(influxd: LocalInfluxd, influx_db: str) -> None:
    backstop = LiquidationEvent("ETH", "long", "backstop", Decimal("2650"), Decimal("2"), 11, MS)
    market = LiquidationEvent(
        "ETH", "short", "market", Decimal("2750.5"), Decimal("0.1"), 12, MS, ALICE
    )
    builder = PointBuilder()

    write(influxd.url, influx_db, builder.liquidations([backstop, market]))

    rows = select(influxd.url, influx_db, LIQUIDATIONS)
    assert rows == [
        {
            "time": NS + 11,
            "coin": "ETH",
            "side": "long",
            "method": "backstop",
            "px": 2650.0,
            "sz": 2.0,
            "notional": 5300.0,
            "tid": 11,
            "user": None,
        },
        {
            "time": NS + 12,
            "coin": "ETH",
            "side": "short",
            "method": "market",
            "px": 2750.5,
            "sz": 0.1,
            "notional": 275.05,
            "tid": 12,
            "user": ALICE,
        },
    ]
    assert tag_keys(influxd.url, influx_db, LIQUIDATIONS) == set(LIQUIDATIONS.tags)
    assert field_types(influxd.url, influx_db, LIQUIDATIONS) == {
        "px": "float",
        "sz": "float",
        "notional": "float",
        "tid": "integer",
        "user": "string",
    }
    assert builder.liquidations([market]) == builder.liquidations([market])  # replay: same point


def test_asset_ctxs_one_point_per_coin_at_poll_time(influxd: LocalInfluxd, influx_db: str) -> None:
    meta, ctxs, rejected = parse_meta_and_asset_ctxs(fixture("info_metaAndAssetCtxs"))
    assert meta is not None and not rejected
    bare = AssetCtx(
        "kPEPE", Decimal("-0.0001"), Decimal("0"), Decimal("1"), Decimal("1"), Decimal("1"), 0
    )  # no premium, no mid: those fields are left out
    lines = PointBuilder().asset_ctxs([*ctxs, bare], MS)

    write(influxd.url, influx_db, lines)

    rows = {row["coin"]: row for row in select(influxd.url, influx_db, ASSET_CTX)}
    assert rows["BTC"] == {
        "time": NS,
        "coin": "BTC",
        "funding": 0.0000125,
        "open_interest": 38359.47984,
        "open_interest_usd": float(Decimal("38359.47984") * Decimal("84981.0")),
        "mark_px": 84981.0,
        "oracle_px": 85005.0,
        "mid_px": 84980.5,
        "premium": -0.0002823363,
        "day_ntl_vlm": 1026494754.6038066149,
    }
    assert rows["kPEPE"]["mid_px"] is None and rows["kPEPE"]["premium"] is None
    assert rows["kPEPE"]["funding"] == -0.0001 and rows["kPEPE"]["open_interest_usd"] == 0.0
    assert sorted(rows) == ["BTC", "ETH", "HYPE", "SOL", "kPEPE"]
    assert tag_keys(influxd.url, influx_db, ASSET_CTX) == {"coin"}
    assert field_types(influxd.url, influx_db, ASSET_CTX) == dict.fromkeys(
        ASSET_CTX.fields, "float"
    )


def test_positions_of_two_addresses_in_one_instant_and_closed_positions(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    snapshot = state()
    builder = PointBuilder()
    opened = len(snapshot.positions)

    lines = builder.positions(ALICE, snapshot, MS) + builder.positions(BOB, snapshot, MS)
    later = builder.positions(
        ALICE, snapshot, MS + 60_000, closed=[("XRP", "long"), ("BTC", "long")]
    )
    write(influxd.url, influx_db, lines + later)

    assert len(lines) == 2 * opened and len(later) == opened + 1  # BTC long is still open
    rows = select(influxd.url, influx_db, POSITIONS)
    first = [row for row in rows if row["time"] // 10**6 == MS]
    assert len(first) == 2 * opened  # distinct timestamps per (coin, side): nothing overwritten
    btc = [row for row in first if row["coin"] == "BTC"]
    assert {row["address"] for row in btc} == {ALICE, BOB}
    assert btc[0] | {"time": None, "address": None} == {
        "time": None,
        "coin": "BTC",
        "side": "long",
        "address": None,
        "szi": 0.5681,
        "size_usd": 48277.7061,
        "entry_px": 84255.8,
        "liq_px": None,  # liquidationPx null: no field
        "leverage": 20.0,
        "unrealized_pnl": 411.944254,
    }
    avax = next(row for row in first if row["coin"] == "AVAX" and row["address"] == ALICE)
    assert (avax["side"], avax["szi"], avax["liq_px"]) == ("short", -4788.3, 647.020287706)
    xrp = [row for row in rows if row["coin"] == "XRP"]
    assert xrp[0]["time"] // 10**6 == MS + 60_000
    assert xrp == [
        {
            "time": xrp[0]["time"],
            "coin": "XRP",
            "side": "long",
            "address": ALICE,
            "szi": 0.0,
            "size_usd": 0.0,
            "entry_px": None,
            "liq_px": None,
            "leverage": None,
            "unrealized_pnl": 0.0,
        }
    ]
    assert tag_keys(influxd.url, influx_db, POSITIONS) == set(POSITIONS.tags)
    assert field_types(influxd.url, influx_db, POSITIONS) == {
        **dict.fromkeys(POSITIONS.fields, "float"),
        "address": "string",
    }
    assert builder.positions(BOB, snapshot, MS) == lines[opened:]  # a replay is the same points


def test_hlp_positions_and_equity(influxd: LocalInfluxd, influx_db: str) -> None:
    snapshot = state()
    lines = PointBuilder().hlp("HLP Strategy A", snapshot, MS, closed=[("XRP", "short")])

    write(influxd.url, influx_db, lines)

    positions = select(influxd.url, influx_db, HLP_POSITIONS)
    assert len(positions) == len(snapshot.positions) + 1
    assert {row["vault"] for row in positions} == {"HLP Strategy A"}
    assert {row["time"] for row in positions} == {NS}
    doge = next(row for row in positions if row["coin"] == "DOGE")
    assert doge == {
        "time": NS,
        "vault": "HLP Strategy A",
        "coin": "DOGE",
        "side": "short",
        "szi": -595127.0,
        "size_usd": 58198.659584,
        "entry_px": 0.097204,
        "unrealized_pnl": -349.4818,
    }
    xrp = next(row for row in positions if row["coin"] == "XRP")
    assert (xrp["side"], xrp["szi"], xrp["size_usd"], xrp["entry_px"]) == ("short", 0.0, 0.0, None)
    assert select(influxd.url, influx_db, HLP_EQUITY) == [
        {
            "time": NS,
            "vault": "HLP Strategy A",
            "account_value": 3119882.2733840002,
            "total_ntl_pos": 4392824.4757110002,
            "total_margin_used": 219641.223735,
            "withdrawable": 2680599.8258540002,
        }
    ]
    assert tag_keys(influxd.url, influx_db, HLP_POSITIONS) == set(HLP_POSITIONS.tags)
    assert field_types(influxd.url, influx_db, HLP_POSITIONS) == dict.fromkeys(
        HLP_POSITIONS.fields, "float"
    )
    assert field_types(influxd.url, influx_db, HLP_EQUITY) == dict.fromkeys(
        HLP_EQUITY.fields, "float"
    )


def test_trade_gap_point(influxd: LocalInfluxd, influx_db: str) -> None:
    line = PointBuilder().gap(Gap("BTC", MS, MS + 5_000, "recentTrades did not reach back"))

    write(influxd.url, influx_db, [line])

    assert select(influxd.url, influx_db, TRADE_GAPS) == [
        {
            "time": NS,
            "coin": "BTC",
            "after_ms": MS,
            "before_ms": MS + 5_000,
            "reason": "recentTrades did not reach back",
        }
    ]
    assert field_types(influxd.url, influx_db, TRADE_GAPS) == {
        "after_ms": "integer",
        "before_ms": "integer",
        "reason": "string",
    }


@pytest.mark.parametrize("bad", ["1e400", "NaN", "sNaN", "Infinity"])
def test_a_value_that_is_not_a_finite_float_skips_only_its_record(bad: str) -> None:
    skipped: list[tuple[object, ValueError]] = []
    builder = PointBuilder(on_skip=lambda record, error: skipped.append((record, error)))
    poison = trade(2, px=bad)

    lines = builder.trades([trade(1), poison, trade(3)])

    assert [line.split("tid=")[1].split("i,")[0] for line in lines] == ["1", "3"]
    assert builder.skipped == 1 and skipped[0][0] is poison
    assert not any(word in line for line in lines for word in ("nan", "inf"))


def test_the_fast_trade_path_writes_the_values_encode_point_writes():
    """The fast path writes decimals as their exact text, encode_point as Python floats: the
    lines may differ in text but every value parses to the same float, tags and times alike."""
    from db.line_protocol import encode_point

    def generic(t: Trade, time_ns: int) -> str:
        fields = {
            "px": float(t.px),
            "sz": float(t.sz),
            "notional": float(t.px * t.sz),
            "tid": t.tid,
            "buyer": t.buyer,
            "seller": t.seller,
        }
        return encode_point("trades", {"coin": t.coin, "side": t.side}, fields, time_ns)

    odd = "0x" + 'a"b\\' + "c" * 36
    samples = [
        Trade("BTC", "buy", Decimal("84981.5"), Decimal("0.00001"), 1_764_835_613_064, "0x0", 1,
              "0x" + "1" * 40, "0x" + "2" * 40),
        Trade("kPEPE", "sell", Decimal("0.0123"), Decimal("1e9"), 1_764_835_613_064, "0x0", 2,
              odd, "0x" + "3" * 40),
        Trade("xyz:TSLA", "buy", Decimal("1e300"), Decimal("1e300"), 1_764_835_613_065, "0x0", 3,
              "0x" + "4" * 40, "0x" + "5" * 40),
        Trade("BTC coin", "sell", Decimal("1.5"), Decimal("2"), 1_764_835_613_066, "0x0", 4,
              "0x" + "6" * 40, "0x" + "7" * 40),
    ]  # fmt: skip
    builder = PointBuilder()
    lines = builder.trades(samples)
    assert builder.skipped == 1  # 1e300 * 1e300 is no float
    expected_builder = PointBuilder()
    expected = []
    for t in samples:
        time_ns = expected_builder.allocator.allocate(("trades", t.coin, t.side), t.time_ms, t.tid)
        try:
            expected.append(generic(t, time_ns))
        except ValueError:
            continue
    assert len(lines) == len(expected) == 3
    for line, want in zip(lines, expected, strict=True):
        assert parse_trade_line(line) == parse_trade_line(want)
    assert lines[1] == expected[1]  # a quote in an address: encode_point itself
    assert "sz=0.00001," in lines[0] and "notional=0.849815," in lines[0]


def parse_trade_line(line: str) -> tuple[str, dict[str, object], int]:
    """(measurement and tags, fields with floats parsed, time) of a `trades` line."""
    head, fields, time_ns = line.rsplit(" ", 2)
    values: dict[str, object] = {}
    for pair in fields.replace('\\"', "'").split(",", 5):
        name, value = pair.split("=", 1)
        if value.startswith('"'):
            values[name] = value
        elif value.endswith("i"):
            values[name] = int(value[:-1])
        else:
            values[name] = float(value)
    return head, values, int(time_ns)


def test_position_changes_two_of_one_address_in_one_millisecond_are_two_points(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    builder = PointBuilder()
    changes = [
        PositionChange(ALICE, "BTC", "increase", D("1"), D("1.5"), D("84981"), MS, "trade", 7),
        PositionChange(ALICE, "BTC", "increase", D("1.5"), D("2"), D("84982"), MS, "trade", 8),
        PositionChange(BOB, "ETH", "entry", D("0"), D("-3"), None, MS, "poll"),
    ]
    lines = [builder.position_change(c) for c in changes]
    assert all(lines)
    write(influxd.url, influx_db, [line for line in lines if line])
    write(influxd.url, influx_db, [builder.position_change(changes[0]) or ""])  # replayed
    rows = select(influxd.url, influx_db, POSITION_CHANGES)
    assert sorted(
        (r["coin"], r["kind"], r["address"], r["szi_before"], r["szi_after"], r.get("px"), r["tid"])
        for r in rows
    ) == [
        ("BTC", "increase", ALICE, 1.0, 1.5, 84981.0, 7),
        ("BTC", "increase", ALICE, 1.5, 2.0, 84982.0, 8),
        ("ETH", "entry", BOB, 0.0, -3.0, None, 0),
    ]
    assert {r["time"] // 10**6 for r in rows} == {MS}
    assert field_types(influxd.url, influx_db, POSITION_CHANGES) == {
        "address": "string",
        "szi_before": "float",
        "szi_after": "float",
        "px": "float",
        "source": "string",
        "tid": "integer",
    }
