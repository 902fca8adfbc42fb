"""The poll scheduler: discovery first, sqrt(weight) rates, liquidation boost, backoff, speed;
the fixed-tier baseline; shards."""

from __future__ import annotations

import math
import random
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.freshness import run as freshness
from process.poll_scheduler import FixedTierScheduler, PollScheduler, Scheduler
from process.shard import Shard

T = 1_750_000_000_000


def simulate(
    scheduler: Scheduler,
    world: dict[str, tuple[float, float | None]],
    seconds: int,
    polls_per_s: float,
) -> Counter[str]:
    """Poll at `polls_per_s` for `seconds`; every poll succeeds and finds `world[address]`."""
    polls: Counter[str] = Counter()
    for second in range(seconds):
        now = T + second * 1000
        allowed = int((second + 1) * polls_per_s) - int(second * polls_per_s)
        for address in scheduler.next_batch(now, allowed):
            polls[address] += 1
            scheduler.note_polled(address, now, *world[address])
    return polls


def polled_once(world: dict[str, tuple[float, float | None]], **kwargs: float) -> PollScheduler:
    """A scheduler that has polled every address of `world` once, in order."""
    scheduler = PollScheduler(**kwargs)  # type: ignore[arg-type]
    for address in world:
        scheduler.add(address)
    assert scheduler.next_batch(T, len(world)) == list(world)
    for address, (usd, distance) in world.items():
        scheduler.note_polled(address, T, usd, distance)
    return scheduler


def test_never_polled_addresses_come_first_in_arrival_order() -> None:
    world = {"0xbig": (5e7, 0.05), "0xmid": (1e5, None)}
    scheduler = polled_once(world)
    scheduler.add("0xnew1")
    scheduler.add("0xnew2")
    assert scheduler.add("0xnew1") is False
    assert scheduler.next_batch(T + 60_000, 3) == ["0xnew1", "0xnew2", "0xbig"]
    assert scheduler.next_batch(T + 60_000, 3) == ["0xmid"]  # the rest are in flight
    assert scheduler.next_batch(T + 60_000, 3) == []


def test_bigger_positions_are_polled_more_often_in_a_simulated_hour() -> None:
    world: dict[str, tuple[float, float | None]] = {
        "0x10m": (1e7, None),
        "0x1m": (1e6, None),
        "0x100k": (1e5, None),
        "0x10k": (1e4, None),
        "0xflat": (0.0, None),
    }
    world |= {f"0xfiller{n}": (1e3, None) for n in range(200)}
    polls = simulate(polled_once(world), world, 3600, 1.0)
    assert polls["0x10m"] > polls["0x1m"] > polls["0x100k"] > polls["0x10k"] > polls["0xflat"] > 0
    assert sum(polls.values()) == 3600


def test_poll_rates_are_proportional_to_the_square_root_of_notional() -> None:
    classes = (1e4, 1e5, 1e6, 1e7)
    world: dict[str, tuple[float, float | None]] = {
        f"0x{usd:.0e}-{n}": (usd, None) for usd in classes for n in range(100)
    }
    polls = simulate(polled_once(world, liq_k=0.0), world, 4 * 3600, 10.0)
    total_sqrt = 100 * sum(math.sqrt(usd) for usd in classes)
    for usd in classes:
        per_address = [polls[f"0x{usd:.0e}-{n}"] for n in range(100)]
        expected = 144_000 * math.sqrt(usd) / total_sqrt  # 31 polls in 4 h for $10k, 992 for $10M
        assert sum(per_address) / 100 == pytest.approx(expected, rel=0.04)
        assert max(per_address) - min(per_address) <= 2  # smooth: no address starved or hogging


