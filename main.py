"""hyperflux: collect Hyperliquid market data into InfluxDB.

    python main.py [run]                      run until SIGTERM/SIGINT (the default command)
    python main.py check                      check config, InfluxDB and Hyperliquid
    python main.py backfill --coins BTC,ETH --days 7 [--datasets candles,funding]
    python main.py query NAME [--asset BTC] [--hours 24] [--param KEY=VALUE] [--format csv]
    python main.py query NAME --help          that query's parameters: types, defaults, meaning
    python main.py spool                      what waits in the on-disk spool
    python main.py influxdb                   serve the embedded database alone (after `run`)
    python main.py watch add|remove|list [ADDRESS] [--label L]   the watchlist
    python main.py tail trades|liquidations|alerts|book [--coin BTC] [--min-usd N]

Configuration: config/default.yaml, then --config FILE (or HYPERFLUX_CONFIG), then HYPERFLUX_*
environment variables; see README.md. This module only wires the parts together.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from config import Settings, load_settings, unknown_env_vars
from db import read_from_influx
from db.bootstrap import DatabaseState, detect_server, inspect_database
from db.embedded import DEFAULT_URL, answers_ping, serve
from db.local_server import influxd_path
from db.queries import QUERIES, NamedQuery, get_query
from db.storage import default_target, open_spool, open_storage, target_from_settings
from fetch import weights
from fetch.evm import EvmRpc
from fetch.hlp import discover_hlp
from fetch.info import HyperliquidInfo
from fetch.rate_limit import Priority, WeightBudget
from fetch.rest import InfoClient
from fetch.spend_journal import FILE_NAME as WEIGHT_JOURNAL
from fetch.spend_journal import SpendJournal
from fetch.stats import rest_samples, ws_samples
from fetch.ws import MarketStream
from hyperflux.live import DEFAULT_WEIGHT_BUDGET
from hyperflux.tail import tail_command
from process.backfill import DATASETS, backfill, check_interval
from process.collector import STOP_SECONDS, Collector, Sources, StreamHandlers
from process.engines.order_flow import ReplayNotes
from process.watchlist import FILE_NAME as WATCHLIST_FILE
from process.watchlist import Watchlist
from utils.errors import HyperfluxError
from utils.logging import register_secret, setup_logging
from utils.paths import ensure_writable_dir
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
    query = commands.add_parser(
        "query",
        help="a named query (read_from_influx) from the shell; query NAME --help lists its "
        "parameters",
        add_help=False,  # `query NAME --help` describes that query (show_query_help)
        description="Run a named query (read_from_influx) and print its rows. Values are "
        "converted by the query's declared parameter types.",
    )
    query.add_argument("name", nargs="?", help=f"one of: {', '.join(sorted(QUERIES))}")
    query.add_argument("-h", "--help", action="store_true", help="this help, or NAME's")
    query.add_argument("--asset", help="coin, e.g. BTC (case-sensitive)")
    query.add_argument("--hours", metavar="H", help="window length in hours, ending at --end/now")
    query.add_argument("--start", metavar="TIME", help="window start, e.g. 2024-05-01T12:00Z")
    query.add_argument("--end", metavar="TIME", help="window end (exclusive)")
    query.add_argument("--limit", metavar="N", help="most rows (0: no limit)")
    query.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="any parameter"
    )
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(query_parser=query)
    commands.add_parser("spool", help="show what waits in the on-disk spool")
    commands.add_parser(
        "influxdb",
        help="serve the embedded InfluxDB alone (same data dir and URL as `run`) for Grafana "
        "and notebooks after collection; Ctrl-C stops it",
    )
    watch = commands.add_parser(
        "watch", help="the watchlist: polled with priority, profiled first, alert rules"
    )
    watch.add_argument("action", choices=("add", "remove", "list"))
    watch.add_argument("address", nargs="?", help="0x address (add, remove)")
    watch.add_argument("--label", default="", help="a name for it (add)")
    tail = commands.add_parser("tail", help="a live view on its own connection (no InfluxDB)")
    tail.add_argument("view", metavar="VIEW", help="trades, liquidations, alerts or book")
    tail.add_argument("--coin", help="a coin or comma list (default: hl.coins, else every perp)")
    tail.add_argument("--min-usd", default="0", metavar="N", help="hide events under N USD")
    tail.add_argument(
        "--weight-budget",
        default=str(DEFAULT_WEIGHT_BUDGET),
        metavar="W",
        help=f"REST weight per minute it may spend (default {DEFAULT_WEIGHT_BUDGET} of 1200/IP)",
    )
    return parser


STORAGE_CLOSE_SECONDS = 2.0 - STOP_SECONDS - 0.2
"""The collector's stop, then the storage's close (the rest is spooled): within 2 s in all."""


async def run(settings: Settings) -> int:
    """Collect until SIGTERM/SIGINT. A signal during start-up abandons the start-up at once
    (requests to an unresponsive server included); either way the stop takes at most ~2 s."""
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None
    starting = True

    def on_signal() -> None:
        stop.set()
        if starting:
            main_task.cancel()

    ensure_writable_dir(settings.data_dir)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    replays = ReplayNotes()  # spooled points replayed before the order-flow engine exists
    try:
        async with (
            open_storage(
                settings, close_timeout=STORAGE_CLOSE_SECONDS, on_replayed=replays
            ) as storage,
            InfoClient.from_settings(settings, budget=open_budget(settings)) as client,
        ):
            sources = await open_sources(settings, client)
            async with Collector(settings, storage, sources, replays) as collector:
                starting = False
                log.info(
                    "hyperflux running (%s); stop with Ctrl-C or SIGTERM", collector.describe()
                )
                await stop.wait()
                log.info("stopping: flushing every accepted point")
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
        log.info("stopped during start-up")
        return 0
    log.info("stopped")
    return 0


def open_budget(settings: Settings) -> WeightBudget:
    """The REST budget, with what a crashed predecessor spent in its last minute."""
    data_dir = settings.data_dir
    journal = SpendJournal(
        data_dir / WEIGHT_JOURNAL,
        # a data dir a collector used before, without a journal: assume the last minute was spent
        full_if_missing=(data_dir / "addresses.sqlite").exists(),
    )
    return WeightBudget(
        settings.hl_weight_budget, safety_margin=settings.hl_weight_margin, journal=journal
    )


async def open_sources(settings: Settings, client: InfoClient) -> Sources:
    """The Hyperliquid side: one REST lane per kind of caller (gap backfill first, positions
    last), HLP discovery, and the trade stream's factory."""
    quarantine = Quarantine(settings.quarantine_dir)
    budget = client.budget
    info = HyperliquidInfo(client, quarantine, budget=budget.lane(Priority.MARKET))
    backfill = HyperliquidInfo(client, quarantine, budget=budget.lane(Priority.BACKFILL))
    hlp = HyperliquidInfo(client, quarantine, budget=budget.lane(Priority.HLP))
    profiles = HyperliquidInfo(client, quarantine, budget=budget.lane(Priority.PROFILES))
    positions_lane = budget.lane(Priority.POSITIONS, cap=settings.jobs_positions_share)
    vaults = await discover_hlp(hlp, settings.hl_hlp_vault, tuple(settings.hl_liquidators))
    streams: list[MarketStream] = []

    def open_stream(handlers: StreamHandlers, with_backfill: bool) -> MarketStream:
        stream = MarketStream(
            settings.hl_ws_url,
            [],
            on_trades=handlers.on_trades,
            on_message=handlers.on_message,
            on_gap=handlers.on_gap,
            on_gap_opened=handlers.on_gap_opened,
            on_gap_closed=handlers.on_gap_closed,
            backfill=backfill.recent_trades if with_backfill else None,
            quarantine=quarantine,
            coin_channels=settings.hl_ws_channels,
            channel_coins=settings.hl_ws_channel_coins,
            connections=settings.hl_ws_connections,
        )
        streams.append(stream)
        return stream

    evm = settings.evm
    evm_rpc = None
    if evm.enabled:
        evm_rpc = EvmRpc(
            evm.rpc_url.get_secret_value(),
            requests_per_minute=evm.requests_per_minute,
            timeout=evm.timeout,
            max_attempts=evm.max_attempts,
            quarantine=quarantine,
        )
    return Sources(
        info=info,
        positions_info=HyperliquidInfo(client, quarantine, budget=positions_lane),
        hlp_info=hlp,
        profiles_info=profiles,
        vaults={address: vaults.name_of(address) for address in vaults.addresses},
        liquidators=vaults.liquidators,
        open_stream=open_stream,
        samples=lambda: rest_samples(client) + [s for w in streams for s in ws_samples(w)],
        quarantined=lambda: quarantine.count,
        rest_polls_per_minute=positions_lane.limit / weights.base_weight("clearinghouseState"),
        quarantine=quarantine,
        evm_rpc=evm_rpc,
    )


