"""The Hyperliquid side's figures as metric samples (see utils/metrics.py)."""

from __future__ import annotations

from fetch.rest import InfoClient
from fetch.ws import MarketStream
from utils.metrics import Sample

_BREAKER_STATE = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


def rest_samples(client: InfoClient) -> list[Sample]:
    stats = client.stats
    out = [
        Sample("hl_retries_total", "counter", "REST attempts retried", stats.retries),
        Sample(
            "hl_rate_limited_total", "counter", "429 answers from Hyperliquid", stats.rate_limited
        ),
        Sample("hl_weight_used_total", "counter", "REST weight spent", stats.weight_used),
        Sample(
            "hl_weight_last_60s",
            "gauge",
            "REST weight used in the last 60 s (budget: hl.weight_budget less the margin)",
            client.budget.used_last_60s(),
        ),
    ]
    out += [
        Sample("hl_requests_total", "counter", "REST requests by type", n, {"type": info_type})
        for info_type, n in sorted(stats.requests.items())
    ]
    out += [
        Sample(
            "hl_breaker_state",
            "gauge",
            "circuit breaker per request type: 0 closed, 1 half-open, 2 open",
            _BREAKER_STATE.get(breaker.state, 2.0),
            {"type": info_type},
        )
        for info_type, breaker in sorted(client.breakers.items())
    ]
    return out


def ws_samples(stream: MarketStream) -> list[Sample]:
    stats = stream.stats
    return [
        Sample("ws_frames_total", "counter", "WebSocket messages received", stats.frames),
        Sample("ws_trades_total", "counter", "distinct trades received", stats.trades),
        Sample("ws_duplicates_total", "counter", "replayed trades dropped", stats.duplicates),
        Sample("ws_backfilled_total", "counter", "trades recovered over REST", stats.backfilled),
        Sample("ws_reconnects_total", "counter", "WebSocket reconnects", stats.reconnects),
        Sample("ws_stale_total", "counter", "sockets dropped as stale", stats.stale),
        Sample("ws_errors_total", "counter", "error frames from Hyperliquid", stats.errors),
        Sample("ws_gaps_total", "counter", "trade gaps not filled", len(stream.gaps)),
        Sample(
            "ws_connected", "gauge", "WebSocket connections open", float(stream.connected_count)
        ),
        Sample("ws_gaps_open", "gauge", "gaps waiting for their backfill", len(stream.open_gaps)),
    ]