def test_positions_near_liquidation_are_polled_more_often() -> None:
    world: dict[str, tuple[float, float | None]] = {
        "0xnear": (1e6, 0.01),
        "0xfar": (1e6, 0.5),
        "0xunknown": (1e6, None),
    }
    world |= {f"0xfiller{n}": (1e5, None) for n in range(100)}
    polls = simulate(polled_once(world, liq_k=0.1), world, 3600, 1.0)
    expected = math.sqrt((1 + 0.1 / 0.01) / (1 + 0.1 / 0.5))  # sqrt(11 / 1.2) = 3.03
    assert polls["0xnear"] / polls["0xfar"] == pytest.approx(expected, rel=0.1)
    assert polls["0xfar"] >= polls["0xunknown"]
    plain = simulate(polled_once(world, liq_k=0.0), world, 3600, 1.0)
    assert abs(plain["0xnear"] - plain["0xfar"]) <= 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 8), st.sampled_from(["ok", "fail", "release", "new"])),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 2**32),
)
def test_batches_never_exceed_n_nor_repeat_an_address_in_flight(
    steps: list[tuple[int, str]], seed: int
) -> None:
    rng = random.Random(seed)
    scheduler = PollScheduler()
    for n in range(20):
        scheduler.add(f"0x{n}")
    in_flight: set[str] = set()
    now = T
    for n, outcome in steps:
        now += 1000
        batch = scheduler.next_batch(now, n)
        assert len(batch) <= n
        assert len(set(batch)) == len(batch)
        assert not in_flight & set(batch)
        in_flight |= set(batch)
        for address in batch:
            if outcome == "ok":
                scheduler.note_polled(address, now, rng.choice([0.0, 1e3, 1e6]), None)
            elif outcome == "fail":
                scheduler.note_failed(address, now)
            elif outcome == "release":
                scheduler.release(address)
            else:
                scheduler.add(f"0x{rng.randrange(40)}")
                continue
            in_flight.discard(address)


def test_never_polled_addresses_go_by_the_notional_seen_in_their_trades() -> None:
    scheduler = PollScheduler()
    for address in ("0xfirst", "0xsmall", "0xwhale", "0xquiet", "0xlate"):
        scheduler.add(address)
    scheduler.note_traded("0xsmall", T, 1_000.0)
    scheduler.note_traded("0xwhale", T, 2_000_000.0)
    scheduler.note_traded("0xsmall", T, 500.0)  # the largest trade counts, not the last
    scheduler.note_traded("0xlate", T, 1_000.0)  # equal notionals: arrival order
    assert scheduler.next_batch(T, 3) == ["0xwhale", "0xsmall", "0xlate"]
    assert scheduler.next_batch(T, 3) == ["0xfirst", "0xquiet"]
    assert scheduler.discovery_backlog == 0


def test_the_discovery_queue_stays_bounded_while_traded_notionals_grow() -> None:
    scheduler = PollScheduler()
    for n in range(3000):
        scheduler.add(f"0x{n}")
    for usd in range(1, 101):  # every address's largest trade grows 100 times
        for n in range(3000):
            scheduler.note_traded(f"0x{n}", T, float(usd * (n + 1)))
    assert scheduler.discovery_backlog <= 2 * 3000 + 1024
    assert scheduler.next_batch(T, 3) == ["0x2999", "0x2998", "0x2997"]


def test_an_estimated_account_counts_four_times_its_age_until_its_next_poll() -> None:
    scheduler = PollScheduler()
    for address, age_s in (("0xa", 10), ("0xb", 30), ("0xc", 50)):
        scheduler.add(address, last_polled_ms=T - age_s * 1000, notional_usd=1e5)
    scheduler.note_estimated(["0xa", "0xunknown"])  # a gap may have moved 0xa's positions
    # equal weights: the index is the age, 0xa's x sqrt(ESTIMATED_BOOST) = 4: 40 s
    assert scheduler.next_batch(T, 3) == ["0xc", "0xa", "0xb"]
    scheduler.note_polled("0xa", T, 1e5, None)
    assert not scheduler.states["0xa"].estimated
    scheduler.note_polled("0xb", T - 5000, 1e5, None)  # older than 0xa's poll
    assert scheduler.next_batch(T + 1000, 2) == ["0xb", "0xa"]


