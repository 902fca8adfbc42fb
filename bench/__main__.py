"""`python -m bench`: run every benchmark, print a table, write bench/results.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench import validate, writer

RESULTS = Path(__file__).with_name("results.json")


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="hyperflux benchmarks (not tests; no timing gates)"
    )
    parser.add_argument("--points", type=int, default=1_000_000, help="points per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"writer vs raw InfluxDB ceiling: {args.points:,} points x {args.rounds} rounds ...")
    result = writer.run(args.points, args.rounds)
    print(
        f"  ceiling (pre-serialized 5000-line posts): {result['ceiling_points_per_s']:>10,} pts/s"
    )
    print(f"  writer (InfluxWriter.write + flush):      {result['writer_points_per_s']:>10,} pts/s")
    print(f"  ratio to ceiling:                         {result['writer_ratio_to_ceiling']:>10.3f}")

    print("validation of a 50-trade WebSocket frame from raw bytes ...")
    validation = validate.run()
    for name, micros in validation.items():
        print(f"  {name:<40} {micros:>10.2f} us/trade")

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["validation_us_per_trade"] = validation
    results["machine"] = machine()
    results["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["writer"] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
