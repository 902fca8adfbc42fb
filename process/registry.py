"""The trader addresses the positions job polls, kept in SQLite so they survive restarts.

Addresses come from the trade stream (`users` of each trade). Everything lives in memory (the
scheduler works from memory); SQLite (WAL, one connection, used from the asyncio thread) is the
durable copy. Writes are buffered and flushed in one transaction, at most about once per second
or on `flush()`/`close()`, so a crash loses at most the last second of observations, which the
trade stream and the next polls restore.

Expiry rule: an address leaves when it has not traded, and was not seen holding a position by a
successful poll, for `inactive_ms` (7 days by default), *and* its last successful poll found no
open position. An address known to hold positions stays however long it is quiet: those are the
positions the job exists to watch. An address never polled successfully counts as flat; if it
trades again the stream brings it back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from validate import ClearinghouseState

Side = Literal["long", "short"]
Held = set[tuple[str, str]]
_FLAT: frozenset[tuple[str, str]] = frozenset()

INACTIVE_MS = 7 * 86_400_000
"""Default: addresses quiet (and flat) this long leave the poll set."""
TYPICAL_HALF_LIFE_MS = 86_400_000
"""Half-life of the remembered typical notional of an address (see `decayed_peak`)."""
BACKOFF_BASE_MS = 30_000
BACKOFF_CAP_MS = 3_600_000
FLUSH_INTERVAL_S = 1.0
TRADE_PERSIST_MS = 3_600_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS addresses (
    address TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_trade_ms INTEGER,
    last_poll_ms INTEGER,
    last_held_ms INTEGER,
    notional_usd REAL NOT NULL DEFAULT 0,
    typical_usd REAL NOT NULL DEFAULT 0,
    min_liq_distance REAL,
    held TEXT NOT NULL DEFAULT '[]',
    failures INTEGER NOT NULL DEFAULT 0,
    next_allowed_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID
"""
_COLUMNS = (
    "address, first_seen_ms, last_trade_ms, last_poll_ms, last_held_ms, notional_usd, "
    "typical_usd, min_liq_distance, held, failures, next_allowed_ms"
)
_UPSERT = f"INSERT OR REPLACE INTO addresses ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def backoff_ms(failures: int, base_ms: int = BACKOFF_BASE_MS, cap_ms: int = BACKOFF_CAP_MS) -> int:
    """Wait after `failures` consecutive failures: base, 2x base, 4x base ... up to `cap_ms`."""
    if failures <= 0:
        return 0
    return min(cap_ms, base_ms << min(failures - 1, 40))


def decayed_peak(
    peak: float,
    peak_ms: int | None,
    notional: float,
    now_ms: int,
    half_life_ms: int = TYPICAL_HALF_LIFE_MS,
) -> float:
    """The largest notional seen, halving every `half_life_ms`: what a trader typically holds.

    A whale that just closed is likely to open big again; the scheduler keeps watching it.
    """
    if peak_ms is not None and now_ms > peak_ms:
        peak *= 0.5 ** ((now_ms - peak_ms) / half_life_ms)
    return max(notional, peak)


