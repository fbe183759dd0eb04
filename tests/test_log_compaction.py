"""Compaction of the job log (``final`` only): bounded size, nothing lost, atomic."""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jobqueue.final.log.files import FileOps
from jobqueue.final.log.replay import read_log
from jobqueue.vocabulary import Job, PersistenceError, Status
from tests.helpers import WAIT
from tests.logutil import mode, opened, recovered, summary, write_sample


def churn(log: object, start: int, count: int) -> None:
    """Jobs that come and go: the dead records compaction exists for."""
    from jobqueue.final.log import JobLog

    assert isinstance(log, JobLog)
    for i in range(start, start + count):
        log.enqueued(Job(id=f"j{i}", payload=b"x" * 100))
        log.started(f"j{i}", 1)
        log.completed(f"j{i}")


def test_compaction_keeps_live_jobs_and_history_and_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    want = write_sample(path)
    path.chmod(0o640)  # the owner let a group read it: compaction keeps that
    with opened(path) as (log, _):
        churn(log, 0, 200)
        log.sync()
        big = log.size
        log.compact()
        assert log.size < big / 5
        log.enqueued(Job(id="after"))  # appends go on, to the new file
    got = summary(recovered(path, history=3))
    live = [row for row in want if not row[1].finished]
    assert got[: len(live)] == live
    assert got[len(live)] == ("after", Status.QUEUED, 0)
    assert [row[0] for row in got[len(live) + 1 :]] == ["j197", "j198", "j199"]
    assert mode(path) == 0o640
    assert not Path(f"{path}.compact").exists()


def test_a_large_mostly_dead_log_is_compacted_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path, compact_min_bytes=1 << 40) as (log, _):  # never compacts
        log.enqueued(Job(id="keep", payload=b"k"))
        churn(log, 0, 500)
    big = path.stat().st_size
    with opened(path, compact_min_bytes=10_000, history=10) as (log, jobs):
        assert log.size < big / 10
        assert jobs[0].job.id == "keep"
    assert read_log(path).state.live.keys() == {"keep"}


@pytest.fixture
def compactions() -> Iterator[threading.Event]:
    """Set when the log reports a finished compaction (it logs one INFO line)."""
    done = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "compacted" in record.getMessage():
                done.set()

    logger = logging.getLogger("jobqueue.final.log")
    handler, level = Watch(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield done
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_log_is_compacted_in_the_background_as_it_grows(
    tmp_path: Path, compactions: threading.Event
) -> None:
    path = tmp_path / "jobs.log"
    options = {"compact_min_bytes": 50_000, "history": 20, "flush_interval": 0.01}
    with opened(path, **options) as (log, _):
        deadline = time.monotonic() + WAIT
        n = 0
        while not compactions.is_set() and time.monotonic() < deadline:
            churn(log, n, 100)
            n += 100
        assert compactions.is_set(), f"no compaction after {n} jobs, {log.size} bytes"
        log.enqueued(Job(id="last"))
    assert path.stat().st_size < n * 300  # far less than everything ever written
    assert read_log(path).state.live.keys() == {"last"}


def test_enqueues_during_compaction_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    acked: list[str] = []
    with opened(path, fsync="always") as (log, _):
        churn(log, 0, 300)
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                log.enqueued(Job(id=f"new{i}"))
                acked.append(f"new{i}")
                i += 1

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            for _ in range(20):
                log.compact()
        finally:
            stop.set()
            producer.join(WAIT)
    assert acked
    live = read_log(path).state.live
    assert set(acked) <= live.keys()
    assert list(live) == acked  # in enqueue order, too


class FailingRename(FileOps):
    def __init__(self, where: str) -> None:
        self.where = where
        self.renamed = False

    def rename(self, src: str, dst: str) -> None:
        if self.where == "rename":
            raise OSError(errno.EIO, "rename failed")
        super().rename(src, dst)
        self.renamed = True

    def fsync(self, fd: int) -> None:
        if self.where == "fsync_dir" and self.renamed:
            raise OSError(errno.EIO, "fsync failed")
        super().fsync(fd)


def test_a_failed_rename_leaves_the_old_log_in_use(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path, ops=FailingRename("rename")) as (log, _):
        log.enqueued(Job(id="a"))
        churn(log, 0, 50)
        log.sync()
        before = path.read_bytes()
        with pytest.raises(PersistenceError, match="compaction failed"):
            log.compact()
        assert path.read_bytes() == before
        assert not Path(f"{path}.compact").exists()
        log.enqueued(Job(id="b"))  # still usable
    assert list(read_log(path).state.live) == ["a", "b"]


def test_a_failed_directory_fsync_after_the_rename_fails_stop(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    with opened(path, ops=FailingRename("fsync_dir")) as (log, _):
        log.enqueued(Job(id="a"))
        with pytest.raises(PersistenceError, match="compaction failed"):
            log.compact()
        with pytest.raises(PersistenceError, match="refuses appends"):
            log.enqueued(Job(id="b"))
    assert list(read_log(path).state.live) == ["a"]


def test_a_leftover_compaction_file_is_removed_at_open(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    leftover = Path(f"{path}.compact")
    leftover.write_bytes(b'{"seq":0,"op":"header"')  # a compaction that died mid-write
    before = summary(recovered(path))
    assert not leftover.exists()
    assert os.path.exists(path)
    assert summary(recovered(path)) == before


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["enqueue", "retry", "complete", "fail", "requeue"]), st.integers(0, 5)
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(steps=_STEPS, policy=st.sampled_from(["never", "always"]))
@example(  # finished, enqueued again, finished again: it moves to the history's end
    steps=[
        *[("enqueue", 0), ("enqueue", 1), ("complete", 0), ("enqueue", 0)],
        *[("complete", 1), ("complete", 0), ("enqueue", 2), ("enqueue", 3)],
        *[("complete", 2), ("complete", 3)],
    ],
    policy="never",
)
@example(  # finished, enqueued again while others finish: it leaves the history
    steps=[
        *[("enqueue", 0), ("enqueue", 1), ("enqueue", 2), ("enqueue", 3)],
        *[("complete", 0), ("complete", 3), ("enqueue", 3), ("complete", 1)],
        ("complete", 2),
    ],
    policy="never",
)
def test_a_compacted_log_replays_to_the_state_of_the_log_it_replaced(
    steps: list[tuple[str, int]], policy: str
) -> None:
    """Compaction writes from the log's mirror, not from a replay: they must agree."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jobs.log"
        live: set[str] = set()
        with opened(path, fsync=policy, history=3, buffer_limit=2) as (log, _):
            for step, n in steps:
                job_id = f"j{n}"
                if step == "enqueue" and job_id not in live:  # the queue's rule
                    log.enqueued(Job(id=job_id, payload=bytes([n]) * n, attempts=n % 2))
                    live.add(job_id)
                elif step == "retry" and job_id in live:
                    log.retrying(job_id, n + 1, 1e9 + n, f"E{n}")
                elif step in ("complete", "fail") and job_id in live:
                    if step == "complete":
                        log.completed(job_id)
                    else:
                        log.failed(Job(id=job_id, payload=bytes([n])), n, f"F{n}", 1e9 + n)
                    live.discard(job_id)
                elif step == "requeue" and job_id not in live:  # a dead job, or none: lenient
                    log.requeued(Job(id=job_id, payload=bytes([n])))
                    live.add(job_id)
            log.sync()
            before = read_log(path, 3).state.stored()
            log.compact()
            after = read_log(path, 3).state.stored()
        assert after == before
