"""`python -m tests.simulator --port 8080 --seed 1 --rate 50`: run the simulator by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .server import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=20.0, help="background trades/s, all coins")
    p.add_argument("--addresses", type=int, default=300, help="population size")
    p.add_argument("--weight-budget", type=int, default=1200, help="REST weight per minute")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="WS idle drop, seconds")
    p.add_argument("--max-connections", type=int, default=10, help="WS sockets per IP")
    p.add_argument(
        "--ledger-max-trades",
        type=int,
        default=1_000_000,
        help="records (trades, positions served, ...) kept; counters stay exact; 0 = unlimited",
    )
    p.add_argument("--no-auto-liquidations", action="store_true")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    sim = Simulator(
        host=args.host,
        port=args.port,
        seed=args.seed,
        rate=args.rate,
        n_addresses=args.addresses,
        weight_budget=args.weight_budget,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
        ledger_max_trades=args.ledger_max_trades or None,
        ledger_max_records=args.ledger_max_trades or None,
        auto_liquidations=not args.no_auto_liquidations,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with sim:
        print(f"Hyperliquid simulator (seed {args.seed}, {args.rate:g} trades/s)", flush=True)
        print(f"  REST      POST {sim.url}/info", flush=True)
        print(f"  WebSocket {sim.ws_url}", flush=True)
        print(f"  control   POST {sim.url}/_sim/control   ledger GET {sim.url}/_sim/ledger")
        print(f"  HYPERFLUX_HL_API_URL={sim.url} HYPERFLUX_HL_WS_URL={sim.ws_url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
