"""Timestamps: each distinct record in one millisecond is stored; a replay overwrites itself."""

from __future__ import annotations

import ast
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import httpx
import pytest

from db.line_protocol import encode_point
from db.local_server import LocalInfluxd
from db.timestamps import TimestampAllocator, initial_slot
from tests.conftest import influxql

MS = 1_717_171_717_123
BUY = ("trades", "BTC", "buy")
SELL = ("trades", "BTC", "sell")


def trade_tids(count: int = 10_000) -> list[int]:
    """Hash-like tids, like Hyperliquid's. 2,000 of them come in 400 groups of five that share
    `tid % 10**6`, and each group has a sixth tid one residue further on, which the probing of
    the group runs into."""
    rng = random.Random(20240601)
    tids: set[int] = set()
    for _ in range(400):
        residue = rng.randrange(10**6)
        for offset in (0, 0, 0, 0, 0, 1):
            tids.add(residue + offset + 10**6 * rng.randrange(1, 10**9))
    while len(tids) < count:
        tids.add(rng.getrandbits(50))
    return sorted(tids, key=lambda tid: rng.random())


def trade_line(series: tuple[str, str, str], tid: int, time_ns: int) -> str:
    measurement, coin, side = series
    return encode_point(
        measurement,
        {"coin": coin, "side": side},
        {"px": 67_000.5, "sz": 0.01, "tid": tid, "buyer": "0xa", "seller": "0xb"},
        time_ns,
    )


def write(url: str, db: str, lines: list[str]) -> None:
    response = httpx.post(
        f"{url}/write",
        params={"db": db, "precision": "ns"},
        content="\n".join(lines).encode(),
        timeout=60,
    )
    assert response.status_code == 204, response.text


def count(url: str, db: str, where: str = "") -> int:
    rows = influxql(url, f'SELECT COUNT("tid") FROM "trades" {where}', db)
    return rows[0]["count"] if rows else 0


