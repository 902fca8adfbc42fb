"""Trade dedupe: every (coin, time, tid) is delivered once while it is remembered."""

from __future__ import annotations

from decimal import Decimal

from fetch.dedupe import TradeDeduper
from validate import Trade


def trade(tid: int, coin: str = "BTC", time_ms: int = 1_764_835_613_064) -> Trade:
    return Trade(coin, "buy", Decimal("1.5"), Decimal("2"), time_ms, "0x0", tid,
                 "0x" + "1" * 40, "0x" + "2" * 40)  # fmt: skip


def test_a_replayed_frame_is_dropped_and_counted() -> None:
    dedupe = TradeDeduper()
    first = [trade(i) for i in range(100)]
    assert dedupe.fresh(first) == first
    replay = [trade(i) for i in range(90, 110)]  # 10 seen, 10 new
    assert [t.tid for t in dedupe.fresh(replay)] == list(range(100, 110))
    assert dedupe.duplicates == 10
    assert len(dedupe) == 110


def test_the_key_is_coin_time_and_tid() -> None:
    dedupe = TradeDeduper()
    dedupe.fresh([trade(7)])
    others = [trade(7, coin="ETH"), trade(7, time_ms=1_764_835_613_065)]
    assert dedupe.fresh(others) == others
    assert dedupe.duplicates == 0


def test_a_trade_twice_in_one_frame_is_delivered_once() -> None:
    dedupe = TradeDeduper()
    assert [t.tid for t in dedupe.fresh([trade(1), trade(2), trade(1), trade(3)])] == [1, 2, 3]
    assert dedupe.duplicates == 1


def test_memory_keeps_at_least_half_the_capacity_and_never_more_than_it() -> None:
    dedupe = TradeDeduper(capacity=1_000)
    for start in range(0, 10_000, 100):
        dedupe.fresh([trade(i) for i in range(start, start + 100)])
        assert len(dedupe) <= 1_000
    assert len(dedupe) >= 500
    recent = [trade(i) for i in range(9_500, 10_000)]
    assert dedupe.fresh(recent) == []  # the newest half is still known
    assert dedupe.duplicates == 500
