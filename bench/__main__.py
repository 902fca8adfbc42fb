"""`python -m bench [--only a,b]`: run the benchmarks, print each result, update bench/results.json.

Every figure is measured in this run on this machine; throughput is also given as a ratio of
the raw InfluxDB ceiling measured in the same run. Benchmarks are not tests: nothing here gates
CI on timing. BENCHMARKS.md explains each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results.json")


def _writer() -> dict[str, Any]:
    from bench import writer

    return writer.run(points=500_000, rounds=3)


def _validation() -> dict[str, Any]:
    from bench import validate

    return validate.run()


def _serialization() -> dict[str, Any]:
    from bench import serialize

    return serialize.run()


def _trade_path() -> dict[str, Any]:
    from bench import trade_path

    return {
        "traders_300": trade_path.run(addresses=300),
        "traders_200k": trade_path.run(addresses=200_000, trades=300_000, rounds=2),
    }


def _engines() -> dict[str, Any]:
    from bench import engines

    return engines.run()


def _freshness() -> dict[str, Any]:
    from bench import freshness

    return freshness.run()


def _book_accuracy() -> dict[str, Any]:
    from bench import book_accuracy

    return book_accuracy.run()


def _heatmap_volume() -> dict[str, Any]:
    from bench import heatmap_volume

    return heatmap_volume.run()


def _e2e() -> dict[str, Any]:
    from bench import e2e

    return e2e.run()


def _memory() -> dict[str, Any]:
    from bench import memory

    return memory.run()


SECTIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "writer": _writer,
    "validation": _validation,
    "serialization": _serialization,
    "trade_path": _trade_path,
    "engines": _engines,
    "freshness": _freshness,
    "book_accuracy": _book_accuracy,
    "heatmap_volume": _heatmap_volume,
    "e2e": _e2e,
    "memory": _memory,
}


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="hyperflux benchmarks (not tests; no timing gates)"
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list from {', '.join(SECTIONS)}"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(chosen) - set(SECTIONS)):
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in chosen:
        print(f"== {name} ...", flush=True)
        started = time.monotonic()
        result = SECTIONS[name]()
        print(json.dumps(result, indent=2))
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
        results[name] = {**result, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
        results["machine"] = machine()
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