async def check(settings: Settings) -> int:
    """One line per check on stdout; exit status 1 when any failed ("warn" is not a failure).
    Read-only towards InfluxDB: what `run` would create or change is reported, not done."""
    failures = 0

    def report(ok: bool | None, name: str, detail: str) -> None:
        nonlocal failures
        failures += ok is False
        status = {True: "ok  ", False: "FAIL", None: "warn"}[ok]
        print(f"{status} {name:<11} {detail}")

    report(True, "config", f"data dir {settings.data_dir}, database {settings.influx_db!r}")
    try:
        ensure_writable_dir(settings.data_dir)
        writable = True
    except HyperfluxError as exc:
        writable = False
        report(False, "data dir", str(exc))
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
                report(*database_report(await inspect_database(client, target, info), settings))
        except HyperfluxError as exc:
            report(False, "influxdb", str(exc))
    try:
        async with InfoClient.from_settings(settings, max_attempts=2, timeout=5) as client:
            meta = await HyperliquidInfo(client).meta()
        listed = sum(not a.is_delisted for a in meta.universe)
        report(True, "hyperliquid", f"{listed} perps listed at {settings.hl_api_url}")
    except HyperfluxError as exc:
        report(False, "hyperliquid", f"{exc} (HYPERFLUX_HL_API_URL={settings.hl_api_url})")
    if writable:
        spool = open_spool(settings)
        report(True, "spool", f"waiting: {spool.summary()}")
    return 1 if failures else 0


