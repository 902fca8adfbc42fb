"""How well positions are known between polls: the position book vs the last poll's snapshot.

A virtual clock (1 s steps, events at ms resolution) drives a small exact "exchange" and the
app's own objects: `PositionBook` (kept current from the trade stream, reconciled by polls) and
`PollScheduler` (which addresses to poll under the REST budget). No network, no InfluxDB.

The exchange (the truth):
- `addresses` accounts with a persistent size scale (Pareto `alpha`, min $100, capped at
  $500M, as `bench.freshness`), a leverage (1-20x, capped by the coin) and equity 2 x scale /
  leverage (a position at its scale uses half its leverage); `flat_fraction` start flat, the
  others hold their main coin at their scale (a fifth also a second coin at half of it). Four
  coins (BTC, ETH, SOL, HYPE) with marks on their tick moving by a random walk
  (`mark_sigma_per_hour`) and tiered margin rules (`MarginRule.tiered`). Cross margin only (no
  isolated positions), no liquidations.
- Trades (`trade_rate` a second, at random ms): the taker is drawn with a bias toward active
  traders (activity ~ sqrt(scale) x lognormal: at the defaults the largest accounts trade
  every 10-50 s, half the open interest at least every ~12 min, the median account ~45 min),
  trades its main coin (70 %) or another, and closes (30 %) or moves to a new target (scale x
  lognormal, same side 85 %, within its leverage; an account without room closes a position
  instead); the maker is drawn the same way and takes at most what keeps it within its own
  leverage (the taker may fill only part). A draw that makes no trade is drawn again, so
  `trade_rate` trades happen. Price: the mark +- up to 2 bp, on the tick.
- Each fill moves its party exactly: szi += signed size; entry size-weighted on an increase,
  unchanged on a decrease, the price on an opening or a flip; cross raw USD by -signed notional
  - fee, at the party's true tier (scale >= $100k: taker 0.040 % / maker 0.012 %; >= $5M:
  0.035 % / 0.008 %; else 0.045 % / 0.015 %), so the book's base-tier fees are slightly off
  for the large accounts (cash, hence liquidation prices, not sizes).
- Hourly funding: each position pays szi x mark x the coin's rate of the hour (~1.25e-5 +-
  1e-5). The book gets the settled rate (the best case: the app passes the published one),
  with the mark of its next `set_market` as the oracle price, through `apply_funding`.
- A poll's `clearinghouseState` is the truth at the snapshot time, with every field the app
  reads: szi, entryPx, leverage, positionValue, unrealizedPnl, marginUsed, liquidationPx from
  the margin formula (`account_margin`) at the current marks, margin summaries with
  totalRawUsd, `time`. It is built as a wire dict and parsed by `parse_clearinghouse_state`,
  as the app receives it. Measured: ~50 us a state (1.2 positions), of which ~34 us the parse
  (JSON encoding and validation); constructing the dataclasses directly takes ~9 us, so the
  parse costs ~3 s of a default run (123k states): kept. Trades are constructed
  directly (`Trade(...)`, as the tests and the simulator do: ~2.5 us, no validation).

The app side, in event order: the trade stream delivers each trade `stream_lag_ms` after its
execution (`apply_trades` with the real `Trade` record, then `note_traded` with its notional for
both parties, as `PositionsJob.discover`); a fraction `gap_rate` of trades is lost instead, and
`note_gap(coin, t - 1, t)` is called when it would have arrived. Polls: `budget_per_min / 2` a
second on average (weight 2 each), addresses from `PollScheduler.next_batch`; each calls
`polling`, the exchange takes its snapshot `snapshot_latency_ms` later, the answer arrives
`answer_latency_ms` after that: `reconcile(address, state, now)`, `note_polled` with the
snapshot's summary (`process.registry.summarize`). The defaults make the answer overtake the
trade stream (100 + 100 ms < 300 ms), as it does in production. `set_market` every
`mark_every_s` (10 s, the asset-context interval); `settle_checks` every second if the book has
it. The margin formula is taken as the exchange's (it is tested against recordings in
tests/test_margin.py), so the liquidation figures measure what the book knows, not the formula.

Start: the restart state of `bench.freshness`, each address last polled at a uniformly random
moment within one round-robin cycle (`addresses / polls per minute`, 264 min at the defaults).
It is made real by a pre-roll: the world runs for that cycle before T0 with every address
polled once at its random moment (no budget, no scheduler choice), trades flowing into the book
from its poll on. So at T0 every address has been polled exactly once, at the age it would
have after a restart, and the book has followed it since; `--preroll-minutes` shortens it
(addresses then polled within that window: younger snapshots, a kinder poll-only figure).

Measured at T0 and every `measure_every_min` until `minutes` (the mean over those samples is
reported, and the last one), over the true open positions at that moment:
- `size_exact_usd_share`: the USD share (true |szi| x mark) of the open interest whose size in
  the book is within 0.1 % of the truth, against `poll_only` (the size the last poll served;
  the knowledge before the book existed). Goal >= 95 % for the book.
- `liq_within_0_5pct_usd_share`: the same for the liquidation price within 0.5 % (both None
  counts as equal): the book's `liquidation_prices(account)` at its latest marks against the
  truth's at the current marks; poll-only: the liquidationPx the last poll served.
- `phantom_usd_share`: positions held but truly closed, their USD over the open interest.
- `in_flight_usd_share`: the open interest with a trade executed but not yet delivered by the
  stream (within `stream_lag_ms`): the book cannot know it yet, and counts as wrong above.
- `exact_share`: the book's own `exact_share()` (positions, not USD), and `exact_usd_share`
  of the open interest it marks exact; `exact_but_wrong_usd_max` (marked exact, not in flight,
  size different from the truth, the most in any sample) should be 0: it checks the book's
  claim of exactness.
- `apply_trades_us_per_trade`: wall-clock microseconds in `apply_trades` per trade delivered,
  over the pre-roll (parties join the book as they are polled) and the run (all tracked).

A run of the defaults (100k addresses, 60 min after a 264-min pre-roll: ~680k trades, ~123k
polls, 7 samples of ~5 s each) takes 100-130 s here; with `--gap-rate 0.01` ~280 s (each
`note_gap` walks every account). `python -m bench.book_accuracy --addresses 100000
--minutes 60` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from bench.freshness import events_in_second
from process.poll_scheduler import PollScheduler
from process.positions.book import PositionBook
from process.positions.margin import MarginRule, account_margin
from process.registry import summarize
from validate import ClearinghouseState, Trade, parse_clearinghouse_state

T0_MS = 1_750_000_000_000
HOUR_MS = 3_600_000
CAP_USD = 500_000_000.0
MIN_USD = 100.0
MIN_TRADE_USD = 10.0
HASH = "0x" + "0" * 64
SIZE_TOLERANCE = Decimal("0.001")
LIQ_TOLERANCE = Decimal("0.005")
ZERO = Decimal(0)


@dataclass(frozen=True)
class Coin:
    name: str
    mark: float  # starting mark
    tick: Decimal  # price step
    sz_decimals: int
    max_leverage: int
    tier: tuple[int, int]  # the second margin tier: (from notional, max leverage)
    weight: float  # share of traders whose main coin it is

    def rule(self) -> MarginRule:
        return MarginRule.tiered([(ZERO, self.max_leverage), (Decimal(self.tier[0]), self.tier[1])])


COINS: tuple[Coin, ...] = (
    Coin("BTC", 100_000.0, Decimal(1), 5, 40, (150_000_000, 20), 0.4),
    Coin("ETH", 3_500.0, Decimal("0.1"), 4, 25, (100_000_000, 15), 0.3),
    Coin("SOL", 150.0, Decimal("0.01"), 2, 20, (70_000_000, 10), 0.15),
    Coin("HYPE", 30.0, Decimal("0.001"), 2, 10, (20_000_000, 5), 0.15),
)
BY_NAME = {coin.name: coin for coin in COINS}
RULES = {coin.name: coin.rule() for coin in COINS}
LEVERAGES = ((1, 0.1), (2, 0.15), (3, 0.15), (5, 0.25), (10, 0.25), (20, 0.1))
FEE_TIERS: tuple[tuple[float, Decimal, Decimal], ...] = (
    (5_000_000.0, Decimal("0.00035"), Decimal("0.00008")),
    (100_000.0, Decimal("0.0004"), Decimal("0.00012")),
    (0.0, Decimal("0.00045"), Decimal("0.00015")),
)
"""(minimum scale USD, taker fee, maker fee): the true tier of an account, largest first."""

# event kinds, in their order within one ms: a snapshot holds the trades of its own ms
EXEC, SNAP, DELIVER, GAP, ANSWER = range(5)


class _Pos(NamedTuple):
    """A truth position as `account_margin` reads it."""

    coin: str
    szi: Decimal
    leverage_type: str
    raw_usd: Decimal | None


@dataclass
class _Exchange:
    """The true accounts: per address coin -> [szi, entry], cross raw USD, leverage, fees."""

    rng: random.Random
    scale: list[float]
    leverage: list[int]
    main: list[str]
    fees: list[tuple[Decimal, Decimal]]  # (taker, maker)
    positions: list[dict[str, list[Decimal]]]
    cash: list[Decimal]
    marks: dict[str, float] = field(default_factory=lambda: {c.name: c.mark for c in COINS})
    decimal_marks: dict[str, Decimal] = field(default_factory=dict)

    def move_marks(self, sigma: float) -> None:
        for coin in COINS:
            mark = self.marks[coin.name] * math.exp(self.rng.gauss(-(sigma**2) / 2, sigma))
            self.marks[coin.name] = mark
            self.decimal_marks[coin.name] = _on_tick(mark, coin.tick)

    def equity(self, i: int) -> tuple[float, float]:
        """(equity, notional of its positions) in USD at the current marks, as floats."""
        marks = self.marks
        equity, notional = float(self.cash[i]), 0.0
        for coin, (szi, _) in self.positions[i].items():
            value = float(szi) * marks[coin]
            equity += value
            notional += abs(value)
        return equity, notional

    def fill(self, i: int, coin: str, signed: Decimal, px: Decimal, fee: Decimal) -> None:
        positions = self.positions[i]
        held = positions.get(coin)
        before = ZERO if held is None else held[0]
        after = before + signed
        notional = signed * px
        self.cash[i] += -notional - abs(notional) * fee
        if after == 0:
            positions.pop(coin, None)
        elif held is None or before == 0 or (before > 0) != (after > 0):
            positions[coin] = [after, px]
        else:
            if abs(after) > abs(before):
                held[1] = (abs(before) * held[1] + abs(signed) * px) / abs(after)
            held[0] = after

    def fund(self, rates: dict[str, Decimal]) -> None:
        marks, cash = self.decimal_marks, self.cash
        for i, positions in enumerate(self.positions):
            for coin, (szi, _) in positions.items():
                cash[i] -= szi * marks[coin] * rates[coin]

    def liquidation_prices(self, i: int) -> dict[str, Decimal | None]:
        positions = [_Pos(c, p[0], "cross", None) for c, p in self.positions[i].items()]
        margin = account_margin(positions, self.cash[i], self.decimal_marks, RULES)
        return {p.coin: p.liquidation_px for p in margin.positions}

    def state(self, i: int, now_ms: int) -> ClearinghouseState:
        """The account as `clearinghouseState` serves it now, parsed as the app parses it."""
        marks = self.decimal_marks
        liq = self.liquidation_prices(i)
        items: list[dict[str, Any]] = []
        total_ntl = total_used = ZERO
        for coin, (szi, entry) in self.positions[i].items():
            mark = marks[coin]
            leverage = min(self.leverage[i], BY_NAME[coin].max_leverage)
            value = abs(szi) * mark
            used = value / leverage
            total_ntl += value
            total_used += used
            px = liq[coin]
            items.append(
                {
                    "type": "oneWay",
                    "position": {
                        "coin": coin,
                        "szi": str(szi),
                        "leverage": {"type": "cross", "value": leverage},
                        "entryPx": str(entry),
                        "positionValue": str(value),
                        "unrealizedPnl": str(szi * (mark - entry)),
                        "returnOnEquity": "0.0",
                        "liquidationPx": None if px is None else str(px),
                        "marginUsed": str(used),
                        "maxLeverage": BY_NAME[coin].max_leverage,
                    },
                }
            )
        cash = self.cash[i]
        value = cash + sum((p[0] * marks[c] for c, p in self.positions[i].items()), ZERO)
        summary = {
            "accountValue": str(value),
            "totalNtlPos": str(total_ntl),
            "totalRawUsd": str(cash),
            "totalMarginUsed": str(total_used),
        }
        state, rejected = parse_clearinghouse_state(
            {
                "assetPositions": items,
                "marginSummary": summary,
                "crossMarginSummary": summary,
                "crossMaintenanceMarginUsed": "0.0",
                "withdrawable": str(max(value - total_used, ZERO)),
                "time": now_ms,
            }
        )
        assert state is not None and not rejected, rejected
        return state


def _on_tick(value: float, step: Decimal) -> Decimal:
    return Decimal(round(value / float(step))) * step


def _size(value: float, decimals: int) -> Decimal:
    return Decimal(round(value * 10**decimals)).scaleb(-decimals)


def _world(
    count: int, rng: random.Random, alpha: float, flat: float
) -> tuple[_Exchange, list[float]]:
    """The exchange at the start of the pre-roll, and each address's cumulative activity."""
    names = [c.name for c in COINS]
    coin_weights = [c.weight for c in COINS]
    levels = [lev for lev, _ in LEVERAGES]
    level_weights = [w for _, w in LEVERAGES]
    scale = [min(MIN_USD * rng.paretovariate(alpha), CAP_USD) for _ in range(count)]
    leverage = rng.choices(levels, level_weights, k=count)
    main = rng.choices(names, coin_weights, k=count)
    fees = [next((t, m) for floor, t, m in FEE_TIERS if s >= floor) for s in scale]
    exchange = _Exchange(rng, scale, leverage, main, fees, [{} for _ in range(count)], [])
    exchange.move_marks(0.0)
    marks = exchange.marks
    for i in range(count):
        equity = 2 * scale[i] / leverage[i]  # the scale uses half the leverage
        positions = exchange.positions[i]
        raw = equity
        if rng.random() >= flat:
            held = [(main[i], 1.0)]
            if rng.random() < 0.2:
                held.append((rng.choice([n for n in names if n != main[i]]), 0.5))
            for name, share in held:
                coin = BY_NAME[name]
                szi = _size(rng.choice((1, -1)) * scale[i] * share / marks[name], coin.sz_decimals)
                if szi:
                    entry = _on_tick(marks[name] * math.exp(rng.gauss(0.0, 0.02)), coin.tick)
                    positions[name] = [szi, entry]
                    raw -= float(szi) * marks[name]
        exchange.cash.append(Decimal(round(raw, 2)).quantize(Decimal("0.01")))
    activity = [math.sqrt(s) * math.exp(rng.gauss(0.0, 1.0)) for s in scale]
    cumulative: list[float] = []
    total = 0.0
    for a in activity:
        total += a
        cumulative.append(total)
    return exchange, cumulative


