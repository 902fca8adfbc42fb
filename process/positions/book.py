"""The position book: every tracked address's perp positions and cash, kept current from the
trade stream between REST polls.

A position changes only through fills, and every fill is a public trade with both parties
(`users: [buyer, seller]`, API.md 5.4). So once a poll has given an account's state, each trade
of the account moves it exactly as the exchange does:
- size: the buyer's `szi += sz`, the seller's `szi -= sz`;
- entry price: size-weighted on an increase, unchanged on a decrease, the fill price on a flip
  or an opening, gone on a close;
- funding: every hour each position pays (or receives) `szi x oracle price x rate` from the
  latest published rates (`apply_funding`);
- cash: the cross account's raw USD (`crossMarginSummary.totalRawUsd`) moves by
  `-signed_sz * px - fee`, with the base-tier fee (taker 0.045 %, maker 0.015 %: the exchange
  does not publish an account's tier; polls correct it). An isolated position's raw USD moves
  instead, and the margin it takes from or gives back to the cross account is estimated at the
  position's leverage.

Polls reconcile (`reconcile`): the snapshot carries the exchange's `time`; trades at or before it
are in it, newer ones already applied are applied again on top of it (replays and backfills
arrive late and out of order; the book keeps each account's fills of the last 90 s).
Every reconcile measures the drift, what the book held against what the exchange served, a few
seconds later (`settle_checks`): the REST answer often overtakes the trades its snapshot holds.

Exactness: a position is *exact* when reconciled by a poll and moved only by trades seen since,
with no recorded gap of its coin in between (`note_gap` marks every account's coin uncertain
until its next poll); otherwise *estimated*.

Every change of a position's size is a `PositionChange` (entry, exit, flip, increase,
decrease; from a trade or found by a poll), handed to `on_change`.

Representation (memory: the book may hold every tracked address; CPU: every trade of them moves
two accounts): a size is an exact int of 1e-8 coin (`BookPosition.units`; `szi` is its exact
Decimal), so sums of fills compare equal to what a poll serves; prices, cash and margins are
floats (size-weighted entries and cash flows to ~1e-15 relative), converted to Decimal for the
margin formula and for `PositionChange`.

Liquidation prices come from the margin formula (`process.positions.margin`) over the book's
positions and cash at the latest marks (`set_market`, from every asset-context poll), computed
when asked (`views`, for the market-liquidation inference); before the first marks, the price
the last poll served.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NamedTuple

from process.positions.margin import MarginRule, account_margin
from utils.metrics import Sample
from validate import ClearinghouseState, Trade

ZERO = Decimal(0)
TAKER_FEE = Decimal("0.00045")
MAKER_FEE = Decimal("0.00015")
_TAKER_FEE = float(TAKER_FEE)
_MAKER_FEE = float(MAKER_FEE)
SIZE_SCALE = 10**8
"""A size is held as an int of 1 / SIZE_SCALE coin: exact for every size the exchange serves
(perp sizes have at most 5 decimals, `szDecimals`)."""
_SCALE = Decimal(SIZE_SCALE)
FILL_MEMORY_MS = 90_000
"""Fills are kept this long (exchange time) to be applied again over a newer snapshot: a poll's
snapshot is taken after its request left, and a request gives up within a minute (timeouts and
retries), so an older fill is in any snapshot still to come."""
CHECK_GRACE_MS = 5_000
"""A poll's answer can overtake trades its snapshot holds (the WebSocket lags behind the REST
answer): the book is compared with the snapshot this long after the poll, the trades that arrive
meanwhile counted on the book's side."""
MAX_FILLS_KEPT = 2000
"""At most this many within that time per account; past it the account is estimated until its
next poll."""

ChangeKind = Literal["entry", "exit", "flip", "increase", "decrease"]
Source = Literal["trade", "poll"]


class PositionChange(NamedTuple):
    address: str
    coin: str
    kind: ChangeKind
    szi_before: Decimal
    szi_after: Decimal
    px: Decimal | None  # the fill's price; for a poll, the served entry price
    time_ms: int
    source: Source
    tid: int | None = None


def to_units(szi: Decimal) -> int:
    """`szi` in 1 / SIZE_SCALE coin (beyond 8 decimals, which no served size has, truncated)."""
    return int(szi * _SCALE)


def to_szi(units: int) -> Decimal:
    """The exact size of `units`, without trailing zeros: `1.5`, `100`."""
    return Decimal(units) / _SCALE if units else ZERO


