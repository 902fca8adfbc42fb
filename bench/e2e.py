"""End to end on this machine: simulator -> WebSocket -> `python main.py run` -> InfluxDB.

Three processes share the 2 cores: the simulator (`bench.harness.SimProcess`, its own process,
driven over HTTP), the collector (a subprocess, as users run it) and a private influxd. Steps 1
and 2 take turns `rounds` times; the round with the median ratio gives the figures.

1. ceiling: pre-serialized 5000-line trade batches posted back to back to the same influxd
   (`bench.writer.ceiling`); the yardstick for the push that follows. Also the same over two
   connections in parallel: the writer keeps two requests in flight, and InfluxDB takes more
   that way, so the ratio to that one is the stricter figure.
2. throughput: the simulator pushes `trades` valid trades as fast as it can in frames of
   `frame_size` (`fast_push`; it waits only when the collector's socket falls behind), positions
   polling effectively off (`positions_share` 0.01, market jobs hourly). The trades landed are
   counted every `poll_interval` s (`COUNT("tid")`, incrementally: `harness.LandedCounter`);
   the rate counts over the steady part, the polls between 20 % and 80 % of the trades landed;
   CPU of every process over the same polls (`others`: processes not ours, on a shared box).
   The collector's own counters over the same polls tell where a shortfall is: trades taken
   in per second, and its backlog of points not yet written. The figure is the slower of the
   two over that window (`sustained_trades_per_s`): trades landing faster than they come in
   means the writer is catching up on a backlog built earlier, not a rate it can keep.
   The flood is pre-built and unrecorded (`fast_push(record=False)`, `tests.simulator.trades.
   Flood`): wire-valid trades (px near the mid, stepped sizes, distinct tids, buyers and sellers
   from the `addresses` population) joined from pre-serialized pieces with the time of sending,
   counted by the simulator but with no fills, ledger rows or candles behind them. Why: the
   real exchange is not on the collector's machine, yet here the load generator shares its 2
   cores; generating each trade in full (~15 us of simulator CPU, half a core at 30k/s) would
   starve the collector and influxd; the flood costs about 1 us a trade, sending included.
3. profile (optional, `profile_trades` > 0): the same push again with py-spy sampling the
   collector (`bench.hotspots`), so the throughput figure above is not disturbed by it.
4. latency: the simulator's background flow at `latency_rate` trades/s for `latency_seconds`;
   each trade carries its exchange time (the simulator's wall clock, ms). The trades since the
   start are counted every `latency_poll_interval` s (the same clock). The writer
   posts batches in order (at most two in flight, so a batch can land just before the one
   ahead of it, about one batch of 5,000 trades at most), so the trades visible at a poll are
   the oldest ones:
   trade number i (by exchange time) became queryable between the send of the last poll that
   counted fewer than i trades and the answer of the first poll that counted i or more. Latency
   = the midpoint of that interval - exchange time; `latency_resolution_s` is the median width
   of those intervals (about one poll period); the mean does not depend on that order.

Figures are not gates; they compare with the ceiling measured in the same run.
"""

from __future__ import annotations

import bisect
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import hotspots
from bench.harness import (
    CpuMeter,
    Influx,
    LandedCounter,
    SimProcess,
    collector_env,
    scrape,
    settle,
    start_collector,
    stop,
    wait_for_coins,
    wait_stable,
)
from bench.writer import BATCH, ceiling, create_db, trade_lines
from db.local_server import LocalInfluxd
from utils.net import free_port

DB = "hyperliquid"


