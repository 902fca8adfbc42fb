"""Peak resident memory (VmHWM) of the collector after `trades` trades from `addresses` traders.

Two modes (`run(mode=...)`); both read VmHWM from /proc/<pid>/status of a fresh process:

- "inprocess" (default): a child process (`python -m bench.memory --child ...`) wires the
  collector's own objects for the trade path as `process.collector.Collector` does:
  `fetch.ws.MarketStream.handle_frame` (validation, dedupe) -> `process.jobs.TradeSink` ->
  `process.points.PointBuilder` (timestamp slots, line protocol) + `LiquidationDetector` ->
  `db.writer.InfluxWriter` posting to a private influxd, and the address discovery
  (`PositionsJob.discover` -> `AddressRegistry` in SQLite + `PollScheduler`). It feeds them
  generated `trades` frames (`frame_size` trades, wire format, exchange time = now) whose buyers
  and sellers are drawn from `addresses` traders, as fast as InfluxDB takes the points (the
  feed waits while more than `max_pending` points are unsent: real traffic is far slower than
  this, so a writer queue that a flood would build is not what is measured here); it yields to
  the event loop after every frame, as a socket read between two frames does.
  Why: on this 2-core box the full WebSocket path (simulator + collector + influxd) runs at
  about 10-20k trades/s, so 10M trades take 10-15 minutes, and most of that CPU goes to the
  simulator; the child does the same work per trade without the simulator and the socket.
  Not included: the websockets and REST clients, APScheduler and the positions polls (a few MB;
  compare with mode "subprocess" at the same size).
- "subprocess": `python main.py run` against the simulator (its own process, a population of
  `addresses`) pushing `trades` trades over the WebSocket, positions polling as configured by
  default; VmRSS is sampled every 5 s and VmHWM read before SIGTERM. The push is a flood (as
  fast as the collector reads), so the writer's backlog (`max_pending_points`) counts too.

With `positions_projection`, the in-process child afterwards stores a parsed position snapshot
for every known address in the position book (`PositionBook.reconcile`), as months of polling
would, and reports the resident memory that adds.

`python -m bench.memory [--mode subprocess] [--trades N] [--addresses N]` prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    REPO,
    Influx,
    SimProcess,
    collector_env,
    memory_mb,
    scrape,
    start_collector,
    stop,
    wait_for_coins,
)
from bench.writer import create_db
from db.local_server import LocalInfluxd
from utils.net import free_port

DB = "hyperliquid"
COINS = (("BTC", 84981.0, 4.0), ("ETH", 2707.0, 3.0), ("SOL", 122.99, 2.0), ("HYPE", 35.27, 2.0))
LIQUIDATOR = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"
_MIX = 0x9E3779B97F4A7C15F39CC0605CEDC8341082276B  # odd: i -> i * _MIX mod 2**160 is a bijection
_MASK = (1 << 160) - 1


def address(i: int) -> str:
    """The i-th trader: distinct for every i < 2**160, computed instead of stored (a list of
    200k addresses in the child would count against the collector's memory)."""
    return f"0x{(i * _MIX) & _MASK:040x}"


class FrameMaker:
    """`trades` frames in Hyperliquid's wire format, exchange time = now, distinct tids."""

    def __init__(self, addresses: int, seed: int = 1) -> None:
        self.addresses = addresses
        self.rng = random.Random(seed)
        self.prices = {coin: px for coin, px, _ in COINS}
        self.names = [coin for coin, _, _ in COINS]
        self.weights = [weight for _, _, weight in COINS]

    def frame(self, size: int) -> str:
        rng, n = self.rng, self.addresses
        coin = rng.choices(self.names, self.weights)[0]
        px = self.prices[coin] = self.prices[coin] * (1 + rng.gauss(0, 2e-4))
        now = time.time_ns() // 1_000_000
        records = []
        for _ in range(size):
            buyer, seller = address(int(rng.random() * n)), address(int(rng.random() * n))
            records.append(
                f'{{"coin":"{coin}","side":"{"B" if rng.random() < 0.5 else "A"}",'
                f'"px":"{px:.5g}","sz":"{rng.randint(1, 5000) / 1000}","time":{now},'
                f'"hash":"0x{rng.getrandbits(256):064x}","tid":{rng.getrandbits(50)},'
                f'"users":["{buyer}","{seller}"]}}'
            )
        return '{"channel":"trades","data":[' + ",".join(records) + "]}"


# -- in-process child --------------------------------------------------------------------------


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    from bench.trade_path import wire
    from db.client import InfluxTarget
    from db.dead_letter import DeadLetters
    from db.spool import Spool
    from db.writer import InfluxWriter

    workdir = Path(args.workdir)
    rss = lambda: round(memory_mb("self", "VmRSS"), 1)  # noqa: E731
    writer = InfluxWriter(
        InfluxTarget(args.influx_url, DB),
        Spool(workdir / "spool"),
        DeadLetters(workdir / "dead_letter"),
        batch_size=5000,
        flush_interval=1.0,
    )
    collector = wire(writer, workdir)
    stream, builder, positions, registry = (
        collector.stream,
        collector.builder,
        collector.positions,
        collector.registry,
    )
    maker = FrameMaker(args.addresses)
    await writer.start()
    baseline = rss()
    timeline = [(0, baseline)]
    started = time.monotonic()
    fed, making, waiting = 0, 0.0, 0.0
    while fed < args.trades:
        size = min(args.frame_size, args.trades - fed)
        began = time.perf_counter()
        frame = maker.frame(size)
        making += time.perf_counter() - began
        stream.handle_frame(frame)
        fed += size
        began = time.perf_counter()
        await asyncio.sleep(0)  # a turn for the writer, as between two frames of a socket
        while writer.pending_points > args.max_pending:
            await asyncio.sleep(0.002)
        waiting += time.perf_counter() - began
        if fed % args.sample_every < size:
            timeline.append((fed, rss()))
    await writer.flush()
    registry.flush()
    seconds = time.monotonic() - started
    result: dict[str, Any] = {
        "trades": fed,
        "trades_delivered": stream.stats.trades,
        "addresses": len(registry),
        "scheduled": len(positions.scheduler),
        "peak_rss_mb": round(memory_mb("self", "VmHWM"), 1),
        "rss_after_setup_mb": baseline,
        "rss_end_mb": rss(),
        "seconds": round(seconds, 1),
        "trades_per_s": round(fed / seconds),
        "making_frames_s": round(making, 1),
        "waiting_for_writer_s": round(waiting, 1),
        "points_written": writer.stats.written,
        "dedupe_keys": len(stream.dedupe),
        "timestamp_slots": len(builder.allocator),
        "rss_timeline_mb": timeline,
    }
    if args.positions_projection:
        result["positions_projection"] = _fill_latest(positions, registry.addresses(), rss)
    await writer.close()
    registry.close()
    return result


def _fill_latest(positions: Any, addresses: list[str], rss: Any) -> dict[str, Any]:
    """Every address polled once: 1-4 open positions each (the simulator's population), parsed
    from the recorded `clearinghouseState` fixture and kept as `PositionsJob._poll` keeps them."""
    from validate import parse_clearinghouse_state

    fixture = json.loads(
        (REPO / "tests/fixtures/hyperliquid/info_clearinghouseState.json").read_text()
    )["response"]
    held = [p for p in fixture["assetPositions"] if float(p["position"]["szi"]) != 0]
    before, kept = rss(), 0
    for i, who in enumerate(addresses):
        body = dict(fixture, assetPositions=held[: 1 + i % min(4, len(held))])
        state, _ = parse_clearinghouse_state(json.dumps(body))
        assert state is not None
        positions.book.reconcile(who, state, 0)
        kept += len(state.positions)
    after = rss()
    return {
        "addresses": len(addresses),
        "positions_kept": kept,
        "added_rss_mb": round(after - before, 1),
        "rss_mb": after,
        "bytes_per_position": round((after - before) * 2**20 / max(kept, 1)),
    }


def run_inprocess(
    trades: int,
    addresses: int,
    frame_size: int = 100,
    max_pending: int = 15_000,
    positions_projection: bool = True,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hyperflux-memory-") as tmp:
        workdir = Path(tmp)
        with LocalInfluxd(workdir / "influxd") as server:
            create_db(server.url, DB)
            command = [sys.executable, "-m", "bench.memory", "--child"]
            command += ["--trades", str(trades), "--addresses", str(addresses)]
            command += ["--frame-size", str(frame_size), "--max-pending", str(max_pending)]
            command += ["--influx-url", server.url, "--workdir", str(workdir)]
            command += ["--sample-every", str(max(trades // 20, frame_size))]
            if positions_projection:
                command.append("--positions-projection")
            done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"memory child failed: {done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            influx = Influx(server.url, DB)
            result["trades_stored"] = influx.count()
            influx.close()
    return {"mode": "inprocess", **result}


# -- the real collector ------------------------------------------------------------------------


def run_subprocess(trades: int, addresses: int, frame_size: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hyperflux-memory-") as tmp:
        workdir = Path(tmp)
        server = LocalInfluxd(workdir / "influxd")
        server.start()
        sim = collector = None
        try:
            sim = SimProcess(
                workdir / "simulator.log",
                seed=1,
                rate=0,
                n_addresses=addresses,
                auto_liquidations=False,
                evolve_interval=0,
                max_user_fills=5,
                ledger_max_trades=10_000,
                ledger_max_records=10_000,
            )
            port = free_port()
            env = collector_env(sim, server.url, workdir / "data", HYPERFLUX_METRICS_PORT=str(port))
            collector = start_collector(env, workdir / "collector.log")
            pid = collector.pid
            influx = Influx(server.url, DB)
            wait_for_coins(influx, sim)  # connected and subscribed to every coin
            influx.close()
            time.sleep(2)
            before = scrape(port).get("hyperflux_trades_total", 0.0)
            target = before + trades
            started = time.monotonic()
            baseline = memory_mb(pid, "VmRSS")
            sim.control("fast_push", count=trades, batch=frame_size, record=False, wait=False)
            timeline, metrics, pending_max = [], {}, 0.0
            stalled_since = time.monotonic()
            while True:
                time.sleep(5.0)
                if collector.poll() is not None:
                    raise RuntimeError(f"the collector exited with {collector.returncode}")
                previous, metrics = metrics, scrape(port)
                done = metrics.get("hyperflux_trades_total", 0.0)
                pending = metrics.get("hyperflux_pending_points", 1.0)
                pending_max = max(pending_max, pending)
                timeline.append((int(done - before), round(memory_mb(pid, "VmRSS"), 1)))
                if done != previous.get("hyperflux_trades_total"):
                    stalled_since = time.monotonic()
                if (done >= target and pending == 0) or time.monotonic() - stalled_since > 60:
                    break
            seconds = time.monotonic() - started
            peak = memory_mb(pid, "VmHWM")
            pushed = sim.ledger()["trades"]
        finally:
            code = stop(collector)
            if sim is not None:
                sim.stop()
            server.stop()
    return {
        "mode": "subprocess",
        "trades": int(metrics.get("hyperflux_trades_total", 0) - before),
        "trades_pushed": pushed,
        "max_pending_points": int(pending_max),
        "addresses": int(metrics.get("hyperflux_addresses_tracked", 0)),
        "peak_rss_mb": round(peak, 1),
        "rss_after_start_mb": round(baseline, 1),
        "seconds": round(seconds, 1),
        "trades_per_s": round((metrics.get("hyperflux_trades_total", 0) - before) / seconds),
        "points_written": int(metrics.get("hyperflux_points_written_total", 0)),
        "rss_timeline_mb": timeline,
        "collector_exit_code": code,
    }


def run(
    trades: int = 10_000_000,
    addresses: int = 200_000,
    mode: str = "inprocess",
    frame_size: int = 100,
    positions_projection: bool = True,
) -> dict[str, Any]:
    """Peak RSS of the collector (module docstring). Goal to compare with: <= 300 MB."""
    if mode == "subprocess":
        return run_subprocess(trades, addresses, frame_size)
    return run_inprocess(trades, addresses, frame_size, positions_projection=positions_projection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("inprocess", "subprocess"), default="inprocess")
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--addresses", type=int, default=200_000)
    parser.add_argument("--frame-size", type=int, default=100)
    parser.add_argument("--no-positions-projection", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--max-pending", type=int, default=15_000, help=argparse.SUPPRESS)
    parser.add_argument("--influx-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--sample-every", type=int, default=500_000, help=argparse.SUPPRESS)
    parser.add_argument("--positions-projection", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args))))
        return
    result = run(
        args.trades,
        args.addresses,
        args.mode,
        args.frame_size,
        positions_projection=not args.no_positions_projection,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
