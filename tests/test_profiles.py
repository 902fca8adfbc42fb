"""Wallet profiles: FIFO round trips and every figure against hand-computed fills, the real
recorded fills, paging, and the job against the simulator and on a virtual clock."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from db.timestamps import TimestampAllocator
from fetch.info import HyperliquidInfo
from fetch.rate_limit import Lane, Priority, WeightBudget
from fetch.rest import InfoClient
from process.profiles import (
    ProfilesJob,
    Thresholds,
    fetch_window,
    match_round_trips,
    max_drawdown,
    profile_line,
    profile_of,
)
from process.profiles.figures import DAY_MS
from process.profiles.lines import FIELDS, profile_fields
from process.profiles.style import classify, interval_cv, is_bot
from tests.test_rate_limit import VirtualClock, run_virtual
from utils.errors import HyperfluxError
from validate import Fill, parse_user_fills

FIXTURES = Path(__file__).parent / "fixtures" / "hyperliquid"
HOUR = 3_600_000
T0 = 1_790_000_000_000
WHO = "0x" + "ab" * 20
_tids = iter(range(1, 10**9))


def wire(
    coin: str,
    side: str,
    sz: str,
    px: str,
    start: str,
    at: int,
    *,
    fee: str = "0.0",
    closed: str = "0.0",
    dir: str = "",
) -> dict[str, Any]:
    """One fill as the exchange sends it (`side` B/A; `dir` only matters for spot)."""
    return {
        "coin": coin, "px": px, "sz": sz, "side": side, "time": at, "startPosition": start,
        "dir": dir or ("Open Long" if side == "B" else "Open Short"), "closedPnl": closed,
        "hash": "0x" + "0" * 64, "oid": 1, "crossed": True, "fee": fee, "tid": next(_tids),
        "feeToken": "USDC",
    }  # fmt: skip


def parse(records: list[dict[str, Any]]) -> list[Fill]:
    fills, rejected = parse_user_fills(records, now_ms=2**62)
    assert not rejected
    return fills


# ETH: open long 1 @ 100, add 1 @ 110, sell 0.5 @ 120, flip: sell 2.5 @ 90 (closes 1.5, opens a
# 1.0 short), buy 1 @ 80 (flat). closedPnl as the exchange computes it (average entry 105).
ETH = [
    wire("ETH", "B", "1.0", "100", "0.0", T0, fee="0.05"),
    wire("ETH", "B", "1.0", "110", "1.0", T0 + HOUR, fee="0.05"),
    wire("ETH", "A", "0.5", "120", "2.0", T0 + 2 * HOUR, fee="0.03", closed="7.5"),
    wire("ETH", "A", "2.5", "90", "1.5", T0 + 3 * HOUR, fee="0.25", closed="-22.5"),
    wire("ETH", "B", "1.0", "80", "-1.0", T0 + 5 * HOUR, fee="0.04", closed="10.0"),
]
# BTC: a long opened before the fills begin (start 0.3) is skipped until flat, then one short
# round trip of 30 min. SOL: a position still open at the end. HYPE: a fill whose start (8)
# does not follow from the one before (5): fills are missing, the trip is dropped.
# A spot fill is left out.
OTHERS = [
    wire("BTC", "A", "0.1", "50000", "0.3", T0 + HOUR // 2, fee="1", closed="100"),
    wire("BTC", "A", "0.2", "51000", "0.2", T0 + 3 * HOUR // 2, fee="1", closed="300"),
    wire("BTC", "A", "0.1", "50500", "0.0", T0 + 2 * HOUR, fee="1"),
    wire("BTC", "B", "0.1", "50000", "-0.1", T0 + 5 * HOUR // 2, fee="1", closed="50"),
    wire("SOL", "B", "10", "20", "0.0", T0 + 6 * HOUR, fee="0.1"),
    wire("HYPE", "B", "5", "30", "0.0", T0 + HOUR, fee="0.1"),
    wire("HYPE", "A", "5", "31", "8", T0 + 2 * HOUR, fee="0.1", closed="5"),
    wire("HYPE", "A", "3", "32", "3", T0 + 3 * HOUR, fee="0.1", closed="6"),
    wire("@107", "B", "3", "32", "0.0", T0 + 3 * HOUR, fee="0.1", dir="Buy"),
]


# --- round trips -----------------------------------------------------------------------------


def test_fifo_round_trips_open_increase_partial_close_flip_close() -> None:
    matched = match_round_trips(parse(ETH))
    long, short = matched.trips
    assert (long.coin, long.side, long.open_ms, long.close_ms) == ("ETH", "long", T0, T0 + 3 * HOUR)
    assert long.size == D(2)
    assert long.entry_px == D(105)  # (100 + 110) / 2
    assert long.exit_px == D("97.5")  # (0.5 x 120 + 1.5 x 90) / 2
    # FIFO: 0.5 of the 100 lot at 120 (+10), its other 0.5 at 90 (-5), the 110 lot at 90 (-20)
    assert long.gross_pnl == D(-15)
    assert long.closed_pnl == D(-15)  # 7.5 - 22.5: the exchange agrees
    assert long.fees == D("0.28")  # 0.05 + 0.05 + 0.03 + 1.5/2.5 of the flip's 0.25
    assert long.net_pnl == D("-15.28")
    assert long.pnl_pct == pytest.approx(-15.28 / 210 * 100)
    assert long.hold_ms == 3 * HOUR
    assert long.fills == 4
    assert (short.side, short.open_ms, short.close_ms, short.size) == (
        "short",
        T0 + 3 * HOUR,
        T0 + 5 * HOUR,
        D(1),
    )
    assert (short.entry_px, short.exit_px, short.gross_pnl) == (D(90), D(80), D(10))
    assert short.fees == D("0.14")  # 1.0/2.5 of 0.25, and 0.04
    assert short.net_pnl == D("9.86")
    assert short.pnl_pct == pytest.approx(9.86 / 90 * 100)
    assert short.fills == 2  # the flip fill belongs to both trips
    assert (matched.fills, matched.unmatched_fills, matched.gaps) == (5, 0, 0)


def test_positions_open_at_either_end_missing_fills_and_spot_are_not_round_trips() -> None:
    matched = match_round_trips(parse(OTHERS))
    (btc,) = matched.trips
    assert (btc.coin, btc.side, btc.size, btc.entry_px, btc.exit_px) == (
        "BTC", "short", D("0.1"), D(50500), D(50000)
    )  # fmt: skip
    assert (btc.gross_pnl, btc.fees, btc.net_pnl, btc.hold_ms) == (D(50), D(2), D(48), HOUR // 2)
    # perp fills: BTC 4, SOL 1, HYPE 3; in a round trip: BTC's last 2
    assert (matched.fills, matched.unmatched_fills, matched.gaps) == (8, 6, 1)


def test_order_of_the_fills_does_not_matter() -> None:
    fills = parse(ETH + OTHERS)
    expected = match_round_trips(fills)
    assert match_round_trips(list(reversed(fills))) == expected  # newest first, as userFills
    random.Random(1).shuffle(fills)
    assert match_round_trips(fills) == expected


def test_fills_of_one_millisecond_are_chained_by_their_start_positions() -> None:
    # one order closing a long over three makers, in no particular order
    fills = parse(
        [
            wire("SUI", "B", "10", "1.00", "0.0", T0),
            wire("SUI", "A", "2", "1.10", "7", T0 + 1000),
            wire("SUI", "A", "5", "1.20", "5", T0 + 1000),
            wire("SUI", "A", "3", "1.15", "10", T0 + 1000),
        ]
    )
    (trip,) = match_round_trips(fills).trips
    assert trip.exit_px == D("1.165")  # (3 x 1.15 + 2 x 1.10 + 5 x 1.20) / 10
    assert trip.gross_pnl == D("1.65")
    assert match_round_trips(fills).gaps == 0


def test_a_self_trade_moves_nothing() -> None:
    fills = parse(
        [
            wire("ARB", "A", "100", "1.30", "0.0", T0),
            wire("ARB", "B", "20", "1.29", "-100", T0 + 1000, closed="0.2"),  # taker side
            wire("ARB", "A", "20", "1.29", "-100", T0 + 1000),  # its own maker order
            wire("ARB", "B", "100", "1.20", "-100", T0 + 2000, closed="10"),
        ]
    )
    matched = match_round_trips(fills)
    (trip,) = matched.trips
    assert (trip.size, trip.gross_pnl, trip.fills) == (D(100), D(10), 2)
    assert (matched.fills, matched.unmatched_fills, matched.gaps) == (4, 2, 0)


# --- profile figures -------------------------------------------------------------------------


def test_every_profile_figure_hand_computed() -> None:
    p = profile_of(WHO, parse(ETH + OTHERS), T0, T0 + DAY_MS)
    # trips by close: BTC +48 (30 min), ETH long -15.28 (3 h), ETH short +9.86 (2 h)
    assert (p.fills, p.unmatched_fills, p.round_trips, p.wins) == (13, 6, 3, 2)
    assert p.realized_pnl == p.realized_pnl_24h == D("42.58")
    assert p.fees == D("2.42")
    later = profile_of(WHO, parse(ETH + OTHERS), T0, T0 + 2 * DAY_MS)  # every trip > 24 h ago
    assert (later.realized_pnl, later.realized_pnl_24h) == (D("42.58"), 0)
    assert (p.gross_profit, p.gross_loss) == (D("57.86"), D("15.28"))
    assert p.win_rate == pytest.approx(2 / 3)
    assert p.profit_factor == pytest.approx(57.86 / 15.28)
    assert p.max_drawdown == D("15.28")  # 48 -> 32.72
    assert p.avg_hold_s == pytest.approx((1800 + 10800 + 7200) / 3)
    assert p.median_hold_s == 7200
    assert p.avg_pnl_pct == pytest.approx(
        (48 / 5050 * 100 - 15.28 / 210 * 100 + 9.86 / 90 * 100) / 3
    )
    assert (p.trades_per_day, p.fills_per_day) == (3.0, 13.0)
    assert (p.style, p.bot) == ("mixed", False)  # median hold 2 h: neither scalper nor swing
    assert (p.start_ms, p.end_ms, p.truncated) == (T0, T0 + DAY_MS, False)


def test_no_round_trip_and_no_loss() -> None:
    empty = profile_of(WHO, [], T0, T0 + DAY_MS)
    assert (empty.round_trips, empty.win_rate, empty.profit_factor, empty.avg_hold_s) == (
        0, None, None, None
    )  # fmt: skip
    assert (empty.max_drawdown, empty.style) == (D(0), "unknown")
    winner = profile_of(WHO, parse(OTHERS), T0, T0 + DAY_MS)
    assert (winner.win_rate, winner.profit_factor) == (1.0, None)  # infinite: left out


def test_max_drawdown_of_the_cumulative_pnl() -> None:
    assert max_drawdown([]) == 0
    assert max_drawdown([D(5), D(5)]) == 0
    assert max_drawdown([D(-3), D(10), D(-4), D(-5), D(2), D(-6)]) == D(13)  # 7 -> -6
    assert max_drawdown([D(-3), D(-2)]) == D(5)  # from the starting 0


def trips(n: int, hold_ms: int, every_ms: int, opens: list[int] | None = None) -> list[Fill]:
    """`n` long round trips of BTC held `hold_ms`, one opened every `every_ms` from T0 (or at
    T0 + each of `opens`)."""
    records = []
    for i in range(n):
        at = T0 + (opens[i] if opens else i * every_ms)
        records += [
            wire("BTC", "B", "1", "100", "0.0", at),
            wire("BTC", "A", "1", "101", "1", at + hold_ms, closed="1"),
        ]
    return parse(records)


def test_styles_by_hold_time_and_frequency() -> None:
    week = T0 + 7 * DAY_MS
    scalper = profile_of(WHO, trips(30, 5 * 60_000, 5 * HOUR), T0, week)  # 4.3/day, 5 min
    assert (scalper.style, scalper.bot) == ("scalper", False)
    swing = profile_of(WHO, trips(3, 2 * DAY_MS, 2 * DAY_MS + HOUR), T0, week)  # 2-day holds
    assert swing.style == "swing"
    rare_quick = profile_of(WHO, trips(5, 60_000, DAY_MS), T0, week)  # quick but 0.7/day
    assert rare_quick.style == "mixed"
    assert profile_of(WHO, trips(2, 60_000, HOUR), T0, week).style == "unknown"


def test_the_bot_flag() -> None:
    day = T0 + DAY_MS
    clockwork = profile_of(WHO, trips(48, 60_000, 30 * 60_000), T0, day)  # every 30 min
    assert (clockwork.style, clockwork.bot) == ("bot", True)
    bursts = [burst * 6 * HOUR + k * 2 * 60_000 for burst in range(4) for k in range(12)]
    human = profile_of(WHO, trips(48, 60_000, 0, bursts), T0, day)  # 4 bursts of 12 trips
    assert interval_cv(bursts) > 0.5
    assert (human.trades_per_day, human.bot, human.style) == (48.0, False, "scalper")
    t = Thresholds()
    assert is_bot(1000.0, 0.0, [], t)  # fills alone
    assert not is_bot(999.0, 100.0, [T0 + i for i in range(10)], t)  # regular, but too few
    assert classify(False, 10, 60.0, 1.0, t) == "mixed"
    assert interval_cv([T0, T0]) is None
    assert interval_cv([T0, T0, T0]) == 0.0


# --- the real recorded fills -----------------------------------------------------------------


def recorded(name: str) -> list[Fill]:
    return parse(json.loads((FIXTURES / name).read_text())["response"])


@pytest.mark.parametrize(
    "names",
    [
        ("info_userFills.json",),
        ("info_userFillsByTime.json",),
        ("info_userFills.json", "info_userFillsByTime.json"),  # 80 consecutive fills of 2023
        ("info_userFills_liquidator.json",),
    ],
)
def test_the_real_recorded_fills_parse_and_match(names: tuple[str, ...]) -> None:
    fills = [f for name in names for f in recorded(name)]
    start, end = min(f.time_ms for f in fills), max(f.time_ms for f in fills)
    matched = match_round_trips(fills)
    p = profile_of(WHO, fills, start, end)
    assert p.fills == matched.fills == len(fills)
    assert p.round_trips == len(matched.trips)
    assert p.fills - p.unmatched_fills <= sum(t.fills for t in matched.trips)
    assert p.realized_pnl == sum(t.net_pnl for t in matched.trips)
    assert 0 <= p.max_drawdown <= p.gross_loss
    for trip in matched.trips:
        assert trip.size > 0 and trip.entry_px > 0 and trip.exit_px > 0 and trip.hold_ms >= 0
        assert trip.fees == 0  # 2023: fees are "0.0"
        # the exchange's closedPnl of 2023 is close to, not equal to, the price PnL
        assert abs(trip.gross_pnl - trip.closed_pnl) <= abs(trip.gross_pnl) * D("0.4")
    if len(names) == 2:
        assert matched.gaps == 0  # the 80 fills chain: two self-trades left out
        assert p.round_trips == 6
        assert p.win_rate == 0.0 and p.profit_factor == 0.0
        assert p.realized_pnl == D("-44.9961940")


# --- paging, the point -----------------------------------------------------------------------


class PagedFills:
    """Serves `fills` like the exchange: oldest first, both bounds inclusive, `page` at most."""

    def __init__(self, fills: list[Fill], page: int, fail: int = 0) -> None:
        self.fills, self.page, self.fail = sorted(fills, key=lambda f: f.time_ms), page, fail
        self.asked: list[tuple[str, int, int, int]] = []

    async def user_fills_by_time(
        self, user: str, start_ms: int, end_ms: int, items_estimate: int = 40
    ) -> list[Fill]:
        self.asked.append((user, start_ms, end_ms, items_estimate))
        if self.fail:
            self.fail -= 1
            raise HyperfluxError("Hyperliquid info request 'userFillsByTime' failed")
        return [f for f in self.fills if start_ms <= f.time_ms <= end_ms][: self.page]


async def test_pages_by_time_with_the_overlap_dropped() -> None:
    fills = trips(10, 60_000, HOUR)  # 20 fills, two per hour
    fills += parse([wire("ETH", "B", "1", "5", "0.0", T0 + 5 * HOUR + 60_000)])  # shares a ms
    source = PagedFills(fills, page=4)
    window = await fetch_window(source, WHO, T0, T0 + DAY_MS, max_pages=100, page_size=4)
    assert window.fills == sorted(fills, key=lambda f: f.time_ms)
    assert [a[1] for a in source.asked][:3] == [T0, T0 + HOUR + 60_000, T0 + 3 * HOUR]
    assert all(a[3] == 4 for a in source.asked)
    assert window.pages == len(source.asked)
    assert window.weight == 21 * len(source.asked)
    assert not window.truncated and (window.start_ms, window.end_ms) == (T0, T0 + DAY_MS)


async def test_too_many_fills_truncate_the_window_at_a_whole_millisecond() -> None:
    fills = trips(10, 60_000, HOUR)
    window = await fetch_window(
        PagedFills(fills, page=4), WHO, T0, T0 + DAY_MS, max_pages=2, page_size=4
    )
    # page 1: T0, T0+1m, T0+1h, T0+1h1m; page 2 from T0+1h1m: that, 2h, 2h1m, 3h
    assert window.truncated and window.end_ms == T0 + 3 * HOUR - 1
    assert [f.time_ms for f in window.fills][-1] == T0 + 2 * HOUR + 60_000
    assert len(window.fills) == 6


async def test_a_full_page_inside_one_millisecond_is_stepped_over() -> None:
    same = parse([wire("BTC", "B", "1", "100", str(i), T0) for i in range(5)])
    later = parse([wire("BTC", "A", "5", "100", "5", T0 + 1)])
    source = PagedFills(same + later, page=3)
    window = await fetch_window(source, WHO, T0, T0 + 10, page_size=3)
    assert [a[1] for a in source.asked] == [T0, T0 + 1]
    assert window.truncated and len(window.fills) == 4


def test_the_wallet_profiles_point() -> None:
    allocator = TimestampAllocator()
    profile = profile_of(WHO, parse(ETH + OTHERS), T0, T0 + DAY_MS)
    line = profile_line(profile, T0 + DAY_MS, allocator)
    assert tuple(profile_fields(profile)) == FIELDS
    assert line.startswith("wallet_profiles,style=mixed ")
    assert f'address="{WHO}"' in line and ",bot=false," in line and ",fills=13i," in line
    assert f",window_start_ms={T0}i," in line and ",realized_pnl=42.58," in line
    winner = profile_of(WHO, parse(OTHERS), T0, T0 + DAY_MS)
    other = profile_of("0x" + "cd" * 20, parse(OTHERS), T0, T0 + DAY_MS)
    lines = [profile_line(p, T0, allocator) for p in (winner, other)]
    assert "profit_factor" not in lines[0]
    assert lines[0].rsplit(" ", 1)[1] != lines[1].rsplit(" ", 1)[1]  # one slot each


# --- the job ---------------------------------------------------------------------------------


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)


async def test_each_run_refreshes_the_next_addresses_in_priority_order() -> None:
    addresses = [f"0x{i:040x}" for i in range(1, 8)]
    source = PagedFills(parse(ETH), page=2000)
    now = [T0 + DAY_MS]
    job = ProfilesJob(
        source, Lines(), lambda: addresses, per_run=3, refresh_ms=HOUR, clock=lambda: now[0]
    )
    await job()
    await job()
    assert [a[0] for a in source.asked] == addresses[:6]
    assert source.asked[0][1:3] == (T0 + DAY_MS - 7 * DAY_MS, T0 + DAY_MS)
    await job()  # the last one; the others are fresh
    await job()
    assert len(source.asked) == 7
    now[0] += HOUR
    await job()
    assert [a[0] for a in source.asked[7:]] == addresses[:3]
    assert (job.written, job.pages, job.fills_fetched) == (10, 10, 50)
    assert job.weight == 10 * 21


async def test_a_run_stops_at_its_weight_and_a_failing_address_waits() -> None:
    addresses = [f"0x{i:040x}" for i in range(1, 8)]
    source = PagedFills(parse(ETH), page=2000, fail=1)
    now = [T0]
    sink = Lines()
    job = ProfilesJob(
        source, sink, lambda: addresses, per_run=10, max_weight_per_run=50, clock=lambda: now[0]
    )
    with pytest.raises(HyperfluxError, match=r"wallet profile of 0x0+1 not refreshed"):
        await job()
    await job()  # the failed address waits (retry_ms); 21 + 21 + 21 >= 50: three a run
    assert [a[0] for a in source.asked] == [addresses[0], *addresses[1:4]]
    now[0] += job.retry_ms
    await job()
    assert [a[0] for a in source.asked[4:]] == [addresses[0], *addresses[4:6]]
    assert (job.failures, job.written, len(sink.lines)) == (1, 6, 6)


async def test_the_bot_flag_is_kept_per_address() -> None:
    bot, human = "0x" + "0b" * 20, "0x" + "0c" * 20
    clockwork = trips(48, 60_000, 30 * 60_000)

    class Source:
        async def user_fills_by_time(
            self, user: str, start_ms: int, end_ms: int, items_estimate: int = 40
        ) -> list[Fill]:
            return clockwork if user == bot else parse(ETH)

    job = ProfilesJob(Source(), Lines(), lambda: [bot.upper(), human], clock=lambda: T0 + DAY_MS)
    job.window_ms = DAY_MS
    await job()
    assert job.is_bot(bot) and not job.is_bot(human)
    assert {s.name: s.value for s in job.samples()}["wallet_profile_bots"] == 1


# --- the job against the simulator -----------------------------------------------------------


def ledger_cash(sim: Any, address: str, since: int) -> tuple[int, float]:
    """(fills, cash the fills moved: sells - buys - fees) of `address` from `since` on."""
    count, cash = 0, 0.0
    for deal in sim.ledger.deals:
        row = deal[0]
        if row[1] < since or address not in (row[6], row[7]):
            continue
        buyer = row[6] == address
        signed = float(row[5]) if buyer else -float(row[5])
        cash += -signed * float(row[4]) - (deal[2] if buyer else deal[3])[5]
        count += 1
    return count, cash


async def test_profiles_of_simulated_wallets_match_the_ledger(simulator: Any) -> None:
    sim = await simulator(
        seed=3, rate=0, evolve_interval=0, auto_liquidations=False, push_interval=3600,
        max_user_fills=10_000,
    )  # fmt: skip
    now = time.time_ns() // 1_000_000
    start = now - 7 * DAY_MS
    a, b, c, maker = ("0x" + x * 20 for x in ("a1", "a2", "a3", "b0"))
    for address in (a, b, c, maker):
        sim.population.open_account(address, usd=1e9, leverage=10)
    t = now - 3 * DAY_MS
    # a: open, increase, partial close, flip, close (ETH); a BTC short
    sim.trade("ETH", a, maker, 2700, 1, "B", t)
    sim.trade("ETH", a, maker, 2710, 1, "B", t + HOUR)
    sim.trade("ETH", maker, a, 2750, 0.5, "A", t + 2 * HOUR)
    sim.trade("ETH", maker, a, 2690, 2.5, "A", t + 3 * HOUR)
    sim.trade("ETH", a, maker, 2650, 1, "B", t + 5 * HOUR)
    sim.trade("BTC", maker, a, 85000, 0.1, "A", t + 6 * HOUR)
    sim.trade("BTC", a, maker, 84000, 0.1, "B", t + 7 * HOUR)
    # b: 1100 two-minute SOL scalps, one every 2 min: 2200 fills, two pages
    for i in range(1100):
        at = t + i * 120_000
        sim.trade("SOL", b, maker, 120 + (i % 7) / 10, 1, "B", at)
        sim.trade("SOL", maker, b, 120 + (i % 5) / 10, 1, "A", at + 60_000)
    # c: a long opened before the window, closed inside it; then one short round trip
    sim.trade("HYPE", c, maker, 35, 100, "B", now - 8 * DAY_MS)
    sim.trade("HYPE", maker, c, 36, 100, "A", t)
    sim.trade("HYPE", maker, c, 37, 50, "B", t + HOUR)
    sim.trade("HYPE", c, maker, 34, 50, "A", t + 2 * HOUR)

    budget = WeightBudget(1200, safety_margin=0.1)
    profiles: dict[str, Any] = {}
    async with InfoClient(sim.url, budget=budget) as client:
        source = HyperliquidInfo(client, budget=budget.lane(Priority.PROFILES))
        job = ProfilesJob(
            source, Lines(), lambda: [a, b, c], on_profile=lambda p: profiles.update({p.address: p})
        )
        await job()

    pa, pb, pc = profiles[a], profiles[b], profiles[c]
    for profile, address in ((pa, a), (pb, b)):  # flat before and after: every fill counts
        fills, cash = ledger_cash(sim, address, start)
        assert profile.fills == fills == len(sim.ledger.position_changes(address))
        assert float(profile.realized_pnl) == pytest.approx(cash, abs=1e-6 * fills)
        trips_ = [ch for ch in sim.ledger.position_changes(address) if ch.kind in ("exit", "flip")]
        assert profile.round_trips == len(trips_)
        assert profile.unmatched_fills == 0 and not profile.truncated
    assert (pa.round_trips, pa.wins, pa.style) == (3, 2, "mixed")
    eth_long_gross = 0.5 * (2750 - 2700) + 0.5 * (2690 - 2700) + 1 * (2690 - 2710)
    eth_short_gross, btc_gross = 2690 - 2650, 0.1 * (85000 - 84000)
    assert float(pa.realized_pnl + pa.fees) == pytest.approx(
        eth_long_gross + eth_short_gross + btc_gross
    )
    assert (pb.round_trips, pb.fills, pb.bot, pb.style) == (1100, 2200, True, "bot")
    assert pb.avg_hold_s == 60
    # c: the close of the long opened before the window is no round trip
    assert ledger_cash(sim, c, start)[0] == pc.fills == 3
    assert (pc.unmatched_fills, pc.round_trips) == (1, 1)
    assert float(pc.realized_pnl) == pytest.approx(ledger_cash(sim, c, t + 1)[1])
    # paging: 4 requests (a, b twice, c), each charged exactly as the job counted it, no 429
    assert sim.ledger.rest_requests["userFillsByTime"] == 4
    assert sim.ledger.rest_weight["userFillsByTime"] == job.weight == 21 + 120 + 31 + 21
    assert sim.ledger.rest_429_count == 0


# --- the profiles lane never delays market data (virtual clock) ------------------------------


class LaneFills:
    """A userFillsByTime on a lane: reserves the estimate, answers in 0.25 s, settles the
    true weight of 1999 fills (120)."""

    def __init__(self, lane: Lane, fills: list[Fill]) -> None:
        self.lane, self.fills, self.spent = lane, fills, 0

    async def user_fills_by_time(
        self, user: str, start_ms: int, end_ms: int, items_estimate: int = 40
    ) -> list[Fill]:
        reservation = await self.lane.acquire(20 + math.ceil(items_estimate / 20))
        await asyncio.sleep(0.25)
        self.lane.settle(reservation, 120)
        self.spent += 120
        return self.fills


def test_the_profiles_lane_never_delays_asset_contexts() -> None:
    """Profiles refreshed as fast as their lane allows for 10 virtual minutes; asset contexts
    (meta, 20) every 10 s in the market lane are granted at once, every time."""
    fills = trips(999, 60_000, 2 * 60_000)[:1999]

    async def main(clock: VirtualClock) -> tuple[list[float], int, int]:
        budget = WeightBudget(1200, safety_margin=0.1, clock=clock)
        source = LaneFills(budget.lane(Priority.PROFILES), fills)
        job = ProfilesJob(
            source,
            Lines(),
            lambda: (f"0x{i:040x}" for i in range(10**6)),
            per_run=10**6,
            max_weight_per_run=10**9,
            clock=lambda: T0 + round(clock.now() * 1000),
        )
        market = budget.lane(Priority.MARKET)
        waits: list[float] = []
        peak = 0

        async def asset_ctx() -> None:
            nonlocal peak
            while clock.now() < 600:
                asked = clock.now()
                async with market.reserve(20):
                    waits.append(clock.now() - asked)
                    peak = max(peak, budget.used_last_60s())
                await clock.sleep(10)

        profiles = asyncio.ensure_future(job())
        await asset_ctx()
        profiles.cancel()
        await asyncio.gather(profiles, return_exceptions=True)
        return waits, source.spent, peak

    waits, spent, peak = run_virtual(main)
    assert len(waits) == 60 and max(waits) == 0.0
    # the lane was kept full: profiles and market data together at its 864 a minute
    assert spent >= 10 * (864 - 6 * 20) - 120
    assert peak <= 864 + 6 * 20  # the lane fills to 864; market data still has its room