def test_failed_addresses_wait_their_backoff_then_compete_by_their_index() -> None:
    world: dict[str, tuple[float, float | None]] = {"0xa": (1e6, None), "0xb": (1e3, None)}
    scheduler = polled_once(world)
    assert scheduler.next_batch(T + 1000, 1) == ["0xa"]
    scheduler.note_failed("0xa", T + 1000)  # 1st failure: 30 s
    assert scheduler.next_batch(T + 30_999, 5) == ["0xb"]
    scheduler.release("0xb")
    assert scheduler.next_batch(T + 31_000, 1) == ["0xa"]
    scheduler.note_failed("0xa", T + 31_000)  # 2nd failure: 60 s
    assert "0xa" not in scheduler.next_batch(T + 90_999, 5)
    assert scheduler.next_batch(T + 91_000, 5) == ["0xa"]
    scheduler.note_failed("0xa", T + 91_000, retry_at_ms=T + 200_000)  # the registry's backoff
    assert scheduler.next_batch(T + 199_999, 5) == []
    assert scheduler.next_batch(T + 200_000, 5) == ["0xa"]


def test_a_retried_small_address_does_not_jump_a_whale_with_a_larger_index() -> None:
    world: dict[str, tuple[float, float | None]] = {"0xwhale": (1e6, None), "0xsmall": (1e2, None)}
    scheduler = polled_once(world)
    assert scheduler.next_batch(T + 1000, 2) == ["0xwhale", "0xsmall"]
    scheduler.note_polled("0xwhale", T + 1000, 1e6, None)
    scheduler.note_failed("0xsmall", T + 1000)  # back at T + 31 s, last polled at T
    # whale: sqrt(1e6) x 30 s = 30,000; small: sqrt(100) x 31 s = 310
    assert scheduler.next_batch(T + 31_000, 1) == ["0xwhale"]
    assert scheduler.next_batch(T + 31_000, 1) == ["0xsmall"]


def test_restored_addresses_resume_by_staleness_and_expired_ones_leave() -> None:
    scheduler = PollScheduler(rate_per_min=60)
    scheduler.add("0xfresh", last_polled_ms=T - 1000, notional_usd=1e6)
    scheduler.add("0xstale", last_polled_ms=T - 3_600_000, notional_usd=1e6)
    scheduler.add("0xbacking-off", last_polled_ms=T - 10, notional_usd=1e9, retry_at_ms=T + 5000)
    scheduler.add("0xgone", last_polled_ms=T - 7_200_000, notional_usd=1e6)
    assert scheduler.discard("0xgone") is True
    assert scheduler.next_batch(T, 5) == ["0xstale", "0xfresh"]
    assert scheduler.next_batch(T + 5000, 5) == ["0xbacking-off"]
    assert len(scheduler) == 3


def test_a_polled_whale_does_not_wait_behind_a_backlog_of_small_overdue_addresses() -> None:
    # After a restart every address is an hour old. The whale goes first; then its index
    # sqrt(1e6) x age overtakes the small ones' sqrt(100) x (3600 s + t) after 37 s, and again
    # 37 s later (a schedule of deadlines kept it waiting until all 100 had been polled).
    scheduler = PollScheduler()
    world: dict[str, tuple[float, float | None]] = {"0xwhale": (1e6, None)}
    world |= {f"0x{n}": (1e2, None) for n in range(100)}
    for address, (usd, _) in world.items():
        scheduler.add(address, last_polled_ms=T - 3_600_000, notional_usd=usd)
    whale = []
    for second in range(100):
        now = T + second * 1000
        for address in scheduler.next_batch(now, 1):
            whale += [second] if address == "0xwhale" else []
            scheduler.note_polled(address, now, *world[address])
    assert whale == [0, 37, 74]


