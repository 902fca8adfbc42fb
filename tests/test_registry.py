"""The address registry: survives restarts, tells closed positions, backs off, expires, is fast."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from process.registry import AddressRegistry, backoff_ms, decayed_peak, summarize
from validate import parse_clearinghouse_state

DAY = 86_400_000
T = 1_750_000_000_000
A, B, C, D = (f"0x{n:040x}" for n in (0xA, 0xB, 0xC, 0xD))


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "positions" / "addresses.sqlite"
    registry = AddressRegistry(path)
    assert registry.observe([A, B, A.upper().replace("0X", "0x")], T) == [A, B]
    registry.record_poll(
        A, T + 1000, notional_usd=2_500_000.0, min_liq_distance=0.04, positions={"BTC": "long"}
    )
    registry.record_failure(B, T + 2000)
    registry.record_failure(B, T + 3000)
    registry.flush()
    registry.close()

    reopened = AddressRegistry(path)
    assert len(reopened) == 2
    assert sorted(reopened.addresses()) == [A, B]
    a, b = reopened.get(A), reopened.get(B)
    assert a is not None and b is not None
    assert (a.first_seen_ms, a.last_trade_ms, a.last_poll_ms, a.last_held_ms) == (
        T,
        T,
        T + 1000,
        T + 1000,
    )
    assert (a.notional_usd, a.typical_usd, a.min_liq_distance) == (2_500_000.0, 2_500_000.0, 0.04)
    assert reopened.held(A) == {("BTC", "long")}
    assert (b.failures, b.next_allowed_ms, b.last_poll_ms) == (2, T + 3000 + 60_000, None)
    assert reopened.held(B) == set()
    reopened.close()


def test_unflushed_observations_are_written_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    buffered = AddressRegistry(path, flush_interval_s=3600)
    buffered.observe([A], T)
    assert _rows(path) == 0  # buffered: one transaction per flush, not one per trade
    buffered.flush()
    assert _rows(path) == 1
    eager = AddressRegistry(path, flush_interval_s=0)
    eager.observe([B], T)
    assert _rows(path) == 2


def test_held_set_diff_tells_which_positions_closed(tmp_path: Path) -> None:
    registry = AddressRegistry(tmp_path / "a.sqlite")
    opened = registry.record_poll(
        A,
        T,
        notional_usd=300_000.0,
        min_liq_distance=0.2,
        positions={"BTC": "long", "ETH": "short", "xyz:TSLA": "long"},
    )
    assert opened == set()
    closed = registry.record_poll(
        A, T + 60_000, notional_usd=100_000.0, min_liq_distance=0.3, positions={"BTC": "long"}
    )
    assert closed == {("ETH", "short"), ("xyz:TSLA", "long")}
    assert registry.held(A) == {("BTC", "long")}
    flipped = registry.record_poll(
        A, T + 120_000, notional_usd=90_000.0, min_liq_distance=None, positions={"BTC": "short"}
    )
    assert flipped == {("BTC", "long")}
    assert registry.record_poll(
        A, T + 180_000, notional_usd=0.0, min_liq_distance=None, positions=None
    ) == {("BTC", "short")}
    assert registry.held(A) == set()
    assert registry.held(B) == set()


def test_backoff_doubles_up_to_the_cap_and_resets_on_success(tmp_path: Path) -> None:
    registry = AddressRegistry(tmp_path / "a.sqlite")
    waits = [registry.record_failure(A, T) - T for _ in range(10)]
    assert (
        waits == [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000] + [3_600_000] * 3
    )
    state = registry.get(A)
    assert state is not None and state.failures == 10
    registry.record_poll(A, T, notional_usd=0.0, min_liq_distance=None, positions=None)
    assert (state.failures, state.next_allowed_ms) == (0, 0)
    assert registry.record_failure(A, T + 5) == T + 5 + 30_000
    assert backoff_ms(0) == 0
    assert backoff_ms(500) == 3_600_000


def test_expire_drops_quiet_flat_addresses_and_keeps_open_positions(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    registry = AddressRegistry(path)
    now = T + 10 * DAY
    registry.observe([A, B, C, D], T)  # all traded 10 days ago
    registry.record_poll(A, T, notional_usd=0.0, min_liq_distance=None, positions=None)
    registry.record_poll(  # B still holds a position, however quiet
        B, T + DAY, notional_usd=5e6, min_liq_distance=0.1, positions={"BTC": "short"}
    )
    registry.observe([C], now - 6 * DAY)  # C traded 6 days ago
    registry.record_poll(  # D held a position until 2 days ago, then it closed
        D, now - 2 * DAY, notional_usd=1e4, min_liq_distance=0.5, positions={"SOL": "long"}
    )
    registry.record_poll(D, now - DAY, notional_usd=0.0, min_liq_distance=None, positions=None)
    assert registry.expire(now) == 1  # A: flat and quiet for 10 days
    assert sorted(registry.addresses()) == [B, C, D]
    assert registry.expire_addresses(now + 5 * DAY + 1) == [C, D]
    assert registry.expire(now + 10 * DAY, inactive_ms=DAY) == 0  # B holds a position
    registry.close()
    assert AddressRegistry(path).addresses() == [B]


def test_fifty_thousand_new_addresses_flush_in_one_transaction(tmp_path: Path) -> None:
    """~0.5 s here; the bound only catches a flush that went row by row (minutes), since a
    loaded CI machine must not fail a test on timing."""
    path = tmp_path / "a.sqlite"
    registry = AddressRegistry(path, flush_interval_s=3600)
    addresses = [f"0x{n:040x}" for n in range(50_000)]
    started = time.perf_counter()
    for chunk in range(0, len(addresses), 500):  # like a busy trade stream, 500 at a time
        registry.observe(addresses[chunk : chunk + 500], T + chunk)
    assert registry.flush() == 50_000
    elapsed = time.perf_counter() - started
    assert elapsed < 10.0, f"{elapsed:.2f} s"
    registry.close()
    assert len(AddressRegistry(path)) == 50_000


def test_summarize_a_clearinghouse_state() -> None:
    position = {
        "coin": "BTC",
        "szi": "-2.0",
        "leverage": {"type": "cross", "value": 20},
        "entryPx": "100000.0",
        "positionValue": "200000.0",
        "unrealizedPnl": "0.0",
        "returnOnEquity": "0.0",
        "liquidationPx": "104000.0",
        "marginUsed": "10000.0",
    }
    eth = {**position, "coin": "ETH", "szi": "10.0", "positionValue": "30000.0"}
    eth |= {"entryPx": "3000.0", "liquidationPx": None}
    summary = {"accountValue": "1", "totalNtlPos": "1", "totalRawUsd": "1", "totalMarginUsed": "1"}
    state, rejected = parse_clearinghouse_state(
        {
            "marginSummary": summary,
            "crossMarginSummary": summary,
            "withdrawable": "0",
            "assetPositions": [
                {"type": "oneWay", "position": position},
                {"type": "oneWay", "position": eth},
            ],
        }
    )
    assert state is not None and rejected == []
    notional, distance, positions = summarize(state)
    assert notional == 230_000.0
    assert distance == pytest.approx(0.04)  # mark 100,000, liquidation at 104,000
    assert positions == {"BTC": "short", "ETH": "long"}


def test_typical_notional_is_a_decaying_peak() -> None:
    assert decayed_peak(0.0, None, 5.0, T) == 5.0
    assert decayed_peak(1e6, T, 0.0, T + DAY) == pytest.approx(5e5)
    assert decayed_peak(1e6, T, 8e5, T + DAY) == 8e5


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM addresses").fetchone()[0])


def test_a_busy_trader_is_rewritten_at_most_hourly_but_its_time_is_current(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    registry = AddressRegistry(path, flush_interval_s=3600)
    trader = "0x" + "ab" * 20
    registry.observe([trader], 1_000)
    assert registry.flush() == 1
    for second in range(1, 60):
        registry.observe([trader], 1_000 + second * 1_000)
    assert registry.flush() == 0  # nothing new for the file within the hour
    assert registry.get(trader).last_trade_ms == 60_000  # memory is current
    registry.observe([trader], 1_000 + 3_600_000)
    assert registry.flush() == 1
    registry.close()
    assert AddressRegistry(path).get(trader).last_trade_ms == 3_601_000


def test_one_state_per_address_serves_the_registry_and_the_scheduler(tmp_path: Path) -> None:
    from process.poll_scheduler import PollScheduler

    path = tmp_path / "a.sqlite"
    registry = AddressRegistry(path)
    scheduler = PollScheduler(states=registry.by_address)
    for address in registry.observe([A, B], T):
        scheduler.add(address)
    assert scheduler.next_batch(T, 2) == [A, B]
    registry.record_poll(A, T + 1000, notional_usd=1e6, min_liq_distance=None, positions=None)
    scheduler.reschedule(A)
    registry.record_failure(B, T + 1000)
    scheduler.reschedule(B)
    a = registry.get(A)
    assert a is scheduler.states[A]  # the one object: facts and queue place
    assert (a.last_poll_ms, a.notional_usd, a.typical_usd) == (T + 1000, 1e6, 1e6)
    # a day later the peak has halved once (computed once per poll, by the state)
    registry.record_poll(A, T + 1000 + DAY, notional_usd=0.0, min_liq_distance=None, positions=None)
    assert a.typical_usd == decayed_peak(1e6, T + 1000, 0.0, T + 1000 + DAY) == 500_000.0
    assert scheduler.next_batch(T + 30_999, 5) == [A]  # B waits out its 30 s backoff
    assert scheduler.next_batch(T + 31_000, 5) == [B]
    assert scheduler.discard(B) and B in registry  # the registry's to remove, not the scheduler's
    assert registry.flush() == 2
    registry.close()

    reopened = AddressRegistry(path)
    restarted = PollScheduler(states=reopened.by_address)
    for address in reopened.addresses():
        restarted.add(address)
    b = reopened.get(B)
    assert b is not None and (b.failures, b.next_allowed_ms) == (1, T + 31_000)
    assert restarted.next_batch(T + 30_999, 5) == [A]  # B's backoff was kept
    assert restarted.next_batch(T + 31_000, 5) == [B]
    reopened.close()
