"""The slice of the DEX pools' ABIs that hyperflux reads: view functions and Swap/Mint/Burn/Sync.

Declared as Solidity signatures, so a selector or topic is keccak-256 of exactly the text the
contract's ABI gives (tests/test_evm_abi.py checks every one against the compiled Uniswap V2
and V3 artifacts in tools/evm). Algebra pools (V1 and Integral) emit the Uniswap V3 events with
the same types, hence the same topics; Algebra Integral 1.2+ adds `overrideFee, pluginFee` to
Swap and `pluginFee` to Burn, which are other topics, decoded too. Decoding is `eth_abi`'s.

`decode_log` turns one log into a `Swap`, `Liquidity` (mint or burn) or `Sync` with raw
integer amounts (decimals are applied where points are built), or raises ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import eth_abi
from eth_utils import keccak

Family = Literal["v2", "v3"]
"""Event layout: Uniswap V2 (amounts in and out) or V3 (signed deltas; Algebra too)."""


def selector(signature: str) -> str:
    """`0x` + the first 4 bytes of keccak-256 of a function signature like `fee()`."""
    return "0x" + keccak(text=signature)[:4].hex()


def topic(signature: str) -> str:
    """`0x` + keccak-256 of an event signature: its topic 0."""
    return "0x" + keccak(text=signature).hex()


@dataclass(frozen=True)
class Function:
    """A view function without arguments (or with one address) and the types it returns."""

    signature: str
    returns: tuple[str, ...]

    @property
    def selector(self) -> str:
        return selector(self.signature)

    def call_data(self, *args: str) -> str:
        """The `data` of an eth_call: selector + ABI-encoded arguments (addresses only)."""
        types = self.signature[self.signature.index("(") + 1 : -1]
        encoded = eth_abi.encode(types.split(","), list(args)) if types else b""
        return self.selector + encoded.hex()

    def decode(self, result: str) -> tuple[object, ...]:
        """The returned values; ValueError when `result` is not what the ABI says.

        Extra words after the declared ones are allowed: Algebra V1 and Integral return longer
        `globalState` tuples that start alike."""
        data = hex_bytes(result)
        if len(data) < 32 * len(self.returns):
            raise ValueError(f"{self.signature} returned {len(data)} bytes")
        try:
            return tuple(eth_abi.decode(list(self.returns), data, strict=False))
        except Exception as exc:  # eth_abi raises several DecodingError kinds
            raise ValueError(f"{self.signature} answer does not decode: {exc}") from None


TOKEN0 = Function("token0()", ("address",))
TOKEN1 = Function("token1()", ("address",))
DECIMALS = Function("decimals()", ("uint8",))
TOTAL_SUPPLY = Function("totalSupply()", ("uint256",))
BALANCE_OF = Function("balanceOf(address)", ("uint256",))
GET_RESERVES = Function("getReserves()", ("uint112", "uint112", "uint32"))
SLOT0 = Function("slot0()", ("uint160", "int24"))  # sqrtPriceX96, tick, (observation fields)
GLOBAL_STATE = Function("globalState()", ("uint160", "int24", "uint16"))  # price, tick, fee
LIQUIDITY = Function("liquidity()", ("uint128",))
FEE = Function("fee()", ("uint24",))


@dataclass(frozen=True)
class Param:
    type: str
    name: str
    indexed: bool = False


@dataclass(frozen=True)
class Event:
    name: Literal["swap", "mint", "burn", "sync"]
    family: Family
    solidity: str
    params: tuple[Param, ...]

    @property
    def signature(self) -> str:
        return f"{self.solidity}({','.join(p.type for p in self.params)})"

    @property
    def topic(self) -> str:
        return topic(self.signature)

    def decode(self, topics: Sequence[str], data: str) -> dict[str, object]:
        """The event's values by name; ValueError when topics or data do not fit the ABI."""
        indexed = [p for p in self.params if p.indexed]
        plain = [p for p in self.params if not p.indexed]
        if len(topics) != 1 + len(indexed):
            raise ValueError(f"{self.signature}: {len(topics)} topics, expected {1 + len(indexed)}")
        values: dict[str, object] = {}
        try:
            for param, word in zip(indexed, topics[1:], strict=True):
                (values[param.name],) = eth_abi.decode([param.type], hex_bytes(word))
            body = hex_bytes(data)
            if len(body) != 32 * len(plain):  # every data type here is static: one word each
                raise ValueError(f"{len(body)} data bytes, expected {32 * len(plain)}")
            decoded = eth_abi.decode([p.type for p in plain], body)
        except ValueError as exc:
            raise ValueError(f"{self.signature}: {exc}") from None
        except Exception as exc:  # eth_abi's DecodingError kinds (e.g. a value out of range)
            raise ValueError(f"{self.signature} does not decode: {exc}") from None
        values.update(zip((p.name for p in plain), decoded, strict=True))
        return values


def _p(spec: str) -> tuple[Param, ...]:
    """`"address indexed sender, uint256 amount0In"` as params."""
    params = []
    for item in spec.split(","):
        words = item.split()
        params.append(Param(words[0], words[-1], indexed="indexed" in words))
    return tuple(params)