def database_report(state: DatabaseState, settings: Settings) -> tuple[bool | None, str, str]:
    """`check`'s database line: a missing database is a warning, since `run` creates it."""
    db, retention = settings.influx_db, settings.influx_retention
    wanted = f" with retention {retention}" if retention else ""
    if state.exists is None:
        return True, "database", f"{db!r} is created by the first write"
    if not state.exists:
        return None, "database", f"{db!r} does not exist yet: `run` creates it{wanted}"
    held = {"": "as the server has it", "0s": "INF"}.get(state.retention, state.retention)
    change = f"; `run` sets {retention}" if state.retention_differs(retention) else ""
    return True, "database", f"{db!r} exists (retention {held}){change}"


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
    check_interval(args.interval)
    ensure_writable_dir(settings.data_dir)
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


_QUERY_OPTIONS = ("asset", "hours", "start", "end", "limit")
"""`query` options that are shorthands for `--param KEY=VALUE`."""


def query_params(args: argparse.Namespace) -> dict[str, Any]:
    """The `query` command's parameters, converted by the named query's declared types."""
    text: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HyperfluxError(f"--param takes KEY=VALUE, got {item!r}")
        text[key.strip()] = value
    for key in _QUERY_OPTIONS:
        if getattr(args, key) is not None:
            text[key] = getattr(args, key)
    return get_query(args.name).from_text(text)