def test_a_trade_ranks_an_address_by_the_age_of_its_snapshot() -> None:
    scheduler = PollScheduler()
    scheduler.add("0xopened", last_polled_ms=T - 3_600_000)  # flat an hour ago
    scheduler.add("0xjust-polled", last_polled_ms=T - 1000)  # flat a second ago
    scheduler.add("0xwhale", last_polled_ms=T - 60_000, notional_usd=1e7)
    scheduler.add("0xquiet", last_polled_ms=T - 3_600_000)  # flat an hour ago, no trade since
    scheduler.note_traded("0xopened", T, 1e6)
    scheduler.note_traded("0xjust-polled", T, 1e6)
    # sqrt(weight) x age: 1000 x 3600 s, 3162 x 60 s, sqrt(floor $100) x 3600 s, 1000 x 1 s
    assert scheduler.next_batch(T, 4) == ["0xopened", "0xwhale", "0xquiet", "0xjust-polled"]
    assert scheduler.next_batch(T, 4) == []


def test_a_trade_moves_a_quiet_address_up() -> None:
    world: dict[str, tuple[float, float | None]] = {f"0x{n}": (1e4, None) for n in range(50)}
    world["0xflat"] = (0.0, None)
    scheduler = polled_once(world)
    scheduler.note_traded("0xflat", T + 500, 2e6)  # it just opened a $2M position
    assert scheduler.next_batch(T + 1000, 1) == ["0xflat"]


def test_a_closed_whale_is_still_watched() -> None:
    world: dict[str, tuple[float, float | None]] = {f"0x{n}": (1e4, None) for n in range(50)}
    world["0xwhale"] = (5e7, None)
    scheduler = polled_once(world)
    assert scheduler.weight(0.0, None, 5e7) == 5e6  # memory 0.1 of its typical size
    world["0xwhale"] = (0.0, None)  # closed everything
    polls = simulate(scheduler, world, 3600, 1.0)
    assert polls["0xwhale"] > 4 * max(polls[f"0x{n}"] for n in range(50))


def test_next_batch_is_fast_for_200k_addresses() -> None:
    rng = random.Random(3)
    scheduler = PollScheduler()
    for n in range(200_000):
        usd = 100 * rng.paretovariate(1.2)
        scheduler.add(f"0x{n:040x}", last_polled_ms=T - rng.randrange(36_000_000), notional_usd=usd)
    started = time.perf_counter()
    scheduler.next_batch(T, 10)  # places the restored addresses (once, after a restart)
    restart_s = time.perf_counter() - started
    worst = 0.0
    for second in range(1, 501):
        now = T + second * 1000
        started = time.perf_counter()
        batch = scheduler.next_batch(now, 10)
        worst = max(worst, time.perf_counter() - started)
        for address in batch:
            scheduler.note_polled(address, now, rng.paretovariate(1.2) * 100, 0.2)
    assert worst < 0.01, f"worst next_batch {worst * 1000:.2f} ms"
    assert restart_s < 2.0, f"restart placement {restart_s:.2f} s"


def test_fixed_tiers_poll_what_is_due_most_overdue_first() -> None:
    scheduler = FixedTierScheduler()
    scheduler.add("0xwhale", last_polled_ms=T - 31_000, notional_usd=2e6)  # 1 s overdue
    scheduler.add("0xmid", last_polled_ms=T - 125_000, notional_usd=2e5)  # 5 s overdue
    scheduler.add("0xsmall", last_polled_ms=T - 300_000, notional_usd=5e3)  # due in 300 s
    scheduler.add("0xnew")
    assert scheduler.next_batch(T, 10) == ["0xnew", "0xmid", "0xwhale"]
    for address in ("0xnew", "0xmid", "0xwhale"):
        scheduler.note_polled(address, T, 2e6 if address == "0xwhale" else 0.0, None)
    assert scheduler.next_batch(T + 29_999, 10) == []
    assert scheduler.next_batch(T + 30_000, 10) == ["0xwhale"]
    assert scheduler.next_batch(T + 300_000, 10) == ["0xsmall"]
    relative = FixedTierScheduler(overdue="relative")
    relative.add("0xwhale", last_polled_ms=T - 40_000, notional_usd=2e6)  # 10 s = 1/3 period
    relative.add("0xsmall", last_polled_ms=T - 660_000, notional_usd=5e3)  # 60 s = 1/10 period
    assert relative.next_batch(T, 1) == ["0xwhale"]


