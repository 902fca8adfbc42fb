"""CPU microseconds per trade of the collector's trade path, in one process, without I/O.

The objects are those of a `process.collector.Collector` (`wire` builds one; its constructor
does no I/O): `fetch.ws.MarketStream.handle_frame` (validation, dedupe) -> `process.jobs.
TradeSink` -> `process.points.PointBuilder` (timestamp slots, line protocol) +
`LiquidationDetector` + the position book + address discovery (`PositionsJob.discover` ->
`AddressRegistry` in SQLite + `PollScheduler`) + the stream state -> the writer's `write()`,
here a counter: no socket, no HTTP, no influxd. Frames (wire format, 100
trades, exchange time = now, buyers and sellers drawn from `addresses` traders) are made before
the clock starts; the figure is process CPU time per trade, best of `rounds` fresh pipelines.

Why: on a 2-core box the end-to-end figure mixes the collector with the simulator and influxd;
this one is the Python cost alone, steady and comparable between commits. 1e6 / us_per_trade is
the most one core could take in before the WebSocket, the HTTP posts and InfluxDB are counted.
With a large population the first pass discovers every trader (registry inserts, scheduling):
`steady` is a second pass over known traders, `discovering` the first.

`python -m bench.trade_path [--addresses N]` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.memory import COINS, LIQUIDATOR, FrameMaker, address
from config import load_settings
from fetch.ws import MarketStream
from process.collector import Collector, Sources
from process.storage_ports import PointSink
from validate import parse_clearinghouse_state, parse_ws_message

FLAT_ACCOUNT = json.dumps(
    {
        "assetPositions": [],
        "marginSummary": dict.fromkeys(
            ("accountValue", "totalNtlPos", "totalRawUsd", "totalMarginUsed"), "100000.0"
        ),
        "crossMarginSummary": dict.fromkeys(
            ("accountValue", "totalNtlPos", "totalRawUsd", "totalMarginUsed"), "100000.0"
        ),
        "withdrawable": "100000.0",
        "time": 0,
    }
)


class CountingSink:
    """A writer that only counts the lines it is given (its marks stay at 0: nothing lands)."""

    accepted_lines = durable_through = landed_through = 0

    def __init__(self) -> None:
        self.lines = 0

    def write(self, lines: list[str]) -> None:
        self.lines += len(lines)


def wire(writer: PointSink, data_dir: Path) -> Collector:
    """The collector's trade path around `writer`, wired by `process.collector.Collector` itself
    (its constructor does no I/O; no REST source: it never polls; `collector.stream` is a
    `MarketStream` feeding it). Close `collector.registry` when done."""
    settings = load_settings(
        None, env={"HYPERFLUX_DATA_DIR": str(data_dir), "HYPERFLUX_METRICS_PORT": "0"}
    )
    sources = Sources(
        info=None,  # type: ignore[arg-type] - the trade path makes no REST request
        positions_info=None,  # type: ignore[arg-type]
        hlp_info=None,  # type: ignore[arg-type]
        profiles_info=None,  # type: ignore[arg-type]
        vaults={},
        liquidators=frozenset({LIQUIDATOR}),
        open_stream=None,  # type: ignore[arg-type]
        samples=list,
        quarantined=lambda: 0,
        rest_polls_per_minute=378.0,  # the default positions share of the budget
    )
    storage = SimpleNamespace(writer=writer, target=None)
    collector = Collector(settings, storage, sources)  # type: ignore[arg-type]
    coins = [c for c, _, _ in COINS]
    collector.stream = MarketStream("ws://127.0.0.1:1/ws", coins, on_trades=collector.sink)
    return collector


def _cpu_per_trade(feed: Any, frames: list[bytes], trades: int) -> float:
    started = time.process_time()
    for frame in frames:
        feed(frame)
    return (time.process_time() - started) / trades * 1e6


def run(
    addresses: int = 300, trades: int = 100_000, rounds: int = 5, frame_size: int = 100
) -> dict[str, Any]:
    trades -= trades % frame_size
    whole, validation, discovering, booked = [], [], [], []
    for r in range(rounds):
        maker = FrameMaker(addresses, seed=r)
        frames = [maker.frame(frame_size).encode() for _ in range(trades // frame_size)]
        with tempfile.TemporaryDirectory(prefix="hyperflux-trade-path-") as tmp:
            sink = CountingSink()
            collector = wire(sink, Path(tmp) / "plain")
            stream = collector.stream
            assert isinstance(stream, MarketStream)
            if addresses > trades:  # first pass: discovering; measure the second, steady one
                discovering.append(_cpu_per_trade(stream.handle_frame, frames, trades))
                frames = [maker.frame(frame_size).encode() for _ in range(trades // frame_size)]
            whole.append(_cpu_per_trade(stream.handle_frame, frames, trades))
            validation.append(_cpu_per_trade(parse_ws_message, frames, trades))
            assert sink.lines >= trades, "every trade becomes a point"
            collector.registry.close()
            # every trader polled once: each trade now moves two accounts of the position book
            collector = wire(sink, Path(tmp) / "booked")
            flat, _ = parse_clearinghouse_state(FLAT_ACCOUNT)
            assert flat is not None and isinstance(collector.stream, MarketStream)
            for i in range(addresses):
                collector.book.reconcile(address(i), flat, 0)
            frames = [maker.frame(frame_size).encode() for _ in range(trades // frame_size)]
            booked.append(_cpu_per_trade(collector.stream.handle_frame, frames, trades))
            collector.registry.close()
    best = min(whole)
    result: dict[str, Any] = {
        "addresses": addresses,
        "trades_per_round": trades,
        "rounds": rounds,
        "us_per_trade": round(best, 2),
        "us_per_trade_rounds": [round(x, 2) for x in whole],
        "validation_us_per_trade": round(min(validation), 2),
        "book_tracks_every_trader_us_per_trade": round(min(booked), 2),
        "one_core_trades_per_s": round(1e6 / best),
    }
    if discovering:
        result["discovering_us_per_trade"] = round(min(discovering), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=300)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.addresses, args.trades, args.rounds), indent=2))


if __name__ == "__main__":
    main()
