"""`python main.py tail`: a scripted flow on the local Hyperliquid gives exact lines; a bad
coin is one line; Ctrl-C stops it quietly."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from hyperflux.tail import tail
from process.alerts.rules import parse_alerts
from process.outputs.tail import View, book_lines, clock
from tests.simulator import Simulator
from tests.simulator.config import HLP_LIQUIDATOR_2
from tests.simulator.ledger import LiquidationRecord
from validate import L2Book, Level

QUIET = {"rate": 0, "evolve_interval": 0, "auto_liquidations": False}
A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
ROOT = Path(__file__).resolve().parent.parent


def plain(text: str) -> str:
    return format(Decimal(text).normalize(), "f")


async def run_tail(
    sim: Simulator, view: View, coins: list[str], script, min_usd: float = 0.0, **options
) -> list[str]:
    """Start `tail`, play `script` once it is live, stop it; its lines."""
    out, stop = io.StringIO(), asyncio.Event()
    task = asyncio.create_task(
        tail(
            view,
            out,
            stop,
            api_url=sim.url,
            ws_url=sim.ws_url,
            coins=coins,
            min_usd=min_usd,
            weight_budget=1200,
            **options,
        )
    )
    for _ in range(100):
        if out.getvalue() or task.done():
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    script()
    await asyncio.sleep(1.0)
    stop.set()
    assert await asyncio.wait_for(task, 2) == 0
    return out.getvalue().splitlines()


async def test_tail_trades_shows_the_coins_trades_over_the_floor(simulator) -> None:
    sim = await simulator(seed=4, **QUIET)
    for address in (A, B):
        sim.population.open_account(address, 1_000_000)
    made = []

    def script() -> None:
        made.append(sim.trade("ETH", A, B, "2500", "1.5", side="B"))
        sim.trade("ETH", B, A, "2499.5", "0.2", side="A")  # 500 USD: under the floor
        sim.trade("BTC", A, B, "85000", "0.1", side="B")  # another coin
        made.append(sim.trade("ETH", B, A, "2501.5", "4", side="A"))

    lines = await run_tail(sim, "trades", ["ETH"], script, min_usd=1000)

    first, second = made
    assert lines == [
        "tail trades: ETH, at least 1,000 USD (Ctrl-C stops)",
        f"{clock(first.time)} ETH     buy   1.5 @ 2500 = 3,750 USD",
        f"{clock(second.time)} ETH     sell  4 @ 2501.5 = 10,006 USD",
    ]


async def test_tail_liquidations_and_alerts_name_side_method_and_user(simulator) -> None:
    sim = await simulator(seed=5, **QUIET)
    made: list[LiquidationRecord] = []

    def script() -> None:
        made.append(sim.backstop_liquidation(coin="ETH", side="long"))
        sim.backstop_liquidation(coin="BTC", side="short")  # another coin
        made.append(sim.backstop_liquidation(coin="ETH", side="short", vault=HLP_LIQUIDATOR_2))

    lines = await run_tail(sim, "liquidations", ["ETH"], script)

    assert lines[0] == "tail liquidations: ETH (Ctrl-C stops)"
    assert lines[1:] == [
        f"{clock(r.time)} ETH     {r.side:<5} {plain(r.sz)} @ {plain(r.px)} = "
        f"{float(Decimal(r.px) * Decimal(r.sz)):,.0f} USD  backstop {r.user}"
        for r in made
    ]

    # a new tail first shows what the subscription replays (the latest trades): the two above
    alerts = parse_alerts({"rules": [{"kind": "liquidation", "name": "big", "min_usd": 1}]})
    lines = await run_tail(sim, "alerts", ["ETH"], script, alerts=alerts)
    assert len(made) == 4
    assert lines[1:] == [
        f"{clock(r.time)} liquidation      [big] liquidation ETH: {r.side} {plain(r.sz)} at "
        f"{plain(r.px)} ({float(Decimal(r.px) * Decimal(r.sz)):,.0f} USD), backstop, {r.user}"
        for r in made
    ]


def test_a_book_is_its_mid_spread_and_top_levels_side_by_side() -> None:
    book = L2Book(
        "BTC",
        (Level(Decimal("84990"), Decimal("1.25"), 3), Level(Decimal("84980"), Decimal("0.5"), 1)),
        (Level(Decimal("85010"), Decimal("2"), 4),),
        1_790_000_000_123,
    )
    assert book_lines(book) == [
        f"{clock(1_790_000_000_123)} BTC  mid 85000  spread 20 (2.35 bps)",
        "            1.25        84990 | 85010        2",
        "             0.5        84980 |",
    ]


def cli_env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env.update(
        HYPERFLUX_HL_API_URL=sim.url,
        HYPERFLUX_HL_WS_URL=sim.ws_url,
        HYPERFLUX_DATA_DIR=str(tmp_path),
        HYPERFLUX_METRICS_PORT="0",
    )
    return env


@pytest.mark.timeout(60)
async def test_main_tail_runs_until_ctrl_c_and_a_bad_coin_is_one_line(simulator, tmp_path) -> None:
    sim = await simulator(seed=6, **QUIET)
    for address in (A, B):
        sim.population.open_account(address, 1_000_000)
    env = cli_env(sim, tmp_path)
    main = str(ROOT / "main.py")

    bad = await asyncio.create_subprocess_exec(
        sys.executable, main, "tail", "trades", "--coin", "btc", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(bad.communicate(), 20)
    assert bad.returncode == 2 and out == b""
    assert err.decode() == "hyperflux: 'btc' is not a listed perp; did you mean 'BTC'?\n"

    process = await asyncio.create_subprocess_exec(
        sys.executable, main, "tail", "book", "--coin", "BTC", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    head = await asyncio.wait_for(process.stdout.readline(), 20)
    assert head == b"tail book: BTC (Ctrl-C stops)\n"
    snapshot = await asyncio.wait_for(process.stdout.readline(), 5)
    assert b" BTC  mid " in snapshot and b" bps)" in snapshot
    process.send_signal(signal.SIGINT)
    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    _, err = await asyncio.wait_for(process.communicate(), 5)
    assert loop.time() - stopped_at < 2.0
    assert process.returncode == 0, err.decode()
    assert err == b"", err.decode()  # no traceback, no log noise
