"""DEX records -> line protocol: pool state, swaps, liquidity changes and scan progress.

Times: a log's point is stamped `block time (s) * 1e9 + (block mod 1000) * 1e6 + log index`
ns. The log index is unique within a block and two blocks sharing a second differ in their
block number, so every log gets its own time in its pool's series, and the same log always the
same time: a log stored again after a restart overwrites itself instead of duplicating.
"""

from __future__ import annotations

from dataclasses import dataclass

from db.schema import DEX_LIQUIDITY, DEX_POOLS, DEX_SCANS, DEX_SWAPS
from process.dex.config import PoolConfig
from validate.evm_abi import Liquidity, Swap

Q96 = 2**96
MAX_LOG_INDEX = 1_000_000


def stamp_ns(block_time_s: int, block: int, log_index: int = 0) -> int:
    """The point time of a log (or of a block's state, log index 0)."""
    if not 0 <= log_index < MAX_LOG_INDEX:
        raise ValueError(f"log index {log_index} out of range")
    return block_time_s * 1_000_000_000 + (block % 1000) * 1_000_000 + log_index


@dataclass(frozen=True)
class PoolInfo:
    """A pool with what never changes about it: its tokens and their decimals."""

    config: PoolConfig
    token0: str
    token1: str
    decimals0: int
    decimals1: int
    fee: int | None = None
    """V3: the fee tier (hundredths of a bip); Algebra's fee changes and comes with the state."""

    @property
    def tags(self) -> dict[str, str]:
        return {"pool": self.config.label, "dex": self.config.dex_name}

    def amount0(self, raw: int) -> float:
        return raw / 10**self.decimals0

    def amount1(self, raw: int) -> float:
        return raw / 10**self.decimals1

    def sqrt_price(self, sqrt_price_x96: int) -> float | None:
        """token1 per token0 of a Q64.96 square-root price, decimals applied (None at 0)."""
        if sqrt_price_x96 <= 0:
            return None
        return (sqrt_price_x96 / Q96) ** 2 * 10 ** (self.decimals0 - self.decimals1)

    def reserve_price(self, reserve0: int, reserve1: int) -> float | None:
        """token1 per token0 of two reserves (None when one is empty)."""
        if reserve0 <= 0 or reserve1 <= 0:
            return None
        return self.amount1(reserve1) / self.amount0(reserve0)


@dataclass(frozen=True)
class PoolState:
    """A pool read at one block, raw units."""

    reserve0: int
    reserve1: int
    liquidity: float
    price0: float | None
    tick: int | None = None
    fee: int | None = None


@dataclass(frozen=True)
class LogPlace:
    """Where a log is: its block (number, time) and its place in the block and transaction."""

    block: int
    block_time_s: int
    log_index: int
    tx_hash: str

    @property
    def time_ns(self) -> int:
        return stamp_ns(self.block_time_s, self.block, self.log_index)


def pool_line(pool: PoolInfo, state: PoolState, block: int, block_time_s: int) -> str:
    price0 = state.price0
    return DEX_POOLS.line(
        pool.tags,
        {
            "block": block,
            "reserve0": pool.amount0(state.reserve0),
            "reserve1": pool.amount1(state.reserve1),
            "price0": price0,
            "price1": 1 / price0 if price0 else None,
            "liquidity": state.liquidity,
            "tick": state.tick,
            "fee": state.fee if state.fee is not None else pool.fee,
            "token0": pool.token0,
            "token1": pool.token1,
        },
        stamp_ns(block_time_s, block),
    )


def swap_line(pool: PoolInfo, swap: Swap, place: LogPlace, price_after: float | None) -> str:
    in0, in1 = pool.amount0(swap.amount0_in), pool.amount1(swap.amount1_in)
    out0, out1 = pool.amount0(swap.amount0_out), pool.amount1(swap.amount1_out)
    volume0, volume1 = in0 + out0, in1 + out1
    side = "buy" if swap.amount0_out > swap.amount0_in else "sell"
    return DEX_SWAPS.line(
        {**pool.tags, "side": side},
        {
            "amount0_in": in0,
            "amount1_in": in1,
            "amount0_out": out0,
            "amount1_out": out1,
            "volume0": volume0,
            "volume1": volume1,
            "price": volume1 / volume0 if volume0 and volume1 else None,
            "price_after": price_after,
            "sender": swap.sender,
            "recipient": swap.recipient,
            "tx_hash": place.tx_hash,
            "log_index": place.log_index,
            "block": place.block,
        },
        place.time_ns,
    )


def liquidity_line(pool: PoolInfo, change: Liquidity, place: LogPlace) -> str:
    return DEX_LIQUIDITY.line(
        {**pool.tags, "kind": change.kind},
        {
            "amount0": pool.amount0(change.amount0),
            "amount1": pool.amount1(change.amount1),
            "liquidity": float(change.liquidity) if change.liquidity is not None else None,
            "tick_lower": change.tick_lower,
            "tick_upper": change.tick_upper,
            "owner": change.owner,
            "tx_hash": place.tx_hash,
            "log_index": place.log_index,
            "block": place.block,
        },
        place.time_ns,
    )


def scan_line(
    pool: PoolInfo,
    from_block: int,
    to_block: int,
    block_hash: str,
    block_time_s: int,
    swaps: int,
    events: int,
) -> str:
    return DEX_SCANS.line(
        pool.tags,
        {
            "from_block": from_block,
            "to_block": to_block,
            "block_hash": block_hash,
            "swaps": swaps,
            "events": events,
        },
        stamp_ns(block_time_s, to_block),
    )
