"""The HyperEVM DEX job: pool state and every Swap/Mint/Burn of the configured pools.

Each run (the collector calls it every `evm.poll_interval` seconds):

1. `safe` = head - `confirmations`: nothing newer is ever read, so a reorg shallower than
   `confirmations` never reaches InfluxDB;
2. state: each pool's state by `eth_call` pinned at `safe` (V2 `getReserves`, `totalSupply`;
   V3 `slot0`, `liquidity`, token balances; Algebra `globalState` instead of `slot0`), one
   `dex_pools` point per pool at that block;
3. logs: `eth_getLogs` from each pool's cursor + 1 up to `safe` in ranges of at most
   `max_block_range` blocks (halved while the node says a range is too big), pools with the same
   cursor in one request. A range's swaps and liquidity changes are written, then one
   `dex_scans` point per pool saying the range is stored: that is the cursor.

Resume: at start each pool's cursor is the highest `dex_scans.to_block` in InfluxDB (a bound
`$pool`); with nothing stored, `start_block` - 1, else `backfill_blocks` before `safe`. Points
are stamped per log (`process.dex.points.stamp_ns`), so a range stored again overwrites itself.
Before scanning on, the stored cursor block's hash is compared with the chain's: a mismatch is a
reorg deeper than `confirmations`; it is logged and counted, and the cursor steps back
`2 * confirmations + 1` blocks (points of blocks that vanished stay: raise `confirmations`).

Errors: RPC failures raise (the run fails with one line and the next run retries from the
cursor); a malformed answer or log is quarantined (`evm:<method>`), counted, and skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from process.dex.config import EvmConfig, PoolConfig
from process.dex.points import (
    LogPlace,
    PoolInfo,
    PoolState,
    liquidity_line,
    pool_line,
    scan_line,
    swap_line,
)
from process.storage_ports import PointSink, RowReader
from utils.errors import RpcError
from utils.metrics import Sample
from utils.quarantine import Quarantine
from validate import evm_abi as abi
from validate.evm import BlockHeader, parse_header, parse_logs, parse_quantity

log = logging.getLogger(__name__)

CURSOR_QUERY = (
    'SELECT "to_block", "block_hash" FROM "dex_scans" WHERE "pool" = $pool '
    "ORDER BY time DESC LIMIT 1"
)
_RANGE_REFUSED = re.compile(
    r"range|too many|too large|exceed|limit|max.*(block|result)|10000", re.IGNORECASE
)


class MalformedAnswer(ValueError):
    """An RPC result that does not fit what was asked (quarantined by the caller)."""


@dataclass
class DexStats:
    runs: int = 0
    swaps: int = 0
    events: int = 0
    snapshots: int = 0
    quarantined: int = 0
    deep_reorgs: int = 0
    ranges: int = 0
    head: int = 0
    safe: int = 0


class Rpc(Protocol):
    """The JSON-RPC client the job reads the chain with (`fetch.evm.EvmRpc`, built by main.py).
    `call` raises `utils.errors.RpcError` (a `HyperfluxError`)."""

    async def call(self, method: str, params: Sequence[Any]) -> Any: ...

    async def close(self) -> None: ...

    def samples(self) -> list[Sample]: ...


class DexJob:
    """`await job()` is one run; `await job.close()` closes the RPC client.

    `reader` reads the cursors back once at the first run (an `AsyncInfluxReader`); `writer`
    takes the lines (`InfluxWriter`); `quarantine` keeps malformed answers."""

    def __init__(
        self,
        config: EvmConfig,
        writer: PointSink,
        reader: RowReader,
        quarantine: Quarantine,
        rpc: Rpc,
    ) -> None:
        if not config.enabled:
            raise ValueError("the evm section has no pools")
        self.config = config
        self.writer = writer
        self.reader = reader
        self.quarantine = quarantine
        self.rpc = rpc
        self.stats = DexStats()
        self.block_range = config.max_block_range
        self.pools: dict[str, PoolInfo] = {}
        self.cursors: dict[str, int] = {}
        """Per pool label: the last block whose logs are all stored."""
        self._hashes: dict[str, str] = {}
        """Per pool label: the hash of its cursor block, as seen when it was scanned."""

    async def close(self) -> None:
        await self.rpc.close()

    async def __call__(self) -> None:
        self.stats.runs += 1
        head = parse_quantity(await self.rpc.call("eth_blockNumber", []))
        safe = head - self.config.confirmations
        self.stats.head, self.stats.safe = head, safe
        if safe < 0:
            return
        safe_header = await self._header(safe)
        if len(self.pools) < len(self.config.pools):
            await self._prepare(safe)
        await self._snapshot(safe_header)
        await self._check_reorg(safe_header)
        await self._scan(safe)

    # -- start -----------------------------------------------------------------------------

    async def _prepare(self, safe: int) -> None:
        """Each pool's tokens and decimals, and its cursor from InfluxDB."""
        for config in self.config.pools:
            if config.label in self.pools:
                continue
            token0, token1 = (
                await self._call(config.address, abi.TOKEN0, safe),
                await self._call(config.address, abi.TOKEN1, safe),
            )
            token0, token1 = str(token0[0]).lower(), str(token1[0]).lower()
            decimals0 = int((await self._call(token0, abi.DECIMALS, safe))[0])  # type: ignore[call-overload]
            decimals1 = int((await self._call(token1, abi.DECIMALS, safe))[0])  # type: ignore[call-overload]
            fee = None
            if config.kind == "v3":
                fee = int((await self._call(config.address, abi.FEE, safe))[0])  # type: ignore[call-overload]
            cursor, block_hash = await self._stored_cursor(config)
            if cursor is None:
                if self.config.start_block is not None:
                    cursor = self.config.start_block - 1
                else:
                    cursor = max(-1, safe - self.config.backfill_blocks)
            self.cursors[config.label] = cursor
            if block_hash:
                self._hashes[config.label] = block_hash
            self.pools[config.label] = PoolInfo(config, token0, token1, decimals0, decimals1, fee)
            log.info(
                "evm pool %s (%s %s): logs stored through block %d",
                config.label,
                config.kind,
                config.address,
                cursor,
            )

    async def _stored_cursor(self, config: PoolConfig) -> tuple[int | None, str]:
        rows = await self.reader.rows(CURSOR_QUERY, {"pool": config.label})
        if not rows:
            return None, ""
        return int(rows[0]["to_block"]), str(rows[0].get("block_hash") or "")

    # -- state -----------------------------------------------------------------------------

    async def _snapshot(self, header: BlockHeader) -> None:
        lines = []
        for pool in self.pools.values():
            try:
                state = await self._state(pool, header.number)
            except MalformedAnswer as exc:
                log.warning(
                    "evm pool %s: state not read at %d: %s", pool.config.label, header.number, exc
                )
                continue
            lines.append(pool_line(pool, state, header.number, header.timestamp))
            self.stats.snapshots += 1
        self.writer.write(lines)

    async def _state(self, pool: PoolInfo, block: int) -> PoolState:
        address, kind = pool.config.address, pool.config.kind
        if kind == "v2":
            reserve0, reserve1, _ = await self._call(address, abi.GET_RESERVES, block)
            (supply,) = await self._call(address, abi.TOTAL_SUPPLY, block)
            return PoolState(
                reserve0=int(reserve0),  # type: ignore[call-overload]
                reserve1=int(reserve1),  # type: ignore[call-overload]
                liquidity=int(supply) / 1e18,  # type: ignore[call-overload]  # LP tokens: 18
                price0=pool.reserve_price(int(reserve0), int(reserve1)),  # type: ignore[call-overload]
            )
        fee = None
        if kind == "v3":
            sqrt_price, tick = await self._call(address, abi.SLOT0, block)
        else:
            sqrt_price, tick, fee = await self._call(address, abi.GLOBAL_STATE, block)
        (liquidity,) = await self._call(address, abi.LIQUIDITY, block)
        (balance0,) = await self._call(pool.token0, abi.BALANCE_OF, block, address)
        (balance1,) = await self._call(pool.token1, abi.BALANCE_OF, block, address)
        return PoolState(
            reserve0=int(balance0),  # type: ignore[call-overload]
            reserve1=int(balance1),  # type: ignore[call-overload]
            liquidity=float(liquidity),  # type: ignore[arg-type]
            price0=pool.sqrt_price(int(sqrt_price)),  # type: ignore[call-overload]
            tick=int(tick),  # type: ignore[call-overload]
            fee=int(fee) if fee is not None else None,  # type: ignore[call-overload]
        )

    async def _call(
        self, to: str, function: abi.Function, block: int, *args: str
    ) -> tuple[object, ...]:
        """One eth_call pinned at `block`; MalformedAnswer (quarantined) if it does not decode."""
        result = await self.rpc.call(
            "eth_call", [{"to": to, "data": function.call_data(*args)}, hex(block)]
        )
        try:
            if not isinstance(result, str):
                raise ValueError(f"{function.signature}: result is not a hex string")
            return function.decode(result)
        except ValueError as exc:
            self._quarantine("eth_call", f"{to} {exc}", repr(result))
            raise MalformedAnswer(str(exc)) from None

    async def _header(self, block: int) -> BlockHeader:
        result = await self.rpc.call("eth_getBlockByNumber", [hex(block), False])
        try:
            header = parse_header(result)
            if header.number != block:
                raise ValueError(f"asked for block {block}, got {header.number}")
        except ValueError as exc:
            self._quarantine("eth_getBlockByNumber", str(exc), repr(result))
            raise RpcError(
                f"EVM node answered eth_getBlockByNumber({block}) with a malformed block ({exc});"
                " quarantined",
                method="eth_getBlockByNumber",
            ) from None
        return header

    # -- logs ------------------------------------------------------------------------------

    async def _check_reorg(self, safe: BlockHeader) -> None:
        """The cursor block of each pool still has the hash it had when it was scanned?"""
        by_block: dict[int, list[str]] = {}
        for label in self._hashes:
            by_block.setdefault(self.cursors[label], []).append(label)
        for block, labels in by_block.items():
            if block < 0:
                continue
            header = safe if block == safe.number else await self._header(block)
            moved = [label for label in labels if self._hashes[label] != header.hash]
            if not moved:
                continue
            back = 2 * self.config.confirmations + 1
            self.stats.deep_reorgs += 1
            log.error(
                "evm: block %d changed after it was stored (a reorg deeper than %d"
                " confirmations); rescanning pools %s from block %d. Points of blocks that"
                " vanished stay: raise evm.confirmations",
                block,
                self.config.confirmations,
                ", ".join(moved),
                block - back + 1,
            )
            for label in moved:
                self.cursors[label] = block - back
                del self._hashes[label]

    async def _scan(self, safe: int) -> None:
        while True:
            behind = {label: c for label, c in self.cursors.items() if c < safe}
            if not behind:
                return
            low = min(behind.values())
            group = [self.pools[label] for label, c in behind.items() if c == low]
            above = [c for c in behind.values() if c > low]
            start = low + 1
            end = min(start + self.block_range - 1, safe, *above)
            end = await self._scan_range(group, start, end)
            for pool in group:
                self.cursors[pool.config.label] = end

    async def _scan_range(self, group: Sequence[PoolInfo], start: int, end: int) -> int:
        """Store every log of `group` in blocks start..end (or less: the range the node took);
        returns the last block stored."""
        result, end = await self._get_logs(group, start, end)
        try:
            logs, rejected = parse_logs(result)
        except ValueError as exc:
            self._quarantine("eth_getLogs", str(exc), repr(result)[:100_000])
            raise RpcError(
                f"EVM node answered eth_getLogs with a malformed list ({exc}); quarantined",
                method="eth_getLogs",
            ) from None
        for bad in rejected:
            self._quarantine("eth_getLogs", bad.reason, bad.raw_text)
        by_address = {pool.config.address: pool for pool in group}
        end_header = await self._header(end)
        times = {end: end_header.timestamp}
        lines: list[str] = []
        counts = {pool.config.label: [0, 0] for pool in group}  # swaps, events
        last_sync: dict[tuple[str, str], abi.Sync] = {}
        for item in sorted(logs, key=lambda x: (x.blockNumber, x.logIndex)):
            pool = by_address.get(item.address)
            if item.removed:
                continue  # a node's reorg notice: never in blocks this far behind the head
            if pool is None or not start <= item.blockNumber <= end:
                self._quarantine("eth_getLogs", "log outside the filter", item.model_dump_json())
                continue
            try:
                event = abi.decode_log(pool.config.family, item.topics, item.data)
            except ValueError as exc:
                self._quarantine("eth_getLogs", str(exc), item.model_dump_json())
                continue
            if event is None:
                continue
            if item.blockNumber not in times:
                times[item.blockNumber] = (
                    item.blockTimestamp or (await self._header(item.blockNumber)).timestamp
                )
            place = LogPlace(
                item.blockNumber, times[item.blockNumber], item.logIndex, item.transactionHash
            )
            try:
                line = self._line(pool, event, place, last_sync)
            except ValueError as exc:
                self._quarantine("eth_getLogs", str(exc), item.model_dump_json())
                continue
            if line is None:
                continue
            lines.append(line)
            counts[pool.config.label][1] += 1
            if isinstance(event, abi.Swap):
                counts[pool.config.label][0] += 1
        for pool in group:
            swaps, events = counts[pool.config.label]
            self.stats.swaps += swaps
            self.stats.events += events
            lines.append(
                scan_line(pool, start, end, end_header.hash, end_header.timestamp, swaps, events)
            )
            self._hashes[pool.config.label] = end_header.hash
        self.writer.write(lines)
        self.stats.ranges += 1
        return end

    def _line(
        self,
        pool: PoolInfo,
        event: abi.Decoded,
        place: LogPlace,
        last_sync: dict[tuple[str, str], abi.Sync],
    ) -> str | None:
        key = (pool.config.address, place.tx_hash)
        if isinstance(event, abi.Sync):
            last_sync[key] = event  # V2 emits Sync right before its Swap, Mint or Burn
            return None
        if isinstance(event, abi.Swap):
            if event.sqrt_price_x96 is not None:
                after = pool.sqrt_price(event.sqrt_price_x96)
            else:
                sync = last_sync.get(key)
                after = pool.reserve_price(sync.reserve0, sync.reserve1) if sync else None
            return swap_line(pool, event, place, after)
        return liquidity_line(pool, event, place)

    async def _get_logs(self, group: Sequence[PoolInfo], start: int, end: int) -> tuple[Any, int]:
        """The raw eth_getLogs result for start..end, shrinking the range while refused."""
        topics = sorted({e.topic for p in group for e in abi.EVENTS[p.config.family]})
        addresses = [p.config.address for p in group]
        while True:
            params = {
                "fromBlock": hex(start),
                "toBlock": hex(end),
                "address": addresses,
                "topics": [topics],
            }
            try:
                return await self.rpc.call("eth_getLogs", [params]), end
            except RpcError as exc:
                if exc.code is None or end == start or not _RANGE_REFUSED.search(str(exc)):
                    raise
                self.block_range = max(1, (end - start + 1) // 2)
                end = start + self.block_range - 1
                log.info(
                    "evm: eth_getLogs range refused (%s); now %d blocks", exc, self.block_range
                )

    def _quarantine(self, method: str, reason: str, raw: str) -> None:
        self.stats.quarantined += 1
        self.quarantine.add(f"evm:{method}", reason, raw)

    # -- metrics ---------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        stats = self.stats
        behind = stats.safe - min(self.cursors.values()) if self.cursors else 0
        return [
            Sample("evm_swaps_total", "counter", "DEX swaps stored", stats.swaps),
            Sample("evm_events_total", "counter", "DEX swaps, mints, burns stored", stats.events),
            Sample("evm_pool_snapshots_total", "counter", "dex_pools points", stats.snapshots),
            Sample("evm_quarantined_total", "counter", "malformed EVM answers", stats.quarantined),
            Sample(
                "evm_deep_reorgs_total", "counter", "reorgs past confirmations", stats.deep_reorgs
            ),
            Sample("evm_head_block", "gauge", "EVM head block seen", stats.head),
            Sample("evm_blocks_behind", "gauge", "confirmed blocks not scanned yet", behind),
            *self.rpc.samples(),
        ]