@dataclass(slots=True)
class AddressState:
    """Everything known about one address, in one place: what its polls and trades told (kept
    in SQLite by `AddressRegistry`) and where it waits for its next poll (kept by the poll
    scheduler, `process.poll_scheduler`, in the same object: no second copy of the facts).
    Times in ms (UTC), notional in USD."""

    address: str
    first_seen_ms: int
    last_trade_ms: int | None = None
    last_poll_ms: int | None = None
    """Last successful poll."""
    last_held_ms: int | None = None
    """Last successful poll that found an open position."""
    notional_usd: float = 0.0
    typical_usd: float = 0.0
    """Decayed peak notional (`decayed_peak`)."""
    min_liq_distance: float | None = None
    """Smallest |mark - liq| / mark among its positions at the last poll; None: none reachable."""
    held: frozenset[tuple[str, str]] = frozenset()
    """(coin, side) pairs open at the last successful poll; the shared empty frozenset for the
    flat majority (an empty set per address would cost ~40 MB at 200k addresses)."""
    failures: int = 0
    """Consecutive failed polls."""
    next_allowed_ms: int = 0
    """Do not poll before this time (backoff after failures)."""
    saved_trade_ms: int | None = None
    """`last_trade_ms` as last written to the file (not itself stored)."""
    traded_usd: float = 0.0
    """Largest notional traded since the last poll (the trade stream's hint; not stored)."""
    estimated: bool = False
    """A recorded gap may have moved its positions since the last poll (not stored)."""
    # The poll scheduler's bookkeeping (not stored): which queue the address is in (0: none),
    # the token of its one live queue item, its weight class and sqrt(weight), a watch boost.
    queue: int = 0
    token: int = 0
    weight_class: int = 0
    weight_root: float = 0.0
    boost: float = 1.0

    def polled(self, time_ms: int, notional_usd: float, min_liq_distance: float | None) -> None:
        """A successful poll found `notional_usd` open, the nearest liquidation that far."""
        self.typical_usd = decayed_peak(
            self.typical_usd, self.last_poll_ms, float(notional_usd), time_ms
        )
        self.last_poll_ms = time_ms
        self.notional_usd = float(notional_usd)
        self.min_liq_distance = min_liq_distance
        self.failures = 0
        self.next_allowed_ms = 0
        self.traded_usd = 0.0
        self.estimated = False

    def failed(self, time_ms: int, retry_at_ms: int | None = None) -> int:
        """A poll failed: wait until `retry_at_ms` (default: `backoff_ms` from `time_ms`)."""
        self.failures += 1
        if retry_at_ms is None:
            retry_at_ms = time_ms + backoff_ms(self.failures)
        self.next_allowed_ms = retry_at_ms
        return retry_at_ms

    def _row(self) -> tuple[object, ...]:
        return (
            self.address,
            self.first_seen_ms,
            self.last_trade_ms,
            self.last_poll_ms,
            self.last_held_ms,
            self.notional_usd,
            self.typical_usd,
            self.min_liq_distance,
            json.dumps(sorted(self.held), separators=(",", ":")) if self.held else "[]",
            self.failures,
            self.next_allowed_ms,
        )


class PollSummary(NamedTuple):
    """What one `clearinghouseState` poll found, in the form `record_poll` takes."""

    notional_usd: float
    min_liq_distance: float | None
    positions: dict[str, Side]
    """coin -> side of each open position (one-way mode: one side per coin)."""


def summarize(state: ClearinghouseState) -> PollSummary:
    """Total notional, nearest liquidation (relative to mark) and the (coin, side) set held."""
    notional = 0.0
    nearest: float | None = None
    positions: dict[str, Side] = {}
    for position in state.positions:
        if position.szi == 0:
            continue
        positions[position.coin] = "long" if position.szi > 0 else "short"
        value = float(position.position_value)
        notional += value
        if position.liquidation_px is not None and value > 0:
            mark = value / abs(float(position.szi))
            distance = abs(mark - float(position.liquidation_px)) / mark
            nearest = distance if nearest is None else min(nearest, distance)
    return PollSummary(notional, nearest, positions)


