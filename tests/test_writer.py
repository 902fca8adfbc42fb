"""The writer against a real influxd: batching, every class of server answer, outages, crashes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.local_server import LocalInfluxd
from db.spool import Spool
from db.writer import InfluxWriter
from tests.conftest import influxql
from tests.fault_proxy import Fault, FaultProxy

REPO = Path(__file__).resolve().parents[1]


def lines(start: int, count: int, measurement: str = "m") -> list[str]:
    """Distinct points: series `s` spread over 7 tag values, value v = index, ns timestamps."""
    return [
        f"{measurement},s=s{i % 7} v={i}i {1_700_000_000_000_000_000 + i}"
        for i in range(start, start + count)
    ]


def count(url: str, db: str, measurement: str = "m") -> int:
    rows = influxql(url, f'SELECT COUNT("v") FROM "{measurement}"', db)
    return rows[0]["count"] if rows else 0


def values(url: str, db: str, measurement: str = "m") -> list[int]:
    return sorted(r["v"] for r in influxql(url, f'SELECT "v" FROM "{measurement}"', db))


def make_writer(url: str, db: str, data_dir: Path, **kwargs: object) -> InfluxWriter:
    target_kwargs = {k: kwargs.pop(k) for k in ("username", "password", "timeout") if k in kwargs}
    spool = Spool(data_dir / "spool", **{k: kwargs.pop(k) for k in ("max_bytes",) if k in kwargs})
    return InfluxWriter(
        InfluxTarget(url, db, **target_kwargs),  # type: ignore[arg-type]
        spool,
        DeadLetters(data_dir / "dead_letter"),
        **kwargs,  # type: ignore[arg-type]
    )


def dead_letter_lines(data_dir: Path) -> list[dict]:
    records: list[dict] = []
    for path in sorted((data_dir / "dead_letter").glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


async def test_batches_by_size_and_every_point_arrives(influxd, influx_db, data_dir):
    writer = make_writer(influxd.url, influx_db, data_dir, batch_size=1000, flush_interval=60)
    await writer.start()
    writer.write(lines(0, 12_345))
    await writer.flush()
    assert count(influxd.url, influx_db) == 12_345
    assert writer.stats.written == 12_345
    assert writer.stats.spooled == 0
    await writer.close()
    assert values(influxd.url, influx_db) == list(range(12_345))


async def test_a_slow_answer_does_not_hold_the_next_batch(influxd, influx_db, data_dir):
    """Two requests in flight: InfluxDB parses one batch while the answer to the other waits."""
    with FaultProxy(influxd.url) as proxy:
        proxy.faults.append(Fault(status=0, delay=1.0))  # the first batch is forwarded late
        writer = make_writer(proxy.url, influx_db, data_dir, batch_size=100)
        await writer.start()
        writer.write(lines(0, 300))
        await writer.flush()
        assert len(proxy.write_times) == 3
        assert proxy.write_times[1] - proxy.write_times[0] < 0.5  # did not wait for the first
        assert writer.pending_points == 0 and writer.stats.written == 300
        assert writer.stats.spooled == 0
        await writer.close()
    assert values(influxd.url, influx_db) == list(range(300))


async def test_a_backlog_past_max_pending_goes_to_the_spool_and_lands_in_full(
    influxd, influx_db, data_dir, caplog
):
    """InfluxDB slower than the stream: memory stays bounded, nothing is lost or doubled."""
    with FaultProxy(influxd.url) as proxy:
        proxy.faults.extend([Fault(status=0, delay=2.0)] * 2)  # both senders stall 2 s
        writer = make_writer(
            proxy.url, influx_db, data_dir, batch_size=500, max_pending=2_000, backoff_cap=0.2
        )
        await writer.start()
        for start in range(0, 20_000, 500):  # 40 batches while the server hangs
            writer.write(lines(start, 500))
            await asyncio.sleep(0)
        await asyncio.sleep(0.5)  # the spool thread catches up
        assert writer.pending_points <= 2_000 + 500
        assert writer.stats.spooled >= 15_000
        assert await writer.drain(timeout=60)
        assert writer.stats.written == 20_000  # each point posted successfully once
        assert writer.stats.replayed == writer.stats.spooled
        await writer.close()
    assert values(influxd.url, influx_db) == list(range(20_000))
    assert sum("slower than they come" in r.getMessage() for r in caplog.records) == 1


async def test_flushes_by_time_without_being_asked(influxd, influx_db, data_dir):
    writer = make_writer(influxd.url, influx_db, data_dir, batch_size=5000, flush_interval=0.2)
    await writer.start()
    writer.write(lines(0, 10))
    await asyncio.sleep(1.0)
    assert count(influxd.url, influx_db) == 10
    await writer.close()


async def test_partial_write_keeps_good_points_and_dead_letters_the_bad(
    influxd, influx_db, data_dir
):
    writer = make_writer(influxd.url, influx_db, data_dir, batch_size=1000)
    await writer.start()
    writer.write(lines(0, 1))  # fixes field v as integer
    await writer.flush()
    batch = lines(1, 999)
    conflict = 'm,s=s0 v="text" 1700000000000009999'
    unparsable = "this is not line protocol"
    batch.insert(500, conflict)
    batch.insert(800, unparsable)
    writer.write(batch)
    await writer.flush()
    assert values(influxd.url, influx_db) == list(range(1000))
    rejected = dead_letter_lines(data_dir)
    assert sorted(r["line"] for r in rejected) == sorted([conflict, unparsable])
    assert all(r["reason"] for r in rejected)
    assert writer.stats.rejected == 2
    assert writer.stats.written == 1000
    await writer.close()


async def test_a_refused_line_with_a_control_character_does_not_block_the_writer(
    influxd, influx_db, data_dir
):
    """influxd echoes the refused line in a header, which httpx cannot read: still a 400."""
    writer = make_writer(influxd.url, influx_db, data_dir)
    await writer.start()
    poisoned = "bad\x0bline 1700000000000000001"
    writer.write([*lines(0, 50), poisoned, *lines(50, 50)])
    await writer.flush()
    assert values(influxd.url, influx_db) == list(range(100))
    assert [r["line"] for r in dead_letter_lines(data_dir)] == [poisoned]
    assert len(writer.spool) == 0
    await writer.close()


async def test_413_splits_the_batch_until_it_fits(make_influxd, data_dir):
    server = make_influxd(max_body_size=20_000)  # ~400 of our lines per request at most
    httpx.post(f"{server.url}/query", data={"q": "CREATE DATABASE t"})
    writer = make_writer(server.url, "t", data_dir, batch_size=5000)
    await writer.start()
    writer.write(lines(0, 5000))
    await writer.flush()
    assert count(server.url, "t") == 5000
    assert writer.stats.rejected == 0
    assert dead_letter_lines(data_dir) == []
    await writer.close()


async def test_401_holds_points_in_the_spool_until_credentials_work(make_influxd, data_dir, caplog):
    server = make_influxd(auth_enabled=True)
    admin = ("admin", "admin-secret")
    httpx.post(
        f"{server.url}/query",
        data={"q": "CREATE USER admin WITH PASSWORD 'admin-secret' WITH ALL PRIVILEGES"},
    )
    httpx.post(f"{server.url}/query", data={"q": "CREATE DATABASE t"}, auth=admin)
    writer = make_writer(
        server.url, "t", data_dir, username="collector", password="s3cret-pw", backoff_cap=0.5
    )
    caplog.set_level(logging.WARNING)
    await writer.start()
    writer.write(lines(0, 300))
    await writer.flush()
    assert writer.stats.spooled == 300
    assert writer.stats.written == 0
    alerts = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("refused the credentials (401)" in m for m in alerts), alerts
    assert not any("s3cret-pw" in r.getMessage() for r in caplog.records)
    # the operator creates the user the collector is configured with: the held points arrive
    httpx.post(
        f"{server.url}/query",
        data={"q": "CREATE USER collector WITH PASSWORD 's3cret-pw' WITH ALL PRIVILEGES"},
        auth=admin,
    )
    assert await writer.drain(timeout=20)
    assert writer.stats.replayed == 300
    rows = httpx.post(
        f"{server.url}/query",
        data={"q": 'SELECT COUNT("v") FROM "m"', "db": "t"},
        auth=admin,
    ).json()
    assert rows["results"][0]["series"][0]["values"][0][1] == 300
    await writer.close()


async def test_404_creates_the_missing_database_through_the_callback(influxd, data_dir):
    created: list[str] = []

    async def create() -> bool:
        httpx.post(f"{influxd.url}/query", data={"q": 'CREATE DATABASE "fresh_db"'})
        created.append("fresh_db")
        return True

    writer = make_writer(influxd.url, "fresh_db", data_dir, on_database_missing=create)
    await writer.start()
    writer.write(lines(0, 50))
    await writer.flush()
    assert created == ["fresh_db"]
    assert count(influxd.url, "fresh_db") == 50
    await writer.close()
    influxql(influxd.url, 'DROP DATABASE "fresh_db"')


async def test_429_and_503_back_off_honouring_retry_after(influxd, influx_db, data_dir):
    with FaultProxy(influxd.url) as proxy:
        proxy.faults.extend([Fault(429, retry_after="1"), Fault(503), Fault(500)])
        writer = make_writer(proxy.url, influx_db, data_dir, backoff_cap=0.2)
        await writer.start()
        writer.write(lines(0, 200))
        assert await writer.drain(timeout=15)
        assert count(influxd.url, influx_db) == 200
        assert writer.stats.retried == 3
        assert writer.stats.spooled == 200
        assert writer.stats.replayed == 200
        first, second = proxy.write_times[:2]
        assert second - first >= 0.95, "Retry-After: 1 must be honoured"
        await writer.close()


async def test_a_stalled_server_sends_batches_to_the_spool(influxd, influx_db, data_dir):
    with FaultProxy(influxd.url) as proxy:
        proxy.faults.append(Fault(status=0, delay=2.0))  # the server hangs past the timeout
        writer = make_writer(proxy.url, influx_db, data_dir, timeout=0.5, backoff_cap=0.2)
        await writer.start()
        writer.write(lines(0, 100))
        assert await writer.drain(timeout=15)
        assert writer.stats.spooled == 100
        await writer.close()
    assert values(influxd.url, influx_db) == list(range(100))


async def test_outage_of_30_seconds_loses_nothing_and_duplicates_nothing(make_influxd, data_dir):
    server: LocalInfluxd = make_influxd()
    httpx.post(f"{server.url}/query", data={"q": "CREATE DATABASE t"})
    writer = make_writer(server.url, "t", data_dir, batch_size=500, flush_interval=0.2)
    writer.backoff_cap = 1.0
    await writer.start()
    sent = 0

    async def produce(seconds: float) -> None:
        nonlocal sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            writer.write(lines(sent, 100))
            sent += 100
            await asyncio.sleep(0.05)

    await produce(2)
    server.stop()
    await produce(30)
    assert writer.stats.spooled > 0
    server.start()
    await produce(2)
    assert await writer.drain(timeout=30)
    await writer.close()
    assert count(server.url, "t") == sent
    assert values(server.url, "t") == list(range(sent))
    assert writer.stats.replayed == writer.stats.spooled
    assert writer.stats.written == sent
    assert len(writer.spool) == 0


async def test_close_spools_what_it_cannot_deliver(make_influxd, data_dir):
    server = make_influxd()
    httpx.post(f"{server.url}/query", data={"q": "CREATE DATABASE t"})
    writer = make_writer(server.url, "t", data_dir)
    await writer.start()
    server.stop()
    writer.write(lines(0, 777))
    started = time.monotonic()
    await writer.close(timeout=3)
    assert time.monotonic() - started < 5
    assert Spool(data_dir / "spool").points == 777


WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from db.client import InfluxTarget
    from db.dead_letter import DeadLetters
    from db.spool import Spool
    from db.writer import InfluxWriter

    url, db, data_dir, start, count = sys.argv[1:6]
    data_dir = Path(data_dir)

    async def main() -> None:
        writer = InfluxWriter(
            InfluxTarget(url, db, timeout=1), Spool(data_dir / "spool"),
            DeadLetters(data_dir / "dead_letter"), batch_size=1000, backoff_cap=0.5,
        )
        await writer.start()
        writer.write(
            f"m,s=s{i % 7} v={i}i {1_700_000_000_000_000_000 + i}"
            for i in range(int(start), int(start) + int(count))
        )
        await writer.flush()
        print("spooled", writer.spool.points, flush=True)
        if int(count) == 0:
            print("drained", await writer.drain(timeout=30), flush=True)
            await writer.close()
            return
        await asyncio.sleep(3600)  # wait here to be killed

    asyncio.run(main())
    """
)


