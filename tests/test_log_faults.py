"""The disk itself failing (``final`` only): ENOSPC, EIO, short writes, fail-stop.

Faults are injected through the log's ``FileOps`` seam, never by patching
``os`` for the whole process.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from jobqueue.final import Config, Job, JobQueue, PersistenceError, Status
from jobqueue.final.log import files as log_files
from jobqueue.final.log.files import FileOps
from jobqueue.final.log.replay import read_log
from tests.helpers import WAIT, Recorder
from tests.logutil import opened, recovered

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EIO = OSError(errno.EIO, os.strerror(errno.EIO))


class FaultyDisk(FileOps):
    """A disk that fails on cue, and counts its fsyncs."""

    def __init__(self) -> None:
        self.write_error: OSError | None = None
        self.short_writes = 0  # this many writes write only half, then return
        self.fsync_error: OSError | None = None
        self.truncate_error: OSError | None = None
        self.fsync_seconds = 0.0  # a slow disk: what group commit is for
        self.fsyncs = 0

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.short_writes:
            self.short_writes -= 1
            return os.write(fd, data[: max(1, len(data) // 2)])
        if self.write_error is not None:
            raise self.write_error
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.fsync_error is not None:
            raise self.fsync_error
        if self.fsync_seconds:
            time.sleep(self.fsync_seconds)  # the simulated disk's latency, not a wait
        self.fsyncs += 1
        os.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        if self.truncate_error is not None:
            raise self.truncate_error
        os.ftruncate(fd, length)


def ids(path: Path) -> set[str]:
    return {s.job.id for s in recovered(path)}


@pytest.mark.parametrize("error", [ENOSPC, EIO], ids=["ENOSPC", "EIO"])
def test_a_failed_write_acknowledges_nothing_and_the_log_goes_on(
    tmp_path: Path, error: OSError
) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, ops=disk) as (log, _):
        log.enqueued(Job(id="before"))
        size = path.stat().st_size
        disk.write_error = error
        with pytest.raises(PersistenceError, match="were not written"):
            log.enqueued(Job(id="lost"))
        assert path.stat().st_size == size
        disk.write_error = None  # space was freed: a write may succeed again
        log.enqueued(Job(id="after"))
    assert ids(path) == {"before", "after"}


@pytest.mark.parametrize("policy", ["interval", "always"])
def test_a_failed_write_keeps_the_other_jobs_buffered_completions(
    tmp_path: Path, policy: str
) -> None:
    """The enqueue whose write failed is refused; the completions that rode along are
    written with the next batch, so those jobs do not run again."""
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, fsync=policy, ops=disk) as (log, _):
        for name in ("a", "b", "c"):
            log.enqueued(Job(id=name))
        log.completed("a")  # buffered
        log.completed("b")
        disk.write_error = ENOSPC
        with pytest.raises(PersistenceError, match="were not written"):
            log.enqueued(Job(id="refused"))  # its batch carries a's and b's completions
        disk.write_error = None
    jobs = {s.job.id: s.status for s in recovered(path)}
    assert jobs == {"a": Status.COMPLETED, "b": Status.COMPLETED, "c": Status.QUEUED}


def test_a_queue_on_a_full_disk_reruns_no_finished_job_after_a_clean_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FaultyDisk()
    monkeypatch.setattr(log_files, "DEFAULT_OPS", disk)
    path = tmp_path / "jobs.log"
    with JobQueue(Config(persist_path=path, handler=Recorder(), num_workers=2)) as q:
        for i in range(20):
            q.enqueue(Job(id=f"done{i}"))
        assert q.join(timeout=WAIT)  # their completions wait in the buffer
        disk.write_error = ENOSPC
        for i in range(3):
            with pytest.raises(PersistenceError):
                q.enqueue(Job(id=f"refused{i}"))
        disk.write_error = None
    again = Recorder()
    with JobQueue(Config(persist_path=path, handler=again)) as q:
        assert q.join(timeout=WAIT)
    assert again.runs == []


def test_a_short_write_is_truncated_back_to_the_last_good_record(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, ops=disk) as (log, _):
        log.enqueued(Job(id="before"))
        size = path.stat().st_size
        disk.short_writes, disk.write_error = 1, ENOSPC  # half a line, then the disk is full
        with pytest.raises(PersistenceError):
            log.enqueued(Job(id="lost", payload=b"x" * 1000))
        assert path.stat().st_size == size  # no half line left behind
    found = read_log(path)
    assert found.torn == b""
    assert set(found.state.live) == {"before"}


def test_a_short_write_that_resumes_loses_nothing(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, ops=disk) as (log, _):
        disk.short_writes = 3
        log.enqueued(Job(id="whole", payload=b"x" * 1000))
    assert ids(path) == {"whole"}


def test_a_failed_fsync_fails_stop_until_the_log_is_reopened(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, fsync="always", ops=disk) as (log, _):
        log.enqueued(Job(id="safe"))
        disk.fsync_error = EIO
        with pytest.raises(PersistenceError, match="fsync failed"):
            log.enqueued(Job(id="unknown"))
        disk.fsync_error = None  # the disk "recovers", but nobody may trust that
        with pytest.raises(PersistenceError, match="refuses appends"):
            log.enqueued(Job(id="refused"))
        with pytest.raises(PersistenceError, match="refuses appends"):
            log.completed("safe")
    found = ids(path)  # reopened and replayed: usable again
    assert "safe" in found
    assert "refused" not in found
    with opened(path, fsync="always") as (log, _):
        log.enqueued(Job(id="later"))


def test_a_failed_interval_fsync_fails_stop(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, fsync="interval", ops=disk) as (log, _):
        log.enqueued(Job(id="a"))
        disk.fsync_error = EIO
        with pytest.raises(PersistenceError, match="fsync failed"):
            log.sync()  # what the flusher does every tick
        disk.fsync_error = None
        with pytest.raises(PersistenceError, match="refuses appends"):
            log.enqueued(Job(id="b"))


def test_a_write_that_cannot_be_truncated_back_fails_stop(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, ops=disk) as (log, _):
        disk.short_writes, disk.write_error, disk.truncate_error = 1, EIO, EIO
        with pytest.raises(PersistenceError, match="truncating it back failed"):
            log.enqueued(Job(id="a"))
        disk.write_error = disk.truncate_error = None
        with pytest.raises(PersistenceError, match="refuses appends"):
            log.enqueued(Job(id="b"))
    # Reopening sets the half line aside: the log is whole again.
    assert ids(path) == set()
    assert read_log(path).torn == b""


def test_a_queue_on_a_full_disk_raises_and_accepts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FaultyDisk()
    monkeypatch.setattr(log_files, "DEFAULT_OPS", disk)
    recorder = Recorder()
    config = Config(persist_path=tmp_path / "jobs.log", handler=recorder, fsync="always")
    with JobQueue(config) as q:
        disk.write_error = ENOSPC
        with pytest.raises(PersistenceError):
            q.enqueue(Job(id="x"))
        assert q.status("x") is None
        assert q.metrics().queued == 0
        assert q.join(timeout=0)  # nothing was accepted, so nothing is pending
        disk.write_error = None
        q.enqueue(Job(id="x"))  # the same id: it was never accepted
        assert q.join(timeout=WAIT)
        assert q.status("x") is Status.COMPLETED
    assert recorder.runs == [b""]


def test_a_queue_after_a_failed_fsync_refuses_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FaultyDisk()
    monkeypatch.setattr(log_files, "DEFAULT_OPS", disk)
    config = Config(persist_path=tmp_path / "jobs.log", handler=Recorder(), fsync="always")
    with JobQueue(config) as q:
        disk.fsync_error = EIO
        with pytest.raises(PersistenceError):
            q.enqueue(Job(id="a"))
        disk.fsync_error = None
        with pytest.raises(PersistenceError, match="refuses appends"):
            q.enqueue(Job(id="b"))
    with JobQueue(config) as q:
        q.enqueue(Job(id="b"))
        assert q.join(timeout=WAIT)


def test_concurrent_enqueues_share_fsyncs(tmp_path: Path) -> None:
    """Group commit: producers that arrive while an fsync runs share the next one."""
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    disk.fsync_seconds = 0.005
    producers, each = 8, 25
    with opened(path, fsync="always", ops=disk) as (log, _):
        before = disk.fsyncs
        start = threading.Barrier(producers)

        def produce(n: int) -> None:
            start.wait(WAIT)
            for i in range(each):
                log.enqueued(Job(id=f"p{n}-{i}"))

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 3)
        fsyncs = disk.fsyncs - before
    assert len(ids(path)) == producers * each
    assert fsyncs <= producers * each // 2, f"{fsyncs} fsyncs for {producers * each} enqueues"


def test_only_the_enqueue_waits_for_fsync(tmp_path: Path) -> None:
    path, disk = tmp_path / "jobs.log", FaultyDisk()
    with opened(path, fsync="always", ops=disk) as (log, _):
        log.enqueued(Job(id="a"))
        before = disk.fsyncs
        for _ in range(50):
            log.started("a", 1)
        log.completed("a")
        assert disk.fsyncs == before  # buffered: a lost one only means a re-run
        log.enqueued(Job(id="b"))  # carries them to disk, with one fsync
        assert disk.fsyncs == before + 1
    assert [s.status for s in recovered(path)] == [Status.QUEUED, Status.COMPLETED]
