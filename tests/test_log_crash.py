"""Crashes (``final`` only): ``kill -9`` while enqueueing, while retrying and while
compacting, and locks held by another process.  The victims are
``jobqueue/lab/scenarios/crash_child.py`` processes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jobqueue.final import Config, JobQueue
from jobqueue.final.log.replay import read_log
from jobqueue.vocabulary import PersistenceError, Status
from tests.child import STARTUP, ChildProcess
from tests.helpers import WAIT
from tests.logutil import open_error, recovered


class Child(ChildProcess):
    """A ``crash_child`` process."""

    def __init__(self, tmp_path: Path, *args: object) -> None:
        super().__init__(tmp_path, "jobqueue.lab.scenarios.crash_child", *args)

    def read_until(self, wanted: Callable[[str], bool], timeout: float) -> list[str]:
        """Lines up to and including the first ``wanted`` one; fails after ``timeout``."""
        deadline, seen = time.monotonic() + timeout, list[str]()
        while True:
            line = self.readline(deadline - time.monotonic())
            assert line is not None, f"the child never said what we wait for; saw {seen[-3:]}"
            seen.append(line)
            if wanted(line):
                return seen

    def kill(self) -> list[str]:
        """SIGKILL it; return the whole lines it wrote before it died."""
        self.proc.kill()
        return self.finish()

    def finish(self) -> list[str]:
        assert self.proc.stdout is not None
        rest = self._buffer + self.proc.stdout.read()  # to EOF: the child is gone
        self.proc.wait(WAIT)
        self._close_pipes()
        return [line.decode() for line in rest.split(b"\n")[:-1]]  # drop a partial line


def test_kill_9_never_loses_an_acknowledged_enqueue(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    rng = random.Random(20241128)  # seeded: the same kill moments on every run
    log, done = tmp_path / "jobs.log", tmp_path / "done.txt"
    acked: list[str] = []
    for n, policy in enumerate(["never", "interval", "always", "interval", "never"]):
        child = Child(tmp_path, "produce", log, done, f"r{n}", policy)
        try:
            assert child.readline(STARTUP) == "ready"
            kill_at = time.monotonic() + rng.uniform(0.02, 0.3)  # the deliberate random delay
            while (line := child.readline(kill_at - time.monotonic())) is not None:
                acked.append(line)
        finally:
            acked.extend(line for line in child.kill() if line != "ready")
    drain = Child(tmp_path, "drain", log, done)
    assert drain.readline(STARTUP + WAIT) == "drained"
    drain.finish()
    ran = done.read_text().splitlines()
    missing = set(acked) - set(ran)
    assert acked, "no enqueue was acknowledged before the kills"
    assert not missing, f"{len(missing)} acknowledged jobs never ran, e.g. {sorted(missing)[:5]}"
    reruns = len(ran) - len(set(ran))
    record_property("acknowledged", len(acked))
    record_property("reruns", reruns)
    print(f"\nkill -9 x5: {len(acked)} acknowledged, none lost, {reruns} re-runs")


@pytest.mark.timeout(120)
def test_kill_9_does_not_give_back_the_retry_budget(tmp_path: Path) -> None:
    """A handler that always fails, killed after its second run of each life: the
    retries it used were written at once, so runs <= 1 + max_retries + crashes."""
    log, runs = tmp_path / "jobs.log", tmp_path / "runs.txt"
    crashes = 0
    for life in range(4):  # three kills at most, then a life that sees the end
        child = Child(tmp_path, "failing", log, runs)
        seen: list[str] = []
        try:
            while seen.count("run") < 2 and "drained" not in seen:
                seen += child.read_until(lambda line: line in ("run", "drained"), STARTUP)
            if life == 3 and "drained" not in seen:
                seen += child.read_until(lambda line: line == "drained", WAIT)
        except BaseException:
            child.kill()
            raise
        if "drained" in seen:
            child.finish()
            break
        child.kill()
        crashes += 1
    ran = len(runs.read_text().splitlines())
    max_retries = 3
    assert crashes, "no kill came while the job was still retrying"
    assert ran <= 1 + max_retries + crashes, f"ran {ran} times across {crashes} kills"
    assert [(s.job.id, s.status) for s in recovered(log)] == [("doomed", Status.FAILED)]


@pytest.mark.parametrize("point", ["bulk", "rename", "dirsync"])
def test_kill_9_inside_compaction_loses_nothing(tmp_path: Path, point: str) -> None:
    log = tmp_path / "jobs.log"
    child = Child(tmp_path, "compact", log, point)
    try:
        seen = child.read_until(lambda line: line == f"at {point}", STARTUP)
        if point == "bulk":  # enqueues go on while the new file is written
            seen += child.read_until(lambda line: line.startswith("ack new"), WAIT)
    finally:
        seen += child.kill()
    acked = {line.removeprefix("ack ") for line in seen if line.startswith("ack ")}
    assert any(job.startswith("new") for job in acked) or point != "bulk"
    jobs = {s.job.id: s for s in recovered(log)}  # the parent reopens: replay + clean-up
    assert acked <= jobs.keys(), f"lost {sorted(acked - jobs.keys())[:5]}"
    live = {i for i, s in jobs.items() if not s.status.finished}
    assert {f"old{i}" for i in range(0, 400, 4)} <= live
    assert not Path(f"{log}.compact").exists()
    assert read_log(log).torn == b""


def test_a_log_open_in_another_process_is_refused_until_it_closes(tmp_path: Path) -> None:
    log = tmp_path / "jobs.log"
    child = Child(tmp_path, "hold", log)
    try:
        assert child.readline(STARTUP) == "locked"
        assert "in use by another open queue" in open_error(log)
        with pytest.raises(PersistenceError, match="in use by another open queue"):
            JobQueue(Config(persist_path=log, handler=print))
    finally:
        assert child.proc.stdin is not None
        child.proc.stdin.close()  # the child closes its log and exits
        child.finish()
    assert recovered(log) == []


def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    log = tmp_path / "jobs.log"
    child = Child(tmp_path, "hold", log)
    try:
        assert child.readline(STARTUP) == "locked"
    finally:
        child.kill()
    assert recovered(log) == []  # no stale lock after kill -9
