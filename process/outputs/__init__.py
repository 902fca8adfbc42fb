"""Live outputs fed by the event bus (`process.bus`): each runs beside the collector, reads its
own subscription and never slows collection (a slow or unreachable output drops and counts)."""

from __future__ import annotations

from typing import Protocol

from config import Settings
from process.bus import EventBus
from process.outputs.redis_publisher import RedisPublisher
from utils.metrics import Sample


class Output(Protocol):
    async def run(self) -> None:
        """Deliver until closed; survives its destination's outages."""

    async def close(self, grace: float) -> None:
        """Deliver what is buffered for up to `grace` seconds, then stop."""

    def samples(self) -> list[Sample]: ...


def open_outputs(settings: Settings, bus: EventBus) -> list[Output]:
    """The outputs the settings enable, each subscribed to `bus`."""
    outputs: list[Output] = []
    if settings.redis.enabled:
        outputs.append(RedisPublisher(settings.redis, bus))
    return outputs
