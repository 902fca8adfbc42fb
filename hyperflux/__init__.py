"""hyperflux as a library: Hyperliquid liquidations and trades, live, from Python.

    from hyperflux import LiquidationMonitor

    async with LiquidationMonitor(coins=["BTC", "ETH"]) as monitor:
        async for event in monitor.monitor_realtime():
            print(event.coin, event.side, event.method, event.notional)

No InfluxDB is needed: the monitor runs its own WebSocket connection and a small REST budget.
Stored history (a collector's database) is read with `read_from_influx` (`db`).
"""

from hyperflux.live import DEFAULT_WEIGHT_BUDGET, LiveFeed, UnknownCoinError
from hyperflux.monitor import LiquidationMonitor, LiquidationStatistics, Totals
from process.bus import Event
from process.liquidations import LiquidationEvent
from validate import Trade

__all__ = [
    "DEFAULT_WEIGHT_BUDGET",
    "Event",
    "LiquidationEvent",
    "LiquidationMonitor",
    "LiquidationStatistics",
    "LiveFeed",
    "Totals",
    "Trade",
    "UnknownCoinError",
]
