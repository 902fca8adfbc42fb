"""Split the address set between collector processes: shard "i/N" polls the addresses it owns.

Ownership is a stable hash of the lower-case address (blake2b, never Python's salted `hash()`),
so every process, on every machine and after every restart, agrees on who polls what. Shard 0
is the primary: the one that collects trades and market data unless configured otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from config.values import parse_shard


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index}/{self.count} is invalid: use i/N with N >= 1 and 0 <= i < N"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`Shard.parse("0/4")`; ValueError with a one-line message for anything else."""
        try:
            return cls(*parse_shard(text))
        except ValueError:
            raise ValueError(
                f"shard {text!r} is invalid: write it as i/N, e.g. 0/1 or 2/4"
            ) from None

    @property
    def is_primary(self) -> bool:
        """True for shard 0, which collects trades and market data."""
        return self.index == 0

    def owns(self, address: str) -> bool:
        """Whether this shard polls `address` (case-insensitive)."""
        return shard_of(address, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(address: str, count: int) -> int:
    """The shard index in [0, count) that owns `address`: blake2b-64 of the lower-case text."""
    if count == 1:
        return 0
    digest = hashlib.blake2b(address.strip().lower().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count
