"""`python main.py tail trades|liquidations|alerts|book`: a live terminal view from the library's
own `LiveFeed` (its own connection; no InfluxDB, no collector needed). Lines are rendered by
`process.outputs.tail`.

- trades: every trade (no REST polling at all);
- liquidations: backstops at once, market liquidations once the victim's fills confirm them (the
  feed polls the positions of the addresses it sees trading within `--weight-budget`);
- alerts: the configured `alerts:` rules evaluated on this feed: liquidation rules, wallet rules
  (the watched addresses are polled first) and near-liquidation rules (the feed's position
  book, checked every `near_liquidation_interval`). Nothing is sent to the rules' webhooks: the
  collector delivers those;
- book: one coin's l2Book, at most one snapshot a second: mid, spread and the top 5 levels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any, TextIO, cast

from config import Settings
from hyperflux.live import DEFAULT_WEIGHT_BUDGET, LiveFeed
from process.alerts.rules import AlertsConfig
from process.bus import Subscription
from process.outputs.tail import VIEWS, View, header, render
from utils.errors import HyperfluxError

BOOK_EVERY_MS = 1000
SUBSCRIBE_WAIT = 10.0


def feed_options(view: View, alerts: AlertsConfig | None) -> dict[str, Any]:
    """What each view needs of the feed (and no more: REST weight only where it pays)."""
    if view == "trades":
        return {"track_positions": False, "discover_vaults": False}
    if view == "book":
        return {"track_positions": False, "discover_vaults": False, "channels": ("l2Book",)}
    if view == "alerts":
        if alerts is None or not alerts.enabled:
            raise HyperfluxError(
                "tail alerts: no alert rules configured (the alerts: section of the config, or "
                "HYPERFLUX_ALERTS; see config/default.yaml)"
            )
        return {"track_positions": True, "alerts": alerts}
    return {"track_positions": True}


async def tail(
    view: View,
    out: TextIO,
    stop: asyncio.Event,
    *,
    api_url: str,
    ws_url: str,
    coins: list[str] | None = None,
    min_usd: float = 0.0,
    alerts: AlertsConfig | None = None,
    weight_budget: int = DEFAULT_WEIGHT_BUDGET,
    connections: int = 1,
) -> int:
    """Write `view`'s lines to `out` until `stop` is set; returns the exit status."""
    if view not in VIEWS:
        raise HyperfluxError(f"tail shows one of {', '.join(VIEWS)}, not {view!r}")
    if min_usd < 0:
        raise HyperfluxError(f"--min-usd must be >= 0, got {min_usd:g}")
    if view == "book" and (not coins or len(coins) != 1):
        raise HyperfluxError("tail book shows one coin: add --coin, e.g. --coin BTC")
    options = feed_options(view, alerts)
    async with LiveFeed(
        api_url, ws_url, coins, weight_budget=weight_budget, connections=connections, **options
    ) as feed:
        subscription = feed.subscribe([VIEWS[view]], coins, buffer=1000)
        with contextlib.suppress(HyperfluxError):  # slow to subscribe: show what comes anyway
            await feed.wait_subscribed(SUBSCRIBE_WAIT)
        out.write(header(view, coins, min_usd) + "\n")
        out.flush()
        shower = asyncio.create_task(_show(view, subscription, out, min_usd))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({shower, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (shower, stopped):
                task.cancel()
            await asyncio.gather(shower, stopped, return_exceptions=True)
        failure = None if shower.cancelled() else shower.exception()
        if failure is not None:
            raise failure
    return 0


async def _show(view: View, subscription: Subscription, out: TextIO, min_usd: float) -> None:
    shown: dict[str | None, int] = {}  # book: coin -> time of the last snapshot shown
    async for event in subscription:
        if view == "book":
            if event.time_ms - shown.get(event.coin, 0) < BOOK_EVERY_MS:
                continue
            shown[event.coin] = event.time_ms
        lines = render(event, min_usd)
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()


def tail_command(
    settings: Settings, view: str, coin: str | None, min_usd: str, weight_budget: str
) -> int:
    """The `tail` command (arguments as typed; a bad one is one line naming it). Ctrl-C or
    SIGTERM stops it quietly within about a second."""
    if view not in VIEWS:
        raise HyperfluxError(f"tail shows one of {', '.join(VIEWS)}, not {view!r}")
    amount = _number("--min-usd", min_usd, float)
    budget = _number("--weight-budget", weight_budget, int)
    if settings.log_level.upper() != "DEBUG":  # connection notes would garble the view
        logging.getLogger().setLevel(logging.WARNING)
    coins = [c.strip() for c in coin.split(",") if c.strip()] if coin else None
    coins = coins or (list(settings.coins) or None)
    return asyncio.run(_run(settings, cast(View, view), coins, amount, budget))


def _number(option: str, text: str, kind: type[float] | type[int]) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise HyperfluxError(f"{option} takes a number, got {text!r}") from None


async def _run(
    settings: Settings, view: View, coins: list[str] | None, min_usd: float, budget: int
) -> int:
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None

    def on_signal() -> None:  # also while starting (a request hanging): give up at once
        stop.set()
        task.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        return await tail(
            view,
            sys.stdout,
            stop,
            api_url=str(settings.hl_api_url),
            ws_url=settings.hl_ws_url,
            coins=coins,
            min_usd=min_usd,
            alerts=settings.alerts,
            weight_budget=budget,
        )
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        return 0
    except BrokenPipeError:  # `| head`: the reader left
        with contextlib.suppress(OSError):
            sys.stdout.close()
        return 0