@dataclass
class _Sample:
    open_usd: float = 0.0
    book_size: float = 0.0
    poll_size: float = 0.0
    book_liq: float = 0.0
    poll_liq: float = 0.0
    book_phantom: float = 0.0
    poll_phantom: float = 0.0
    exact_usd: float = 0.0
    exact_wrong_usd: float = 0.0
    in_flight: float = 0.0
    exact: int = 0
    positions: int = 0

    def shares(self) -> dict[str, float]:
        total = self.open_usd or 1.0
        return {
            "book_size_exact_usd_share": self.book_size / total,
            "poll_only_size_exact_usd_share": self.poll_size / total,
            "book_liq_within_0_5pct_usd_share": self.book_liq / total,
            "poll_only_liq_within_0_5pct_usd_share": self.poll_liq / total,
            "book_phantom_usd_share": self.book_phantom / total,
            "poll_only_phantom_usd_share": self.poll_phantom / total,
            "book_exact_usd_share": self.exact_usd / total,
            "book_exact_share": self.exact / max(self.positions, 1),
            "in_flight_usd_share": self.in_flight / total,
        }


def _close(value: Decimal | None, truth: Decimal | None, tolerance: Decimal) -> bool:
    if value is None or truth is None:
        return value is None and truth is None
    return abs(value - truth) <= tolerance * abs(truth)