class AddressRegistry:
    """Known addresses in memory, persisted to the SQLite file at `path` (created if missing)."""

    def __init__(self, path: Path, *, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.path = path
        self.flush_interval_s = flush_interval_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._states: dict[str, AddressState] = {}
        self._dirty: set[str] = set()
        self._last_flush = time.monotonic()
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM addresses"):
            held = frozenset((c, s) for c, s in json.loads(row[8])) if row[8] != "[]" else _FLAT
            state = AddressState(*row[:8], held, *row[9:])  # type: ignore[arg-type]
            state.saved_trade_ms = state.last_trade_ms
            self._states[row[0]] = state

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, address: object) -> bool:
        return address in self._states

    def addresses(self) -> list[str]:
        """Every address in the poll set."""
        return list(self._states)

    @property
    def by_address(self) -> dict[str, AddressState]:
        """The live map address -> state, which the poll scheduler shares (`PollScheduler`'s
        `states`): one object per address holds its facts and its place in the queues."""
        return self._states

    def states(self) -> Iterator[AddressState]:
        """Every address's state (live objects: read, do not modify)."""
        return iter(self._states.values())

    def get(self, address: str) -> AddressState | None:
        return self._states.get(address.lower())

    def held(self, address: str) -> Held:
        """(coin, side) pairs open at the address's last successful poll (empty if unknown)."""
        state = self._states.get(address.lower())
        return set(state.held) if state is not None else set()

    def observe(self, addresses: Iterable[str], time_ms: int) -> list[str]:
        """Note that `addresses` traded at `time_ms`; returns the ones seen for the first time.

        A known address's newer trade time is kept in memory at once but marked for the file
        at most once per `TRADE_PERSIST_MS`: it only feeds the 7-day expiry, and rewriting the
        row of every active trader every second took half the CPU at 200k addresses.
        """
        new: list[str] = []
        states, dirty = self._states, self._dirty
        for address in addresses:
            state = states.get(address)
            if state is None:
                address = address.lower()  # keys are lower-case (trades' addresses already are)
                state = states.get(address)
            if state is None:
                states[address] = AddressState(address, time_ms, time_ms)
                new.append(address)
            elif state.last_trade_ms is None or time_ms > state.last_trade_ms:
                state.last_trade_ms = time_ms
                saved = state.saved_trade_ms
                if saved is not None and time_ms - saved < TRADE_PERSIST_MS:
                    continue
            else:
                continue
            dirty.add(address)
        self._maybe_flush()
        return new

    def record_poll(
        self,
        address: str,
        time_ms: int,
        *,
        notional_usd: float,
        min_liq_distance: float | None,
        positions: Mapping[str, Side] | None,
    ) -> Held:
        """Store what a successful poll found; returns the (coin, side) pairs that CLOSED.

        `positions` maps coin -> side of every open position (None: no open position). A
        success clears the failure count and backoff. Unknown addresses are added.
        """
        state = self._state(address, time_ms)
        held = frozenset((coin, side) for coin, side in (positions or {}).items()) or _FLAT
        closed = set(state.held - held)
        state.held = held
        state.polled(time_ms, notional_usd, min_liq_distance)
        if held:
            state.last_held_ms = time_ms
        self._dirty.add(state.address)
        self._maybe_flush()
        return closed

    def record_failure(self, address: str, time_ms: int) -> int:
        """Count a failed poll; returns the time (ms) before which it should not be retried."""
        state = self._state(address, time_ms)
        retry_at_ms = state.failed(time_ms)
        self._dirty.add(state.address)
        self._maybe_flush()
        return retry_at_ms

    def expire(self, now_ms: int, inactive_ms: int = INACTIVE_MS) -> int:
        """Drop addresses quiet and flat for `inactive_ms` (module docstring); returns how many."""
        return len(self.expire_addresses(now_ms, inactive_ms))

    def expire_addresses(
        self, now_ms: int, inactive_ms: int = INACTIVE_MS, keep: frozenset[str] = frozenset()
    ) -> list[str]:
        """Like `expire`, returning the addresses dropped (the scheduler sharing the states
        finds them gone; the book and equity forget them); those in `keep` (watched) stay."""
        cutoff = now_ms - inactive_ms
        gone = [
            state.address
            for state in self._states.values()
            if not state.held
            and state.address not in keep
            and max(state.first_seen_ms, state.last_trade_ms or 0, state.last_held_ms or 0)
            <= cutoff
        ]
        if gone:
            for address in gone:
                del self._states[address]
                self._dirty.discard(address)
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "DELETE FROM addresses WHERE address = ?", ((a,) for a in gone)
                )
        return gone

    def flush(self) -> int:
        """Write every buffered change in one transaction; returns the rows written."""
        self._last_flush = time.monotonic()
        if not self._dirty:
            return 0
        dirty = self._dirty
        states = [self._states[address] for address in dirty if address in self._states]
        rows = [state._row() for state in states]
        self._dirty = set()
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(_UPSERT, rows)
        except BaseException:
            self._dirty |= dirty  # written at the next flush
            raise
        for state in states:
            state.saved_trade_ms = state.last_trade_ms
        return len(rows)

    def close(self) -> None:
        """Flush and close the database (the registry is unusable afterwards)."""
        self.flush()
        self._db.close()

    def __enter__(self) -> AddressRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _state(self, address: str, time_ms: int) -> AddressState:
        address = address.lower()
        state = self._states.get(address)
        if state is None:
            state = self._states[address] = AddressState(address, time_ms)
        return state

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()
