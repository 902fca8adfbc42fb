"""hyperflux: collect Hyperliquid market data into InfluxDB.

    python main.py [run]                      run until SIGTERM/SIGINT (the default command)
    python main.py check                      check config, InfluxDB and Hyperliquid
    python main.py backfill --coins BTC,ETH --days 7 [--datasets candles,funding]
    python main.py query NAME [--asset BTC] [--hours 24] [--format table|csv|json]
    python main.py spool                      what waits in the on-disk spool

Configuration: config/default.yaml, then --config FILE (or HYPERFLUX_CONFIG), then HYPERFLUX_*
environment variables; see README.md. This module only wires the parts together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from config import Settings, load_settings, unknown_env_vars
from db import read_from_influx
from db.bootstrap import detect_server, ensure_database
from db.embedded import DEFAULT_URL, answers_ping
from db.local_server import influxd_path
from db.queries import QUERIES
from db.storage import default_target, open_spool, open_storage, target_from_settings
from fetch import weights
from fetch.hlp import discover_hlp
from fetch.info import HyperliquidInfo
from fetch.rest import InfoClient
from fetch.stats import rest_samples, ws_samples
from fetch.ws import MarketStream
from process.backfill import DATASETS, backfill
from process.collector import Collector, Sources
from utils.errors import HyperfluxError
from utils.logging import register_secret, setup_logging
from utils.quarantine import Quarantine

log = logging.getLogger("hyperflux")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Collect Hyperliquid market data into InfluxDB.",
        epilog="Every setting can also be set as a HYPERFLUX_* environment variable (README.md).",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding config/default.yaml")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run until SIGTERM/SIGINT (default)")
    run.add_argument("--shard", metavar="i/N", help="this instance's share of the addresses")
    commands.add_parser("check", help="check config, InfluxDB and Hyperliquid; exit 1 on failure")
    fill = commands.add_parser("backfill", help="historical candles and funding into InfluxDB")
    fill.add_argument("--coins", required=True, help="comma list, e.g. BTC,ETH")
    fill.add_argument("--days", type=float, default=7.0, help="how far back (default 7)")
    fill.add_argument("--datasets", default=",".join(DATASETS), help="candles,funding")
    fill.add_argument("--interval", default="1h", help="candle interval (default 1h)")
    query = commands.add_parser("query", help="a named query (read_from_influx) from the shell")
    query.add_argument("name", help=f"one of: {', '.join(sorted(QUERIES))}")
    query.add_argument("--asset", help="coin, e.g. BTC")
    query.add_argument("--hours", type=float, help="window length in hours")
    query.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="other parameters"
    )
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    commands.add_parser("spool", help="show what waits in the on-disk spool")
    return parser


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    quarantine = Quarantine(settings.quarantine_dir)
    async with (
        open_storage(settings) as storage,
        InfoClient.from_settings(settings) as client,
    ):
        info = HyperliquidInfo(client, quarantine)
        share = client.budget.limited(settings.jobs_positions_share)
        vaults = await discover_hlp(info, settings.hl_hlp_vault, tuple(settings.hl_liquidators))
        streams: list[MarketStream] = []

        def open_stream(on_trades: Any, on_gap: Any, backfill: bool) -> MarketStream:
            stream = MarketStream(
                settings.hl_ws_url,
                [],
                on_trades=on_trades,
                on_gap=on_gap,
                backfill=info.recent_trades if backfill else None,
                quarantine=quarantine,
                coin_channels=settings.hl_ws_channels,
            )
            streams.append(stream)
            return stream

        sources = Sources(
            info=info,
            positions_info=HyperliquidInfo(client, quarantine, budget=share),
            vaults={address: vaults.name_of(address) for address in vaults.addresses},
            liquidators=vaults.liquidators,
            open_stream=open_stream,
            samples=lambda: rest_samples(client) + [s for w in streams for s in ws_samples(w)],
            quarantined=lambda: quarantine.count,
            rest_polls_per_minute=share.limit / weights.base_weight("clearinghouseState"),
        )
        async with Collector(settings, storage, sources) as collector:
            log.info("hyperflux running (%s); stop with Ctrl-C or SIGTERM", collector.describe())
            await stop.wait()
            log.info("stopping: flushing every accepted point")
    log.info("stopped")
    return 0


async def check(settings: Settings) -> int:
    """One line per check; exit status 1 when any failed."""
    failures = 0

    def report(ok: bool, name: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:<11} {detail}")

    report(True, "config", f"data dir {settings.data_dir}, database {settings.influx_db!r}")
    url = settings.influx_url
    if not url and not answers_ping(DEFAULT_URL):
        found = influxd_path()
        report(
            found is not None,
            "influxdb",
            f"none at {DEFAULT_URL}; `run` starts an embedded influxd ({found})"
            if found
            else f"none at {DEFAULT_URL} and influxd is not installed: "
            "sudo apt-get install -y influxdb, or set HYPERFLUX_INFLUX_URL",
        )
    else:
        target = target_from_settings(settings, url or DEFAULT_URL)
        try:
            async with target.async_client() as client:
                info = await detect_server(client)
                report(True, "influxdb", f"{info} at {target.url}")
                await ensure_database(client, target, info, settings.influx_retention)
                retention = settings.influx_retention or "as the server has it"
                report(True, "database", f"{target.db!r} ready (retention {retention})")
        except HyperfluxError as exc:
            report(False, "influxdb", str(exc))
    try:
        async with InfoClient.from_settings(settings, max_attempts=2, timeout=5) as client:
            meta = await HyperliquidInfo(client).meta()
        listed = sum(not a.is_delisted for a in meta.universe)
        report(True, "hyperliquid", f"{listed} perps listed at {settings.hl_api_url}")
    except HyperfluxError as exc:
        report(False, "hyperliquid", f"{exc} (HYPERFLUX_HL_API_URL={settings.hl_api_url})")
    spool = open_spool(settings)
    report(True, "spool", f"{spool.points} points waiting ({spool.bytes} bytes)")
    return 1 if failures else 0


async def run_backfill(settings: Settings, args: argparse.Namespace) -> int:
    coins = [c.strip() for c in args.coins.split(",") if c.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown or not coins or args.days <= 0:
        raise HyperfluxError(
            f"backfill needs --coins (comma list), --days > 0 and --datasets from "
            f"{', '.join(DATASETS)}; got coins={args.coins!r} days={args.days} "
            f"datasets={args.datasets!r}"
        )
    async with open_storage(settings) as storage, InfoClient.from_settings(settings) as client:
        info = HyperliquidInfo(client, Quarantine(settings.quarantine_dir))
        report = await backfill(
            info,
            storage.writer,
            coins,
            args.days,
            datasets,
            interval=args.interval,
            progress=sys.stderr,
        )
    print(report.summary())
    return 0 if report.ok else 1


def run_query(settings: Settings, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            raise HyperfluxError(f"--param takes KEY=VALUE, got {item!r}")
        params[key] = value
    if args.asset is not None:
        params["asset"] = args.asset
    if args.hours is not None:
        params["hours"] = args.hours
    from utils.tabular import format_frame  # pandas: only for this command

    frame = read_from_influx(args.name, target=default_target(settings), **params)
    sys.stdout.write(format_frame(frame, args.format))
    return 0


def show_spool(settings: Settings) -> int:
    spool = open_spool(settings)
    print(f"{spool.directory}: {spool.points} points in {len(spool)} segments, {spool.bytes} bytes")
    print(f"limit {spool.max_bytes} bytes, policy when full: {spool.policy}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env = dict(os.environ)
        if getattr(args, "shard", None):
            env["HYPERFLUX_JOBS_SHARD"] = args.shard
        settings = load_settings(args.config, env=env)
        setup_logging(settings.log_level, settings.log_format)
        if settings.influx_password:
            register_secret(settings.influx_password.get_secret_value())
        for name in unknown_env_vars():
            log.warning("%s is not a hyperflux setting (typo?); it is ignored", name)
        commands: dict[str, Callable[[], int]] = {
            "run": lambda: asyncio.run(run(settings)),
            "check": lambda: asyncio.run(check(settings)),
            "backfill": lambda: asyncio.run(run_backfill(settings, args)),
            "query": lambda: run_query(settings, args),
            "spool": lambda: show_spool(settings),
        }
        return commands[args.command or "run"]()
    except HyperfluxError as exc:
        print(f"hyperflux: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
