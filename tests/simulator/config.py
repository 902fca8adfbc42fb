"""Simulator settings: the coin universe, the HLP vault addresses and every tunable knob."""

from __future__ import annotations

from dataclasses import dataclass

HLP_PARENT = "0xdfc24b077bc1425ad1dea75bcb6f8158e10df303"
HLP_LEADER = "0x677d831aef5328190852e24f13c46cac05f984e7"
HLP_STRATEGY_A = "0x010461c14e146ac35fe42271bdc1134ee31c703a"
HLP_LIQUIDATOR = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"
HLP_STRATEGY_B = "0x31ca8395cf837de08b24da3f660e77761dfb974b"
HLP_LIQUIDATOR_2 = "0xb0a55f13d22f66e6d495ac98113841b2326e9540"

# (address, name) of every HLP child vault, in the order vaultDetails lists them.
HLP_CHILDREN: tuple[tuple[str, str], ...] = (
    (HLP_STRATEGY_A, "HLP Strategy A"),
    (HLP_LIQUIDATOR, "HLP Liquidator"),
    (HLP_STRATEGY_B, "HLP Strategy B"),
    (HLP_LIQUIDATOR_2, "Liquidator 2"),
)
LIQUIDATOR_VAULTS: frozenset[str] = frozenset({HLP_LIQUIDATOR, HLP_LIQUIDATOR_2})
ZERO_HASH = "0x" + "0" * 64


@dataclass(frozen=True)
class CoinSpec:
    """One perp of `meta.universe`; `price` is the anchor the random walk reverts to (USD)."""

    name: str
    sz_decimals: int
    max_leverage: int
    price: float
    is_delisted: bool = False
    weight: float = 1.0  # share of the trade flow


DEFAULT_COINS: tuple[CoinSpec, ...] = (
    CoinSpec("BTC", 5, 40, 84981.0, weight=4.0),
    CoinSpec("ETH", 4, 25, 2707.0, weight=3.0),
    CoinSpec("SOL", 2, 20, 122.99, weight=2.0),
    CoinSpec("MATIC", 1, 20, 0.5, is_delisted=True),
    CoinSpec("HYPE", 2, 10, 35.27, weight=2.0),
    CoinSpec("kPEPE", 0, 10, 0.0123, weight=1.0),
)


@dataclass
class SimConfig:
    """Every knob of the simulator; `Simulator(**kwargs)` accepts these names as keywords.

    Times are seconds unless the name says otherwise; rates are per second.
    """

    seed: int = 1
    host: str = "127.0.0.1"
    port: int = 0
    coins: tuple[CoinSpec, ...] = DEFAULT_COINS
    n_addresses: int = 300
    near_liq_fraction: float = 0.08  # share of positions whose liquidationPx is 1-2 % from mark
    rate: float = 20.0  # trades/s over all coins in the background flow (0 = no flow)
    block_interval: float = 0.07  # flow cadence: trades of one "block" go out in one frame per coin
    push_interval: float = 0.5  # cadence of l2Book, bbo, allMids, activeAssetCtx and candle pushes
    evolve_interval: float = 5.0  # positions open/close/resize (0 = frozen population)
    evolve_fraction: float = 0.02  # share of accounts touched per evolution step
    auto_liquidations: bool = True  # liquidate positions whose liquidationPx the mark crosses
    price_sigma: float = 2e-4  # log-price step per trade
    price_reversion: float = 1e-4  # pull of each step back to the coin's anchor price
    zero_hash_fraction: float = 0.05  # share of taker orders whose hash is all zeros (TWAP-like)
    recent_trades: int = 10  # trades served by REST recentTrades per coin (API.md 2.5: ~10)
    recent_trades_newest_first: bool = False  # order of recentTrades (the real one is unknown)
    replay_trades: int = 30  # trades replayed to a new trades subscription
    max_user_fills: int = 2000  # fills kept per address for userFills
    weight_budget: int = 1200  # REST weight per IP per window
    weight_window: float = 60.0
    idle_timeout: float = 60.0  # WS drop after this long without a client text/binary message
    max_connections: int = 10  # per IP; further upgrades get HTTP 429
    max_subscriptions: int = 1000  # per IP, over all its sockets
    max_ws_messages_per_minute: int = 2000  # per IP, client->server
    max_outbox_frames: int = 20000  # a socket this far behind is dropped as a slow consumer
    ledger_max_trades: int | None = None  # keep at most this many trade records (counts stay exact)
    ledger_max_records: int | None = None  # same for positions/ctx polls/errors served, and
    # for position changes (trades settled) and transfers

    @property
    def active_coins(self) -> list[CoinSpec]:
        return [c for c in self.coins if not c.is_delisted]
