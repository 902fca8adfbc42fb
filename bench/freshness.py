"""USD-weighted freshness of position snapshots: `PollScheduler` vs the fixed-tier baseline.

A simulated clock (1 s steps) drives a population of traders with a persistent size scale
(Pareto `alpha`, min $100, capped at $500M), `flat_fraction` of them flat, some positions near
liquidation. Positions change: price moves nobody sees (a mean-preserving random walk of notional
and of the distance to liquidation; below 0.2 % the position is liquidated) and trades, which the
trade stream shows (resize, close, reopen around the trader's scale). With `trade_hints` our
scheduler hears of each trade (`note_traded`), as the positions job does; the baseline ignores
them, as fixed-tier tools do.

Every scheduler polls under the same budget: `budget_per_min / 2` polls per minute (weight 2
each), spread evenly over the seconds, so no 60 s window exceeds the budget; a failed poll
(probability `fail_rate`) costs its weight and refreshes nothing. All start from the same
registry, as after a restart: each address last polled at a uniformly random moment within one
round-robin cycle (addresses / polls per second), its typical size remembered.

Measured every simulated second after `warmup_minutes`: the USD-weighted mean age of the
snapshots, sum usd_i * age_i / sum usd_i, over the *true* current notional (a position opened
since the last poll counts with its real size and its stale snapshot); the same over positions
within `near` of liquidation; the weight used per calendar minute and per sliding 60 s (max).
For scale: `bound_static_s` = (sum sqrt usd)^2 / (2 R sum usd), the least any scheduler could
reach if positions never changed and flat addresses were never polled; `round_robin_s` = N / 2R.
The positions here change faster than that bound allows for (each trader trades about hourly,
while the budget polls an address every N / R, 4.4 h at the defaults), and a 60-minute run
measures mostly the recovery from the restart state (the tiers start in their own steady
state); `--minutes 300 --warmup-minutes 150` comes closer to steady state.

`python -m bench.freshness --addresses 100000 --minutes 60` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import deque

from process.poll_scheduler import FixedTierScheduler, PollScheduler, Scheduler

T0_MS = 1_750_000_000_000
CAP_USD = 500_000_000.0
MIN_USD = 100.0


class _World:
    """True positions: notional (0 = flat) and relative distance to liquidation per address.

    Each trader has a persistent scale (Pareto, min $100, capped): a whale that closes reopens
    around its own scale, not at a random size.
    """

    def __init__(self, count: int, rng: random.Random, alpha: float, flat: float, near: float):
        self.rng, self.near_fraction = rng, near
        self.scale = [min(MIN_USD * rng.paretovariate(alpha), CAP_USD) for _ in range(count)]
        self.usd = [0.0] * count
        self.dist = [1.0] * count
        for i in range(count):
            if rng.random() >= flat:
                self.usd[i], self.dist[i] = self.scale[i], self.draw_distance()

    def draw_distance(self) -> float:
        """Near liquidation (0.5 % - 3 %) or log-uniform far from it (3 % - 100 %)."""
        rng = self.rng
        if rng.random() < self.near_fraction:
            return rng.uniform(0.005, 0.03)
        return math.exp(rng.uniform(math.log(0.03), 0.0))

    def reopen(self, i: int) -> tuple[float, float]:
        """A new position around the trader's scale."""
        usd = min(self.scale[i] * math.exp(self.rng.gauss(0.0, 0.5)), CAP_USD)
        return usd, self.draw_distance()


class _Tracker:
    """One scheduler's snapshot times and the running sums behind the USD-weighted mean age."""

    def __init__(self, name: str, scheduler: Scheduler, snaps: list[float]) -> None:
        self.name, self.scheduler, self.snap = name, scheduler, list(snaps)
        self.weighted = 0.0  # sum usd_i * snap_i
        self.weighted_near = 0.0
        self.ages: list[float] = []
        self.ages_near: list[float] = []
        self.window: deque[int] = deque(maxlen=60)
        self.window_max = 0
        self.minute_max = 0
        self.minute_used = 0
        self.polls = 0
        self.failures = 0


def events_in_second(second: int, per_second: float) -> int:
    """Events in second `second` at `per_second` on average, spread evenly (no bursts)."""
    return int((second + 1) * per_second) - int(second * per_second)