def _measure(
    exchange: _Exchange,
    book: PositionBook,
    names: list[str],
    served: list[dict[str, tuple[Decimal, Decimal | None]]],
    in_flight: dict[tuple[int, str], int],
) -> _Sample:
    sample = _Sample()
    exact, sample.positions = book.exact_share()
    sample.exact = exact
    marks = exchange.marks
    for i, truth in enumerate(exchange.positions):
        account = book.accounts.get(names[i])
        held = {} if account is None else account.positions
        polled = served[i]
        if not truth and not held and not polled:
            continue
        true_liq = exchange.liquidation_prices(i) if truth else {}
        book_liq = book.liquidation_prices(account) if account is not None and held else {}
        for coin, (szi, _) in truth.items():
            usd = float(abs(szi)) * marks[coin]
            sample.open_usd += usd
            mine = held.get(coin)
            if mine is not None:
                if _close(mine.szi, szi, SIZE_TOLERANCE):
                    sample.book_size += usd
                if _close(book_liq.get(coin), true_liq[coin], LIQ_TOLERANCE):
                    sample.book_liq += usd
                if account is not None and account.exact(coin):
                    sample.exact_usd += usd
                    if mine.szi != szi and (i, coin) not in in_flight:
                        sample.exact_wrong_usd += usd
            if (i, coin) in in_flight:
                sample.in_flight += usd
            last = polled.get(coin)
            if last is not None:
                if _close(last[0], szi, SIZE_TOLERANCE):
                    sample.poll_size += usd
                if _close(last[1], true_liq[coin], LIQ_TOLERANCE):
                    sample.poll_liq += usd
        for coin, mine in held.items():
            if coin not in truth:
                usd = float(abs(mine.szi)) * marks[coin]
                sample.book_phantom += usd
                if account is not None and account.exact(coin) and (i, coin) not in in_flight:
                    sample.exact_wrong_usd += usd
        for coin, (szi, _) in polled.items():
            if coin not in truth:
                sample.poll_phantom += float(abs(szi)) * marks[coin]
    return sample