def test_fixed_tiers_under_the_budget_poll_each_tier_at_its_period() -> None:
    world: dict[str, tuple[float, float | None]] = {
        "0xwhale": (2e6, None),
        "0xmid": (2e5, None),
        "0xsmall": (2e3, None),
    }
    scheduler = FixedTierScheduler()
    for address in world:
        scheduler.add(address)
    polls = simulate(scheduler, world, 3600, 1.0)
    assert polls == {"0xwhale": 120, "0xmid": 30, "0xsmall": 6}


def test_beats_fixed_tiers_twice_over_on_usd_weighted_age_under_the_same_budget() -> None:
    # 2,000 traders, 378 polls/min: the tiers need ~260 and leave the rest unused.
    figures = freshness(addresses=2000, minutes=20, seed=1, warmup_minutes=5)
    ours, tiers = figures["ours"], figures["tiers"]
    assert isinstance(ours, dict) and isinstance(tiers, dict)
    assert ours["weight_per_60s_window_max"] <= 756
    assert tiers["weight_per_60s_window_max"] <= 756
    assert ours["usd_weighted_age_s"] * 2 <= tiers["usd_weighted_age_s"], figures
    assert ours["near_liq_usd_weighted_age_s"] * 2 <= tiers["near_liq_usd_weighted_age_s"]


def test_when_the_budget_is_short_it_still_wins_and_stays_near_the_bound() -> None:
    # 5,000 traders: the tiers would need ~500 polls/min, so they are always late. Then no
    # scheduler can beat round robin by more than the bound allows (see bench/freshness.py).
    figures = freshness(addresses=5000, minutes=20, seed=1, alpha=1.1, warmup_minutes=5)
    ours, tiers = figures["ours"], figures["tiers"]
    assert isinstance(ours, dict) and isinstance(tiers, dict)
    assert ours["weight_per_60s_window_max"] <= 756
    assert ours["usd_weighted_age_s"] * 1.6 <= tiers["usd_weighted_age_s"], figures
    assert ours["usd_weighted_age_s"] <= 1.4 * figures["bound_static_s"]  # type: ignore[operator]
    assert ours["near_liq_usd_weighted_age_s"] * 2 <= tiers["near_liq_usd_weighted_age_s"]


@pytest.mark.parametrize(
    ("address", "count", "index"),
    [
        ("0x010461c14e146ac35fe42271bdc1134ee31c703a", 4, 2),
        ("0x010461C14E146AC35FE42271BDC1134EE31C703A", 4, 2),
        ("0x010461c14e146ac35fe42271bdc1134ee31c703a", 7, 5),
        ("0x0000000000000000000000000000000000000000", 4, 0),
        ("0x0000000000000000000000000000000000000000", 7, 6),
        ("0xffffffffffffffffffffffffffffffffffffffff", 4, 1),
        ("0x2fab552502a6d45920d5741a2f3ebf4c35536352", 7, 2),
    ],
)
def test_shard_hashing_is_stable(address: str, count: int, index: int) -> None:
    owners = [i for i in range(count) if Shard(i, count).owns(address)]
    assert owners == [index]


def test_shards_are_balanced_and_parsed_strictly() -> None:
    rng = random.Random(5)
    addresses = [f"0x{rng.getrandbits(160):040x}" for _ in range(40_000)]
    shards = [Shard.parse(f"{i}/4") for i in range(4)]
    counts = [sum(shard.owns(a) for a in addresses) for shard in shards]
    assert all(abs(c - 10_000) < 400 for c in counts), counts
    assert [s.is_primary for s in shards] == [True, False, False, False]
    assert Shard.parse(" 0/1 ") == Shard() and str(Shard.parse("2/4")) == "2/4"
    for bad in ("3/2", "a/b", "1", "-1/2", "0/0", "1/2/3", ""):
        with pytest.raises(ValueError, match=r"shard .* is invalid"):
            Shard.parse(bad)