V2_SWAP = Event(
    "swap",
    "v2",
    "Swap",
    _p(
        "address indexed sender, uint256 amount0In, uint256 amount1In, uint256 amount0Out,"
        " uint256 amount1Out, address indexed to"
    ),
)
V2_MINT = Event(
    "mint", "v2", "Mint", _p("address indexed sender, uint256 amount0, uint256 amount1")
)
V2_BURN = Event(
    "burn",
    "v2",
    "Burn",
    _p("address indexed sender, uint256 amount0, uint256 amount1, address indexed to"),
)
V2_SYNC = Event("sync", "v2", "Sync", _p("uint112 reserve0, uint112 reserve1"))
_V3_SWAP_PARAMS = (
    "address indexed sender, address indexed recipient, int256 amount0, int256 amount1,"
    " uint160 sqrtPriceX96, uint128 liquidity, int24 tick"
)
V3_SWAP = Event("swap", "v3", "Swap", _p(_V3_SWAP_PARAMS))
V3_MINT = Event(
    "mint",
    "v3",
    "Mint",
    _p(
        "address sender, address indexed owner, int24 indexed tickLower, int24 indexed tickUpper,"
        " uint128 amount, uint256 amount0, uint256 amount1"
    ),
)
_V3_BURN_PARAMS = (
    "address indexed owner, int24 indexed tickLower, int24 indexed tickUpper, uint128 amount,"
    " uint256 amount0, uint256 amount1"
)
V3_BURN = Event("burn", "v3", "Burn", _p(_V3_BURN_PARAMS))
ALGEBRA_INTEGRAL_SWAP = Event(
    "swap", "v3", "Swap", _p(_V3_SWAP_PARAMS + ", uint24 overrideFee, uint24 pluginFee")
)
ALGEBRA_INTEGRAL_BURN = Event("burn", "v3", "Burn", _p(_V3_BURN_PARAMS + ", uint24 pluginFee"))

EVENTS: dict[Family, tuple[Event, ...]] = {
    "v2": (V2_SWAP, V2_MINT, V2_BURN, V2_SYNC),
    "v3": (V3_SWAP, V3_MINT, V3_BURN, ALGEBRA_INTEGRAL_SWAP, ALGEBRA_INTEGRAL_BURN),
}
BY_TOPIC: dict[str, Event] = {e.topic: e for events in EVENTS.values() for e in events}
"""Every event read, by topic 0 (the V2 and V3 signatures differ, so no topic is shared)."""


@dataclass(frozen=True)
class Swap:
    """One swap in raw token units: what went into the pool and what came out of it."""

    amount0_in: int
    amount1_in: int
    amount0_out: int
    amount1_out: int
    sender: str
    recipient: str
    sqrt_price_x96: int | None = None
    """V3/Algebra: the pool's price after the swap (V2: from the Sync before the Swap)."""
    liquidity: int | None = None
    tick: int | None = None


@dataclass(frozen=True)
class Liquidity:
    """Liquidity added (mint) or removed (burn), raw token units."""

    kind: Literal["mint", "burn"]
    amount0: int
    amount1: int
    owner: str
    """V2: the sender of mint/burn; V3: the position's owner."""
    liquidity: int | None = None
    """V3/Algebra: the liquidity amount of the position change."""
    tick_lower: int | None = None
    tick_upper: int | None = None


@dataclass(frozen=True)
class Sync:
    """V2: the pair's reserves right after a swap, mint or burn (emitted before those events)."""

    reserve0: int
    reserve1: int


Decoded = Swap | Liquidity | Sync


def decode_log(family: Family, topics: Sequence[str], data: str) -> Decoded | None:
    """The event of one log of a pool of `family`; None for an event that is not read (e.g.
    Collect); ValueError when the log does not fit its ABI."""
    if not topics:
        raise ValueError("a log without topics")
    event = BY_TOPIC.get(topics[0].lower())
    if event is None or event.family != family:
        return None
    v = event.decode(topics, data)
    if event is V2_SYNC:
        return Sync(int(v["reserve0"]), int(v["reserve1"]))  # type: ignore[call-overload]
    if event is V2_SWAP:
        return Swap(
            amount0_in=v["amount0In"],  # type: ignore[arg-type]
            amount1_in=v["amount1In"],  # type: ignore[arg-type]
            amount0_out=v["amount0Out"],  # type: ignore[arg-type]
            amount1_out=v["amount1Out"],  # type: ignore[arg-type]
            sender=str(v["sender"]).lower(),
            recipient=str(v["to"]).lower(),
        )
    if event.name == "swap":
        amount0, amount1 = int(v["amount0"]), int(v["amount1"])  # type: ignore[call-overload]
        return Swap(
            amount0_in=max(amount0, 0),
            amount1_in=max(amount1, 0),
            amount0_out=max(-amount0, 0),
            amount1_out=max(-amount1, 0),
            sender=str(v["sender"]).lower(),
            recipient=str(v["recipient"]).lower(),
            sqrt_price_x96=v["sqrtPriceX96"],  # type: ignore[arg-type]
            liquidity=v["liquidity"],  # type: ignore[arg-type]
            tick=v["tick"],  # type: ignore[arg-type]
        )
    owner = v["sender"] if event.family == "v2" else v["owner"]
    return Liquidity(
        kind=event.name,  # type: ignore[arg-type]
        amount0=v["amount0"],  # type: ignore[arg-type]
        amount1=v["amount1"],  # type: ignore[arg-type]
        owner=str(owner).lower(),
        liquidity=v.get("amount"),  # type: ignore[arg-type]
        tick_lower=v.get("tickLower"),  # type: ignore[arg-type]
        tick_upper=v.get("tickUpper"),  # type: ignore[arg-type]
    )


def hex_bytes(text: str) -> bytes:
    """Bytes of a `0x` hex string; ValueError otherwise."""
    if not isinstance(text, str) or not text.startswith(("0x", "0X")):
        raise ValueError("not a 0x hex string")
    return bytes.fromhex(text[2:])