def run(
    addresses: int = 100_000,
    minutes: int = 60,
    trade_rate: float = 35.0,
    budget_per_min: int = 756,
    gap_rate: float = 0.0,
    seed: int = 1,
    *,
    preroll_minutes: float | None = None,
    alpha: float = 1.2,
    flat_fraction: float = 0.25,
    mark_sigma_per_hour: float = 0.01,
    funding: bool = True,
    stream_lag_ms: int = 300,
    snapshot_latency_ms: int = 100,
    answer_latency_ms: int = 100,
    mark_every_s: int = 10,
    measure_every_min: int = 10,
) -> dict[str, Any]:
    """Simulate the exchange and the app's book and scheduler; returns the figures (module
    docstring). `preroll_minutes`: default one round-robin cycle (addresses / polls a minute)."""
    started = time.perf_counter()
    rng = random.Random(seed)
    exchange, cumulative = _world(addresses, rng, alpha, flat_fraction)
    total_activity = cumulative[-1]
    names = [f"0x{i:040x}" for i in range(addresses)]
    index = {name: i for i, name in enumerate(names)}
    polls_per_s = budget_per_min / 2 / 60
    if preroll_minutes is None:
        preroll_minutes = addresses / (polls_per_s * 60)
    preroll_s = max(2, math.ceil(preroll_minutes * 60))
    first_polls = sorted(  # all answered by T0
        (T0_MS - preroll_s * 1000 + rng.randrange((preroll_s - 1) * 1000), i)
        for i in range(addresses)
    )
    book = PositionBook()
    scheduler = PollScheduler(rate_per_min=budget_per_min / 2)
    settle = getattr(book, "settle_checks", None)  # in the book's newer versions
    served: list[dict[str, tuple[Decimal, Decimal | None]]] = [{} for _ in range(addresses)]
    in_flight: dict[tuple[int, str], int] = {}  # (address, coin) -> its trades not delivered yet
    sigma = mark_sigma_per_hour / math.sqrt(3600)
    coin_names = [c.name for c in COINS]
    coin_weights = [c.weight for c in COINS]
    gap_rng = random.Random(seed * 7919)
    setup_s = time.perf_counter() - started

    events: list[tuple[int, int, int, Any]] = []
    seq = 0
    tid = 0
    trades = lost = skipped = polls = 0
    apply_s = 0.0
    rates: dict[str, Decimal] = {}
    funded_ms = 0
    samples: list[_Sample] = []
    next_first = 0
    measure_at = {m * 60 for m in range(0, minutes + 1, measure_every_min)}

    def pick() -> int:
        return min(bisect.bisect(cumulative, rng.random() * total_activity), addresses - 1)

    def execute(now_ms: int) -> Trade | None:
        """One trade between two accounts at the current marks, or None (nothing to trade)."""
        nonlocal tid
        taker = pick()
        positions = exchange.positions[taker]
        equity, notional = exchange.equity(taker)
        free_usd = equity * exchange.leverage[taker] - notional  # room left at its leverage
        name = exchange.main[taker]
        if rng.random() >= 0.7:
            name = rng.choices(coin_names, coin_weights)[0]
        closing = rng.random() < 0.3
        if name not in positions and (equity <= 0 or free_usd < MIN_TRADE_USD):
            if not positions:
                return None
            name, closing = rng.choice(list(positions)), True  # frees margin instead
        coin = BY_NAME[name]
        mark = exchange.marks[name]
        held = positions.get(name)
        current = 0.0 if held is None else float(held[0])
        if current and (equity <= 0 or closing):
            target = 0.0
        else:
            room_usd = max(0.0, free_usd + abs(current) * mark)
            keep = current and rng.random() < 0.85
            sign = (1 if current > 0 else -1) if keep else rng.choice((1, -1))
            want = exchange.scale[taker] * math.exp(rng.gauss(0.0, 0.5))
            target = sign * min(room_usd, want) / mark
        delta = target - current
        if abs(delta) * mark < MIN_TRADE_USD and target:  # dust may be closed
            return None
        side = 1 if delta > 0 else -1
        size = abs(delta)
        for _ in range(5):
            maker = pick()
            if maker == taker:
                continue
            m_equity, m_notional = exchange.equity(maker)
            m_held = exchange.positions[maker].get(name)
            m_szi = 0.0 if m_held is None else float(m_held[0])
            cap = max(0.0, m_equity * exchange.leverage[maker] - (m_notional - abs(m_szi) * mark))
            room = max(0.0, cap / mark + side * m_szi)
            if room * mark >= MIN_TRADE_USD:
                size = min(size, room)
                break
        else:
            return None
        sz = _size(size, coin.sz_decimals)
        if not sz:
            return None
        px = _on_tick(mark * (1 + side * 0.0002 * rng.random()), coin.tick)
        buyer, seller = (taker, maker) if side > 0 else (maker, taker)
        exchange.fill(buyer, name, sz, px, exchange.fees[buyer][0 if side > 0 else 1])
        exchange.fill(seller, name, -sz, px, exchange.fees[seller][1 if side > 0 else 0])
        tid += 1
        return Trade(
            coin=name,
            side="buy" if side > 0 else "sell",
            px=px,
            sz=sz,
            time_ms=now_ms,
            hash=HASH,
            tid=tid,
            buyer=names[buyer],
            seller=names[seller],
        )

    for second in range(-preroll_s, 60 * minutes + 1):
        now_ms = T0_MS + second * 1000
        end_ms = now_ms + 1000
        exchange.move_marks(sigma)
        hour_ms = now_ms // HOUR_MS * HOUR_MS
        if funding and hour_ms > now_ms - 1000:  # an hour settles in this step
            rates = {c: Decimal(f"{rng.gauss(1.25e-5, 1e-5):.8f}") for c in coin_names}
            exchange.fund(rates)
            funded_ms = hour_ms
        if second % mark_every_s == 0:
            book.set_market(dict(exchange.decimal_marks), RULES)
            if rates:
                book.apply_funding(
                    {c: (r, exchange.decimal_marks[c]) for c, r in rates.items()}, funded_ms
                )
        if second in measure_at:
            samples.append(_measure(exchange, book, names, served, in_flight))
        if second == 60 * minutes:
            break
        if second < 0:  # the pre-roll: every address polled once at its random moment
            batch: list[tuple[int, int]] = []
            while next_first < addresses and first_polls[next_first][0] < end_ms:
                batch.append(first_polls[next_first])
                next_first += 1
        else:
            chosen = scheduler.next_batch(now_ms, events_in_second(second, polls_per_s))
            batch = [(now_ms + k * 1000 // len(chosen), index[a]) for k, a in enumerate(chosen)]
        for sent_ms, i in batch:
            book.polling(names[i])
            seq += 1
            heapq.heappush(events, (sent_ms + snapshot_latency_ms, SNAP, seq, i))
        for _ in range(events_in_second(second, trade_rate)):
            seq += 1
            heapq.heappush(events, (now_ms + rng.randrange(1000), EXEC, seq, None))
        while events and events[0][0] < end_ms:
            at, kind, _, payload = heapq.heappop(events)
            if kind == EXEC:
                for _ in range(20):  # draws that make no trade are drawn again
                    trade = execute(at)
                    if trade is not None:
                        break
                    skipped += 1
                else:
                    continue
                trades += 1
                seq += 1
                if gap_rate and gap_rng.random() < gap_rate:
                    lost += 1
                    heapq.heappush(events, (at + stream_lag_ms, GAP, seq, trade))
                else:
                    heapq.heappush(events, (at + stream_lag_ms, DELIVER, seq, trade))
                    for party in (trade.buyer, trade.seller):
                        key = (index[party], trade.coin)
                        in_flight[key] = in_flight.get(key, 0) + 1
            elif kind == DELIVER:
                t = time.perf_counter()
                book.apply_trades((payload,))
                apply_s += time.perf_counter() - t
                for party in (payload.buyer, payload.seller):
                    key = (index[party], payload.coin)
                    if in_flight[key] == 1:
                        del in_flight[key]
                    else:
                        in_flight[key] -= 1
                usd = float(payload.px * payload.sz)
                scheduler.note_traded(payload.buyer, at, usd)
                scheduler.note_traded(payload.seller, at, usd)
            elif kind == GAP:
                holders = book.note_gap(payload.coin, payload.time_ms - 1, payload.time_ms)
                scheduler.note_estimated(holders)  # as PositionsJob.note_gap
            elif kind == SNAP:
                seq += 1
                state = exchange.state(payload, at)
                heapq.heappush(events, (at + answer_latency_ms, ANSWER, seq, (payload, state)))
            else:  # ANSWER
                i, state = payload
                book.reconcile(names[i], state, at)
                served[i] = {p.coin: (p.szi, p.liquidation_px) for p in state.positions}
                summary = summarize(state)
                scheduler.note_polled(names[i], at, summary.notional_usd, summary.min_liq_distance)
                if second >= 0:
                    polls += 1
        if settle is not None:
            settle(end_ms)

    shares = [s.shares() for s in samples]
    last = samples[-1]
    delivered = trades - lost
    figures: dict[str, Any] = {
        "addresses": addresses,
        "minutes": minutes,
        "preroll_minutes": round(preroll_s / 60, 1),
        "trade_rate": trade_rate,
        "budget_per_min": budget_per_min,
        "polls_per_min": budget_per_min / 2,
        "gap_rate": gap_rate,
        "seed": seed,
        "samples": len(samples),
        "trades": trades,
        "trades_lost": lost,
        "trade_draws_skipped": skipped,
        "polls_after_t0": polls,
        "open_usd_end": round(last.open_usd),
    }
    for key in shares[0]:
        figures[key] = round(sum(s[key] for s in shares) / len(shares), 4)
        figures[f"{key}_end"] = round(shares[-1][key], 4)
    figures["book_exact_but_wrong_usd_max"] = round(max(s.exact_wrong_usd for s in samples))
    exact, positions = book.exact_share()
    figures["book_exact_positions_end"] = [exact, positions]
    stats = book.stats
    figures["book_polls_with_drift"] = stats.polls_with_drift
    figures["book_polls"] = stats.polls
    figures["apply_trades_us_per_trade"] = round(apply_s / max(delivered, 1) * 1e6, 2)
    figures["setup_s"] = round(setup_s, 2)
    figures["elapsed_s"] = round(time.perf_counter() - started, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--trade-rate", type=float, default=35.0, help="trades a second")
    parser.add_argument("--budget-per-min", type=int, default=756)
    parser.add_argument("--gap-rate", type=float, default=0.0, help="share of trades lost")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--preroll-minutes", type=float, default=None, help="default: one round-robin cycle"
    )
    parser.add_argument("--measure-every-min", type=int, default=10)
    parser.add_argument("--no-funding", action="store_true")
    args = parser.parse_args()
    result = run(
        args.addresses,
        args.minutes,
        args.trade_rate,
        args.budget_per_min,
        args.gap_rate,
        args.seed,
        preroll_minutes=args.preroll_minutes,
        measure_every_min=args.measure_every_min,
        funding=not args.no_funding,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
