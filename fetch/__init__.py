"""Sources of Hyperliquid data. REST: `InfoClient` draws on one shared `WeightBudget`."""

from fetch.rate_limit import (
    Budget,
    BudgetShare,
    Clock,
    MonotonicClock,
    Reservation,
    WeightBudget,
)
from fetch.rest import InfoClient, InfoRequestError, InfoStats

__all__ = [
    "Budget",
    "BudgetShare",
    "Clock",
    "InfoClient",
    "InfoRequestError",
    "InfoStats",
    "MonotonicClock",
    "Reservation",
    "WeightBudget",
]
