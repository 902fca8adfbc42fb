"""A real EVM node for the DEX tests: anvil (tools/evm) on a free loopback port, stopped by PID,
with the compiled Uniswap V2 and V3 contracts deployed through plain JSON-RPC.

Transactions are sent from anvil's unlocked dev accounts with `eth_sendTransaction`; blocks are
mined only when asked (`--no-mining`, then `evm_mine`), so several swaps can share a block.
V3 pools call back their caller for payment, and v3-core's npm package ships no test callee,
so `CALLEE_CODE` is a tiny hand-assembled contract (see `callee_code`): called with a target
address word + calldata, it forwards the call; called back with `uniswapV3MintCallback` or
`uniswapV3SwapCallback(int256, int256, bytes data = abi.encode(token0, token1))`, it transfers
each positive amount of the token to the pool from its own balance.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eth_abi
import httpx
import pytest

from utils.net import free_port
from utils.processes import terminate
from validate.evm_abi import selector

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools" / "evm" / "node_modules"
ANVIL = TOOLS / ".bin" / "anvil"
V2_BUILD = TOOLS / "@uniswap" / "v2-core" / "build"
V3_ARTIFACTS = TOOLS / "@uniswap" / "v3-core" / "artifacts" / "contracts"
MISSING = "the EVM test tools are not installed: run `make test` (or `make evm-tools`)"
GAS = hex(15_000_000)


def require_tools() -> None:
    """Fail with one line when tools/evm has not been installed."""
    needed = (ANVIL, V2_BUILD / "UniswapV2Pair.json", V3_ARTIFACTS / "UniswapV3Factory.sol")
    if not all(path.exists() for path in needed):
        pytest.fail(MISSING, pytrace=False)


def artifact(name: str) -> dict[str, Any]:
    """A compiled contract: v2-core `build/<name>.json` or v3-core `<name>.sol/<name>.json`."""
    v2 = V2_BUILD / f"{name}.json"
    path = v2 if v2.exists() else V3_ARTIFACTS / f"{name}.sol" / f"{name}.json"
    return json.loads(path.read_text())


def bytecode(name: str) -> str:
    data = artifact(name)
    code = data["bytecode"]
    if not isinstance(code, str) or not code:
        code = data["evm"]["bytecode"]["object"]
    return code.removeprefix("0x")


def token_code(decimals: int) -> str:
    """v2-core's test ERC20 (`ERC20(uint totalSupply)`, minted to the deployer) with its
    `decimals` constant (PUSH1 18 in its getter) changed."""
    code = bytecode("ERC20")
    getter = "5b601281565b"  # JUMPDEST PUSH1 0x12 DUP2 JUMP JUMPDEST
    assert code.count(getter) == 1 and 0 < decimals < 256
    return code.replace(getter, f"5b60{decimals:02x}81565b")


# --- the callee, assembled ---------------------------------------------------------------------

_OPS = {
    "STOP": 0x00, "SUB": 0x03, "EQ": 0x14, "ISZERO": 0x15, "SGT": 0x13, "SHL": 0x1B,
    "SHR": 0x1C, "CALLER": 0x33, "CALLDATALOAD": 0x35, "CALLDATASIZE": 0x36,
    "CALLDATACOPY": 0x37, "RETURNDATASIZE": 0x3D, "RETURNDATACOPY": 0x3E, "POP": 0x50,
    "MSTORE": 0x52, "JUMPI": 0x57, "GAS": 0x5A, "JUMPDEST": 0x5B, "DUP1": 0x80, "DUP2": 0x81,
    "DUP3": 0x82, "CALL": 0xF1, "RETURN": 0xF3, "REVERT": 0xFD,
}  # fmt: skip


def assemble(program: list[Any]) -> bytes:
    """Opcodes by name, ints (pushed with the fewest bytes), `":label"` (a JUMPDEST) and
    `"@label"` (PUSH2 of the label's offset)."""
    sizes = []
    for item in program:
        if isinstance(item, int):
            sizes.append(1 + max(1, (item.bit_length() + 7) // 8))
        elif item.startswith("@"):
            sizes.append(3)
        else:
            sizes.append(1)
    offsets = [sum(sizes[:i]) for i in range(len(program))]
    labels = {item[1:]: offsets[i] for i, item in enumerate(program) if str(item)[0] == ":"}
    out = bytearray()
    for item in program:
        if isinstance(item, int):
            width = max(1, (item.bit_length() + 7) // 8)
            out += bytes([0x5F + width]) + item.to_bytes(width, "big")
        elif item.startswith("@"):
            out += bytes([0x61]) + labels[item[1:]].to_bytes(2, "big")
        elif item.startswith(":"):
            out.append(_OPS["JUMPDEST"])
        else:
            out.append(_OPS[item])
    return bytes(out)


def callee_code() -> str:
    mint_cb = int(selector("uniswapV3MintCallback(uint256,uint256,bytes)"), 16)
    swap_cb = int(selector("uniswapV3SwapCallback(int256,int256,bytes)"), 16)
    transfer = int(selector("transfer(address,uint256)"), 16)
    pay: list[Any] = [":pay"]
    for i in (0, 1):
        pay += [4 + 32 * i, "CALLDATALOAD", 0, "DUP2", "SGT", "ISZERO", f"@skip{i}", "JUMPI"]
        pay += [transfer, 0xE0, "SHL", 0, "MSTORE", "CALLER", 4, "MSTORE", "DUP1", 36, "MSTORE"]
        pay += [32, 0, 68, 0, 0, 4 + 0x80 + 32 * i, "CALLDATALOAD", "GAS", "CALL"]
        pay += ["ISZERO", "@fail", "JUMPI", f":skip{i}", "POP"]
    program = [
        0, "CALLDATALOAD", 0xE0, "SHR",
        "DUP1", mint_cb, "EQ", "@pay", "JUMPI",
        swap_cb, "EQ", "@pay", "JUMPI",
        # forward: calldata = target address word + the call
        0x20, "CALLDATASIZE", "SUB", "DUP1", 0x20, 0, "CALLDATACOPY",
        0, 0, "DUP3", 0, 0, 0, "CALLDATALOAD", "GAS", "CALL",
        "RETURNDATASIZE", 0, 0, "RETURNDATACOPY",
        "@ok", "JUMPI", "RETURNDATASIZE", 0, "REVERT",
        ":ok", "RETURNDATASIZE", 0, "RETURN",
        *pay, "STOP",
        ":fail", 0, 0, "REVERT",
    ]  # fmt: skip
    return "0x" + assemble(program).hex()


# --- the node ----------------------------------------------------------------------------------


def call_data(signature: str, *args: Any) -> str:
    types = signature[signature.index("(") + 1 : -1]
    encoded = eth_abi.encode(types.split(","), list(args)) if types else b""
    return selector(signature) + encoded.hex()


class Anvil:
    """One anvil with its own port; `rpc(method, *params)` returns the result."""

    def __init__(self) -> None:
        require_tools()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=30)
        self.accounts: list[str] = []
        self._ids = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [str(ANVIL), "--host", "127.0.0.1", "--port", str(self.port), "--no-mining",
             "--silent", "--accounts", "3", "--disable-code-size-limit"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                self.accounts = self.rpc("eth_accounts")
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("anvil did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            terminate(process, 10)

    def rpc(self, method: str, *params: Any) -> Any:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)}
        answer = self.http.post(self.url, json=body).json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    @property
    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.rpc("evm_mine")

    def send(self, to: str | None, data: str, sender: int = 0) -> str:
        tx = {"from": self.accounts[sender], "data": data, "gas": GAS}
        if to is not None:
            tx["to"] = to
        return self.rpc("eth_sendTransaction", tx)

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
        assert receipt is not None, f"{tx_hash} not mined"
        assert receipt["status"] == "0x1", f"{tx_hash} reverted"
        return receipt

    def transact(self, to: str | None, data: str) -> dict[str, Any]:
        """Send one transaction, mine it alone, return its receipt (asserting success)."""
        tx_hash = self.send(to, data)
        self.mine()
        return self.receipt(tx_hash)

    def deploy(self, code: str, constructor: str = "") -> str:
        return self.transact(None, "0x" + code.removeprefix("0x") + constructor)["contractAddress"]

    def view(self, to: str, signature: str, returns: list[str], *args: Any, block: Any = "latest"):
        data = call_data(signature, *args)
        result = self.rpc("eth_call", {"to": to, "data": data}, block)
        return eth_abi.decode(returns, bytes.fromhex(result[2:]))


# --- the pools ---------------------------------------------------------------------------------

SUPPLY = 10**40


@dataclass
class Dex:
    """Two tokens (18 and 6 decimals), a V2 pair and a V3 pool (0.3 %) with liquidity."""

    node: Anvil
    token_a: str
    token_b: str
    pair: str
    pool: str
    callee: str
    token0: str
    token1: str

    def decimals(self, token: str) -> int:
        return 18 if token == self.token_a else 6

    # V2: pay in first, then ask for the output (what the router does)
    def v2_swap_data(self, amount_in: int, zero_for_one: bool) -> list[tuple[str, str]]:
        """The two transactions of a V2 swap (transfer in, swap out), for `send`."""
        reserve0, reserve1, _ = self.node.view(
            self.pair, "getReserves()", ["uint112", "uint112", "uint32"], block="pending"
        )
        r_in, r_out = (reserve0, reserve1) if zero_for_one else (reserve1, reserve0)
        out = amount_in * 997 * r_out // (r_in * 1000 + amount_in * 997) * 95 // 100  # room
        token_in = self.token0 if zero_for_one else self.token1
        outs = (0, out) if zero_for_one else (out, 0)
        me = self.node.accounts[0]
        return [
            (token_in, call_data("transfer(address,uint256)", self.pair, amount_in)),
            (self.pair, call_data("swap(uint256,uint256,address,bytes)", *outs, me, b"")),
        ]

    def v2_swap(self, amount_in: int, zero_for_one: bool) -> list[str]:
        """Send a V2 swap (not mined); returns the transaction hashes."""
        return [self.node.send(to, data) for to, data in self.v2_swap_data(amount_in, zero_for_one)]

    def v3_swap(self, amount_in: int, zero_for_one: bool) -> str:
        limit = 4295128740 if zero_for_one else 1461446703485210103287273052203988822378723970341
        swap = call_data(
            "swap(address,bool,int256,uint160,bytes)",
            self.node.accounts[0],
            zero_for_one,
            amount_in,
            limit,
            eth_abi.encode(["address", "address"], [self.token0, self.token1]),
        )
        return self.node.send(self.callee, _forward(self.pool, swap))


def _forward(target: str, data: str) -> str:
    return "0x" + eth_abi.encode(["address"], [target]).hex() + data.removeprefix("0x")


def deploy_dex(node: Anvil) -> Dex:
    """Deploy the tokens, the V2 pair and the V3 pool, and add liquidity to both (mined)."""
    supply = eth_abi.encode(["uint256"], [SUPPLY]).hex()
    token_a = node.deploy(token_code(18), supply)
    token_b = node.deploy(token_code(6), supply)
    me = node.accounts[0]
    v2_factory = node.deploy(bytecode("UniswapV2Factory"), eth_abi.encode(["address"], [me]).hex())
    node.transact(v2_factory, call_data("createPair(address,address)", token_a, token_b))
    (pair,) = node.view(v2_factory, "getPair(address,address)", ["address"], token_a, token_b)
    (token0,) = node.view(pair, "token0()", ["address"])
    token1 = token_b if token0.lower() == token_a.lower() else token_a
    token0, token1 = token0.lower(), token1.lower()
    dex = Dex(node, token_a.lower(), token_b.lower(), pair.lower(), "", "", token0, token1)
    # V2 liquidity: 1000 A for 2000 B (price 2 B per A)
    amount_a, amount_b = 1000 * 10**18, 2000 * 10**6
    node.send(token_a, call_data("transfer(address,uint256)", pair, amount_a))
    node.send(token_b, call_data("transfer(address,uint256)", pair, amount_b))
    node.mine()
    node.transact(pair, call_data("mint(address)", me))

    v3_factory = node.deploy(bytecode("UniswapV3Factory"))
    node.transact(
        v3_factory, call_data("createPool(address,address,uint24)", token_a, token_b, 3000)
    )
    (pool,) = node.view(
        v3_factory, "getPool(address,address,uint24)", ["address"], token_a, token_b, 3000
    )
    dex.pool = pool.lower()
    # price 2 B per A in raw units: token1/token0 raw
    raw_price = (2 * 10**6 / 10**18) if token0 == dex.token_a else (10**18 / (2 * 10**6))
    sqrt_price = math.isqrt(int(raw_price * 2**192))
    node.transact(dex.pool, call_data("initialize(uint160)", sqrt_price))
    callee = "0x" + "c0ffee".ljust(40, "0")
    node.rpc("anvil_setCode", callee, callee_code())
    dex.callee = callee
    for token in (token_a, token_b):
        node.send(token, call_data("transfer(address,uint256)", callee, SUPPLY // 4))
    node.mine()
    mint = call_data(
        "mint(address,int24,int24,uint128,bytes)",
        me,
        -887220,
        887220,
        10**15,
        eth_abi.encode(["address", "address"], [token0, token1]),
    )
    node.transact(callee, _forward(dex.pool, mint))
    return dex


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil for one test (starts in well under a second), stopped by PID."""
    node = Anvil()
    node.start()
    yield node
    node.stop()
    node.http.close()
