"""Writer throughput against the raw InfluxDB ceiling, measured in the same run on the same server.

ceiling: pre-serialized 5000-line bodies posted back to back over one keep-alive connection
         (the yardstick); also over two connections in parallel, as the writer posts (two
         requests in flight), which InfluxDB takes faster.
writer:  the same kind of lines through `InfluxWriter.write()` (batching, posting, sorting answers).
Each is measured `rounds` times, alternating, each into a fresh database; the median counts.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from db.client import InfluxTarget
from db.dead_letter import DeadLetters
from db.local_server import LocalInfluxd
from db.spool import Spool
from db.writer import InfluxWriter

BATCH = 5000
COINS = ["BTC", "ETH", "SOL", "HYPE", "DOGE", "XRP", "AVAX", "LINK", "ARB", "OP"]


def trade_lines(count: int, offset: int = 0) -> list[str]:
    """Trade-shaped points (2 tags, 6 fields), all distinct."""
    base = 1_760_000_000_000_000_000
    out = []
    for i in range(offset, offset + count):
        coin = COINS[i % len(COINS)]
        side = "buy" if i % 2 else "sell"
        px = 100.0 + (i % 1000) * 0.25
        sz = 0.001 * (1 + i % 97)
        out.append(
            f"trades,coin={coin},side={side} px={px!r},sz={sz!r},notional={px * sz!r},"
            f'tid={i * 7919}i,buyer="0x{i:040x}",seller="0x{i + 1:040x}" {base + i * 1000}'
        )
    return out


def create_db(url: str, name: str) -> None:
    httpx.post(f"{url}/query", data={"q": f'CREATE DATABASE "{name}"'}).raise_for_status()


def ceiling(url: str, db: str, bodies: list[bytes], connections: int = 1) -> float:
    """Points/s for `bodies` posted back to back; with `connections` > 1, that many keep-alive
    connections post in parallel (threads), each its share of the bodies."""

    def post(share: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for body in share:
                response = client.post("/write", params={"db": db, "precision": "ns"}, content=body)
                response.raise_for_status()

    shares = [bodies[i::connections] for i in range(connections)]
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(post, shares))
    elapsed = time.perf_counter() - started
    return len(bodies) * BATCH / elapsed


async def writer_rate(url: str, db: str, lines: list[str], workdir: Path) -> float:
    writer = InfluxWriter(
        InfluxTarget(url, db),
        Spool(workdir / f"spool-{db}"),
        DeadLetters(workdir / "dead"),
        batch_size=BATCH,
        flush_interval=1.0,
    )
    await writer.start()
    started = time.perf_counter()
    for start in range(0, len(lines), 1000):  # producers hand over lines in small slices
        writer.write(lines[start : start + 1000])
        if start % 20_000 == 0:
            await asyncio.sleep(0)
    await writer.flush()
    elapsed = time.perf_counter() - started
    await writer.close()
    assert writer.stats.written == len(lines), writer.stats
    return len(lines) / elapsed


def run(points: int = 1_000_000, rounds: int = 3) -> dict:
    points -= points % BATCH
    with tempfile.TemporaryDirectory(prefix="hyperflux-bench-") as tmp:
        workdir = Path(tmp)
        server = LocalInfluxd(workdir / "influxd")
        server.start()
        try:
            ceilings, parallel, writers = [], [], []
            for r in range(rounds):
                lines = trade_lines(points, offset=r * points)
                bodies = [
                    "\n".join(lines[i : i + BATCH]).encode() for i in range(0, len(lines), BATCH)
                ]
                create_db(server.url, f"ceiling{r}")
                ceilings.append(ceiling(server.url, f"ceiling{r}", bodies))
                create_db(server.url, f"parallel{r}")
                parallel.append(ceiling(server.url, f"parallel{r}", bodies, connections=2))
                create_db(server.url, f"writer{r}")
                writers.append(asyncio.run(writer_rate(server.url, f"writer{r}", lines, workdir)))
        finally:
            server.stop()
    ceiling_rate = statistics.median(ceilings)
    writer_median = statistics.median(writers)
    return {
        "points_per_round": points,
        "rounds": rounds,
        "ceiling_points_per_s": round(ceiling_rate),
        "writer_points_per_s": round(writer_median),
        "writer_ratio_to_ceiling": round(writer_median / ceiling_rate, 3),
        "ceiling_2_connections_points_per_s": round(statistics.median(parallel)),
        "writer_ratio_to_2_connection_ceiling": round(
            writer_median / statistics.median(parallel), 3
        ),
        "ceiling_rounds": [round(c) for c in ceilings],
        "writer_rounds": [round(w) for w in writers],
    }