def to_decimal(value: float) -> Decimal:
    """The shortest Decimal that reads back as `value`."""
    return Decimal(repr(value))


def change_kind(before: int, after: int) -> ChangeKind | None:
    """How a position went from `before` to `after` (signed sizes), None if it did not."""
    if before == after:
        return None
    if before == 0:
        return "entry"
    if after == 0:
        return "exit"
    if (before > 0) != (after > 0):
        return "flip"
    return "increase" if abs(after) > abs(before) else "decrease"


@dataclass(slots=True)
class BookPosition:
    """One open position as the book holds it: the size exact, prices and USD as floats.
    `raw_usd` is set for isolated positions only (their own margin's raw USD, as
    `leverage.rawUsd` serves it)."""

    units: int  # the signed size in 1 / SIZE_SCALE coin
    entry_px: float | None
    leverage_type: str = "cross"
    leverage: int | None = None
    raw_usd: float | None = None
    max_leverage: int | None = None
    served_liq_px: float | None = None  # what the last poll served (None after a fill)

    @property
    def szi(self) -> Decimal:
        """The signed size, exact."""
        return to_szi(self.units)

    @property
    def szi_float(self) -> float:
        """The signed size as a float (for USD arithmetic): `float(szi)`, cheaper."""
        return self.units / SIZE_SCALE


Fill = tuple[int, str, int, Decimal, Decimal, bool, int]
"""A fill kept for a newer snapshot: (time_ms, coin, units (signed: > 0 bought), px, sz (the
trade's, unsigned), taker, tid). A plain tuple, not a NamedTuple: the garbage collector stops
tracking a plain tuple of atomic values, and the book keeps the last 90 s of every tracked
account's fills (as NamedTuples, full collections over them cost ~2.5 us a trade in
`bench.trade_path`)."""

_new = tuple.__new__
"""Makes a NamedTuple from a tuple of all its fields, at half the cost of its constructor (a
Python function): `PositionChange` and the margin formula's inputs on the trade path."""


@dataclass(slots=True)
class Account:
    """What the book knows of one address since its first poll."""

    positions: dict[str, BookPosition]
    cross_raw_usd: float
    snapshot_ms: int  # exchange time of the last snapshot: trades at or before it are in it
    # Both made on first use (an empty set is ~216 bytes): most of the book's accounts have
    # neither (a quiet account, no recorded gap since its poll).
    fills: list[Fill] | None = None  # applied in the last FILL_MEMORY_MS, about in time order
    uncertain: set[str] | None = None  # coins a recorded gap may have moved
    overflowed: bool = False  # more fills than kept: estimated until the next poll
    cash_estimated: bool = False  # isolated margin moved at an estimated leverage
    liq_cache: dict[str, Decimal | None] | None = None  # from the formula; None: to compute
    liq_version: tuple[int, int] = (-1, -1)  # the book's (market, rules) versions it used

    def exact(self, coin: str) -> bool:
        return not self.overflowed and (self.uncertain is None or coin not in self.uncertain)


@dataclass
class Drift:
    """What one reconcile found: the book's sizes against the exchange's at the snapshot."""

    coins: int  # coins whose size differed
    usd: float  # sum of |size difference| x price (entry, or the served mark)


@dataclass(slots=True)
class DriftCheck:
    """A poll's snapshot against what the book held, until `due_ms` (wall clock)."""

    after_ms: int  # the snapshot the book's figures started from
    snapshot_ms: int
    due_ms: int
    held: dict[str, int]  # coin -> the book's size (units) as of the snapshot
    served: dict[str, int]  # coin -> the snapshot's size (units)
    prices: dict[str, float]  # coin -> an entry price, for the USD of a difference


@dataclass
class BookStats:
    trades_applied: int = 0  # fills moved (each trade moves up to two accounts)
    polls: int = 0  # reconciles of an account already in the book
    polls_with_drift: int = 0
    drift_usd: float = 0.0
    late_skipped: int = 0  # fills at or before a snapshot that already held them
    late_credited: int = 0  # of which newer than the book's previous figures (see _late)


