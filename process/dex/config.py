"""The `evm:` section of the settings (`EvmConfig`): the HyperEVM node and the pools to follow.

In YAML, `evm:` holds `rpc_url`, `pools` (a list of `{address, kind: v2|v3|algebra, label}`,
optionally `dex`) and the polling settings; in the environment, HYPERFLUX_EVM holds the same as
one JSON object. No pools: the job is off. The RPC URL may carry an API key: it is a SecretStr,
never shown in a message (errors name the key, never the value).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from config.sections import parse_section, split_secret_url

PoolKind = Literal["v2", "v3", "algebra"]
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _address(value: object) -> object:
    if isinstance(value, str) and _ADDRESS.fullmatch(value.strip()):
        return value.strip().lower()
    raise ValueError("not a 0x address with 40 hex digits")


def _label(value: object) -> object:
    if isinstance(value, str) and _LABEL.fullmatch(value.strip()):
        return value.strip()
    raise ValueError(
        "not a label of 1 to 64 letters, digits and _ . : / - (starting with a letter or digit)"
    )


def _rpc_url(value: object) -> object:
    url, parts = split_secret_url(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    return SecretStr(url)


Label = Annotated[str, BeforeValidator(_label)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class PoolConfig(BaseModel):
    """One pool: its contract address, its kind of contract and the name it is stored under."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Annotated[str, BeforeValidator(_address)]
    kind: PoolKind
    label: Label
    """The `pool` tag, e.g. WHYPE/USDT0-hyperswap."""
    dex: Label | None = None
    """The `dex` tag, e.g. hyperswap; default: the kind."""

    @property
    def dex_name(self) -> str:
        return self.dex or self.kind

    @property
    def family(self) -> Literal["v2", "v3"]:
        """Event layout: Algebra pools emit the V3 events."""
        return "v2" if self.kind == "v2" else "v3"


class EvmConfig(BaseModel):
    """The `evm:` section. HyperEVM's public RPC (https://rpc.hyperliquid.xyz/evm) allows 100
    requests per minute and 50 blocks per eth_getLogs: the defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rpc_url: Annotated[SecretStr | None, BeforeValidator(_rpc_url)] = None
    pools: tuple[PoolConfig, ...] = ()
    poll_interval: Seconds = 10.0
    """Seconds between two runs of the job."""
    confirmations: Annotated[int, Field(ge=0, le=10_000)] = 5
    """Blocks behind the head that are read: a reorg shallower than this never reaches InfluxDB."""
    max_block_range: Annotated[int, Field(ge=1, le=100_000)] = 50
    """Blocks per eth_getLogs (halved automatically while the node says the range is too big)."""
    requests_per_minute: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    start_block: Annotated[int | None, Field(ge=0)] = None
    """Where a pool with nothing stored yet starts; default: `backfill_blocks` before the head."""
    backfill_blocks: Annotated[int, Field(ge=0)] = 1000
    timeout: Seconds = 10.0
    """Seconds for one RPC request."""
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 4

    @model_validator(mode="after")
    def _check(self) -> EvmConfig:
        if self.pools and self.rpc_url is None:
            raise ValueError("rpc_url is required when pools are given")
        for what in ("label", "address"):
            values = [getattr(pool, what) for pool in self.pools]
            if duplicate := next((v for v in values if values.count(v) > 1), None):
                raise ValueError(f"two pools have the {what} {duplicate!r}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.pools)


def parse_evm(value: object) -> object:
    """The `evm` setting (see `config.sections.parse_section`; the RPC URL may hold an API key,
    so no value is ever quoted)."""
    return parse_section(value, EvmConfig, "evm", "rpc_url, pools and polling settings")