def test_ten_thousand_trades_in_one_millisecond_are_all_stored(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    tids = trade_tids()
    assert len({tid % 10**6 for tid in tids}) < len(tids) - 1_500  # the trap is in the data
    allocator = TimestampAllocator()

    stamps = {tid: allocator.allocate(BUY, MS, (tid,)) for tid in tids}

    assert len(set(stamps.values())) == 10_000
    assert all(MS * 10**6 <= ns < (MS + 1) * 10**6 for ns in stamps.values())
    write(influxd.url, influx_db, [trade_line(BUY, tid, ns) for tid, ns in stamps.items()])
    assert count(influxd.url, influx_db) == 10_000

    shuffled = tids[:]
    random.Random(1).shuffle(shuffled)
    replay = {tid: allocator.allocate(BUY, MS, (tid,)) for tid in shuffled}
    assert replay == stamps
    write(influxd.url, influx_db, [trade_line(BUY, tid, ns) for tid, ns in replay.items()])
    assert count(influxd.url, influx_db) == 10_000
    distinct = influxql(influxd.url, 'SELECT COUNT(DISTINCT("tid")) FROM "trades"', influx_db)
    assert distinct[0]["count"] == 10_000


def test_seeded_allocator_gives_replayed_trades_their_stored_timestamps(
    influxd: LocalInfluxd, influx_db: str
) -> None:
    tids = trade_tids()
    before_restart = TimestampAllocator()
    stamps = {tid: before_restart.allocate(BUY, MS, (tid,)) for tid in tids}
    write(influxd.url, influx_db, [trade_line(BUY, tid, ns) for tid, ns in stamps.items()])

    after_restart = TimestampAllocator()
    rows = influxql(influxd.url, 'SELECT "tid" FROM "trades" GROUP BY "coin", "side"', influx_db)
    assert len(rows) == 10_000
    seeded = [
        after_restart.seed(("trades", row["coin"], row["side"]), row["time"], (row["tid"],))
        for row in rows
    ]
    assert all(seeded)

    replay = {tid: after_restart.allocate(BUY, MS, (tid,)) for tid in reversed(tids)}
    assert replay == stamps
    write(influxd.url, influx_db, [trade_line(BUY, tid, ns) for tid, ns in replay.items()])
    assert count(influxd.url, influx_db) == 10_000

    # Why seeding matters: probing follows arrival order, so an unseeded allocator that sees
    # the colliding trades in another order gives some of them each other's timestamps.
    unseeded = TimestampAllocator()
    assert {tid: unseeded.allocate(BUY, MS, (tid,)) for tid in reversed(tids)} != stamps


def test_identity_is_per_series_and_millisecond(influxd: LocalInfluxd, influx_db: str) -> None:
    """The same tid on the other side, another coin or another millisecond is another record."""
    allocator = TimestampAllocator()
    other_coin = ("trades", "ETH", "buy")
    keys = [(BUY, MS), (SELL, MS), (other_coin, MS), (BUY, MS + 1)]
    stamps = [allocator.allocate(series, ms, (42,)) for series, ms in keys]

    assert stamps == [MS * 10**6 + 42, MS * 10**6 + 42, MS * 10**6 + 42, (MS + 1) * 10**6 + 42]
    write(
        influxd.url,
        influx_db,
        [trade_line(series, 42, ns) for (series, _), ns in zip(keys, stamps, strict=True)],
    )
    assert count(influxd.url, influx_db) == 4
    assert count(influxd.url, influx_db, "WHERE \"coin\" = 'BTC' AND \"side\" = 'buy'") == 2


def test_collisions_probe_to_the_next_free_slot_and_wrap_inside_the_millisecond() -> None:
    allocator = TimestampAllocator()
    base = MS * 10**6

    assert allocator.allocate(BUY, MS, (5,)) == base + 5
    assert allocator.allocate(BUY, MS, (1_000_005,)) == base + 6
    assert allocator.allocate(BUY, MS, (6,)) == base + 7
    assert allocator.allocate(BUY, MS, (999_999,)) == base + 999_999
    assert allocator.allocate(BUY, MS, (1_999_999,)) == base + 0
    assert allocator.allocate(BUY, MS, (5,)) == base + 5


def test_string_record_keys_get_distinct_timestamps() -> None:
    """Positions: the address is a field, so two addresses polled in one instant need two slots."""
    allocator = TimestampAllocator()
    series = ("positions", "BTC", "long")
    addresses = [f"0x{i:040x}" for i in range(1_000)]

    stamps = [allocator.allocate(series, MS, (address,)) for address in addresses]

    assert len(set(stamps)) == 1_000
    assert stamps == [allocator.allocate(series, MS, (address,)) for address in addresses]


def test_initial_slot_is_the_same_in_every_process() -> None:
    keys = "[(123_456_789,), -7, ('0xabc', 'BTC'), 'abc', b'raw', (1.5, None, True)]"
    code = f"from db.timestamps import initial_slot; print([initial_slot(k) for k in {keys}])"
    outputs = set()
    for hash_seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(result.stdout.strip())

    here = [initial_slot(key) for key in ast.literal_eval(keys)]
    assert outputs == {str(here)}
    assert here[:2] == [456_789, 999_993]
    assert all(0 <= slot < 10**6 for slot in here)


@pytest.mark.parametrize("key", [object(), frozenset({1, 2}), (1, [2]), 1j])
def test_record_keys_without_a_stable_repr_are_rejected(key: object) -> None:
    with pytest.raises(TypeError, match="record key"):
        initial_slot(key)  # type: ignore[arg-type]


def test_seed_keeps_the_first_timestamp_of_a_record_and_never_reuses_a_slot() -> None:
    allocator = TimestampAllocator()
    base = MS * 10**6

    assert allocator.seed(BUY, base + 10, (1,)) is True
    assert allocator.seed(BUY, base + 11, (1,)) is False  # the record already has base + 10
    assert allocator.seed(BUY, base + 10, (2,)) is False  # that slot holds record 1
    assert allocator.seed(SELL, base + 10, (2,)) is True  # another series: its own slots

    assert allocator.allocate(BUY, MS, (1,)) == base + 10
    assert allocator.allocate(BUY, MS, (10,)) == base + 11  # probes past the seeded slot
    assert len(allocator) == 3


def test_old_milliseconds_are_forgotten() -> None:
    allocator = TimestampAllocator(window_ms=1_000)

    stamps = {ms: allocator.allocate(BUY, ms, (ms,)) for ms in range(MS, MS + 10_000)}

    # Eviction runs each time the newest millisecond moves on by window_ms / 8.
    assert 1_000 < len(allocator) <= 1_000 + 125 + 1
    assert allocator.horizon_ms is not None
    assert MS + 10_000 - 1_000 - 125 - 1 <= allocator.horizon_ms <= MS + 10_000 - 1_000
    recent = range(MS + 9_500, MS + 10_000)
    assert all(allocator.allocate(BUY, ms, (ms,)) == stamps[ms] for ms in recent)
    assert len(allocator) <= 1_126


def test_record_count_is_capped_oldest_first() -> None:
    allocator = TimestampAllocator(max_records=1_000)

    for tid in range(5_000):
        allocator.allocate(BUY, MS + tid // 10, (tid,))

    assert 900 <= len(allocator) <= 1_000
    assert allocator.horizon_ms is not None
    assert allocator.allocate(BUY, MS + 499, (4_999,)) == (MS + 499) * 10**6 + 4_999
    assert len(allocator) <= 1_000


def test_memory_stays_bounded() -> None:
    allocator = TimestampAllocator(max_records=10_000)
    rng = random.Random(3)
    series = [("trades", f"C{i}", side) for i in range(50) for side in ("buy", "sell")]

    tracemalloc.start()
    try:
        for i in range(100_000):
            allocator.allocate(rng.choice(series), MS + i // 4, (rng.getrandbits(50),))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(allocator) <= 10_000
    assert held < 10_000 * 250  # ~110 bytes per record measured; 100k records would be ~11 MB


def test_allocator_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        TimestampAllocator(window_ms=0)
    with pytest.raises(ValueError):
        TimestampAllocator(max_records=0)
