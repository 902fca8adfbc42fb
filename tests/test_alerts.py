"""Alerts: rules over position changes, liquidations and the position book, delivered to the log,
`alerts` points (stored in a real influxd) and webhooks served by a real HTTP server in the test
(aiohttp on 127.0.0.1): once per event, retried until a failing receiver recovers, secrets never
logged, bounded queues."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from config import load_settings
from db.local_server import LocalInfluxd
from db.schema import ALERTS
from process.alerts import AlertEngine, AlertsConfig, parse_alerts
from process.alerts.targets import mask_path
from process.liquidations import LiquidationEvent
from process.positions.book import PositionBook, PositionChange
from process.positions.margin import MarginRule
from tests.conftest import influxql
from tests.test_points import write
from tests.test_position_book import ALICE, BOB, CAROL, T0, state, trade
from utils.errors import ConfigError
from utils.logging import NOISY_LOGGERS, redact

FIELDS, INTS, MEASUREMENT, TAGS = ALERTS.fields, ALERTS.ints, ALERTS.name, ALERTS.tags
ALICE_MIXED = "0x" + ALICE[2:].upper()  # addresses are taken in any case
TOKEN = "123456789:AAH-sEcReT_token-XYZ"
FAST = {"retry_base": 0.01, "retry_cap": 0.05, "timeout": 2}


class Receiver:
    """A webhook receiver: answers `fail_status` to its first `fail_first` requests, then 200;
    records every request (path, JSON body) and the ones it accepted."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.attempts: list[tuple[str, Any]] = []
        self.accepted: list[tuple[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.attempts.append((request.path, body))
        if len(self.attempts) <= self.fail_first:
            return web.Response(status=self.fail_status, text="try later")
        self.accepted.append((request.path, body))
        return web.Response(status=200, text="ok")

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.accepted if p == path]


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serving(receiver: Receiver, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve `receiver` on 127.0.0.1 (on `sock` if given, else a free port); yields its URL."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)  # the access log would show the bot token
    await runner.setup()
    sock = sock or _bound_socket()
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(engine: AlertEngine) -> AsyncIterator[AlertEngine]:
    task = asyncio.create_task(engine.run())
    try:
        yield engine
    finally:
        await engine.close(grace=0.5)
        await task


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines += lines


def config(**section: Any) -> AlertsConfig:
    config = parse_alerts({**FAST, **section})
    assert isinstance(config, AlertsConfig)
    return config


def liquidation(notional: int, tid: int, coin: str = "BTC", at: int = T0) -> LiquidationEvent:
    return LiquidationEvent(coin, "long", "backstop", D(100), D(notional) / 100, tid, at, BOB)


@contextmanager
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every record at DEBUG, with the third-party loggers where `setup_logging` puts them
    (`caplog.set_level` would raise its handler's level too: set the loggers' own)."""
    noisy = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in noisy]
    with caplog.at_level(logging.DEBUG):
        for logger in noisy:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(noisy, levels, strict=True):
                logger.setLevel(level)


def delivery_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "process.alerts.delivery" and r.levelno == level]


# Wallets


async def test_a_watched_wallet_alerts_its_entry_increase_flip_and_exit_once_each(
    influxd: LocalInfluxd, influx_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()
    lines = Lines()
    async with serving(receiver) as url:
        engine = AlertEngine(
            config(
                targets={
                    "hook": {"kind": "json", "url": f"{url}/hook"},
                    "slack": {"kind": "slack", "url": f"{url}/services/T0/B0/secret"},
                    "discord": {"kind": "discord", "url": f"{url}/api/webhooks/1/secret"},
                },
                rules=[{"name": "alice", "kind": "wallet", "addresses": [ALICE_MIXED]}],
            ),
            lines,
        )
        changes: list[PositionChange] = []

        def changed(change: PositionChange) -> None:
            changes.append(change)
            engine.position_changed(change)

        book = PositionBook(on_change=changed)
        for address in (ALICE, BOB, CAROL):
            book.reconcile(address, state(T0, "100000.0", {}), T0)
        with caplog.at_level(logging.INFO, logger="process.alerts"):
            async with running(engine):
                book.apply_trades(
                    [
                        trade(ALICE, BOB, "2", "100", T0 + 1),  # Alice enters long (Bob: noise)
                        trade(BOB, CAROL, "1", "101", T0 + 2),  # noise only
                        trade(ALICE, CAROL, "1", "102", T0 + 3, "sell"),  # increase
                        trade(BOB, ALICE, "5", "99", T0 + 4),  # flip to short 2
                        trade(CAROL, BOB, "1", "98", T0 + 4),  # noise, same ms
                        trade(ALICE, CAROL, "2", "97", T0 + 5),  # exit
                    ]
                )
                for change in changes:  # a replay of every change: no second alert
                    engine.position_changed(change)
                assert await engine.drain(5)

    assert {c.address for c in changes} == {ALICE, BOB, CAROL}
    kinds = ["entry", "increase", "flip", "exit"]
    hooked = receiver.bodies("/hook")
    assert [body["event"] for body in hooked] == kinds
    assert {body["address"] for body in hooked} == {ALICE}
    assert len({body["id"] for body in hooked}) == 4
    assert [body["side"] for body in hooked] == ["long", "long", "short", "short"]
    assert (
        hooked[2]["text"] == f"[alice] wallet {ALICE} BTC flip: long 3 -> short 2 at 99 (297 USD)"
    )
    assert receiver.bodies("/services/T0/B0/secret") == [{"text": b["text"]} for b in hooked]
    assert receiver.bodies("/api/webhooks/1/secret") == [{"content": b["text"]} for b in hooked]
    assert len(receiver.attempts) == 12  # 4 alerts x 3 targets, no retry, no duplicate
    assert engine.duplicates == 4 and engine.raised["wallet"] == 4
    logged = [r.getMessage() for r in caplog.records if r.name == "process.alerts"]
    assert logged == [f"alert {body['text']}" for body in hooked]

    # the `alerts` points: one per alert, stored as such by a real influxd
    assert len(lines.lines) == 4
    write(influxd.url, influx_db, lines.lines)
    rows = influxql(influxd.url, f'SELECT * FROM "{MEASUREMENT}" ORDER BY time', influx_db)
    assert [row["event"] for row in rows] == kinds
    assert {(row["kind"], row["coin"], row["rule"], row["address"]) for row in rows} == {
        ("wallet", "BTC", "alice", ALICE)
    }
    assert [row["time"] // 10**6 for row in rows] == [T0 + 1, T0 + 3, T0 + 4, T0 + 5]
    assert [row["size_usd"] for row in rows] == [200.0, 306.0, 297.0, 194.0]
    assert set(rows[0]) - {"time"} <= set(TAGS + FIELDS)
    types = influxql(influxd.url, f'SHOW FIELD KEYS FROM "{MEASUREMENT}"', influx_db)
    assert {r["fieldKey"]: r["fieldType"] for r in types}["tid"] == "integer"
    assert INTS == ("tid",)


async def test_wallet_rules_filter_by_change_coin_and_size() -> None:
    lines = Lines()
    engine = AlertEngine(
        config(
            rules=[
                {"kind": "wallet", "addresses": [ALICE], "changes": "entry,exit", "coins": ["ETH"]},
                {"kind": "wallet", "addresses": [BOB], "min_usd": 1000, "min_change_usd": 500},
            ]
        ),
        lines,
    )

    def change(address: str, kind: str, before: str, after: str, px: str | None, tid: int):
        coin = "ETH" if tid < 10 else "BTC"
        return PositionChange(
            address, coin, kind, D(before), D(after), D(px) if px else None, T0, "trade", tid
        )  # type: ignore[arg-type]

    engine.position_changed(change(ALICE, "entry", "0", "1", "2000", 1))  # yes
    engine.position_changed(change(ALICE, "increase", "1", "2", "2000", 2))  # not that kind
    engine.position_changed(change(ALICE, "entry", "0", "1", "90000", 11))  # not that coin
    engine.position_changed(change(BOB, "increase", "0.001", "0.002", "90000", 12))  # too small
    engine.position_changed(change(BOB, "increase", "1", "1.001", "90000", 13))  # change < 500
    engine.position_changed(change(BOB, "increase", "1", "1.01", "90000", 14))  # yes
    engine.position_changed(change(BOB, "exit", "1", "0", None, 15))  # poll without a price
    engine.position_changed(change(CAROL, "entry", "0", "9", "90000", 16))  # not watched
    assert [line.split(" ")[0] for line in lines.lines] == [
        "alerts,coin=ETH,kind=wallet",
        "alerts,coin=BTC,kind=wallet",
    ]
    assert engine.watched == {ALICE, BOB}


# Liquidations


async def test_liquidations_above_the_threshold_alert_once_and_below_do_not() -> None:
    lines = Lines()
    engine = AlertEngine(
        config(rules=[{"kind": "liquidation", "min_usd": 1_000_000, "coins": ["BTC", "ETH"]}]),
        lines,
    )
    engine.liquidation(liquidation(999_999, tid=1))
    engine.liquidation(liquidation(1_000_000, tid=2))
    engine.liquidation(liquidation(1_000_000, tid=2))  # the same trade again (a replay)
    engine.liquidation(liquidation(5_000_000, tid=3, coin="SOL"))  # not a watched coin
    engine.liquidation(liquidation(2_000_000, tid=4, coin="ETH"))
    engine.liquidation(liquidation(2_000_000, tid=5, coin="ETH"))  # same ms, another trade
    assert engine.raised["liquidation"] == 3 and engine.duplicates == 1
    assert len(lines.lines) == 3
    assert len({line.rsplit(" ", 1)[1] for line in lines.lines[1:]}) == 2  # own timestamps
    assert (
        'text="[liquidation-1] liquidation BTC: long 10000 at 100 (1,000,000 USD), '
        in (lines.lines[0])
    )


# Near liquidation


async def test_near_liquidation_alerts_once_per_entry_into_the_zone() -> None:
    lines = Lines()
    engine = AlertEngine(
        config(
            rules=[
                {"kind": "near_liquidation", "within_pct": 2, "min_usd": 1000, "coins": ["BTC"]},
                {
                    "name": "sticky",
                    "kind": "near_liquidation",
                    "within_pct": 2,
                    "rearm_pct": 5,
                    "addresses": [ALICE],
                    "targets": [],
                },
            ]
        ),
        lines,
    )
    book = PositionBook()
    book.reconcile(ALICE, state(T0, "-9000.0", {"BTC": ("1", "10000")}), T0)  # liq 9230.77
    book.reconcile(BOB, state(T0, "97.375", {"BTC": ("-0.01", "10000")}), T0)  # 100 USD, liq 9500
    book.reconcile(CAROL, state(T0, "-19000.0", {"ETH": ("10", "2000")}), T0)  # ETH liq 1938.78
    rules = {"BTC": MarginRule.flat(20), "ETH": MarginRule.flat(25)}
    liq_px = D(9000) / (1 - D(1) / 40)

    def check(btc: str, at: int) -> list[str]:
        """The rules of the alerts raised at mark `btc`."""
        book.set_market({"BTC": D(btc), "ETH": D("1950")}, rules)
        if book.positions_of(ALICE):
            assert book.liquidation_prices(book.accounts[ALICE])["BTC"] == liq_px
        before = len(lines.lines)
        assert engine.check_book(book, T0 + at) == len(lines.lines) - before
        return [re.findall(r'rule="([^"]*)"', line)[0] for line in lines.lines[before:]]

    both = "near_liquidation-1,sticky"
    assert check("10000", 1) == []  # 7.7 % away
    assert check("9400", 2) == [both]  # 1.8 %: in the zone of both rules, one alert
    assert check("9300", 3) == []  # still in the zone
    assert check("9500", 4) == []  # 2.8 %: left rule 1's zone; sticky's reaches 5 %
    assert check("9350", 5) == ["near_liquidation-1"]  # back in rule 1's zone; sticky holds
    assert check("9900", 6) == []  # 6.8 %: left both
    assert check("9400", 7) == [both]
    book.reconcile(ALICE, state(T0 + 8, "-9000.0", {}), T0 + 8)  # closed
    assert check("9400", 8) == []
    book.reconcile(ALICE, state(T0 + 9, "-9000.0", {"BTC": ("1", "10000")}), T0 + 9)
    assert check("9400", 9) == [both]  # a new position, in the zone
    assert engine.raised["near_liquidation"] == 4
    assert all(ALICE in line for line in lines.lines)  # never Bob (100 USD) nor Carol (ETH)
    assert (
        f'text="[near_liquidation-1, sticky] near liquidation {ALICE} BTC: long 1 (9,400 USD), '
        'mark 9400 is 1.80 % from liquidation at 9230.77"'
    ) in lines.lines[0]
    assert "liq_px=9230.76923076923" in lines.lines[0]


# Delivery


async def test_a_receiver_that_fails_then_recovers_gets_every_alert_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(fail_first=5)
    async with serving(receiver) as url:
        engine = AlertEngine(
            config(
                targets={"hook": {"kind": "json", "url": f"{url}/hook"}},
                rules=[{"kind": "liquidation"}],
            )
        )
        with all_logs(caplog):
            async with running(engine):
                for tid in range(1, 4):
                    engine.liquidation(liquidation(1000 * tid, tid))
                assert await engine.drain(5)
    assert [body["tid"] for body in receiver.bodies("/hook")] == [1, 2, 3]  # once each, in order
    assert len(receiver.attempts) == 5 + 3
    warnings = delivery_records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "fails: HTTP 500" in warnings[0].getMessage()
    assert f"{url}/***" in warnings[0].getMessage() and "/hook" not in warnings[0].getMessage()
    infos = delivery_records(caplog, logging.INFO)
    assert len(infos) == 1 and "delivers again" in infos[0].getMessage()
    courier = engine.couriers["hook"]
    assert (courier.sent, courier.failed_attempts, courier.dropped, courier.failing) == (
        3,
        5,
        0,
        False,
    )


async def test_a_receiver_down_at_first_gets_every_alert_once_when_it_comes_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver()
    sock = _bound_socket()  # the port is ours, but nothing listens yet: connections refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    engine = AlertEngine(
        config(
            targets={"hook": {"kind": "json", "url": f"{url}/hook"}},
            rules=[{"kind": "liquidation"}],
        )
    )
    with all_logs(caplog):
        async with running(engine):
            for tid in range(1, 4):
                engine.liquidation(liquidation(1000 * tid, tid))
            await until(lambda: engine.couriers["hook"].failed_attempts >= 3)
            async with serving(receiver, sock):
                assert await engine.drain(5)
    assert [body["tid"] for body in receiver.bodies("/hook")] == [1, 2, 3]
    assert len(delivery_records(caplog, logging.WARNING)) == 1
    assert len(delivery_records(caplog, logging.INFO)) == 1


async def test_a_telegram_token_never_appears_in_any_log_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(fail_first=2, fail_status=502)
    dead = _bound_socket()  # never listening
    async with serving(receiver) as url:
        engine = AlertEngine(
            config(
                targets={
                    "phone": {"kind": "telegram", "token": TOKEN, "chat_id": -1001, "api_url": url},
                    "dead": {
                        "kind": "telegram",
                        "token": TOKEN,
                        "chat_id": "@ops",
                        "api_url": f"http://127.0.0.1:{dead.getsockname()[1]}",
                    },
                },
                rules=[{"kind": "liquidation"}],
            )
        )
        with all_logs(caplog):
            async with running(engine):
                engine.liquidation(liquidation(5000, 1))
                engine.liquidation(liquidation(6000, 2))
                phone, dead_one = engine.couriers["phone"], engine.couriers["dead"]
                await until(lambda: phone.sent == 2 and dead_one.failed_attempts >= 3)
    dead.close()
    assert [path for path, _ in receiver.accepted] == [f"/bot{TOKEN}/sendMessage"] * 2
    assert [body["chat_id"] for _, body in receiver.accepted] == ["-1001", "-1001"]
    assert "liquidation BTC: long 50 at 100 (5,000 USD)" in receiver.accepted[0][1]["text"]
    assert caplog.records
    for record in caplog.records:
        shown = record.getMessage() + (record.exc_text or "")
        assert TOKEN not in shown and TOKEN.split(":")[1] not in shown, record.name
    warnings = [r.getMessage() for r in delivery_records(caplog, logging.WARNING)]
    assert len(warnings) == 2  # one per failing target, not per alert or attempt
    assert any(f"{url}/bot***/sendMessage" in w for w in warnings)
    shutdown = [r.getMessage() for r in caplog.records if "at shutdown" in r.getMessage()]
    assert shutdown == ["alerts: 2 alerts not delivered at shutdown"]  # the dead target's
    # httpx's own request lines (INFO, silenced by setup_logging) would be masked by its filter
    assert TOKEN not in redact(f'HTTP Request: POST {url}/bot{TOKEN}/sendMessage "200 OK"')


def test_webhook_urls_are_masked_after_the_host() -> None:
    alerts = config(
        targets={
            "s": {"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/XyZ"},
            "d": {"kind": "discord", "url": "https://discord.com/api/webhooks/1/tok"},
            "j": {"kind": "json", "url": "https://example.com:8443/in?key=abc"},
            "t": {"kind": "telegram", "token": TOKEN, "chat_id": "1"},
        }
    )
    shown = {name: target.masked() for name, target in alerts.targets.items()}
    assert shown == {
        "s": "https://hooks.slack.com/***",
        "d": "https://discord.com/***",
        "j": "https://example.com:8443/***",
        "t": "https://api.telegram.org/bot***/sendMessage",
    }
    slack = alerts.targets["s"]
    assert slack.scrub("POST https://hooks.slack.com/services/T0/B0/XyZ failed") == (
        "POST https://hooks.slack.com/*** failed"
    )
    assert mask_path("https://example.com") == "https://example.com"
    assert "XyZ" not in repr(alerts) and TOKEN not in repr(alerts)


async def test_a_full_queue_drops_the_oldest_and_counts() -> None:
    receiver = Receiver()
    async with serving(receiver) as url:
        engine = AlertEngine(
            config(
                queue_size=3,
                targets={"hook": {"kind": "json", "url": f"{url}/hook"}},
                rules=[{"kind": "liquidation"}],
            )
        )
        for tid in range(1, 6):  # delivery not running yet: the queue fills up
            engine.liquidation(liquidation(1000, tid))
        courier = engine.couriers["hook"]
        assert (len(courier.queue), courier.dropped, engine.pending) == (3, 2, 3)
        samples = {(s.name, s.labels.get("target")): s.value for s in engine.samples()}
        assert samples["alert_dropped_total", "hook"] == 2
        assert samples["alert_queue", "hook"] == 3
        async with running(engine):
            assert await engine.drain(5)
    assert [body["tid"] for body in receiver.bodies("/hook")] == [3, 4, 5]
    assert engine.raised["liquidation"] == 5  # all logged and stored; two never sent


async def test_close_gives_up_on_a_dead_target_after_the_grace_time() -> None:
    dead = _bound_socket()
    engine = AlertEngine(
        config(
            targets={"hook": {"kind": "json", "url": f"http://127.0.0.1:{dead.getsockname()[1]}/"}},
            rules=[{"kind": "liquidation"}],
        )
    )
    task = asyncio.create_task(engine.run())
    engine.liquidation(liquidation(1000, 1))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await engine.close(grace=0.2)
    await asyncio.wait_for(task, 1)
    dead.close()
    assert loop.time() - started < 1.5
    assert engine.pending == 1  # the alert still waiting (logged at shutdown)


async def test_a_4xx_refuses_the_alert_without_retry() -> None:
    receiver = Receiver(fail_first=1, fail_status=404)
    async with serving(receiver) as url:
        engine = AlertEngine(
            config(
                targets={"hook": {"kind": "json", "url": f"{url}/hook"}},
                rules=[{"kind": "liquidation"}],
            )
        )
        async with running(engine):
            engine.liquidation(liquidation(1000, 1))
            engine.liquidation(liquidation(1000, 2))
            assert await engine.drain(5)
    assert [body["tid"] for body in receiver.bodies("/hook")] == [2]
    assert (engine.couriers["hook"].rejected, len(receiver.attempts)) == (1, 2)


# Settings


def test_the_alerts_section_from_yaml_and_from_a_json_environment_variable(tmp_path: Path) -> None:
    assert load_settings(env={}).alerts == AlertsConfig()
    path = tmp_path / "my.yaml"
    path.write_text(
        "alerts:\n"
        "  targets:\n"
        f"    phone: {{kind: telegram, token: '{TOKEN}', chat_id: -100}}\n"
        "  rules:\n"
        f"    - {{kind: wallet, addresses: ['{ALICE_MIXED}'], changes: any, targets: [phone]}}\n"
        "    - {kind: near_liquidation, within_pct: 1.5, coins: BTC}\n"
    )
    alerts = load_settings(path, env={}).alerts
    wallet, near = alerts.rules
    assert (wallet.name, wallet.addresses, len(wallet.changes)) == ("wallet-1", (ALICE,), 5)
    assert (near.name, near.coins, near.rearm_at) == ("near_liquidation-2", ("BTC",), 1.5)
    assert alerts.targets_of(near) == ("phone",)
    shown = load_settings(path, env={}).redacted()["alerts"]
    assert shown["targets"]["phone"]["token"] == "**********" and TOKEN not in json.dumps(shown)

    env = {"HYPERFLUX_ALERTS": json.dumps({"rules": [{"kind": "liquidation", "min_usd": 5}]})}
    assert load_settings(path, env=env).alerts.rules[0].min_usd == 5.0


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"rules": [{"kind": "wallet"}]},
            "rules[0].wallet: a wallet rule needs addresses or watchlist: true",
        ),
        ({"rules": [{"kind": "liquidation", "targets": ["x"]}]}, "unknown target 'x'"),
        (
            {"targets": {"t": {"kind": "slack", "url": f"ftp://h/{TOKEN}"}}},
            "targets.t.slack.url: the URL must start with http:// or https://",
        ),
        ({"rules": [{"kind": "near_liquidation", "within_pct": 0}]}, "greater than 0"),
    ],
)
def test_a_bad_alerts_section_is_named_without_its_secrets(section: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env={"HYPERFLUX_ALERTS": json.dumps(section)})
    assert str(error.value).startswith("HYPERFLUX_ALERTS=*** is not valid: expected an alerts")
    assert problem in str(error.value) and TOKEN not in str(error.value)