def show_query_help(args: argparse.Namespace) -> int:
    """`query --help`: the command's options and every query; `query NAME --help`: NAME's
    parameters with their types, defaults and descriptions."""
    parser: argparse.ArgumentParser = args.query_parser
    if args.name is None:
        lines = [parser.format_help(), "queries (query NAME --help for its parameters):"]
        width = max(map(len, QUERIES))
        for name in sorted(QUERIES):
            summary = QUERIES[name].description.split(". ")[0].rstrip(".")
            lines.append(f"  {name:<{width}}  {textwrap.shorten(summary, 96 - width)}")
        sys.stdout.write("\n".join(lines) + "\n")
        return 0
    query = get_query(args.name)
    shorthands = " ".join(f"[--{p.name} ...]" for p in query.params if p.name in _QUERY_OPTIONS)
    usage = (
        f"usage: {parser.prog} {query.name} {shorthands} [--param KEY=VALUE ...] "
        "[--format table|csv|json]"
    )
    sys.stdout.write(f"{usage}\n\n{query.help_text()}shell:   {shell_example(query)}\n")
    return 0


def shell_example(query: NamedQuery) -> str:
    """The query's example (a read_from_influx call) as a command line."""
    call = ast.parse(query.example, mode="eval").body
    assert isinstance(call, ast.Call)
    words = ["python main.py query", query.name]
    for keyword in call.keywords:
        value = ast.literal_eval(keyword.value)
        option = f"--{keyword.arg}" if keyword.arg in _QUERY_OPTIONS else "--param"
        words.append(
            f"{option} {value}" if option != "--param" else f"--param {keyword.arg}={value}"
        )
    return " ".join(words)


def run_query(settings: Settings, args: argparse.Namespace) -> int:
    if args.name is None:
        raise HyperfluxError(
            f"query needs a NAME, one of: {', '.join(sorted(QUERIES))} (query --help)"
        )
    params = query_params(args)
    from utils.tabular import format_frame  # pandas: only for this command

    frame = read_from_influx(args.name, target=default_target(settings), **params)
    sys.stdout.write(format_frame(frame, args.format))
    return 0


def show_spool(settings: Settings) -> int:
    ensure_writable_dir(settings.data_dir)
    spool = open_spool(settings)
    print(f"{spool.directory}: {spool.summary()} (when full: {spool.policy})")
    return 0


def edit_watchlist(settings: Settings, args: argparse.Namespace) -> int:
    """`watch add|remove ADDRESS`, `watch list`: the file a running collector reloads."""
    watchlist = Watchlist(settings.data_dir / WATCHLIST_FILE, settings.watchlist)
    if args.action == "list":
        for entry in watchlist.entries():
            print(f"{entry.address}  {entry.source:6}  {entry.label}".rstrip())
        return 0
    if not args.address:
        raise HyperfluxError(f"watch {args.action} needs an ADDRESS (0x and 40 hex digits)")
    ensure_writable_dir(settings.data_dir)
    if args.action == "add":
        new = watchlist.add(args.address, args.label)
        print(f"{'watching' if new else 'already watched, label set:'} {args.address.lower()}")
        return 0
    if watchlist.remove(args.address):
        print(f"no longer watching {args.address.lower()}")
    elif args.address.lower() in settings.watchlist:
        raise HyperfluxError(f"{args.address} is watched by the watchlist setting; remove it there")
    else:
        print(f"{args.address.lower()} was not watched")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "query" and args.help:
            return show_query_help(args)  # before the settings: help works with any config
        env = dict(os.environ)
        if getattr(args, "shard", None):
            env["HYPERFLUX_JOBS_SHARD"] = args.shard
        settings = load_settings(args.config, env=env)
        # check and influxdb say what matters in their own lines: no INFO chatter around them
        quiet = args.command in ("check", "influxdb") and settings.log_level == "INFO"
        setup_logging("WARNING" if quiet else settings.log_level, settings.log_format)
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
            "influxdb": lambda: serve(settings.influx_url, settings.data_dir, settings.influx_db),
            "watch": lambda: edit_watchlist(settings, args),
            "tail": lambda: tail_command(
                settings, args.view, args.coin, args.min_usd, args.weight_budget
            ),
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
