"""Measure the answers of docs/questions.md, print them, and save them as JSON.

    python -m examples.questions --json docs/questions.json   # what the docs quote
    python -m examples.questions --only herd                  # one study: scaling, fairness, herd

The experiments live in ``jobqueue/lab/docs/studies.py``; this only runs
them, prints tables, and records the command and the machine beside the
figures.  Timings on a loaded machine are noisy: the JSON records the load
average before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from jobqueue.lab.docs import studies
from jobqueue.lab.machine import load_average, machine_info

STUDIES = ("scaling", "fairness", "herd")


def scaling(quick: bool) -> dict[str, object]:
    workers = (1, 4) if quick else (1, 2, 4, 8, 16, 32, 64)
    rows = studies.worker_scaling(
        workers, repetitions=1 if quick else 3, scale=0.05 if quick else 1.0
    )
    print("Worker scaling: jobs/s of final, median of the repetitions (speed-up over 1 worker)")
    print(f"  {'workers':>8} " + " ".join(f"{name:>18}" for name in studies.HANDLERS))
    for count in workers:
        cells = [r for r in rows if r.workers == count]
        print(
            f"  {count:>8} "
            + " ".join(f"{r.jobs_per_second:>11,.0f} ({r.speedup:>4.1f}x)" for r in cells)
        )
    return {
        "handlers": {name: about for name, (_, about, _) in studies.HANDLERS.items()},
        "rows": [dataclasses.asdict(r) for r in rows],
    }


def fairness(quick: bool) -> dict[str, object]:
    high, low = (400, 100) if quick else (4_000, 1_000)
    rows = studies.fairness_vs_throughput(high=high, low=low, repetitions=1 if quick else 3)
    print(f"Fairness vs throughput: {high} HIGH and {low} LOW no-op jobs, one worker")
    print(f"  {'policy':<22} {'jobs/s':>9} {'HIGH median':>12} {'HIGH last':>10} "
          f"{'LOW first':>10} {'LOW median':>11}")  # fmt: skip
    for r in rows:
        print(
            f"  {r.policy:<22} {r.jobs_per_second:>9,.0f} {r.high_median_position:>12,.0f} "
            f"{r.high_last_position:>10,} {r.low_first_position:>10,} "
            f"{r.low_median_position:>11,.0f}"
        )
    return {"high": high, "low": low, "rows": [dataclasses.asdict(r) for r in rows]}


def herd(quick: bool) -> dict[str, object]:
    settings: dict[str, float] = (
        {"clients": 60, "outage": 0.1, "capacity": 10, "window": 0.01, "max_retries": 4}
        if quick
        else {"clients": 300, "outage": 0.5, "capacity": 20, "window": 0.01, "max_retries": 8}
    )
    rows = studies.thundering_herd(
        clients=int(settings["clients"]),
        outage=settings["outage"],
        capacity=int(settings["capacity"]),
        window=settings["window"],
        max_retries=int(settings["max_retries"]),
    )
    print(
        f"Thundering herd: {settings['clients']:.0f} jobs fail at once; the service is down "
        f"{settings['outage']} s, then takes {settings['capacity']:.0f} requests per "
        f"{settings['window'] * 1e3:.0f} ms; {settings['max_retries']:.0f} retries each"
    )
    print(f"  {'policy':<28} {'requests':>8} {'in outage':>9} {'overload':>8} "
          f"{'peak/10ms':>9} {'drained':>8} {'dead':>5}")  # fmt: skip
    for r in rows:
        print(
            f"  {r.policy:<28} {r.requests:>8,} {r.during_outage:>9,} {r.rejected_overload:>8,} "
            f"{r.peak_per_window:>9,} {r.seconds_to_drain:>7.2f}s {r.dead:>5}"
        )
    return {
        "settings": settings,
        "policies": {
            name: {"retry_base_delay": b, "retry_max_delay": m, "retry_jitter": j}
            for name, (b, m, j) in studies.HERD_POLICIES.items()
        },
        "rows": [dataclasses.asdict(r) for r in rows],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=STUDIES, help="run only this study")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the tests")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    logging.basicConfig(level=logging.CRITICAL)  # the herd fails jobs on purpose
    machine = machine_info()
    started = time.monotonic()
    results: dict[str, object] = {}
    runners = {"scaling": scaling, "fairness": fairness, "herd": herd}
    for name in args.only or STUDIES:
        results[name] = runners[name](args.quick)
    if args.json is not None:
        words = ["python -m examples.questions"]
        words += [f"--only {name}" for name in args.only or ()]
        words += ["--quick"] if args.quick else []
        words += [f"--json {args.json}"]
        document = {
            "command": " ".join(words),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine, "load_after": load_average()},
            "seconds": round(time.monotonic() - started, 1),
            **results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