def run(
    addresses: int = 100_000,
    minutes: int = 60,
    budget_per_min: int = 756,
    seed: int = 1,
    *,
    alpha: float = 1.2,
    flat_fraction: float = 0.25,
    near_fraction: float = 0.05,
    near: float = 0.03,
    price_every_s: float = 600.0,
    price_sigma: float = 0.02,
    trade_every_s: float = 3600.0,
    close_probability: float = 0.3,
    fail_rate: float = 0.01,
    warmup_minutes: int | None = None,
    trade_hints: bool = True,
    floor_usd: float | None = None,
    liq_k: float | None = None,
    memory: float | None = None,
) -> dict[str, object]:
    """Simulate every scheduler over the same world; returns the figures (module docstring).

    `floor_usd`, `liq_k`, `memory`: `PollScheduler`'s own defaults unless given.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    world = _World(addresses, rng, alpha, flat_fraction, near_fraction)
    usd, dist = world.usd, world.dist
    polls_per_s = budget_per_min / 2 / 60
    cycle_s = addresses / polls_per_s
    snaps = [-rng.random() * cycle_s for _ in range(addresses)]
    names = [f"0x{i:040x}" for i in range(addresses)]
    index = {name: i for i, name in enumerate(names)}
    default = PollScheduler()
    schedulers: dict[str, Scheduler] = {
        "ours": PollScheduler(
            rate_per_min=budget_per_min / 2,
            floor_usd=default.floor_usd if floor_usd is None else floor_usd,
            liq_k=default.liq_k if liq_k is None else liq_k,
            memory=default.memory if memory is None else memory,
        ),
        "tiers": FixedTierScheduler(),
        "tiers_relative": FixedTierScheduler(overdue="relative"),
    }
    trackers = [_Tracker(name, s, snaps) for name, s in schedulers.items()]
    total = sum(usd)
    total_near = sum(u for u, d in zip(usd, dist, strict=True) if u > 0 and d < near)
    for tr in trackers:
        tr.weighted = math.fsum(u * s for u, s in zip(usd, snaps, strict=True))
        tr.weighted_near = math.fsum(
            u * s for u, d, s in zip(usd, dist, snaps, strict=True) if u > 0 and d < near
        )
        for i, name in enumerate(names):
            tr.scheduler.add(
                name,
                last_polled_ms=T0_MS + round(snaps[i] * 1000),
                notional_usd=usd[i],
                min_liq_distance=dist[i] if usd[i] > 0 else None,
                typical_usd=world.scale[i],
            )
    setup_s = time.perf_counter() - started

    open_probability = min(1.0, close_probability * (1 - flat_fraction) / flat_fraction)
    fail_rngs = [random.Random(seed * 7919 + k) for k in range(len(trackers))]
    warmup_s = 60 * (minutes // 6 if warmup_minutes is None else warmup_minutes)
    hinted = [tr for tr in trackers if trade_hints and isinstance(tr.scheduler, PollScheduler)]
    for second in range(60 * minutes):
        now_ms = T0_MS + second * 1000
        # The world moves (identically for every scheduler): price moves, which nobody sees,
        # and trades (resize, close, open), which the trade stream shows; liquidations.
        moves = events_in_second(second, addresses / price_every_s)
        trades = events_in_second(second, addresses / trade_every_s)
        for event in range(moves + trades):
            i = rng.randrange(addresses)
            old_usd, old_dist = usd[i], dist[i]
            if event < moves:
                if old_usd == 0:
                    continue
                new_usd = min(
                    old_usd * math.exp(rng.gauss(-(price_sigma**2) / 2, price_sigma)), CAP_USD
                )
                new_dist = min(1.0, old_dist + rng.gauss(0.0, price_sigma))
            elif old_usd > 0:
                if rng.random() < close_probability:
                    new_usd, new_dist = 0.0, 1.0
                else:
                    new_usd = min(old_usd * math.exp(rng.gauss(0.0, 0.5)), CAP_USD)
                    new_dist = old_dist
            elif rng.random() < open_probability:
                new_usd, new_dist = world.reopen(i)
            else:
                continue
            if new_usd > 0 and new_dist < 0.002:  # liquidated
                new_usd, new_dist = 0.0, 1.0
            old_near = old_usd > 0 and old_dist < near
            new_near = new_usd > 0 and new_dist < near
            total += new_usd - old_usd
            near_delta = (new_usd if new_near else 0.0) - (old_usd if old_near else 0.0)
            total_near += near_delta
            for tr in trackers:
                s = tr.snap[i]
                tr.weighted += (new_usd - old_usd) * s
                tr.weighted_near += near_delta * s
            usd[i], dist[i] = new_usd, new_dist
            if hinted and (event >= moves or new_usd == 0):
                for tr in hinted:
                    tr.scheduler.note_traded(names[i], now_ms, abs(new_usd - old_usd))
        # Every scheduler polls its share of this second.
        allowed = events_in_second(second, polls_per_s)
        for tr, fail_rng in zip(trackers, fail_rngs, strict=True):
            batch = tr.scheduler.next_batch(now_ms, allowed)
            for name in batch:
                i = index[name]
                if fail_rng.random() < fail_rate:
                    tr.scheduler.note_failed(name, now_ms)
                    tr.failures += 1
                    continue
                gain = usd[i] * (second - tr.snap[i])
                tr.weighted += gain
                if usd[i] > 0 and dist[i] < near:
                    tr.weighted_near += gain
                tr.snap[i] = second
                tr.scheduler.note_polled(name, now_ms, usd[i], dist[i] if usd[i] > 0 else None)
            used = 2 * len(batch)
            tr.polls += len(batch)
            tr.window.append(used)
            tr.window_max = max(tr.window_max, sum(tr.window))
            tr.minute_used += used
            if second % 60 == 59:
                tr.minute_max, tr.minute_used = max(tr.minute_max, tr.minute_used), 0
            if second >= warmup_s:
                tr.ages.append(second - tr.weighted / total)
                if total_near > 0:
                    tr.ages_near.append(second - tr.weighted_near / total_near)

    figures: dict[str, object] = {
        "addresses": addresses,
        "minutes": minutes,
        "warmup_minutes": warmup_s // 60,
        "budget_per_min": budget_per_min,
        "polls_per_min": budget_per_min / 2,
        "seed": seed,
        "alpha": alpha,
        "flat_fraction": flat_fraction,
        "open_usd_end": round(total),
        "near_usd_end": round(total_near),
        "trade_hints": trade_hints,
        "bound_static_s": round(sum(math.sqrt(u) for u in usd) ** 2 / (2 * polls_per_s * total), 1),
        "round_robin_s": round(addresses / (2 * polls_per_s), 1),
    }
    for tr in trackers:
        figures[tr.name] = {
            "usd_weighted_age_s": round(sum(tr.ages) / len(tr.ages), 1),
            "near_liq_usd_weighted_age_s": round(sum(tr.ages_near) / max(1, len(tr.ages_near)), 1),
            "weight_per_min_max": tr.minute_max,
            "weight_per_60s_window_max": tr.window_max,
            "polls": tr.polls,
            "failures": tr.failures,
        }
    ours = figures["ours"]
    assert isinstance(ours, dict)
    for name, key in (("tiers", "baseline"), ("tiers_relative", "tiers_relative")):
        base = figures[name]
        assert isinstance(base, dict)
        for suffix, field in (
            ("", "usd_weighted_age_s"),
            ("_near_liq", "near_liq_usd_weighted_age_s"),
        ):
            figures[f"ratio_{key}_over_ours{suffix}"] = round(
                base[field] / max(ours[field], 1e-9), 2
            )
    figures["setup_s"] = round(setup_s, 2)
    figures["elapsed_s"] = round(time.perf_counter() - started, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--budget-per-min", type=int, default=756)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=1.2, help="Pareto exponent of sizes")
    parser.add_argument("--flat-fraction", type=float, default=0.25)
    parser.add_argument("--warmup-minutes", type=int, default=None, help="default: minutes / 6")
    parser.add_argument("--no-trade-hints", action="store_true")
    parser.add_argument("--liq-k", type=float, default=None, help="default: the scheduler's")
    parser.add_argument("--memory", type=float, default=None, help="default: the scheduler's")
    args = parser.parse_args()
    result = run(
        args.addresses,
        args.minutes,
        args.budget_per_min,
        args.seed,
        alpha=args.alpha,
        flat_fraction=args.flat_fraction,
        warmup_minutes=args.warmup_minutes,
        trade_hints=not args.no_trade_hints,
        liq_k=args.liq_k,
        memory=args.memory,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
