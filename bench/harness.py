"""What the end-to-end benchmarks share: child processes, their CPU and memory, InfluxQL.

Everything runs on this machine, on loopback: a private influxd (`db.local_server.LocalInfluxd`),
the simulator in its own process (`python -m bench.harness simulator --port P --config JSON`,
the `tests.simulator` server with any `SimConfig` keyword, driven over `POST /_sim/control`) and
the collector as users run it (`python main.py run`). Children are stopped by PID.

CPU is read from /proc/<pid>/stat (utime + stime of the process, threads included) and memory
from /proc/<pid>/status (VmRSS, VmHWM = peak resident set).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from utils.net import free_port
from utils.processes import terminate

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process used so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy so far (every process, ours and others'): /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # less idle and iowait


def memory_mb(pid: int | str, field: str = "VmHWM") -> float:
    """A /proc/<pid>/status size in MiB: VmHWM (peak resident) or VmRSS (now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


class CpuMeter:
    """CPU seconds of named processes at moments in time; usage between two readings in cores
    (1.0 = one core fully busy; this machine has `os.cpu_count()`). `machine` is every core's
    busy time and `others` what processes not named here used (other people's jobs)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def read(self) -> dict[str, float]:
        reading = {"wall": time.monotonic(), "machine": machine_busy_seconds()}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                reading[name] = cpu_seconds(pid)
        return reading

    @staticmethod
    def cores(first: dict[str, float], last: dict[str, float]) -> dict[str, float]:
        wall = last["wall"] - first["wall"]
        used = {
            name: round((last[name] - first[name]) / wall, 3)
            for name in first
            if name not in ("wall", "machine") and name in last
        }
        used["total"] = round(sum(used.values()), 3)
        used["machine"] = round((last["machine"] - first["machine"]) / wall, 3)
        used["others"] = round(max(0.0, used["machine"] - used["total"]), 3)
        return used


# -- child processes -------------------------------------------------------------------------


def wait_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` s; returns the exit code."""
    return None if process is None else terminate(process, timeout)


class SimProcess:
    """The simulator in its own process; `config` takes `SimConfig` keywords (JSON values)."""

    def __init__(self, log_path: Path, **config: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it open
        command = [sys.executable, "-m", "bench.harness", "simulator", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--config", json.dumps(config)],
            cwd=REPO,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        wait_http(f"{self.url}/_sim/state", 120, self.process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def control(self, action: str, **arguments: Any) -> Any:
        response = httpx.post(
            f"{self.url}/_sim/control", json={"action": action, **arguments}, timeout=60
        )
        response.raise_for_status()
        return response.json()["result"]

    def ledger(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sim/ledger", timeout=30).json()

    def stop(self) -> None:
        stop(self.process)


def collector_env(sim: SimProcess, influx_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The collector's environment: this simulator, this InfluxDB, nothing from the caller's
    HYPERFLUX_* variables; `extra` overrides (e.g. HYPERFLUX_JOBS_POSITIONS_SHARE="0.01")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFLUX_")}
    env.update(
        HYPERFLUX_INFLUX_URL=influx_url,
        HYPERFLUX_HL_API_URL=sim.url,
        HYPERFLUX_HL_WS_URL=sim.ws_url,
        HYPERFLUX_DATA_DIR=str(data_dir),
        HYPERFLUX_METRICS_PORT="0",
        HYPERFLUX_LOG_FORMAT="plain",
    )
    env.update(extra)
    return env


def start_collector(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`python main.py run` with `env`, its output appended to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "main.py", "run"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )


def scrape(port: int) -> dict[str, float]:
    """The collector's unlabelled Prometheus figures, by name (empty if the scrape fails)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("hyperflux_") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


# -- InfluxQL --------------------------------------------------------------------------------


class Influx:
    """A few InfluxQL reads over one keep-alive connection (times in ns)."""

    def __init__(self, url: str, db: str) -> None:
        self.db = db
        self.client = httpx.Client(base_url=url, timeout=120)

    def rows(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        data = {"q": query, "db": self.db, "epoch": "ns"}
        if params:
            data["params"] = json.dumps(params)
        response = self.client.post("/query", data=data)
        response.raise_for_status()
        out = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise RuntimeError(f"{query}: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    out.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return out

    def counts(self, query: str, params: dict[str, Any] | None = None) -> list[int]:
        """The COUNT of each statement of `query` (0 for an empty answer or no database)."""
        data = {"q": query, "db": self.db}
        if params:
            data["params"] = json.dumps(params)
        response = self.client.post("/query", data=data)
        if response.status_code >= 400:
            return [0] * (query.count(";") + 1)
        out = []
        for result in response.json().get("results", []):
            series = result.get("series")
            out.append(int(series[0]["values"][0][1]) if series else 0)
        return out

    def count(self, since_ns: int = 0) -> int:
        """Trades stored with a time at or after `since_ns` (0 while there is no database)."""
        return self.counts('SELECT COUNT("tid") FROM "trades" WHERE time >= $t', {"t": since_ns})[0]

    def close(self) -> None:
        self.client.close()


class LandedCounter:
    """Trades stored with a time at or after `start_ns`, counted cheaply enough to poll often.

    A COUNT over everything costs influxd more the more it holds (~80 ms for 300k points here),
    which would steal CPU from what is measured. The writer posts batches in the order the
    trades arrived (two in flight at most), and the exchange sends them in time order, so what
    is stored is every trade up to about the newest one stored: the stretch older than
    `settled_s` before the newest stored trade is counted once, and each call counts only the
    stretch after it.
    Call `verify()` at the end: a full count must agree (else the order assumption failed).
    """

    def __init__(self, influx: Influx, start_ns: int, settled_s: float = 2.0) -> None:
        self.influx = influx
        self.cursor = start_ns
        self.start_ns = start_ns
        self.settled_ns = round(settled_s * 1e9)
        self.before_cursor = 0

    def __call__(self) -> int:
        total = self.before_cursor + self.influx.count(self.cursor)
        newest = self.influx.rows(
            'SELECT LAST("tid") FROM "trades" WHERE time >= $c', {"c": self.cursor}
        )
        settled = newest[0]["time"] - self.settled_ns if newest else self.cursor
        if settled > self.cursor:  # count the settled stretch once, then start after it
            self.before_cursor += self.influx.counts(
                'SELECT COUNT("tid") FROM "trades" WHERE time >= $c AND time < $s',
                {"c": self.cursor, "s": settled},
            )[0]
            self.cursor = settled
        return total

    def verify(self) -> dict[str, int]:
        """The incremental count against a full one (call when nothing more arrives)."""
        return {"incremental": self(), "full": self.influx.count(self.start_ns)}


def settle(
    meter: CpuMeter,
    names: tuple[str, ...],
    below: float = 0.1,
    others_below: float = 0.3,
    timeout: float = 60.0,
) -> None:
    """Wait until each named process uses less than `below` of a core over one second and other
    people's processes less than `others_below` (a shared machine); give up after `timeout` s
    (the figures then say how busy the machine was: `cpu_cores.others`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = meter.read()
        time.sleep(1.0)
        used = CpuMeter.cores(first, meter.read())
        if all(used.get(n, 0.0) < below for n in names) and used["others"] < others_below:
            return


def wait_for_coins(influx: Influx, sim: SimProcess, coins: int = 5, timeout: float = 90.0) -> None:
    """A slow flow until trades of `coins` coins land (the simulator lists 5 active perps): the
    collector is then subscribed to all of them."""
    sim.control("set_rate", rate=300)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError, httpx.HTTPError):
                rows = influx.rows('SELECT COUNT("tid") FROM "trades" GROUP BY "coin"')
                if len(rows) >= coins:
                    return
            time.sleep(0.5)
        raise RuntimeError("the collector did not store trades of every coin in time")
    finally:
        sim.control("set_rate", rate=0)


def wait_stable(influx: Influx, quiet: float = 2.0, timeout: float = 60.0) -> int:
    """The trade count once it has not changed for `quiet` s."""
    deadline = time.monotonic() + timeout
    recent = time.time_ns() - 300_000_000_000  # older trades are settled; spare influxd
    last, since = influx.count(recent), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = influx.count(recent)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# -- `python -m bench.harness simulator` -----------------------------------------------------


async def _serve(port: int, config: dict[str, Any]) -> None:
    from tests.simulator import Simulator

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with Simulator(port=port, **config) as sim:
        print(f"simulator at {sim.url} with {config}", flush=True)
        await stopping.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmark helpers")
    commands = parser.add_subparsers(dest="command", required=True)
    sim = commands.add_parser("simulator", help="the simulator with any SimConfig keywords")
    sim.add_argument("--port", type=int, required=True)
    sim.add_argument("--config", default="{}", help="SimConfig keywords as a JSON object")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, json.loads(args.config)))


if __name__ == "__main__":
    main()
