"""A local Hyperliquid for tests, demos and benchmarks (REST /info + WebSocket /ws, one port).

    async with Simulator(seed=1, port=0, rate=50) as sim:
        sim.url, sim.ws_url, sim.ledger.valid_trades("BTC"), sim.burst("BTC", 1000)

Wire formats follow docs/API.md and its recorded fixtures. Not runtime code.
"""

from .config import (
    DEFAULT_COINS,
    HLP_CHILDREN,
    HLP_LIQUIDATOR,
    HLP_PARENT,
    HLP_STRATEGY_A,
    LIQUIDATOR_VAULTS,
    CoinSpec,
    SimConfig,
)
from .ledger import (
    CtxPoll,
    Ledger,
    LiquidationRecord,
    MalformedRecord,
    PositionsServed,
    TradeRecord,
)
from .server import Simulator

__all__ = [
    "DEFAULT_COINS",
    "HLP_CHILDREN",
    "HLP_LIQUIDATOR",
    "HLP_PARENT",
    "HLP_STRATEGY_A",
    "LIQUIDATOR_VAULTS",
    "CoinSpec",
    "CtxPoll",
    "Ledger",
    "LiquidationRecord",
    "MalformedRecord",
    "PositionsServed",
    "SimConfig",
    "Simulator",
    "TradeRecord",
]
