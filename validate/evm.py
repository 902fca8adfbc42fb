"""Pydantic models of the HyperEVM JSON-RPC answers hyperflux reads (Ethereum's wire format).

Quantities are `0x` hex strings without leading zeros (`0x0`, `0x1b4`); hashes are 32 bytes and
addresses 20 bytes of hex, lower-cased here. A JSON-RPC answer is an envelope with either a
`result` (any JSON, `null` included: an unknown block) or an `error` {code, message}.
`parse_logs` keeps the good logs of an `eth_getLogs` answer and rejects the bad ones one by one,
for the quarantine.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from validate.common import Rejected

_QUANTITY = re.compile(r"0x(0|[1-9a-fA-F][0-9a-fA-F]*)")
_DATA = re.compile(r"0x([0-9a-fA-F]{2})*")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def parse_quantity(value: Any) -> int:
    """An Ethereum quantity (`0x1b4`) as an int. A few nodes pad with zeros: accepted."""
    if isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{1,64}", value):
        return int(value, 16)
    raise ValueError("not a 0x hex quantity")


def _pattern(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> str:
        if isinstance(value, str) and pattern.fullmatch(value):
            return value.lower()
        raise ValueError(f"not {what}")

    return BeforeValidator(check)


Quantity = Annotated[int, BeforeValidator(parse_quantity)]
HexData = Annotated[str, _pattern(_DATA, "0x hex data (whole bytes)")]
Hash = Annotated[str, _pattern(_HASH, "a 32-byte 0x hash")]
Address = Annotated[str, _pattern(_ADDRESS, "a 20-byte 0x address")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class RpcErrorBody(_Model):
    code: int
    message: str = ""


class RpcEnvelope(_Model):
    """One JSON-RPC 2.0 answer: `result` or `error`, never neither."""

    jsonrpc: str
    id: int | str | None = None
    result: Any = None
    error: RpcErrorBody | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, data: Any) -> Any:
        if isinstance(data, dict) and "result" not in data and "error" not in data:
            raise ValueError("neither result nor error")
        return data


class Log(_Model):
    """One log of `eth_getLogs`. `blockTimestamp` is given by newer nodes (else None)."""

    address: Address
    topics: tuple[Hash, ...]
    data: HexData
    blockNumber: Quantity
    blockHash: Hash
    transactionHash: Hash
    transactionIndex: Quantity
    logIndex: Quantity
    removed: bool = False
    blockTimestamp: Quantity | None = None


class BlockHeader(_Model):
    """The fields of `eth_getBlockByNumber(n, false)` that are read."""

    number: Quantity
    hash: Hash
    parentHash: Hash
    timestamp: Quantity
    """Seconds since the Unix epoch (UTC)."""


def parse_envelope(raw: bytes) -> RpcEnvelope:
    """The envelope of one answer; ValueError (one line) when it is not JSON-RPC."""
    try:
        return RpcEnvelope.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None


def parse_header(result: Any) -> BlockHeader:
    try:
        return BlockHeader.model_validate(result)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from None


def parse_logs(result: Any) -> tuple[list[Log], list[Rejected]]:
    """The valid logs of an `eth_getLogs` result and one `Rejected` per invalid item.
    ValueError when the result is not a list at all."""
    if not isinstance(result, list):
        raise ValueError("eth_getLogs result is not a list")
    good: list[Log] = []
    bad: list[Rejected] = []
    for item in result:
        try:
            good.append(Log.model_validate(item))
        except ValidationError as exc:
            bad.append(Rejected(_reason(exc), json.dumps(item)))
    return good, bad


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    place = ".".join(str(p) for p in first["loc"]) or "answer"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{place}: {first['msg'].removeprefix('Value error, ')}{more}"