class PositionBook:
    def __init__(self, on_change: Callable[[PositionChange], None] | None = None) -> None:
        self.accounts: dict[str, Account] = {}
        self.on_change = on_change
        self.stats = BookStats()
        self.marks: Mapping[str, Decimal] = {}
        self.rules: Mapping[str, MarginRule] = {}
        self._first_polls: dict[str, list[Fill]] = {}  # address -> its fills meanwhile
        self._checks: dict[str, DriftCheck] = {}  # address -> its last poll's, until settled
        self.funded_ms = 0  # the last funding settlement applied
        self._versions = (0, 0)  # (marks, rules): bumped by set_market, for the liq_cache

    def set_market(self, marks: Mapping[str, Decimal], rules: Mapping[str, MarginRule]) -> None:
        """The latest mark prices and margin rules (every asset-context poll)."""
        market, rules_version = self._versions
        self._versions = (market + 1, rules_version + (rules != self.rules))
        self.marks, self.rules = marks, rules

    def set_mark(self, coin: str, mark: Decimal) -> None:
        """One coin's mark between polls (a live `activeAssetCtx`); the rules stay."""
        market, rules_version = self._versions
        self._versions = (market + 1, rules_version)
        self.marks = {**self.marks, coin: mark}  # the caller's mapping of set_market is not ours

    def views(self, address: str) -> Mapping[str, LiquidationView]:
        """The account's open positions as the liquidation inference reads them: the size now,
        the liquidation price computed only if asked for (on the trade path: cheap)."""
        account = self.accounts.get(address)
        if account is None or not account.positions:
            return _NO_VIEWS
        return _Views(self, account)

    def liquidation_prices(self, account: Account) -> dict[str, Decimal | None]:
        """Per open position, the liquidation price at the latest marks (the margin formula);
        the served one where a mark or rule is missing.

        Kept until the account changes (a fill, a poll, funding) or, for an account with more
        than one cross position (whose prices depend on each other's marks), the marks move:
        an isolated or a lone cross position's price does not depend on the mark."""
        cached = account.liq_cache
        if cached is not None:
            market, rules_version = self._versions
            if account.liq_version[1] == rules_version and (
                account.liq_version[0] == market or _cross_count(account) < 2
            ):
                return cached
        positions, marks, rules = account.positions, self.marks, self.rules
        if all(coin in marks and coin in rules for coin in positions):
            try:
                margin = account_margin(
                    positions_for_margin(positions), to_decimal(account.cross_raw_usd), marks, rules
                )
            except ValueError:  # an isolated position whose margin the poll did not give
                pass
            else:
                prices = {p.coin: p.liquidation_px for p in margin.positions}
                account.liq_cache, account.liq_version = prices, self._versions
                return prices
        return {coin: _decimal(p.served_liq_px) for coin, p in positions.items()}

    def __contains__(self, address: object) -> bool:
        return address in self.accounts

    def __len__(self) -> int:
        return len(self.accounts)

    def positions_of(self, address: str) -> Mapping[str, BookPosition]:
        account = self.accounts.get(address)
        return {} if account is None else account.positions

    def forget(self, address: str) -> None:
        self.accounts.pop(address, None)
        self._checks.pop(address, None)

    # -- trades ----------------------------------------------------------------------------------

    def apply_trades(self, trades: Iterable[Trade]) -> None:
        """Move both parties of each trade that the book tracks (the hot path: two lookups a
        trade for untracked parties)."""
        accounts = self.accounts
        first_polls = self._first_polls
        for trade in trades:
            buyer = accounts.get(trade.buyer)
            seller = accounts.get(trade.seller)
            if buyer is None and seller is None:
                awaited = first_polls and (
                    trade.buyer in first_polls or trade.seller in first_polls
                )
                if not awaited:
                    continue  # nobody the book holds or waits for
            units = to_units(trade.sz)
            px = float(trade.px)
            taker_bought = trade.side == "buy"
            if buyer is not None:
                self._fill(trade.buyer, buyer, trade, units, px, taker_bought)
            elif first_polls:  # a party whose first poll is on its way
                self._keep_for_first_poll(trade.buyer, trade, units, taker_bought)
            if seller is not None:
                self._fill(trade.seller, seller, trade, -units, px, not taker_bought)
            elif first_polls:
                self._keep_for_first_poll(trade.seller, trade, -units, not taker_bought)

    def polling(self, address: str) -> None:
        """A poll of `address` is on its way. For an address not in the book yet, its trades
        from now on are kept, so that those newer than the snapshot the poll brings are applied
        on top of it (`reconcile`); `poll_failed` forgets them."""
        if address not in self.accounts:
            self._first_polls.setdefault(address, [])

    def poll_failed(self, address: str) -> None:
        self._first_polls.pop(address, None)

    def _fill(
        self, address: str, account: Account, trade: Trade, units: int, px: float, taker: bool
    ) -> None:
        time_ms = trade.time_ms
        if time_ms <= account.snapshot_ms:
            self._late(address, trade, units)
            return
        fill = (time_ms, trade.coin, units, trade.px, trade.sz, taker, trade.tid)
        self._apply(address, account, fill, px)

    def _apply(self, address: str, account: Account, fill: Fill, px: float) -> None:
        """Keep `fill` (at `px`, its price as a float) and move the account by it."""
        time_ms, coin, units, fill_px, sz, taker, tid = fill
        fills = account.fills
        if fills is None:
            account.fills = [fill]
        else:
            if fills and fills[0][0] < time_ms - FILL_MEMORY_MS:
                _forget(fills, time_ms - FILL_MEMORY_MS)
            if len(fills) < MAX_FILLS_KEPT:
                fills.append(fill)
            else:
                account.overflowed = True
        self.stats.trades_applied += 1
        before, kind = _move(account, coin, units, px, taker)
        if self.on_change is not None:
            szi_before = to_szi(before)
            szi_after = szi_before + sz if units > 0 else szi_before - sz
            self.on_change(
                _new(
                    PositionChange,
                    (address, coin, kind, szi_before, szi_after, fill_px, time_ms, "trade", tid),
                )
            )

    def _keep_for_first_poll(self, address: str, trade: Trade, units: int, taker: bool) -> None:
        kept = self._first_polls.get(address)
        if kept is not None and len(kept) < MAX_FILLS_KEPT:
            kept.append((trade.time_ms, trade.coin, units, trade.px, trade.sz, taker, trade.tid))

    # -- polls -----------------------------------------------------------------------------------

    def reconcile(self, address: str, state: ClearinghouseState, polled_ms: int) -> None:
        """Take the exchange's state of `address` (its `time`, else `polled_ms`) and apply again
        the fills newer than it. For an address already in the book, what the book held is
        compared with the snapshot `CHECK_GRACE_MS` later (`settle_checks`)."""
        snapshot_ms = state.time_ms if state.time_ms is not None else polled_ms
        positions: dict[str, BookPosition] = {}
        for p in state.positions:
            if p.szi:  # coin and type interned: one string for the whole book
                positions[sys.intern(p.coin)] = BookPosition(
                    to_units(p.szi),
                    _float(p.entry_px),
                    sys.intern(p.leverage_type),
                    p.leverage,
                    _float(p.raw_usd),
                    p.max_leverage,
                    _float(p.liquidation_px),
                )
        fresh = Account(positions, float(state.cross_margin_summary.total_raw_usd), snapshot_ms)
        old = self.accounts.get(address)
        first = self._first_polls.pop(address, None)
        served = {coin: p.units for coin, p in positions.items()}
        if old is not None and old.fills:
            kept = [fill for fill in sorted(old.fills) if fill[0] > snapshot_ms]
            for _, coin, units, px, _, taker, _ in kept:
                _move(fresh, coin, units, float(px), taker)
            fresh.fills = kept or None
        self.accounts[address] = fresh
        if old is None:
            for fill in sorted(first or ()):  # traded while its first poll was on its way
                if fill[0] > snapshot_ms:
                    self._apply(address, fresh, fill, float(fill[3]))
            return
        self._settle(address)  # a check still open from the previous poll
        held = {coin: p.units for coin, p in old.positions.items()}
        for time_ms, coin, units, *_ in old.fills or ():  # the book as of the snapshot:
            if time_ms > snapshot_ms:  # without the newer fills
                held[coin] = held.get(coin, 0) - units
        prices = {c: p.entry_px for c, p in old.positions.items() if p.entry_px}
        prices.update((c, p.entry_px) for c, p in positions.items() if p.entry_px)
        self._checks[address] = DriftCheck(
            old.snapshot_ms, snapshot_ms, polled_ms + CHECK_GRACE_MS, held, served, prices
        )
        self.stats.polls += 1

    def settle_checks(self, now_ms: int | None = None) -> list[tuple[str, Drift]]:
        """Compare the book with the snapshots of the polls made `CHECK_GRACE_MS` before
        `now_ms` (all of them if None, at stop): each difference left is drift, counted and
        reported as a change found by the poll. Returns the drift of each check settled."""
        settled: list[tuple[str, Drift]] = []
        for address, check in list(self._checks.items()):
            if now_ms is not None and check.due_ms > now_ms:
                break  # in the order of the polls
            drift = self._settle(address)
            if drift is not None:
                settled.append((address, drift))
        return settled

    def _settle(self, address: str) -> Drift | None:
        check = self._checks.pop(address, None)
        if check is None:
            return None
        drift = Drift(0, 0.0)
        for coin in sorted(set(check.held) | set(check.served)):
            before = check.held.get(coin, 0)
            after = check.served.get(coin, 0)
            kind = change_kind(before, after)
            if kind is None:
                continue
            price = check.prices.get(coin, 0.0)
            drift.coins += 1
            drift.usd += abs(after - before) / SIZE_SCALE * price
            if self.on_change is not None:
                self.on_change(
                    PositionChange(
                        address,
                        coin,
                        kind,
                        to_szi(before),
                        to_szi(after),
                        to_decimal(price) if price else None,
                        check.snapshot_ms,
                        "poll",
                    )
                )
        if drift.coins:
            self.stats.polls_with_drift += 1
            self.stats.drift_usd += drift.usd
        return drift

    def _late(self, address: str, trade: Trade, units: int) -> None:
        """A fill at or before the account's snapshot: the snapshot holds it. If it is newer
        than the snapshot before, the poll's answer overtook it (the WebSocket lags): it moved
        the position since the book's previous figures, so it is a change, and it counts on the
        book's side of the open check."""
        check = self._checks.get(address)
        if check is None or trade.time_ms <= check.after_ms:
            self.stats.late_skipped += 1
            return
        before = check.held.get(trade.coin, 0)
        after = before + units
        check.held[trade.coin] = after
        self.stats.late_credited += 1
        kind = change_kind(before, after)
        if kind is not None and self.on_change is not None:
            self.on_change(
                PositionChange(
                    address,
                    trade.coin,
                    kind,
                    to_szi(before),
                    to_szi(after),
                    trade.px,
                    trade.time_ms,
                    "trade",
                    trade.tid,
                )
            )

    # -- funding ---------------------------------------------------------------------------------

    def apply_funding(self, rates: Mapping[str, tuple[Decimal, Decimal]], hour_ms: int) -> int:
        """The hourly settlement at `hour_ms`: each position pays `szi x oracle price x rate`
        (longs pay a positive rate, shorts receive it) from the cross cash, or its isolated
        margin; `rates` is coin -> (hourly rate, oracle price), the latest published (an
        estimate of the settled one: polls correct it). Accounts whose snapshot is newer already
        hold it; an hour is applied once. Returns how many positions paid or received."""
        if hour_ms <= self.funded_ms:
            return 0
        self.funded_ms = hour_ms
        per_unit = {
            coin: float(px) * float(rate) / SIZE_SCALE for coin, (rate, px) in rates.items()
        }
        paid = 0
        for account in self.accounts.values():
            if account.snapshot_ms >= hour_ms:
                continue
            for coin, position in account.positions.items():
                usd = per_unit.get(coin)
                if usd is None:
                    continue
                payment = position.units * usd
                if position.leverage_type == "isolated" and position.raw_usd is not None:
                    position.raw_usd -= payment
                else:
                    account.cross_raw_usd -= payment
                account.cash_estimated = True
                account.liq_cache = None
                paid += 1
        return paid

    # -- gaps ------------------------------------------------------------------------------------

    def note_gap(self, coin: str, after_ms: int, before_ms: int) -> list[str]:
        """Trades of `coin` in (after_ms, before_ms] may be missing: every account polled before
        `before_ms` holds an estimate of `coin` until its next poll. Returns the addresses of
        those holding a `coin` position (the known sizes a missing fill may have moved, which the
        poll scheduler weighs more: `PollScheduler.note_estimated`)."""
        holders: list[str] = []
        for address, account in self.accounts.items():
            if account.snapshot_ms < before_ms:
                if account.uncertain is None:
                    account.uncertain = set()
                account.uncertain.add(coin)
                if coin in account.positions:
                    holders.append(address)
        return holders

    def samples(self) -> list[Sample]:
        exact, total = self.exact_share()
        stats = self.stats
        return [
            Sample("book_accounts", "gauge", "accounts the position book holds", len(self)),
            Sample("book_positions", "gauge", "open positions in the book", total),
            Sample(
                "book_positions_exact",
                "gauge",
                "open positions reconciled by a poll and moved only by trades seen since",
                exact,
            ),
            Sample(
                "book_fills_total", "counter", "fills that moved the book", stats.trades_applied
            ),
            Sample("book_polls_total", "counter", "polls of accounts in the book", stats.polls),
            Sample(
                "book_polls_drift_total",
                "counter",
                "polls that found the book's sizes different from the exchange's",
                stats.polls_with_drift,
            ),
            Sample(
                "book_drift_usd_total",
                "counter",
                "USD of the size differences polls found",
                stats.drift_usd,
            ),
        ]

    def exact_share(self) -> tuple[int, int]:
        """(exact, all) open positions."""
        exact = total = 0
        for account in self.accounts.values():
            for coin in account.positions:
                total += 1
                exact += account.exact(coin)
        return exact, total


