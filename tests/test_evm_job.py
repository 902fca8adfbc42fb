"""The HyperEVM DEX job against a real EVM node (anvil) and a real influxd.

Scenario: two tokens (18 and 6 decimals), a Uniswap V2 pair and a V3 pool with liquidity,
swaps in both directions, several in one block. The oracle is the chain itself: every Swap
log up to the confirmed head, decoded here with eth_abi independently of validate/evm_abi.py.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import eth_abi
import httpx
import pytest
from eth_utils import keccak

from db import InfluxTarget, read_from_influx
from db.dead_letter import DeadLetters
from db.reader import AsyncInfluxReader
from db.schema import DEX_LIQUIDITY, DEX_POOLS, DEX_SCANS, DEX_SWAPS
from db.spool import Spool
from db.writer import InfluxWriter
from fetch.evm.rpc import EvmRpc, RpcError
from process.dex import DexJob, EvmConfig
from tests.conftest import influxql
from tests.evm_node import Anvil, Dex, anvil, deploy_dex  # noqa: F401 (fixture)
from tests.fault_proxy import LoopbackServer
from utils.errors import HyperfluxError
from utils.quarantine import Quarantine

CONFIRMATIONS = 3
V2_SWAP = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()
V3_SWAP = "0x" + keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)").hex()
DASHBOARD = Path(__file__).resolve().parents[1] / "config" / "grafana" / "dashboards" / "dex.json"


class Harness:
    """One job with its writer, reader and quarantine, as the collector would build them."""

    def __init__(self, url: str, influx_url: str, db: str, data_dir: Path, **config: Any):
        self.target = InfluxTarget(influx_url, db)
        self.writer = InfluxWriter(
            self.target,
            Spool(data_dir / "spool"),
            DeadLetters(data_dir / "dead_letter"),
            flush_interval=60,
        )
        self.reader = AsyncInfluxReader(self.target)
        self.quarantine = Quarantine(data_dir / "quarantine")
        settings = {"confirmations": CONFIRMATIONS, "max_block_range": 4, "start_block": 1}
        self.config = EvmConfig.model_validate(
            {"rpc_url": url, "pools": config.pop("pools"), **settings, **config}
        )
        rpc = EvmRpc(
            url,
            requests_per_minute=100_000,
            backoff_base=0.01,
            backoff_cap=0.05,
            max_attempts=3,
            quarantine=self.quarantine,
        )
        self.job = DexJob(self.config, self.writer, self.reader, self.quarantine, rpc=rpc)

    async def __aenter__(self) -> Harness:
        await self.writer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.job.close()
        await self.writer.close()
        await self.reader.aclose()

    async def run(self) -> None:
        try:
            await self.job()
        finally:
            await self.writer.flush()


def pools(dex: Dex) -> list[dict[str, str]]:
    return [
        {"address": dex.pair, "kind": "v2", "label": "A/B-v2", "dex": "uniswap"},
        {"address": dex.pool, "kind": "v3", "label": "A/B-v3"},
    ]


def swap_some(dex: Dex, rounds: int = 2) -> None:
    """Swaps both ways on both pools: 2 V2 swaps + 1 V3 swap per block, `rounds` blocks."""
    a_is_0 = dex.token0 == dex.token_a
    for i in range(rounds):
        dex.v2_swap((i + 1) * 10**18, a_is_0)  # A in
        dex.v2_swap((i + 1) * 3 * 10**6, not a_is_0)  # B in
        dex.v3_swap((i + 1) * 2 * 10**6, not a_is_0)
        dex.node.mine()


def chain_swaps(node: Anvil, dex: Dex, through: int) -> dict[tuple[str, int], tuple[float, ...]]:
    """(tx hash, log index) -> (amount0_in, amount1_in, amount0_out, amount1_out), token units,
    of every Swap log of both pools up to block `through`, decoded here."""
    logs = node.rpc(
        "eth_getLogs",
        {
            "fromBlock": "0x0",
            "toBlock": hex(through),
            "address": [dex.pair, dex.pool],
            "topics": [[V2_SWAP, V3_SWAP]],
        },
    )
    d0, d1 = dex.decimals(dex.token0), dex.decimals(dex.token1)
    out = {}
    for item in logs:
        data = bytes.fromhex(item["data"][2:])
        if item["topics"][0] == V2_SWAP:
            a0i, a1i, a0o, a1o = eth_abi.decode(["uint256"] * 4, data)
        else:
            a0, a1 = eth_abi.decode(["int256", "int256"], data[:64])
            a0i, a1i, a0o, a1o = max(a0, 0), max(a1, 0), max(-a0, 0), max(-a1, 0)
        key = (item["transactionHash"], int(item["logIndex"], 16))
        out[key] = (a0i / 10**d0, a1i / 10**d1, a0o / 10**d0, a1o / 10**d1)
    return out


def stored_swaps(h: Harness) -> list[dict[str, Any]]:
    return influxql(h.target.url, f'SELECT * FROM "{DEX_SWAPS.name}"', h.target.db)


def assert_swaps_stored_once(h: Harness, node: Anvil, dex: Dex, through: int) -> None:
    expected = chain_swaps(node, dex, through)
    rows = stored_swaps(h)
    keys = [(row["tx_hash"], row["log_index"]) for row in rows]
    assert len(keys) == len(set(keys)), "a swap stored twice"
    assert set(keys) == set(expected)
    for row in rows:
        amounts = expected[(row["tx_hash"], row["log_index"])]
        stored = (row["amount0_in"], row["amount1_in"], row["amount0_out"], row["amount1_out"])
        assert stored == pytest.approx(amounts, rel=1e-12), row
        assert row["block"] <= through


def scans(h: Harness, pool: str) -> list[tuple[int, int]]:
    rows = influxql(
        h.target.url, f'SELECT * FROM "{DEX_SCANS.name}" WHERE "pool" = $p', h.target.db, p=pool
    )
    return sorted((row["from_block"], row["to_block"]) for row in rows)


def assert_contiguous(ranges: list[tuple[int, int]], first: int, last: int) -> None:
    """The scanned ranges cover first..last once each: no gap, no overlap."""
    assert ranges[0][0] == first and ranges[-1][1] == last, ranges
    for (_, to), (start, _) in itertools.pairwise(ranges):
        assert start == to + 1, ranges


# --- the whole path --------------------------------------------------------------------------


async def test_every_swap_is_stored_once_with_state_at_the_stored_block(
    anvil: Anvil,  # noqa: F811
    influxd,
    influx_db,
    data_dir,
):
    dex = deploy_dex(anvil)
    swap_some(dex, rounds=3)
    anvil.mine(CONFIRMATIONS)
    safe = anvil.head - CONFIRMATIONS
    async with Harness(anvil.url, influxd.url, influx_db, data_dir, pools=pools(dex)) as h:
        started = time.perf_counter()
        await h.run()
        elapsed = time.perf_counter() - started
        swap_some(dex, rounds=1)  # not confirmed yet: not read
        await h.run()
    safe = anvil.head - CONFIRMATIONS  # the new swaps' block is not confirmed yet

    assert_swaps_stored_once(h, anvil, dex, safe)
    assert len(stored_swaps(h)) == 9
    print(f"\nfirst run: {elapsed:.3f} s for {h.job.stats.ranges} ranges, 9 swaps")
    sides = {(row["pool"], row["side"]) for row in stored_swaps(h)}
    assert sides == {("A/B-v2", "buy"), ("A/B-v2", "sell"), ("A/B-v3", "buy")}
    for pool in ("A/B-v2", "A/B-v3"):
        assert_contiguous(scans(h, pool), 1, safe)

    # dex_pools: reserves and price as the pool says at the stored block
    rows = influxql(influxd.url, f'SELECT * FROM "{DEX_POOLS.name}"', influx_db)
    assert {row["pool"] for row in rows} == {"A/B-v2", "A/B-v3"}
    d0, d1 = dex.decimals(dex.token0), dex.decimals(dex.token1)
    for row in rows:
        block = hex(row["block"])
        if row["pool"] == "A/B-v2":
            assert row["dex"] == "uniswap"
            r0, r1, _ = anvil.view(
                dex.pair, "getReserves()", ["uint112", "uint112", "uint32"], block=block
            )
            assert row["reserve0"] == pytest.approx(r0 / 10**d0, rel=1e-12)
            assert row["reserve1"] == pytest.approx(r1 / 10**d1, rel=1e-12)
            assert row["price0"] == pytest.approx((r1 / 10**d1) / (r0 / 10**d0), rel=1e-12)
        else:
            assert row["dex"] == "v3" and row["fee"] == 3000
            sqrt_price, tick = anvil.view(dex.pool, "slot0()", ["uint160", "int24"], block=block)
            price = (sqrt_price / 2**96) ** 2 * 10 ** (d0 - d1)
            assert row["price0"] == pytest.approx(price, rel=1e-9)
            assert row["tick"] == tick
            (liquidity,) = anvil.view(dex.pool, "liquidity()", ["uint128"], block=block)
            assert row["liquidity"] == pytest.approx(liquidity)
        assert row["price1"] == pytest.approx(1 / row["price0"])
        assert 1.5 < (row["price0"] if dex.token0 == dex.token_a else row["price1"]) < 2.5

    # the liquidity added at deployment
    mints = influxql(influxd.url, f'SELECT * FROM "{DEX_LIQUIDITY.name}"', influx_db)
    assert {(row["pool"], row["kind"]) for row in mints} == {("A/B-v2", "mint"), ("A/B-v3", "mint")}

    # the named queries and the DEX dashboard read it back
    target = InfluxTarget(influxd.url, influx_db)
    frame = read_from_influx("dex_swaps", target=target, pool="A/B-v2", hours=24 * 365)
    assert len(frame) == 6
    assert len(read_from_influx("dex_pools", target=target, pool="A/B-v3", hours=24 * 365)) == 2
    dashboard_queries_return_rows(influxd.url, influx_db, "A/B-v2")


def dashboard_queries_return_rows(url: str, db: str, pool: str) -> None:
    """Every panel of the DEX dashboard, filled in as Grafana would, over the anvil data
    (stamped with anvil's clock, a little ahead of ours: the range reaches a day ahead)."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = target["query"]
            query = query.replace("$timeFilter", "time > now() - 1d AND time < now() + 1d")
            pool_regex = re.escape(pool).replace("/", r"\/")  # as Grafana escapes a regex value
            query = query.replace("$__interval", "1m").replace("$pool", pool_regex)
            answer = httpx.post(f"{url}/query", data={"q": query, "db": db}, timeout=30).json()
            result = answer["results"][0]
            assert "error" not in result, (panel["title"], result)
            assert result.get("series"), f"{panel['title']}: no rows for {query}"


# --- restart, reorg --------------------------------------------------------------------------


JSON = {"Content-Type": "application/json"}


class RpcProxy(LoopbackServer):
    """Forwards JSON-RPC to `upstream`; `fault(method, count)` may answer instead: a (status,
    headers, body) tuple, or None to forward. `count` = calls of that method so far."""

    def __init__(self, upstream: str, fault: Callable[[str, int, bytes], Any]) -> None:
        self.upstream = upstream
        self.fault = fault
        self.calls: dict[str, int] = {}
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                method = json.loads(body)["method"]
                proxy.calls[method] = proxy.calls.get(method, 0) + 1
                answer = proxy.fault(method, proxy.calls[method], body)
                if answer is None:
                    upstream = httpx.post(proxy.upstream, content=body, headers=JSON, timeout=30)
                    answer = (upstream.status_code, {}, upstream.content)
                status, headers, content = answer
                if callable(content):
                    content = content(
                        httpx.post(proxy.upstream, content=body, headers=JSON).content
                    )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        return Handler


async def test_a_restart_in_the_middle_resumes_without_gaps_or_duplicates(
    anvil: Anvil,  # noqa: F811
    influxd,
    influx_db,
    data_dir,
):
    """The node fails (503) from the 4th eth_getLogs on: the first job stops mid-scan; a new
    job (a restarted collector) resumes from what InfluxDB holds."""
    dex = deploy_dex(anvil)
    swap_some(dex, rounds=4)
    anvil.mine(CONFIRMATIONS + 6)  # more ranges to scan
    safe = anvil.head - CONFIRMATIONS

    def fail(method: str, count: int, body: bytes) -> Any:
        return (503, {}, b"overloaded") if method == "eth_getLogs" and count >= 4 else None

    with RpcProxy(anvil.url, fail) as proxy:
        async with Harness(proxy.url, influxd.url, influx_db, data_dir, pools=pools(dex)) as h1:
            with pytest.raises(RpcError, match="eth_getLogs failed after 3 attempts: HTTP 503"):
                await h1.run()
            assert h1.job.rpc.stats.retries == 2
    first = scans(h1, "A/B-v2")
    assert len(first) == 3 and first[-1][1] < safe

    async with Harness(anvil.url, influxd.url, influx_db, data_dir, pools=pools(dex)) as h2:
        await h2.run()
    assert_swaps_stored_once(h2, anvil, dex, safe)
    assert len(stored_swaps(h2)) == 12
    for pool in ("A/B-v2", "A/B-v3"):
        assert_contiguous(scans(h2, pool), 1, safe)


async def test_a_reorg_within_the_confirmations_leaves_no_orphaned_swap(
    anvil: Anvil,  # noqa: F811
    influxd,
    influx_db,
    data_dir,
):
    dex = deploy_dex(anvil)
    swap_some(dex, rounds=1)
    anvil.mine(CONFIRMATIONS)
    async with Harness(anvil.url, influxd.url, influx_db, data_dir, pools=pools(dex)) as h:
        await h.run()
        before = {row["tx_hash"] for row in stored_swaps(h)}
        snapshot = anvil.rpc("evm_snapshot")
        orphan = dex.v2_swap(7 * 10**18, dex.token0 == dex.token_a)[1]
        anvil.mine(CONFIRMATIONS - 1)  # the swap has CONFIRMATIONS - 1 blocks on top of it
        await h.run()
        assert anvil.receipt(orphan)
        assert anvil.rpc("evm_revert", snapshot) is True  # the reorg: that branch is gone
        replacement = dex.v2_swap(5 * 10**18, dex.token0 == dex.token_a)[1]
        anvil.mine(CONFIRMATIONS + 1)
        await h.run()
        assert h.job.stats.deep_reorgs == 0

    hashes = {row["tx_hash"] for row in stored_swaps(h)}
    assert orphan not in hashes
    assert hashes == before | {replacement}
    assert_swaps_stored_once(h, anvil, dex, anvil.head - CONFIRMATIONS)


async def test_a_reorg_deeper_than_the_confirmations_is_detected_and_rescanned(
    anvil: Anvil,  # noqa: F811
    influxd,
    influx_db,
    data_dir,
):
    dex = deploy_dex(anvil)
    anvil.mine(CONFIRMATIONS)
    async with Harness(
        anvil.url, influxd.url, influx_db, data_dir, pools=pools(dex)[:1], confirmations=0
    ) as h:
        await h.run()
        snapshot = anvil.rpc("evm_snapshot")
        dex.v2_swap(10**18, True)
        anvil.mine()
        await h.run()  # stored at once: no confirmations
        anvil.rpc("evm_revert", snapshot)
        kept = dex.v2_swap(2 * 10**18, True)[1]
        anvil.mine(2)
        await h.run()
        assert h.job.stats.deep_reorgs == 1
    assert kept in {row["tx_hash"] for row in stored_swaps(h)}


# --- errors ------------------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after(anvil, influxd, influx_db, data_dir):  # noqa: F811
    dex = deploy_dex(anvil)
    swap_some(dex, rounds=1)
    anvil.mine(CONFIRMATIONS)

    def limit(method: str, count: int, body: bytes) -> Any:
        busy = method == "eth_getLogs" and count <= 2
        return (429, {"Retry-After": "0"}, b"Too Many Requests") if busy else None

    with RpcProxy(anvil.url, limit) as proxy:
        async with Harness(proxy.url, influxd.url, influx_db, data_dir, pools=pools(dex)) as h:
            await h.run()
            assert h.job.rpc.stats.rate_limited == 2
            assert h.job.rpc.breaker.state == "closed"  # 429 is no failure of the server
    assert_swaps_stored_once(h, anvil, dex, anvil.head - CONFIRMATIONS)


async def test_an_unreachable_node_fails_the_run_in_one_line_and_opens_the_breaker(
    influxd, influx_db, data_dir
):
    dead = "http://127.0.0.1:9/rpc-key-secret"  # the discard port: connection refused
    pool = {"address": "0x" + "11" * 20, "kind": "v2", "label": "X/Y"}
    async with Harness(dead, influxd.url, influx_db, data_dir, pools=[pool]) as h:
        with pytest.raises(HyperfluxError) as caught:
            await h.run()
        message = str(caught.value)
        assert message == "EVM call eth_blockNumber failed after 3 attempts: ConnectError"
        # 2 more failures make 5 in a row: the breaker opens and refuses the next attempt
        with pytest.raises(HyperfluxError, match="circuit breaker evm:rpc is open after 5 failed"):
            await h.run()
        assert h.job.rpc.stats.breaker_opened == 1
        with pytest.raises(HyperfluxError, match="circuit breaker evm:rpc is open"):
            await h.run()


async def test_malformed_answers_go_to_the_quarantine(anvil, influxd, influx_db, data_dir):  # noqa: F811
    """A getLogs answer that is not JSON-RPC fails the run (nothing lost: the next run asks
    again); a log whose data does not decode is quarantined alone and the others stored."""
    dex = deploy_dex(anvil)
    swap_some(dex, rounds=2)
    anvil.mine(CONFIRMATIONS)
    bad_logs: list[str] = []

    def corrupt_one_log(content: bytes) -> bytes:
        answer = json.loads(content)
        swaps = [x for x in answer["result"] if x["topics"][0] in (V2_SWAP, V3_SWAP)]
        if swaps:
            swaps[0]["data"] = swaps[0]["data"][:-64]  # one word short
            bad_logs.append(swaps[0]["transactionHash"])
        return json.dumps(answer).encode()

    def mangle(method: str, count: int, body: bytes) -> Any:
        if method == "eth_getLogs" and count == 1:
            return (200, {}, b"<html>gateway hiccup</html>")
        if method == "eth_getLogs" and not bad_logs:
            return (200, {}, corrupt_one_log)
        return None

    with RpcProxy(anvil.url, mangle) as proxy:
        async with Harness(proxy.url, influxd.url, influx_db, data_dir, pools=pools(dex)) as h:
            with pytest.raises(HyperfluxError, match=r"not JSON-RPC .*; quarantined"):
                await h.run()
            await h.run()
    assert h.quarantine.counts == {"evm:eth_getLogs": 2}
    (day,) = (data_dir / "quarantine").glob("*.jsonl")
    reasons = [json.loads(line)["reason"] for line in day.read_text().splitlines()]
    assert "data bytes" in reasons[1]
    hashes = {row["tx_hash"] for row in stored_swaps(h)}
    expected = {tx for tx, _ in chain_swaps(anvil, dex, anvil.head - CONFIRMATIONS)}
    assert hashes == expected - set(bad_logs) and len(bad_logs) == 1
