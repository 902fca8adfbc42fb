"""hyperflux: collect Hyperliquid market data into InfluxDB.

    python main.py [run]        run until SIGTERM/SIGINT (the default command)
    python main.py check        check the configuration and InfluxDB, one line per check
    python main.py spool        show what waits in the on-disk spool

Configuration: config/default.yaml, then --config FILE (or HYPERFLUX_CONFIG), then HYPERFLUX_*
environment variables; see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from config import Settings, load_settings, unknown_env_vars
from db.bootstrap import detect_server, ensure_database
from db.embedded import DEFAULT_URL, answers_ping
from db.local_server import influxd_path
from db.storage import open_spool, open_storage, target_from_settings
from utils.errors import HyperfluxError
from utils.logging import register_secret, setup_logging

log = logging.getLogger("hyperflux")

STATUS_EVERY = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Collect Hyperliquid market data into InfluxDB.",
        epilog="Every setting can also be set as a HYPERFLUX_* environment variable (README.md).",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file overriding config/default.yaml")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run until SIGTERM/SIGINT (default)")
    commands.add_parser("check", help="check the configuration and InfluxDB; exit 1 on failure")
    commands.add_parser("spool", help="show what waits in the on-disk spool")
    return parser


async def run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_storage(settings) as storage:
        log.info("hyperflux running; stop with Ctrl-C or SIGTERM")
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY)
            log.info("status: %s", storage.writer.status())
        log.info("stopping: flushing every accepted point")
    log.info("stopped")
    return 0


async def check(settings: Settings) -> int:
    """One line per check; exit status 1 when any failed."""
    failures = 0

    def report(ok: bool, name: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:<10} {detail}")

    report(True, "config", f"data dir {settings.data_dir}, database {settings.influx_db!r}")
    url = settings.influx_url
    if not url:
        if not answers_ping(DEFAULT_URL):
            found = influxd_path()
            report(
                found is not None,
                "influxdb",
                f"none at {DEFAULT_URL}; `run` starts an embedded influxd ({found})"
                if found
                else f"none at {DEFAULT_URL} and influxd is not installed: "
                "sudo apt-get install -y influxdb, or set HYPERFLUX_INFLUX_URL",
            )
            return 1 if failures else 0
        url = DEFAULT_URL
    target = target_from_settings(settings, url)
    try:
        async with target.async_client() as client:
            info = await detect_server(client)
            report(True, "influxdb", f"{info} at {url}")
            await ensure_database(client, target, info, settings.influx_retention)
            retention = settings.influx_retention or "as the server has it"
            report(True, "database", f"{target.db!r} ready (retention {retention})")
    except HyperfluxError as exc:
        report(False, "influxdb", str(exc))
    spool = open_spool(settings)
    report(True, "spool", f"{spool.points} points waiting ({spool.bytes} bytes)")
    return 1 if failures else 0


def show_spool(settings: Settings) -> int:
    spool = open_spool(settings)
    print(f"{spool.directory}: {spool.points} points in {len(spool)} segments, {spool.bytes} bytes")
    print(f"limit {spool.max_bytes} bytes, policy when full: {spool.policy}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        setup_logging(settings.log_level, settings.log_format)
        if settings.influx_password:
            register_secret(settings.influx_password.get_secret_value())
        for name in unknown_env_vars():
            log.warning("%s is not a hyperflux setting (typo?); it is ignored", name)
        commands: dict[str, Callable[[], int]] = {
            "run": lambda: asyncio.run(run(settings)),
            "check": lambda: asyncio.run(check(settings)),
            "spool": lambda: show_spool(settings),
        }
        return commands[args.command or "run"]()
    except HyperfluxError as exc:
        print(f"hyperflux: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