class LiquidationView:
    """`process.liquidations.PositionView` of one position in the book."""

    __slots__ = ("_account", "_book", "coin")

    def __init__(self, book: PositionBook, account: Account, coin: str) -> None:
        self._book, self._account, self.coin = book, account, coin

    @property
    def szi(self) -> Decimal:
        return self._account.positions[self.coin].szi

    @property
    def liquidation_px(self) -> Decimal | None:
        return self._book.liquidation_prices(self._account).get(self.coin)


class _Views(Mapping[str, LiquidationView]):
    """An account's positions as `LiquidationView`s, made only for the coin asked for."""

    __slots__ = ("_account", "_book")

    def __init__(self, book: PositionBook, account: Account) -> None:
        self._book, self._account = book, account

    def __getitem__(self, coin: str) -> LiquidationView:
        if coin not in self._account.positions:
            raise KeyError(coin)
        return LiquidationView(self._book, self._account, coin)

    def get(  # type: ignore[override]
        self, coin: str, default: LiquidationView | None = None
    ) -> LiquidationView | None:
        """Mapping's, without its try/except: the detector's call on the trade path."""
        if coin not in self._account.positions:
            return default
        return LiquidationView(self._book, self._account, coin)

    def __iter__(self) -> Iterator[str]:
        return iter(self._account.positions)

    def __len__(self) -> int:
        return len(self._account.positions)


