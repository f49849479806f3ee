"""Throughput of the SDM entity check (schemas.check_entity), per model; prints checks/s.

Run: python benchmarks/schema_check.py [--seconds 1.0]
Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "schemas"))

from sdm_entities import BUILDERS  # noqa: E402  (valid hand-built normalized entities)

from stadtlink.schemas import check_entity  # noqa: E402
from stadtlink.schemas.validation import validator_for  # noqa: E402


def measure(entity: dict, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            check_entity(entity)
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per case")
    args = parser.parse_args()

    start = time.perf_counter()
    for model in BUILDERS:
        validator_for(model)
    print(f"compile all validators: {1000 * (time.perf_counter() - start):.1f} ms (once per process)")

    print(f"{'case':<34} {'checks/s':>10} {'µs/check':>9}")
    for model, build in BUILDERS.items():
        rate = measure(build(), args.seconds)
        print(f"{model + ' (valid)':<34} {rate:>10.0f} {1e6 / rate:>9.1f}")
    bad = BUILDERS["WeatherObserved"]()
    bad["relativeHumidity"]["value"] = 52.4
    bad["dateObserved"]["value"]["@value"] = "2019-06-06T12:06:06"
    rate = measure(bad, args.seconds)
    print(f"{'WeatherObserved (2 problems)':<34} {rate:>10.0f} {1e6 / rate:>9.1f}")


if __name__ == "__main__":
    main()
