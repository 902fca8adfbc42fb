"""The writer's marks (accepted_lines, durable_through, landed_through), on_replayed and hold().

The network is an httpx.MockTransport whose answers the test controls (out of order, down, up),
the spool is real files. Line i carries the field v=i, so the server side can tell exactly which
indices it has acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import threading
from pathlib import Path

import httpx

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.spool import Spool
from db.writer import InfluxWriter

_INDEX = re.compile(r" v=(\d+)i ")


def lines(start: int, count: int) -> list[str]:
    return [
        f"m,s=s{i % 5} v={i}i {1_700_000_000_000_000_000 + i}" for i in range(start, start + count)
    ]


def indices(text: str) -> list[int]:
    return [int(i) for i in _INDEX.findall(text)]


class Influx:
    """A stand-in InfluxDB behind MockTransport: answers 204 while `up`, else 503, and records
    the index of every line it acknowledged."""

    def __init__(self) -> None:
        self.up = True
        self.acked: set[int] = set()
        self.requests = 0
        self.gates: list[asyncio.Event] = []  # the n-th write waits for gates[n] if present
        self.refuse = "bad"
        self.flaky: random.Random | None = None  # each write: a short delay, down 30 % of the time

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(204)
        number = self.requests
        self.requests += 1
        if number < len(self.gates):
            await self.gates[number].wait()
        if (rng := self.flaky) is not None:
            await asyncio.sleep(rng.uniform(0, 0.004))
            self.up = rng.random() > 0.3 or self.flaky is None
        if not self.up:
            return httpx.Response(503, json={"error": "down"})
        body = request.content.decode()
        bad = [line for line in body.split("\n") if self.refuse in line]
        if bad:
            return httpx.Response(400, json={"error": f"partial write dropped={len(bad)}"})
        self.acked.update(indices(body))
        return httpx.Response(204)


def make_writer(data_dir: Path, influx: Influx, **kwargs: object) -> InfluxWriter:
    spool_kwargs = {k: kwargs.pop(k) for k in ("max_bytes", "policy") if k in kwargs}
    kwargs.setdefault("flush_interval", 60)
    kwargs.setdefault("backoff_cap", 0.02)
    return InfluxWriter(
        InfluxTarget("http://influx.test", "hf"),
        Spool(data_dir / "spool", **spool_kwargs),  # type: ignore[arg-type]
        DeadLetters(data_dir / "dead_letter"),
        transport=httpx.MockTransport(influx),
        **kwargs,  # type: ignore[arg-type]
    )


def marks(writer: InfluxWriter) -> tuple[int, int, int]:
    return writer.accepted_lines, writer.durable_through, writer.landed_through


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_marks_wait_for_the_older_batch_when_batches_land_out_of_order(data_dir):
    influx = Influx()
    influx.gates = [asyncio.Event()]  # the first batch's answer is late
    writer = make_writer(data_dir, influx, batch_size=10)
    await writer.start()
    assert marks(writer) == (0, 0, 0)
    writer.write(lines(0, 20))
    await until(lambda: writer.stats.written == 10)  # the second batch landed first
    assert influx.acked == set(range(10, 20))
    assert marks(writer) == (20, 0, 0)
    writer.write(lines(20, 5))  # in the buffer: accepted, not yet durable
    assert marks(writer) == (25, 0, 0)
    influx.gates[0].set()
    await writer.flush()
    assert marks(writer) == (25, 25, 25)
    assert influx.acked == set(range(25))
    await writer.close()


async def test_spooled_lines_are_durable_at_once_and_land_when_replayed(data_dir):
    influx = Influx()
    influx.up = False
    replayed: list[tuple[list[int], int, bool]] = []
    loop_thread = threading.get_ident()

    def on_replayed(batch: list[str]) -> None:
        on_loop = threading.get_ident() == loop_thread and asyncio.get_running_loop() is not None
        replayed.append((indices("\n".join(batch) + "\n"), writer.landed_through, on_loop))

    writer = make_writer(data_dir, influx, batch_size=10, on_replayed=on_replayed)
    await writer.start()
    writer.write(lines(0, 30))
    await writer.flush()
    assert writer.stats.spooled == 30
    assert marks(writer) == (30, 30, 0)
    assert replayed == [] and influx.acked == set()
    influx.up = True
    assert await writer.drain(timeout=5)
    assert marks(writer) == (30, 30, 30)
    assert sorted(r[0] for r in replayed) == [
        list(range(0, 10)),
        list(range(10, 20)),
        list(range(20, 30)),
    ]
    assert all(on_loop for *_, on_loop in replayed)
    assert replayed[-1][1] == 30  # the mark is up to date when the callback runs
    assert writer.stats.replayed == 30
    await writer.close()


async def test_segments_left_by_an_earlier_run_are_reported_and_do_not_move_the_marks(
    data_dir, caplog
):
    spool = Spool(data_dir / "spool")
    spool.append("\n".join(lines(100, 3)).encode(), 3)
    spool.append("\n".join(lines(200, 2)).encode(), 2)
    influx = Influx()
    replayed: list[list[str]] = []

    def on_replayed(batch: list[str]) -> None:
        replayed.append(batch)
        if len(replayed) == 1:
            raise RuntimeError("a consumer's bug")

    writer = make_writer(data_dir, influx, on_replayed=on_replayed)
    await writer.start()
    assert await writer.drain(timeout=5)
    assert replayed == [lines(100, 3), lines(200, 2)]  # oldest first, the bug did not stop it
    assert "on_replayed failed" in caplog.text
    assert marks(writer) == (0, 0, 0)
    assert influx.acked == {100, 101, 102, 200, 201}
    await writer.close()


async def test_dead_lettered_lines_count_as_landed(data_dir):
    influx = Influx()
    writer = make_writer(data_dir, influx, batch_size=100)
    await writer.start()
    batch = lines(0, 10)
    batch[4] = "m,s=bad v=4i 1700000000000000004"
    writer.write(batch)
    await writer.flush()
    assert marks(writer) == (10, 10, 10)
    assert (writer.stats.written, writer.stats.rejected) == (9, 1)
    assert influx.acked == set(range(10)) - {4}
    await writer.close()


async def test_a_held_writer_spools_everything_and_sends_nothing_until_released(data_dir):
    influx = Influx()
    writer = make_writer(data_dir, influx, batch_size=10)
    writer.hold()
    await writer.start()
    writer.write(lines(0, 25))
    await writer.flush()
    await asyncio.sleep(0.2)
    assert influx.requests == 0
    assert writer.held and writer.spool.points == 25
    assert marks(writer) == (25, 25, 0)
    writer.release()
    assert await writer.drain(timeout=5)
    assert marks(writer) == (25, 25, 25)
    assert influx.acked == set(range(25))
    assert writer.stats.retried == 0
    await writer.close()


async def test_lines_lost_to_a_full_spool_do_not_stall_the_marks(data_dir, caplog):
    influx = Influx()
    influx.up = False
    writer = make_writer(data_dir, influx, batch_size=10, max_bytes=500, policy="drop_newest")
    await writer.start()
    writer.write(lines(0, 40))  # ~340 bytes a batch: the spool keeps one
    await writer.flush()
    assert writer.stats.dropped == 30 and writer.spool.points == 10
    assert marks(writer)[:2] == (40, 40)
    influx.up = True
    assert await writer.drain(timeout=5)
    assert marks(writer) == (40, 40, 40)
    assert len(influx.acked) == 10
    assert "spool full" in caplog.text
    await writer.close()


async def test_marks_are_exact_and_monotonic_through_flaky_answers_and_overflow(data_dir, caplog):
    """Random outages, slow answers and a memory overflow into the spool: at every moment each
    line below landed_through was acknowledged by the server, each line below durable_through
    was acknowledged or sits in a spool file, and neither mark ever goes back."""
    rng = random.Random(7)
    influx = Influx()
    influx.flaky = random.Random(8)
    writer = make_writer(data_dir, influx, batch_size=25, max_pending=60, in_flight=2)
    spool_dir = data_dir / "spool"

    def spooled() -> set[int]:
        found: set[int] = set()
        for path in spool_dir.glob("*.lp"):
            with contextlib.suppress(FileNotFoundError):  # replayed just now: acknowledged
                found.update(indices(path.read_text() + "\n"))
        return found

    samples: list[tuple[int, int, int]] = []
    checked = 0

    async def sample() -> None:
        nonlocal checked
        while True:
            accepted, durable, landed = marks(writer)
            samples.append((accepted, durable, landed))
            assert landed <= durable <= accepted
            assert set(range(landed)) <= influx.acked
            assert set(range(durable)) <= influx.acked | spooled()
            checked += 1
            await asyncio.sleep(0.003)

    await writer.start()
    sampler = asyncio.create_task(sample())
    total = 0
    for _ in range(60):
        count = rng.randint(1, 90)
        writer.write(lines(total, count))
        total += count
        await asyncio.sleep(rng.uniform(0, 0.01))
    await writer.flush()
    influx.flaky = None
    influx.up = True
    assert await writer.drain(timeout=10)
    await asyncio.sleep(0.01)
    assert not sampler.done(), sampler.result()  # an assertion in the sampler shows here
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    assert checked > 20
    assert marks(writer) == (total, total, total)
    assert influx.acked == set(range(total))
    for earlier, later in itertools.pairwise(samples):
        assert all(a <= b for a, b in zip(earlier, later, strict=True)), (earlier, later)
    assert writer.stats.spooled > 0 and writer.stats.replayed == writer.stats.spooled
    assert "slower than they come" in caplog.text  # the memory overflow path was taken
    await writer.close()