def test_sigkill_with_points_in_the_spool_then_restart_delivers_them(make_influxd, data_dir):
    server = make_influxd()
    httpx.post(f"{server.url}/query", data={"q": "CREATE DATABASE t"})
    server.stop()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", WORKER, server.url, "t", str(data_dir)]
    worker = subprocess.Popen([*args, "0", "4321"], stdout=subprocess.PIPE, text=True, env=env)
    assert worker.stdout is not None
    assert worker.stdout.readline().split() == ["spooled", "4321"]
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    server.start()
    restarted = subprocess.run(
        [*args, "0", "0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert restarted.stdout.split() == ["spooled", "4321", "drained", "True"], restarted.stderr
    assert count(server.url, "t") == 4321
    assert values(server.url, "t") == list(range(4321))


def test_spool_is_oldest_first_and_survives_reopening(tmp_path):
    spool = Spool(tmp_path)
    for n in range(5):
        assert spool.append(f"batch {n}".encode(), points=n + 1)
    reopened = Spool(tmp_path)
    assert reopened.points == 15
    order = []
    while (segment := reopened.oldest()) is not None:
        order.append(reopened.read(segment).decode())
        reopened.remove(segment)
    assert order == [f"batch {n}" for n in range(5)]
    assert Spool(tmp_path).points == 0


def test_full_spool_drops_oldest_by_default_and_counts_it(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=100)
    for n in range(4):
        assert spool.append(bytes([65 + n]) * 40, points=10)
    assert spool.dropped_points == 20
    assert spool.points == 20
    assert [spool.read(s) for s in [spool.oldest()]] == [b"C" * 40]
    assert "spool full" in caplog.text


def test_full_spool_can_refuse_the_newest_instead(tmp_path):
    spool = Spool(tmp_path, max_bytes=100, policy="drop_newest")
    assert spool.append(b"A" * 40, points=10)
    assert spool.append(b"B" * 40, points=10)
    assert not spool.append(b"C" * 40, points=10)
    assert spool.dropped_points == 10
    assert spool.read(spool.oldest()) == b"A" * 40


def test_an_unfinished_segment_from_a_crash_is_discarded(tmp_path):
    (tmp_path / "0000000000000007-5.lp.tmp").write_bytes(b"half a batch")
    spool = Spool(tmp_path)
    assert len(spool) == 0
    assert not list(tmp_path.glob("*.tmp"))
    assert spool.append(b"x", points=1)


@pytest.mark.parametrize("gzip", [True, False])
async def test_gzip_bodies_are_accepted(influxd, influx_db, data_dir, gzip):
    writer = InfluxWriter(
        InfluxTarget(influxd.url, influx_db, gzip=gzip),
        Spool(data_dir / "spool"),
        DeadLetters(data_dir / "dead_letter"),
    )
    await writer.start()
    writer.write(lines(0, 2000))
    await writer.close()
    assert count(influxd.url, influx_db) == 2000
