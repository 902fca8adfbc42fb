"""CPU microseconds per trade of the collector's trade path, in one process, without I/O.

The objects are wired as `process.collector.Collector` wires them (`wire`):
`fetch.ws.MarketStream.handle_frame` (validation, dedupe) -> `process.jobs.TradeSink` ->
`process.points.PointBuilder` (timestamp slots, line protocol) + `LiquidationDetector` + address
discovery (`PositionsJob.discover` -> `AddressRegistry` in SQLite + `PollScheduler`) -> the
writer's `write()`, here a counter: no socket, no HTTP, no influxd. Frames (wire format, 100
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
from typing import Any

from bench.memory import COINS, LIQUIDATOR, FrameMaker, address
from fetch.ws import MarketStream
from process.jobs import PositionsJob, TradeSink
from process.liquidations import LiquidationDetector
from process.points import PointBuilder
from process.poll_scheduler import PollScheduler
from process.positions.book import PositionBook
from process.registry import AddressRegistry
from process.shard import Shard
from process.storage_ports import PointSink
from validate import Trade, parse_clearinghouse_state, parse_ws_message

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
    """A writer that only counts the lines it is given."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, lines: list[str]) -> None:
        self.lines += len(lines)


def wire(
    writer: PointSink, registry: AddressRegistry
) -> tuple[MarketStream, PointBuilder, PositionsJob]:
    """The collector's trade path around `writer` and `registry` (no REST source: never polls)."""
    builder = PointBuilder()
    positions = PositionsJob(
        None,  # type: ignore[arg-type] - discovers only
        builder,
        writer,
        registry,
        PollScheduler(rate_per_min=378.0),  # the default positions share of the budget
        Shard.parse("0/1"),
    )
    book = PositionBook()
    positions.book = book
    detector = LiquidationDetector(frozenset({LIQUIDATOR}), book.views)

    def traded(trades: list[Trade], time_ms: int) -> None:  # as Collector._traded
        book.apply_trades(trades)
        positions.discover(trades, time_ms)

    sink = TradeSink(builder, writer, detector, discover=traded)
    stream = MarketStream("ws://127.0.0.1:1/ws", [c for c, _, _ in COINS], on_trades=sink)
    return stream, builder, positions


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
            registry = AddressRegistry(Path(tmp) / "addresses.sqlite")
            stream, _, _ = wire(sink, registry)
            if addresses > trades:  # first pass: discovering; measure the second, steady one
                discovering.append(_cpu_per_trade(stream.handle_frame, frames, trades))
                frames = [maker.frame(frame_size).encode() for _ in range(trades // frame_size)]
            whole.append(_cpu_per_trade(stream.handle_frame, frames, trades))
            validation.append(_cpu_per_trade(parse_ws_message, frames, trades))
            assert sink.lines >= trades, "every trade becomes a point"
            registry.close()
            # every trader polled once: each trade now moves two accounts of the position book
            registry = AddressRegistry(Path(tmp) / "booked.sqlite")
            stream, _, positions = wire(sink, registry)
            flat, _ = parse_clearinghouse_state(FLAT_ACCOUNT)
            assert flat is not None and positions.book is not None
            for i in range(addresses):
                positions.book.reconcile(address(i), flat, 0)
            frames = [maker.frame(frame_size).encode() for _ in range(trades // frame_size)]
            booked.append(_cpu_per_trade(stream.handle_frame, frames, trades))
            registry.close()
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
