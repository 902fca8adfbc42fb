"""The selectors and topics hyperflux reads, checked against the compiled contracts' real ABIs
(tools/evm: @uniswap/v2-core and v3-core) and against Algebra's published event declarations."""

from __future__ import annotations

from typing import Any

import eth_abi
import pytest

from tests.evm_node import artifact, require_tools
from validate import evm_abi as abi


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    require_tools()


def entries(contract: str, kind: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in artifact(contract)["abi"] if e["type"] == kind}


def event_signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


@pytest.mark.parametrize(
    ("contract", "events"),
    [
        ("UniswapV2Pair", (abi.V2_SWAP, abi.V2_MINT, abi.V2_BURN, abi.V2_SYNC)),
        ("UniswapV3Pool", (abi.V3_SWAP, abi.V3_MINT, abi.V3_BURN)),
    ],
)
def test_events_match_the_compiled_abi(contract: str, events: tuple[abi.Event, ...]):
    real = entries(contract, "event")
    for event in events:
        entry = real[event.solidity]
        assert event.signature == event_signature(entry)
        assert [(p.type, p.indexed) for p in event.params] == [
            (i["type"], i["indexed"]) for i in entry["inputs"]
        ]


def test_algebra_events_are_the_published_declarations():
    """cryptoalgebra/Algebra IAlgebraPoolEvents (V1: the V3 types) and Integral 1.2 (fees)."""
    v1_swap = "Swap(address,address,int256,int256,uint160,uint128,int24)"
    assert abi.V3_SWAP.signature == v1_swap
    assert abi.ALGEBRA_INTEGRAL_SWAP.signature == v1_swap[:-1] + ",uint24,uint24)"
    assert (
        abi.ALGEBRA_INTEGRAL_BURN.signature
        == "Burn(address,int24,int24,uint128,uint256,uint256,uint24)"
    )
    assert abi.V3_SWAP.topic == "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
    assert len(abi.BY_TOPIC) == sum(len(events) for events in abi.EVENTS.values())


@pytest.mark.parametrize(
    ("contract", "functions"),
    [
        ("UniswapV2Pair", (abi.GET_RESERVES, abi.TOKEN0, abi.TOKEN1, abi.TOTAL_SUPPLY)),
        ("UniswapV3Pool", (abi.SLOT0, abi.LIQUIDITY, abi.FEE, abi.TOKEN0, abi.TOKEN1)),
        ("ERC20", (abi.DECIMALS, abi.BALANCE_OF)),
    ],
)
def test_view_functions_match_the_compiled_abi(contract: str, functions: tuple[abi.Function, ...]):
    real = entries(contract, "function")
    for function in functions:
        entry = real[function.signature.split("(")[0]]
        assert function.signature == event_signature(entry)
        outputs = [o["type"] for o in entry["outputs"]]
        assert list(function.returns) == outputs[: len(function.returns)]


def test_malformed_logs_raise_value_error():
    topics = [abi.V2_SWAP.topic, "0x" + "00" * 32, "0x" + "00" * 32]
    good = eth_abi.encode(["uint256"] * 4, [1, 0, 0, 2]).hex()
    swap = abi.decode_log("v2", topics, "0x" + good)
    assert isinstance(swap, abi.Swap) and swap.amount0_in == 1 and swap.amount1_out == 2
    with pytest.raises(ValueError, match="96 data bytes, expected 128"):
        abi.decode_log("v2", topics, "0x" + good[:-64])
    with pytest.raises(ValueError, match="2 topics, expected 3"):
        abi.decode_log("v2", topics[:2], "0x" + good)
    assert abi.decode_log("v3", topics, "0x" + good) is None  # another family's event: not read


def test_decoding_speed():
    """Not a gate: swaps decoded per second, printed with -s."""
    import time

    topics = [abi.V3_SWAP.topic, "0x" + "00" * 12 + "11" * 20, "0x" + "00" * 12 + "22" * 20]
    data = (
        "0x"
        + eth_abi.encode(
            ["int256", "int256", "uint160", "uint128", "int24"],
            [10**18, -(2 * 10**6), 2**96, 10**15, -5],
        ).hex()
    )
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        abi.decode_log("v3", topics, data)
    rate = n / (time.perf_counter() - started)
    print(f"\n{rate:,.0f} V3 swaps decoded per second")
    assert rate > 0