def measure_ceiling(url: str, points: int, meter: CpuMeter, number: int) -> dict[str, Any]:
    """The yardstick: pre-serialized bodies posted back to back over one connection; and the
    same bodies over two connections in parallel (the writer has two requests in flight).
    `number` keeps each measurement's database and points fresh."""
    points -= points % BATCH
    lines = trade_lines(points, offset=number * points)
    bodies = ["\n".join(lines[i : i + BATCH]).encode() for i in range(0, points, BATCH)]
    out: dict[str, Any] = {}
    for connections in (1, 2):
        db = f"ceiling{number}_{connections}"
        create_db(url, db)
        settle(meter, ("influxd",))
        before = meter.read()
        out[f"rate_{connections}"] = ceiling(url, db, bodies, connections)
        if connections == 1:
            out["cpu_cores"] = CpuMeter.cores(before, meter.read())
        httpx.post(f"{url}/query", data={"q": f'DROP DATABASE "{db}"'}).raise_for_status()
    return out


def push_and_watch(
    influx: Influx,
    sim: SimProcess,
    meter: CpuMeter,
    trades: int,
    frame_size: int,
    every: float,
    metrics_port: int | None = None,
) -> tuple[list[tuple[float, int, dict[str, float]]], dict[str, Any]]:
    """Start a fast unrecorded push (module docstring, 2.); (monotonic time, trades landed
    since, CPU reading) every `every` s until all landed or nothing landed for 20 s; and the
    final count check (`LandedCounter`) plus, with `metrics_port`, what the collector says over
    the same steady window: trades it took in per second (`ingest_trades_per_s`; above the
    landed rate = the writer is behind), its largest backlog (points not yet written) and the
    largest lag from exchange time to hand-over to the writer."""
    landed_since = LandedCounter(influx, time.time_ns() // 1_000_000 * 1_000_000)
    sim.control("fast_push", count=trades, batch=frame_size, record=False, wait=False)
    samples = [(time.monotonic(), 0, meter.read())]
    progress_at = time.monotonic()
    pending, lag, ingested = 0.0, 0.0, [0.0]
    if metrics_port is not None:
        base = scrape(metrics_port).get("hyperflux_trades_total", 0.0)
    while samples[-1][1] < trades and time.monotonic() - progress_at < 20:
        time.sleep(every)
        landed = landed_since()
        if landed > samples[-1][1]:
            progress_at = time.monotonic()
        samples.append((time.monotonic(), landed, meter.read()))
        if metrics_port is not None:
            figures = scrape(metrics_port)
            pending = max(pending, figures.get("hyperflux_pending_points", 0.0))
            lag = max(lag, figures.get("hyperflux_trade_lag_seconds", 0.0))
            ingested.append(figures.get("hyperflux_trades_total", 0.0) - base)
    extra: dict[str, Any] = {"count_check": landed_since.verify()}
    if metrics_port is not None:
        first, last = steady_window(samples)
        took = (ingested[last] - ingested[first]) / (samples[last][0] - samples[first][0])
        extra.update(
            ingest_trades_per_s=round(took),
            max_pending_points=int(pending),
            max_trade_lag_s=round(lag, 3),
        )
    return samples, extra


def steady_window(
    samples: list[tuple[float, int, dict[str, float]]], low: float = 0.2, high: float = 0.8
) -> tuple[int, int]:
    """Indices of the first poll at or past `low` and the last at or below `high` of the total."""
    total = samples[-1][1]
    first = next(i for i, s in enumerate(samples) if s[1] >= low * total)
    last = max(i for i, s in enumerate(samples) if s[1] <= high * total)
    if last <= first:  # too few polls in the middle: widen to the whole run
        first, last = 0, len(samples) - 1
    return first, last


def throughput(samples: list[tuple[float, int, dict[str, float]]]) -> dict[str, Any]:
    first, last = steady_window(samples)
    (t0, n0, cpu0), (t1, n1, cpu1) = samples[first], samples[last]
    rate = (n1 - n0) / (t1 - t0)
    cores = CpuMeter.cores(cpu0, cpu1)
    collector_cpu = cpu1["collector"] - cpu0["collector"]
    return {
        "trades_landed": samples[-1][1],
        "trades_per_s": round(rate),
        "whole_run_trades_per_s": round(samples[-1][1] / (samples[-1][0] - samples[0][0])),
        "steady_window_s": round(t1 - t0, 2),
        "steady_trades": n1 - n0,
        "cpu_cores": cores,
        "collector_cpu_us_per_trade": round(collector_cpu / (n1 - n0) * 1e6, 2),
    }


def latency(
    influx: Influx, sim: SimProcess, meter: CpuMeter, rate: float, seconds: float, every: float
) -> dict[str, Any]:
    start_ns = time.time_ns() // 1_000_000 * 1_000_000
    visible_now = LandedCounter(influx, start_ns)
    polls: list[tuple[int, int, int]] = []  # (sent ns, answered ns, trades visible)
    query_s: list[float] = []
    sim.control("set_rate", rate=rate)
    flowing, stop_at = True, time.monotonic() + seconds
    cpu0 = meter.read()
    cpu1 = cpu0
    quiet_since = None
    while True:
        began = time.monotonic()
        sent = time.time_ns()
        visible = visible_now()
        answered = time.time_ns()
        query_s.append(time.monotonic() - began)
        polls.append((sent, answered, visible))
        if flowing and time.monotonic() >= stop_at:
            sim.control("set_rate", rate=0)
            cpu1 = meter.read()
            flowing = False
        if not flowing:  # drain: until the count has not moved for 3 s
            if len(polls) > 1 and visible == polls[-2][2]:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 3.0:
                    break
            else:
                quiet_since = None
        time.sleep(max(0.0, every - (time.monotonic() - began)))
    rows = influx.rows('SELECT "tid" FROM "trades" WHERE time >= $t', {"t": start_ns})
    exchange_ns = sorted(r["time"] // 1_000_000 * 1_000_000 for r in rows)  # the trade's ms
    counts = [p[2] for p in polls]
    for i in range(1, len(counts)):  # a count never goes down; guard against a late reading
        counts[i] = max(counts[i], counts[i - 1])
    mids, lows, highs, widths = [], [], [], []
    for rank, exchanged in enumerate(exchange_ns, start=1):
        k = bisect.bisect_left(counts, rank)
        if k >= len(polls):
            continue  # never seen by a poll (cannot happen after the drain)
        lower = polls[k - 1][0] if k > 0 else polls[k][0]
        upper = polls[k][1]
        lows.append((lower - exchanged) / 1e9)
        highs.append((upper - exchanged) / 1e9)
        mids.append((lower + upper) / 2e9 - exchanged / 1e9)
        widths.append((upper - lower) / 1e9)
    stored = len(exchange_ns)
    polled = sum(query_s)
    return {
        "rate_for_latency": rate,
        "latency_seconds": seconds,
        "trades": stored,
        "achieved_rate": round(stored / seconds),
        "latency_p50_s": _pct(mids, 50),
        "latency_p99_s": _pct(mids, 99),
        "latency_mean_s": round(statistics.fmean(mids), 3) if mids else None,
        "latency_max_s": round(max(mids), 3) if mids else None,
        "latency_bounds_p50_s": [_pct(lows, 50), _pct(highs, 50)],
        "latency_bounds_p99_s": [_pct(lows, 99), _pct(highs, 99)],
        "latency_resolution_s": _pct(widths, 50),
        "poll_interval_s": every,
        "polls": len(polls),
        "query_s_median": round(statistics.median(query_s), 4),
        "query_s_max": round(max(query_s), 4),
        "polling_share_of_time": round(polled / (polls[-1][1] - polls[0][0]) * 1e9, 3),
        "count_check": visible_now.verify() | {"stored": stored},
        "cpu_cores": CpuMeter.cores(cpu0, cpu1),
    }


def _pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, 3 decimals."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)


def profile(
    influx: Influx,
    sim: SimProcess,
    meter: CpuMeter,
    pid: int,
    trades: int,
    frame_size: int,
    expected_rate: float,
    workdir: Path,
    sample_rate: int,
) -> dict[str, Any]:
    """Sample the collector with py-spy during a fast push of `trades`."""
    if hotspots.available() is None:
        return {"skipped": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    seconds = max(2, int(trades / expected_rate * 0.8))  # inside the busy part of the push
    path = workdir / "collector.pyspy.txt"
    spy = hotspots.record(pid, seconds, path, sample_rate)
    samples, _ = push_and_watch(influx, sim, meter, trades, frame_size, 0.5)
    _, err = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not path.exists():
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    result = hotspots.summarize(path)
    result.update(seconds=seconds, sample_rate=sample_rate, trades=trades)
    result["trades_per_s_while_profiled"] = throughput(samples)["trades_per_s"]
    return result


def run(
    trades: int = 1_000_000,
    frame_size: int = 100,
    latency_rate: float = 5000.0,
    latency_seconds: float = 30.0,
    poll_interval: float = 0.5,
    latency_poll_interval: float = 0.1,
    ceiling_points: int = 500_000,
    rounds: int = 3,
    profile_trades: int = 300_000,
    profile_sample_rate: int = 100,
    addresses: int = 300,
    settings: dict[str, str] | None = None,
    keep: Path | None = None,
) -> dict[str, Any]:
    """All four parts (module docstring); returns the figures.

    The ceiling and the throughput push are measured `rounds` times, in turns (a ceiling, then
    a push): this machine's speed drifts by ±15 % within minutes, so each push is compared with
    the ceiling measured just before it, and the median ratio is the figure.

    `addresses`: the simulator's trader population (each trade's buyer and seller are drawn
    from it; the collector discovers, stores and schedules every one of them).
    `settings`: extra HYPERFLUX_* variables for the collector (e.g. a flush interval to try);
    `keep`: a directory to keep the logs and the profile in (default: a temporary one).
    """
    with tempfile.TemporaryDirectory(prefix="hyperflux-e2e-") as tmp:
        workdir = Path(tmp)
        if keep is not None:  # a fresh directory per run: no database left from an earlier one
            workdir = keep / time.strftime("e2e-%Y%m%d-%H%M%S")
        workdir.mkdir(parents=True, exist_ok=True)
        server = LocalInfluxd(workdir / "influxd")
        server.start()
        sim = collector = None
        influx = Influx(server.url, DB)
        assert server.pid is not None
        meter = CpuMeter({"influxd": server.pid, "bench_driver": os.getpid()})
        try:
            sim = SimProcess(
                workdir / "simulator.log",
                seed=1,
                rate=0,
                auto_liquidations=False,
                evolve_interval=0,
                n_addresses=addresses,
                max_user_fills=20,
                ledger_max_trades=10_000,
                ledger_max_records=10_000,
            )
            metrics_port = free_port()
            env = collector_env(
                sim,
                server.url,
                workdir / "data",
                HYPERFLUX_METRICS_PORT=str(metrics_port),
                HYPERFLUX_JOBS_POSITIONS_SHARE="0.01",
                HYPERFLUX_JOBS_ASSET_CTX_INTERVAL="3600",
                HYPERFLUX_JOBS_HLP_INTERVAL="3600",
                **(settings or {}),
            )
            collector = start_collector(env, workdir / "collector.log")
            meter.pids.update(simulator=sim.pid, collector=collector.pid)
            wait_for_coins(influx, sim)
            wait_stable(influx)
            settle(meter, ("influxd", "collector"))

            pushes = []
            for r in range(rounds):
                top = measure_ceiling(server.url, ceiling_points, meter, r)
                settle(meter, ("influxd", "collector"))
                samples, extra = push_and_watch(
                    influx, sim, meter, trades, frame_size, poll_interval, metrics_port
                )
                push = throughput(samples) | extra
                # the slower stage over the same window: landed above the intake means the
                # writer was catching up on a backlog built earlier, not a rate it sustains
                rate = min(push["trades_per_s"], push["ingest_trades_per_s"])
                push.update(
                    sustained_trades_per_s=rate,
                    ceiling_points_per_s=round(top["rate_1"]),
                    ceiling_2_connections_points_per_s=round(top["rate_2"]),
                    ratio_to_ceiling=round(rate / top["rate_1"], 3),
                    ratio_to_2_connection_ceiling=round(rate / top["rate_2"], 3),
                    ceiling_cpu_cores=top["cpu_cores"],
                )
                pushes.append(push)
                wait_stable(influx)
            ratios = [p["ratio_to_ceiling"] for p in pushes]
            push = pushes[ratios.index(statistics.median_low(ratios))]  # the median round
            hot: dict[str, Any] = {}
            if profile_trades:
                settle(meter, ("influxd", "collector"))
                hot = profile(
                    influx,
                    sim,
                    meter,
                    collector.pid,
                    profile_trades,
                    frame_size,
                    push["trades_per_s"],
                    workdir,
                    profile_sample_rate,
                )
                wait_stable(influx)
            settle(meter, ("influxd", "collector"))
            lag = latency(influx, sim, meter, latency_rate, latency_seconds, latency_poll_interval)
            metrics = scrape(metrics_port)
            pushed = sim.ledger()["trades"]  # every trade sent, the unrecorded floods included
            stored = influx.count()
        finally:
            influx.close()
            code = stop(collector)
            if sim is not None:
                sim.stop()
            server.stop()
        log = (workdir / "collector.log").read_text(errors="replace")
    return {
        "ceiling_points_per_s": push["ceiling_points_per_s"],
        "e2e_trades_per_s": push["sustained_trades_per_s"],
        "e2e_ratio_to_ceiling": push["ratio_to_ceiling"],
        "ceiling_2_connections_points_per_s": push["ceiling_2_connections_points_per_s"],
        "e2e_ratio_to_2_connection_ceiling": push["ratio_to_2_connection_ceiling"],
        "rounds": [
            {
                k: p[k]
                for k in (
                    "ceiling_points_per_s",
                    "sustained_trades_per_s",
                    "trades_per_s",
                    "ratio_to_ceiling",
                    "ratio_to_2_connection_ceiling",
                    "whole_run_trades_per_s",
                    "ingest_trades_per_s",
                    "max_pending_points",
                    "collector_cpu_us_per_trade",
                )
            }
            for p in pushes
        ],
        "latency_p50_s": lag["latency_p50_s"],
        "latency_p99_s": lag["latency_p99_s"],
        "rate_for_latency": latency_rate,
        "cpu": {
            "ceiling": push["ceiling_cpu_cores"],
            "throughput": push["cpu_cores"],
            "latency": lag["cpu_cores"],
        },
        "throughput": push,
        "latency": lag,
        "profile": hot,
        "trades_pushed": pushed,
        "trades_stored": stored,
        "collector_metrics": {
            k.removeprefix("hyperflux_"): v
            for k, v in metrics.items()
            if k.endswith(("trades_total", "written_total", "spooled_total", "pending_points"))
        },
        "collector_exit_code": code,
        "collector_tracebacks": log.count("Traceback"),
        "parameters": {
            "trades": trades,
            "frame_size": frame_size,
            "poll_interval": poll_interval,
            "latency_seconds": latency_seconds,
            "latency_poll_interval": latency_poll_interval,
            "ceiling_points": ceiling_points,
            "rounds": rounds,
            "profile_trades": profile_trades,
            "addresses": addresses,
            "settings": settings or {},
        },
    }


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--latency-rate", type=float, default=5000.0)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--profile-trades", type=int, default=300_000, help="0: no profile")
    parser.add_argument("--addresses", type=int, default=300, help="trader population")
    parser.add_argument("--set", action="append", default=[], metavar="HYPERFLUX_X=V")
    parser.add_argument("--keep", type=Path, help="keep logs and the profile here")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    result = run(
        args.trades,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        profile_trades=args.profile_trades,
        addresses=args.addresses,
        settings=settings,
        keep=args.keep,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
