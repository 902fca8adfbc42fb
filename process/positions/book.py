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

Liquidation prices come from the margin formula (`process.positions.margin`) over the book's
positions and cash at the latest marks (`set_market`, from every asset-context poll), computed
when asked (`views`, for the market-liquidation inference); before the first marks, the price
the last poll served.
"""

from __future__ import annotations

from collections import deque
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


def change_kind(before: Decimal, after: Decimal) -> ChangeKind | None:
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
    """One open position as the book holds it. `raw_usd` is set for isolated positions only
    (their own margin's raw USD, as `leverage.rawUsd` serves it)."""

    szi: Decimal
    entry_px: Decimal | None
    leverage_type: str = "cross"
    leverage: int | None = None
    raw_usd: Decimal | None = None
    max_leverage: int | None = None
    served_liq_px: Decimal | None = None  # what the last poll served (None after a fill)


class Fill(NamedTuple):
    time_ms: int
    coin: str
    signed_sz: Decimal  # > 0 bought
    px: Decimal
    taker: bool
    tid: int


@dataclass(slots=True)
class Account:
    """What the book knows of one address since its first poll."""

    positions: dict[str, BookPosition]
    cross_raw_usd: Decimal
    snapshot_ms: int  # exchange time of the last snapshot: trades at or before it are in it
    # Both made on first use: an empty deque is ~760 bytes and an empty set ~216, and most of
    # the book's accounts have neither (a quiet account, no recorded gap since its poll).
    fills: deque[Fill] | None = None  # applied in the last FILL_MEMORY_MS
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
    held: dict[str, Decimal]  # coin -> the book's size as of the snapshot
    served: dict[str, Decimal]  # coin -> the snapshot's size
    prices: dict[str, Decimal]  # coin -> an entry price, for the USD of a difference


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
                    positions_for_margin(positions), account.cross_raw_usd, marks, rules
                )
            except ValueError:  # an isolated position whose margin the poll did not give
                pass
            else:
                prices = {p.coin: p.liquidation_px for p in margin.positions}
                account.liq_cache, account.liq_version = prices, self._versions
                return prices
        return {coin: p.served_liq_px for coin, p in positions.items()}

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
            if buyer is None and seller is None and not first_polls:
                continue
            taker_bought = trade.side == "buy"
            if buyer is not None:
                self._fill(trade.buyer, buyer, trade, trade.sz, taker_bought)
            elif first_polls:  # a party whose first poll is on its way
                self._keep_for_first_poll(trade.buyer, trade, trade.sz, taker_bought)
            if seller is not None:
                self._fill(trade.seller, seller, trade, -trade.sz, not taker_bought)
            elif first_polls:
                self._keep_for_first_poll(trade.seller, trade, -trade.sz, not taker_bought)

    def polling(self, address: str) -> None:
        """A poll of `address` is on its way. For an address not in the book yet, its trades
        from now on are kept, so that those newer than the snapshot the poll brings are applied
        on top of it (`reconcile`); `poll_failed` forgets them."""
        if address not in self.accounts:
            self._first_polls.setdefault(address, [])

    def poll_failed(self, address: str) -> None:
        self._first_polls.pop(address, None)

    def _fill(
        self, address: str, account: Account, trade: Trade, signed_sz: Decimal, taker: bool
    ) -> None:
        if trade.time_ms <= account.snapshot_ms:
            self._late(address, trade, signed_sz)
            return
        self._apply(
            address, account, Fill(trade.time_ms, trade.coin, signed_sz, trade.px, taker, trade.tid)
        )

    def _apply(self, address: str, account: Account, fill: Fill) -> None:
        fills = account.fills
        if fills is None:
            fills = account.fills = deque()
        forget_before = fill.time_ms - FILL_MEMORY_MS
        while fills and fills[0].time_ms < forget_before:
            fills.popleft()
        if len(fills) < MAX_FILLS_KEPT:
            fills.append(fill)
        else:
            account.overflowed = True
        self.stats.trades_applied += 1
        change = _move(account, fill)
        if change is not None and self.on_change is not None:
            before, after = change
            kind = change_kind(before, after)
            assert kind is not None
            self.on_change(
                PositionChange(
                    address,
                    fill.coin,
                    kind,
                    before,
                    after,
                    fill.px,
                    fill.time_ms,
                    "trade",
                    fill.tid,
                )
            )

    def _keep_for_first_poll(
        self, address: str, trade: Trade, signed_sz: Decimal, taker: bool
    ) -> None:
        kept = self._first_polls.get(address)
        if kept is not None and len(kept) < MAX_FILLS_KEPT:
            kept.append(Fill(trade.time_ms, trade.coin, signed_sz, trade.px, taker, trade.tid))

    # -- polls -----------------------------------------------------------------------------------

    def reconcile(self, address: str, state: ClearinghouseState, polled_ms: int) -> None:
        """Take the exchange's state of `address` (its `time`, else `polled_ms`) and apply again
        the fills newer than it. For an address already in the book, what the book held is
        compared with the snapshot `CHECK_GRACE_MS` later (`settle_checks`)."""
        snapshot_ms = state.time_ms if state.time_ms is not None else polled_ms
        fresh = Account(
            positions={
                p.coin: BookPosition(
                    p.szi,
                    p.entry_px,
                    p.leverage_type,
                    p.leverage,
                    p.raw_usd,
                    p.max_leverage,
                    p.liquidation_px,
                )
                for p in state.positions
                if p.szi != 0
            },
            cross_raw_usd=state.cross_margin_summary.total_raw_usd,
            snapshot_ms=snapshot_ms,
        )
        old = self.accounts.get(address)
        first = self._first_polls.pop(address, None)
        served = {coin: p.szi for coin, p in fresh.positions.items()}
        if old is not None and old.fills:
            kept = fresh.fills = deque()
            for fill in sorted(old.fills):
                if fill.time_ms > snapshot_ms:
                    kept.append(fill)
                    _move(fresh, fill)
        self.accounts[address] = fresh
        if old is None:
            for fill in sorted(first or ()):  # traded while its first poll was on its way
                if fill.time_ms > snapshot_ms:
                    self._apply(address, fresh, fill)
            return
        self._settle(address)  # a check still open from the previous poll
        held = {coin: p.szi for coin, p in old.positions.items()}
        for fill in old.fills or ():  # the book as of the snapshot: without the newer fills
            if fill.time_ms > snapshot_ms:
                held[fill.coin] = held.get(fill.coin, ZERO) - fill.signed_sz
        prices = {c: p.entry_px for c, p in old.positions.items() if p.entry_px}
        prices.update((c, p.entry_px) for c, p in fresh.positions.items() if p.entry_px)
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
            before = check.held.get(coin, ZERO)
            after = check.served.get(coin, ZERO)
            kind = change_kind(before, after)
            if kind is None:
                continue
            price = check.prices.get(coin, ZERO)
            drift.coins += 1
            drift.usd += float(abs(after - before) * price)
            if self.on_change is not None:
                self.on_change(
                    PositionChange(
                        address, coin, kind, before, after, price or None, check.snapshot_ms, "poll"
                    )
                )
        if drift.coins:
            self.stats.polls_with_drift += 1
            self.stats.drift_usd += drift.usd
        return drift

    def _late(self, address: str, trade: Trade, signed_sz: Decimal) -> None:
        """A fill at or before the account's snapshot: the snapshot holds it. If it is newer
        than the snapshot before, the poll's answer overtook it (the WebSocket lags): it moved
        the position since the book's previous figures, so it is a change, and it counts on the
        book's side of the open check."""
        check = self._checks.get(address)
        if check is None or trade.time_ms <= check.after_ms:
            self.stats.late_skipped += 1
            return
        before = check.held.get(trade.coin, ZERO)
        after = before + signed_sz
        check.held[trade.coin] = after
        self.stats.late_credited += 1
        kind = change_kind(before, after)
        if kind is not None and self.on_change is not None:
            self.on_change(
                PositionChange(
                    address,
                    trade.coin,
                    kind,
                    before,
                    after,
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
        paid = 0
        for account in self.accounts.values():
            if account.snapshot_ms >= hour_ms:
                continue
            for coin, position in account.positions.items():
                rate = rates.get(coin)
                if rate is None:
                    continue
                payment = position.szi * rate[1] * rate[0]
                if position.leverage_type == "isolated" and position.raw_usd is not None:
                    position.raw_usd -= payment
                else:
                    account.cross_raw_usd -= payment
                account.cash_estimated = True
                account.liq_cache = None
                paid += 1
        return paid

    # -- gaps ------------------------------------------------------------------------------------

    def note_gap(self, coin: str, after_ms: int, before_ms: int) -> int:
        """Trades of `coin` in (after_ms, before_ms] may be missing: every account polled before
        `before_ms` holds an estimate of `coin` until its next poll. Returns how many."""
        touched = 0
        for account in self.accounts.values():
            if account.snapshot_ms < before_ms:
                if account.uncertain is None:
                    account.uncertain = set()
                account.uncertain.add(coin)
                touched += 1
        return touched

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
    return [_MarginInput(c, p.szi, p.leverage_type, p.raw_usd) for c, p in positions.items()]


def _move(account: Account, fill: Fill) -> tuple[Decimal, Decimal] | None:
    """Apply one fill to `account`; (size before, size after) if the size changed."""
    coin, signed_sz, px = fill.coin, fill.signed_sz, fill.px
    position = account.positions.get(coin)
    before = ZERO if position is None else position.szi
    after = before + signed_sz
    account.liq_cache = None
    notional = signed_sz * px
    flow = -notional - abs(notional) * (TAKER_FEE if fill.taker else MAKER_FEE)  # to raw USD
    if position is None:
        position = BookPosition(after, px)
        account.positions[coin] = position
    position.served_liq_px = None  # the served price no longer holds
    if position.leverage_type == "isolated" and position.raw_usd is not None:
        position.raw_usd += flow
        _move_isolated_margin(account, position, before, after, px)
    else:
        account.cross_raw_usd += flow
    if after == 0:
        del account.positions[coin]
        return before, after
    if before == 0 or (before > 0) != (after > 0):
        position.entry_px = px  # an opening or a flip starts a new entry
    elif abs(after) > abs(before) and position.entry_px is not None:
        cost = abs(before) * position.entry_px + abs(signed_sz) * px
        position.entry_px = cost / abs(after)
    position.szi = after
    return before, after


def _move_isolated_margin(
    account: Account, position: BookPosition, before: Decimal, after: Decimal, px: Decimal
) -> None:
    """An isolated position takes margin from the cross account when it grows and gives it back
    when it shrinks; the amount is estimated at its leverage (polls correct it)."""
    leverage = Decimal(position.leverage or 1)
    moved = (abs(after) - abs(before)) * px / leverage
    position.raw_usd = (position.raw_usd or ZERO) + moved
    account.cross_raw_usd -= moved
    account.cash_estimated = True
