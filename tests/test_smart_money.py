"""smart_money: rankings by PnL and ROE from wallet profiles and the book, written and read back,
and restored after a restart (rankings and each profile's next refresh)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from db import InfluxTarget, read_from_influx
from db.reader import AsyncInfluxReader
from db.schema import HLP_POSITIONS
from db.timestamps import TimestampAllocator
from process.profiles import ProfilesJob
from process.profiles.figures import DAY_MS, profile_of
from process.profiles.lines import profile_line
from process.profiles.rankings import SmartMoney, window_label
from tests.test_points import write
from tests.test_profiles import ETH, OTHERS, T0, parse, trips

NOW = T0 + DAY_MS
A, B, C, BOT = ("0x" + c * 40 for c in "abcd")


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)


def profiles() -> dict[str, object]:
    """A: +42.58 realized (3 trips, 2 wins); B: +48 (OTHERS: 1 winning BTC trip);
    C: nothing closed; BOT: a clockwork trader (bot)."""
    return {
        A: profile_of(A, parse(ETH + OTHERS), T0, NOW),
        B: profile_of(B, parse(OTHERS), T0, NOW),
        C: profile_of(C, [], T0, NOW),
        BOT: profile_of(BOT, trips(48, 60_000, 30 * 60_000), T0, NOW),
    }


ACCOUNTS = {  # address -> (account value, unrealized PnL now)
    A: (D(1000), D(-20)),
    B: (D(100_000), D(5)),
    C: (D(50), D(30)),
}


def ranked(include_bots: bool = False) -> tuple[SmartMoney, Lines]:
    lines = Lines()
    smart = SmartMoney(lines, ACCOUNTS.get, top=2, include_bots=include_bots, clock=lambda: NOW)
    for profile in profiles().values():
        smart.profiled(profile)  # type: ignore[arg-type]
    return smart, lines


def test_rankings_by_pnl_and_roe_hand_computed() -> None:
    smart, _ = ranked()
    assert smart.windows == ("24h", "7d")
    ranking = smart.ranking()
    by_pnl = [(r.address, r.pnl, r.realized, r.unrealized) for r in ranking[("7d", "pnl")]]
    assert by_pnl == [(B, D(53), D(48), D(5)), (C, D(30), D(0), D(30))]  # A: 42.58 - 20
    by_roe = [(r.address, r.roe) for r in ranking[("7d", "roe")]]
    assert by_roe == [(C, 0.6), (A, float(D("22.58") / 1000))]  # B: 53 / 100,000
    assert [r.address for r in ranking[("24h", "pnl")]] == [B, C]  # every trip of the last day
    assert BOT not in {r.address for rows in ranking.values() for r in rows}
    smart.top, smart.include_bots = 5, True
    with_bots = smart.ranking()
    assert [r.address for r in with_bots[("7d", "pnl")]] == [B, BOT, C, A]  # BOT: 48 trips, +1 each
    assert BOT not in {r.address for r in with_bots[("7d", "roe")]}  # no account value
    assert window_label(7 * DAY_MS) == "7d" and window_label(36 * 3_600_000) == "36h"


async def test_written_ranks_read_back_best_first_and_restored_after_a_restart(
    influxd, influx_db
) -> None:
    smart, lines = ranked()
    await smart()
    allocator = TimestampAllocator()
    lines.lines += [profile_line(p, NOW - 3_600_000, allocator) for p in profiles().values()]  # type: ignore[arg-type]
    write(influxd.url, influx_db, lines.lines)
    target = InfluxTarget(influxd.url, influx_db)
    start, end = "2026-09-20T00:00:00Z", "2026-09-25T00:00:00Z"  # around NOW
    frame = read_from_influx(
        "smart_money", target=target, window="7d", by="roe", start=start, end=end
    )
    assert list(frame["address"]) == [C, A] and list(frame["rank"]) == ["1", "2"]
    assert list(frame["roe"]) == [0.6, 0.02258]
    assert list(frame["style"]) == ["unknown", "mixed"]
    wallet = read_from_influx(
        "wallet", target=target, address=A.upper().replace("0X", "0x"), start=start, end=end
    )
    ranks = wallet[wallet["_measurement"] == "smart_money"]
    assert sorted(zip(ranks["window"], ranks["by"], ranks["rank"], strict=True)) == [
        ("24h", "roe", "2"),
        ("7d", "roe", "2"),
    ]
    assert list(wallet[wallet["_measurement"] == "wallet_profiles"]["realized_pnl"]) == [42.58]

    # a restart: the profiles come back, so do the rankings and each profile's next refresh
    fresh = SmartMoney(Lines(), ACCOUNTS.get, top=2, clock=lambda: NOW)
    query, params = fresh.restore_query()
    async with AsyncInfluxReader(target) as reader:
        restored = fresh.restore(await reader.rows(query, params))
    assert {s.address for s in restored} == {A, B, C, BOT}
    assert [(r.address, r.pnl) for r in fresh.ranking()[("7d", "pnl")]] == [
        (B, D(53)),
        (C, D(30)),
    ]
    job = ProfilesJob(source=None, writer=Lines(), priority=lambda: [A, B], clock=lambda: NOW)  # type: ignore[arg-type]
    for standing in restored:
        job.resume(standing.address, standing.profiled_ms, standing.bot)
    await job()  # nothing due: refreshed an hour ago, every 6 h
    assert job.written == 0 and job.is_bot(BOT)


def hlp_point(vault: str, side: str, szi: float, usd: float, minute: int) -> str:
    tags = {"vault": vault, "coin": "ETH", "side": side}
    fields = {"szi": szi, "size_usd": usd, "unrealized_pnl": 0.0}
    return HLP_POSITIONS.line(tags, fields, (NOW + minute * 60_000) * 1_000_000)


def test_hlp_sentiment_sums_the_vaults_and_finds_the_flips(influxd, influx_db) -> None:
    lines = [
        hlp_point("A", "long", 10.0, 20_000.0, 0),  # before the window: carried into it
        hlp_point("B", "short", -4.0, 8_000.0, 0),
        hlp_point("A", "long", 10.0, 20_000.0, 10),  # net +6: long
        hlp_point("B", "short", -12.0, 24_000.0, 11),  # net -2: short (a flip)
        hlp_point("A", "long", 0.0, 0.0, 20),  # A closed its long and went short: one poll,
        hlp_point("A", "short", -1.0, 2_000.0, 20),  # two points  -> net -13
        hlp_point("B", "short", 0.0, 0.0, 21),  # B closed -> net -1
        hlp_point("A", "short", 0.0, 0.0, 30),  # flat
        hlp_point("A", "long", 3.0, 6_000.0, 40),  # long again: a flip (flat in between)
    ]
    write(influxd.url, influx_db, lines)
    start = datetime.fromtimestamp((NOW + 5 * 60_000) / 1000, UTC)
    frame = read_from_influx(
        "hlp_sentiment",
        target=InfluxTarget(influxd.url, influx_db),
        asset="ETH",
        start=start,
        end=start + timedelta(hours=1),
    )
    minutes = [(t.value // 1_000_000 - NOW) // 60_000 for t in frame.index]
    assert minutes == [10, 11, 20, 21, 30, 40]
    assert list(frame["net_szi"]) == [6.0, -2.0, -13.0, -1.0, 0.0, 3.0]
    assert list(frame["net_usd"]) == [12_000.0, -4_000.0, -26_000.0, -2_000.0, 0.0, 6_000.0]
    assert list(frame["side"]) == ["long", "short", "short", "short", "flat", "long"]
    assert list(frame["flip"]) == [False, True, False, False, False, True]
    assert list(frame["vaults"]) == [2] * 6