_NO_VIEWS: Mapping[str, LiquidationView] = {}


class _MarginInput(NamedTuple):
    coin: str
    szi: Decimal
    leverage_type: str
    raw_usd: Decimal | None


def _cross_count(account: Account) -> int:
    return sum(p.leverage_type != "isolated" for p in account.positions.values())


def positions_for_margin(positions: Mapping[str, BookPosition]) -> list[_MarginInput]:
    """The positions as the margin formula (Decimal) takes them."""
    return [
        _new(_MarginInput, (c, p.szi, p.leverage_type, _decimal(p.raw_usd)))
        for c, p in positions.items()
    ]


def _move(
    account: Account, coin: str, units: int, px: float, taker: bool
) -> tuple[int, ChangeKind]:
    """Apply one fill of `units` (> 0 bought) at `px` to `account`: (size before, the change)."""
    positions = account.positions
    position = positions.get(coin)
    account.liq_cache = None
    notional = units * px / SIZE_SCALE
    flow = -notional - abs(notional) * (_TAKER_FEE if taker else _MAKER_FEE)  # to raw USD
    if position is None:
        positions[sys.intern(coin)] = BookPosition(units, px)
        account.cross_raw_usd += flow
        return 0, "entry"
    before = position.units
    after = before + units
    position.served_liq_px = None  # the served price no longer holds
    if position.leverage_type == "isolated" and position.raw_usd is not None:
        position.raw_usd += flow
        _move_isolated_margin(account, position, before, after, px)
    else:
        account.cross_raw_usd += flow
    kind: ChangeKind
    if after == 0:
        del positions[coin]
        return before, "exit"
    if (before > 0) != (after > 0):
        position.entry_px = px  # a flip starts a new entry
        kind = "flip"
    elif abs(after) > abs(before):
        entry = position.entry_px
        if entry is not None:  # size-weighted
            position.entry_px = (abs(before) * entry + abs(units) * px) / abs(after)
        kind = "increase"
    else:
        kind = "decrease"
    position.units = after
    return before, kind


def _move_isolated_margin(
    account: Account, position: BookPosition, before: int, after: int, px: float
) -> None:
    """An isolated position takes margin from the cross account when it grows and gives it back
    when it shrinks; the amount is estimated at its leverage (polls correct it)."""
    moved = (abs(after) - abs(before)) * px / (SIZE_SCALE * (position.leverage or 1))
    position.raw_usd = (position.raw_usd or 0.0) + moved
    account.cross_raw_usd -= moved
    account.cash_estimated = True


def _forget(fills: list[Fill], before_ms: int) -> None:
    """Drop the fills older than `before_ms` from the front of `fills`."""
    old = 0
    for fill in fills:
        if fill[0] >= before_ms:
            break
        old += 1
    del fills[:old]


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else to_decimal(value)
