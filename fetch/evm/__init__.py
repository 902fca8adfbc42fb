"""HyperEVM source: a paced, guarded JSON-RPC client (`EvmRpc`); the pools' ABI is
`validate.evm_abi` (wire formats), the job that uses both `process.dex`."""

from fetch.evm.rpc import EvmRpc

__all__ = ["EvmRpc"]
