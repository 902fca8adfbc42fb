"""The watchlist: addresses a user follows, with labels, in `data/watchlist.sqlite`.

Edited by `python main.py watch add|remove|list` (also while the collector runs: the collector
reads the file again every `RELOAD_SECONDS`), completed by the `watchlist` setting (addresses
from the config are watched too, and listed with source "config") and, when configured, by the
curation of profiled traders (`process.profiles.curation`, source "auto"). Watched addresses are
polled with priority (`PollScheduler.watch`), never expire from the poll set, are profiled
first, and wallet alert rules with `watchlist: true` apply to them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from config.values import parse_addresses
from utils.clock import now_ms
from utils.errors import HyperfluxError

FILE_NAME = "watchlist.sqlite"
RELOAD_SECONDS = 30.0
MAX_LABEL = 100
_SCHEMA = """
CREATE TABLE IF NOT EXISTS watched (
    address TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    added_ms INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'cli'
)
"""


@dataclass(frozen=True, slots=True)
class Watched:
    address: str
    label: str
    added_ms: int | None
    source: str  # cli | config | auto


def check_address(text: str) -> str:
    """The address in lower case; HyperfluxError (one line) if it is not a 0x address."""
    try:
        (address,) = parse_addresses(text.strip())
    except ValueError:
        raise HyperfluxError(f"not a 0x address with 40 hex digits: {text!r}") from None
    return address


class Watchlist:
    """The watchlist file (created on first use); `configured` adds the config's addresses."""

    def __init__(self, path: Path, configured: Iterable[str] = ()) -> None:
        self.path = path
        self.configured = tuple(configured)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5.0)
        db.execute(_SCHEMA)
        return db

    def add(self, address: str, label: str = "") -> bool:
        """Watch `address` (or change its label; one the curation added is the user's now);
        True if it was not watched yet."""
        address = check_address(address)
        if len(label) > MAX_LABEL:
            raise HyperfluxError(f"a label has at most {MAX_LABEL} characters, got {len(label)}")
        with self._connect() as db:
            known = db.execute("SELECT 1 FROM watched WHERE address = ?", (address,)).fetchone()
            db.execute(
                "INSERT INTO watched (address, label, added_ms) VALUES (?, ?, ?) "
                "ON CONFLICT(address) DO UPDATE SET label = excluded.label, source = 'cli'",
                (address, label, now_ms()),
            )
        return known is None

    def curate(self, address: str, label: str | None) -> bool:
        """The curation's word on `address`: watch it (`label`: why) unless it is watched
        already, or (None) stop watching it if the curation had added it. True if changed."""
        with self._connect() as db:
            if label is None:
                sql = "DELETE FROM watched WHERE address = ? AND source = 'auto'"
                return db.execute(sql, (address,)).rowcount > 0
            sql = (
                "INSERT INTO watched (address, label, added_ms, source) VALUES (?, ?, ?, 'auto') "
                "ON CONFLICT(address) DO UPDATE SET label = excluded.label WHERE source = 'auto'"
            )
            return db.execute(sql, (address, label[:MAX_LABEL], now_ms())).rowcount > 0

    def source_of(self, address: str) -> str | None:
        """cli, auto, config, or None when not watched."""
        if self.path.exists():
            with self._connect() as db:
                sql = "SELECT source FROM watched WHERE address = ?"
                row = db.execute(sql, (address,)).fetchone()
            if row is not None:
                return str(row[0])
        return "config" if address in self.configured else None

    def curated(self) -> int:
        """How many addresses the curation added."""
        if not self.path.exists():
            return 0
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM watched WHERE source = 'auto'").fetchone()[0]

    def remove(self, address: str) -> bool:
        """Stop watching `address` (from the file); True if it was there."""
        address = check_address(address)
        with self._connect() as db:
            return db.execute("DELETE FROM watched WHERE address = ?", (address,)).rowcount > 0

    def entries(self) -> list[Watched]:
        """Every watched address, the file's first (oldest first), then the config's others."""
        if self.path.exists():
            with self._connect() as db:
                rows = db.execute(
                    "SELECT address, label, added_ms, source FROM watched ORDER BY added_ms"
                ).fetchall()
        else:
            rows = []
        out = [Watched(*row) for row in rows]
        listed = {w.address for w in out}
        out += [Watched(a, "", None, "config") for a in self.configured if a not in listed]
        return out

    def addresses(self) -> frozenset[str]:
        return frozenset(w.address for w in self.entries())
