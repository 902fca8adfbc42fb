"""HyperEVM DEX pools: the `evm:` settings, the periodic job and its points."""

from process.dex.config import EvmConfig, PoolConfig, parse_evm
from process.dex.job import DexJob

__all__ = ["DexJob", "EvmConfig", "PoolConfig", "parse_evm"]
