"""vaultDetails for HLP: the parent lists its children; positions come from clearinghouseState."""

from __future__ import annotations

import random
from typing import Any

from .config import HLP_CHILDREN, HLP_LEADER, HLP_PARENT
from .population import Population
from .wire import fmt

WINDOWS = ("day", "week", "month", "allTime", "perpDay", "perpWeek", "perpMonth", "perpAllTime")
WINDOW_MS = {"day": 86_400_000, "week": 604_800_000, "month": 2_592_000_000, "allTime": 0}
DESCRIPTION = (
    "This community-owned vault provides liquidity to Hyperliquid through multiple market making "
    "strategies, performs liquidations, and accrues platform fees."
)
CHILD_NAMES = dict(HLP_CHILDREN)


def _account_value(population: Population, address: str, time: int) -> float:
    state = population.clearinghouse_state(address, time)
    return float(state["marginSummary"]["accountValue"])


def vault_details(
    population: Population, address: str, user: str | None, time: int
) -> dict[str, Any] | None:
    """The vaultDetails object for HLP or one of its children; None (JSON null) otherwise."""
    if address == HLP_PARENT:
        name = "Hyperliquidity Provider (HLP)"
        value = sum(_account_value(population, a, time) for a in CHILD_NAMES)
        relationship: dict[str, Any] = {
            "type": "parent",
            "data": {"childAddresses": list(CHILD_NAMES)},
        }
    elif address in CHILD_NAMES:
        name = CHILD_NAMES[address]
        value = _account_value(population, address, time)
        relationship = {"type": "child"}
    else:
        return None
    rng = random.Random(f"{population.config.seed}:vault:{address}")
    followers = [
        {
            "user": follower,
            "vaultEquity": fmt(rng.uniform(1e3, 1e6), 8),
            "pnl": fmt(rng.gauss(0, 5e3), 8),
            "allTimePnl": fmt(rng.gauss(1e4, 2e4), 8),
            "daysFollowing": rng.randint(1, 700),
            "vaultEntryTime": time - rng.randint(1, 700) * 86_400_000,
            "lockupUntil": time - rng.randint(0, 100) * 86_400_000,
        }
        for follower in rng.sample(population.addresses, min(5, len(population.addresses)))
    ]
    mine = [f for f in followers if f["user"] == user]
    return {
        "name": name,
        "vaultAddress": address,
        "leader": HLP_LEADER,
        "description": DESCRIPTION,
        "portfolio": [[w, _window(rng, w, value, time)] for w in WINDOWS],
        "apr": rng.uniform(0.05, 0.4),
        "followerState": mine[0] if mine else None,
        "leaderFraction": rng.uniform(0.0005, 0.001),
        "leaderCommission": 0,
        "followers": followers,
        "maxDistributable": round(value * 0.3, 6),
        "maxWithdrawable": round(value * 0.002, 6),
        "isClosed": False,
        "relationship": relationship,
        "allowDeposits": address == HLP_PARENT,
        "alwaysCloseOnWithdraw": False,
    }


def _window(rng: random.Random, window: str, value: float, time: int) -> dict[str, Any]:
    key = window.removeprefix("perp")
    span = WINDOW_MS[key[0].lower() + key[1:]] or 400 * 86_400_000
    times = [time - span + i * span // 4 for i in range(5)]
    pnls = [0.0]
    for _ in times[1:]:
        pnls.append(pnls[-1] + rng.gauss(0, value * 0.002))
    start = value - pnls[-1]
    return {
        "accountValueHistory": [[t, fmt(start + p, 6)] for t, p in zip(times, pnls, strict=True)],
        "pnlHistory": [[t, fmt(p, 6)] for t, p in zip(times, pnls, strict=True)],
        "vlm": fmt(abs(rng.gauss(value * 5, value)), 6),
    }
