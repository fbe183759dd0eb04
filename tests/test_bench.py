"""``jobqueue bench`` and the measurement library run, at tiny sizes, and say something well formed.

Nothing here asserts a speed: the machine is shared and noisy, and speed is
what ``make bench`` is for.  These tests check shapes only.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from jobqueue.lab import hotpath, measure
from jobqueue.lab.bench_plan import SECTIONS
from jobqueue.lab.cli import main
from jobqueue.lab.floor import FLOORS, FloorQueue
from jobqueue.lab.floor import compare as floor_compare
from jobqueue.lab.machine import KEYS, read_machine
from jobqueue.vocabulary import Job, Priority

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_quick_bench_writes_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["bench", "--quick", "--repeat", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert "…" not in printed, "a cell was cut instead of wrapped"
    assert "final-durable-interval " in printed  # the longest target name, whole
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["quick"] is True
    assert report["machine"]["cpus"] >= 1
    assert tuple(report["machine"]) == KEYS
    assert set(report["sections"]) == set(SECTIONS)
    for section in report["sections"].values():
        assert section["rows"], "every section has rows"
        for row in section["rows"]:
            assert row["target"] in measure.TARGETS or row["target"] in FLOORS
    throughput = {row["target"]: row for row in report["sections"]["throughput"]["rows"]}
    assert set(throughput) == set(measure.TARGETS)
    for target in measure.MEMORY_TARGETS:  # the in-memory targets always run
        assert throughput[target]["status"] == "ok"
        assert throughput[target]["jobs_per_second"] > 0
    for row in throughput.values():  # a durable target runs, or says why not
        assert row["status"] == "ok" or row["reason"]
    assert all({"goal", "measured", "met"} <= set(goal) for goal in report["goals"])
    realistic = report["sections"]["realistic"]
    keys = {(row["target"], row["batch"]) for row in realistic["rows"]}
    assert {("final", 1), ("threadpool", 1), ("final", 100)} <= keys
    assert {("floor", 1), ("floor+features", 1)} <= keys  # the measuring sticks beside final
    assert "floor" in printed
    for row in realistic["rows"]:  # every figure with its spread across repetitions
        assert row["status"] != "ok" or row["spread"]["min"] <= row["jobs_per_second"]
    assert {row["target"] for row in realistic["latency"]} >= {"final", "threadpool"}
    assert "Where the time goes (realistic profile, per job)" in printed


#: What the profile section reports for every target, per job.
PROFILE_KEYS = {
    "intake_us",
    "intake_gc_us",
    "run_us",
    "run_one_worker_us",
    "serial_us",
    "wall_us",
    "cpu_us",
    "gc_us",
    "voluntary_per_job",
    "involuntary_per_job",
    "producer_us",
    "producer_cpu_us",
    "producer_off_cpu_us",
    "producer_sleeps_per_job",
    "producer_preempted_per_job",
    "intake_cpu_us",
}


def test_quick_profile_says_where_the_time_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    monkeypatch.setenv("COLUMNS", "80")
    argv = ["bench", "--quick", "--repeat", "2", "--only", "realistic", "--only", "profile"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert "Where the time goes (realistic profile, per job)" in printed
    words = " ".join(printed.split())  # the caption wraps where its figures let it
    assert "voluntary context switch" in words  # the caption explains the columns
    report = json.loads(out.read_text(encoding="utf-8"))
    assert list(report["sections"]) == ["realistic", "profile"]
    rows = {row["target"]: row for row in report["sections"]["profile"]["rows"]}
    assert set(rows) == {"final", "final-durable-interval", "threadpool"}
    for target, row in rows.items():
        if row["status"] != "ok":  # a durable target that cannot open here says why
            assert row["reason"]
            continue
        assert set(row) >= PROFILE_KEYS, target
        for key in PROFILE_KEYS:  # a median, with the spread across the 2 repetitions
            spread = row[f"{key}_spread"]
            assert spread["min"] <= row[key] <= spread["max"], (target, key)
            assert math.isfinite(row[key]), (target, key)
            assert row[key] >= 0, (target, key)
    assert rows["final"]["batch"] == 100
    assert rows["final"]["batch_intake_us"] > 0
    assert "batch_intake_us" not in rows["threadpool"]  # the pool has no batch call
    assert rows["final"]["goal_x_pool"] == 3.0
    assert rows["final"]["budget_us"] > 0
    realistic_goals = [g for g in report["goals"] if g["goal"].startswith("realistic:")]
    for goal in realistic_goals:
        assert "why" in goal
        if goal["met"] is False and goal["goal"].endswith("≥ 3x the pool"):
            assert "µs/job serially" in goal["why"]  # the miss cites the profile


def test_only_runs_the_sections_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeat", "2", "--only", "latency", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert list(report["sections"]) == ["latency"]
    final = [r for r in report["sections"]["latency"]["rows"] if r["target"] == "final"]
    assert all(len(r["p99_runs"]) == 2 for r in final), "one figure per repetition"


@pytest.mark.parametrize("target", measure.MEMORY_TARGETS)
def test_primitives_return_well_formed_results(target: str) -> None:
    done = measure.throughput(target, jobs=50, workers=2, producers=2)
    assert (done.target, done.jobs, done.workers, done.producers) == (target, 50, 2, 2)
    assert done.seconds > 0
    waits = measure.latency(target, rate=5_000, jobs=50, workers=2)
    assert 0 <= waits.p50 <= waits.p99 <= waits.max
    assert waits.jobs == 50
    per_job = measure.memory_per_job(target, jobs=50, workers=2)
    assert math.isfinite(per_job)


def test_unknown_target_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="target must be one of"):
        measure.throughput("redis", jobs=1)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        measure.throughput("final", jobs=0)
    with pytest.raises(ValueError, match="rate must be > 0"):
        measure.latency("final", rate=0, jobs=1)
    with pytest.raises(ValueError, match="pacing must be one of"):
        measure.latency("final", rate=1, jobs=1, pacing="busy")


def test_every_committed_file_reads_with_one_set_of_machine_keys() -> None:
    keys = set(KEYS)
    for name in ("bench-results.json", "report.json", "questions.json"):
        machine = read_machine(json.loads((DOCS / name).read_text(encoding="utf-8"))["machine"])
        assert keys <= set(machine), name
        assert machine["load_before"] is None or isinstance(machine["load_before"], float)


@pytest.mark.parametrize(
    "argv", [[], ["--durable"], ["--pool"], ["--floor"], ["--floor=fairness,status,metrics"]]
)
def test_hotpath_runs_every_queue_it_counts(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # lab/hotpath.py raises SystemExit unless every job ran exactly once.
    monkeypatch.setenv("N", "300")
    hotpath.main(argv)


def test_floor_refuses_a_feature_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="features must be among"):
        FloorQueue(measure.no_op, features=["retries"])


def test_floor_runs_jobs_in_strict_priority_order_without_fairness() -> None:
    order: list[bytes] = []
    inside, gate = threading.Event(), threading.Event()

    def handler(payload: bytes) -> None:
        inside.set()
        gate.wait()
        order.append(payload)

    with FloorQueue(handler, features=["status", "metrics"]) as queue:
        queue.enqueue(Job(id="held", payload=b"held"))
        inside.wait()  # the one worker is busy: the next three queue up
        for i, priority in enumerate([Priority.LOW, Priority.MEDIUM, Priority.HIGH]):
            queue.enqueue(Job(id=str(i), payload=priority.name.encode(), priority=priority))
        gate.set()
        queue.join()
    assert order == [b"held", b"HIGH", b"MEDIUM", b"LOW"]


def test_floor_compare_times_the_pool_both_floors_and_final() -> None:
    timed = floor_compare(jobs=60, repeat=1)
    assert set(timed) == {"threadpool", *FLOORS, "final"}
    assert all(len(us) == 1 and us[0] > 0 for us in timed.values())
