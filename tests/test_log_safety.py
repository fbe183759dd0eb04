"""The log under hostile files and absurd values (``final`` only).

One queue per log, and the log stays where the user put it; damage is never
mistaken for a torn write; what is read back is checked like what is built.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from jobqueue.final import Config, Job, JobQueue, PersistenceError, Status
from jobqueue.final.log import JobLog
from jobqueue.final.log.files import FileOps
from jobqueue.final.log.replay import read_log
from jobqueue.lab.cli import main
from tests.helpers import WAIT
from tests.logutil import lines, open_error, opened, recovered, write_sample

pytestmark = pytest.mark.timeout(60)


def sealed(seq: int, fields: dict[str, object], *, raw: str | None = None) -> bytes:
    """A line with a valid checksum over whatever fields (or raw JSON text) it holds."""
    text = raw if raw is not None else json.dumps({"seq": seq, **fields}, separators=(",", ":"))
    body = text[:-1].encode()
    return body + b',"crc":"%08x"}\n' % zlib.crc32(body)


def enqueued_line(seq: int, created: object, job_id: str = "odd") -> bytes:
    fields = {"op": "enqueued", "id": job_id, "priority": "LOW", "attempts": 0}
    return sealed(seq, {**fields, "created": created, "handler": None, "payload": ""})


def append_line(path: Path, line: bytes) -> None:
    with open(path, "ab") as f:
        f.write(line)


# -- 1. one queue per log, and the log stays where the user put it ------------------------


def test_a_queue_on_a_symlink_to_an_open_log_is_refused(tmp_path: Path) -> None:
    path, link = tmp_path / "jobs.log", tmp_path / "alias.log"
    with JobQueue(Config(persist_path=path, handler=print)):
        link.symlink_to(path)
        with pytest.raises(PersistenceError, match="symbolic link"):
            JobQueue(Config(persist_path=link, handler=print))


def test_a_queue_on_a_hard_link_to_an_open_log_is_refused(tmp_path: Path) -> None:
    path, link = tmp_path / "jobs.log", tmp_path / "alias.log"
    with JobQueue(Config(persist_path=path, handler=print)) as q:
        os.link(path, link)
        with pytest.raises(PersistenceError, match="2 names"):
            JobQueue(Config(persist_path=link, handler=print))
        q.enqueue(Job(id="still-works"))
    link.unlink()
    assert [s.job.id for s in recovered(path)] == ["still-works"]


def test_a_log_reached_through_a_symlink_is_refused_and_stays_put(tmp_path: Path) -> None:
    """Compaction renames over the log's path: through a symlink, it would move the log
    out of the directory the link points into."""
    (tmp_path / "real").mkdir()
    (tmp_path / "app").mkdir()
    real, link = tmp_path / "real" / "jobs.log", tmp_path / "app" / "jobs.log"
    write_sample(real)
    link.symlink_to(real)
    before = real.read_bytes()
    assert "symbolic link" in open_error(link)
    assert link.is_symlink()
    assert real.read_bytes() == before


def test_a_symlink_planted_at_the_compaction_file_is_not_followed(tmp_path: Path) -> None:
    path, victim = tmp_path / "jobs.log", tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    with opened(path) as (log, _):
        log.enqueued(Job(id="a"))
        Path(f"{path}.compact").symlink_to(victim)  # planted after the open cleaned up
        with pytest.raises(PersistenceError, match="not ours to overwrite"):
            log.compact()
        log.enqueued(Job(id="b"))  # the log goes on
    assert victim.read_bytes() == b"precious"
    assert [s.job.id for s in recovered(path)] == ["a", "b"]
    assert not os.path.lexists(f"{path}.compact")  # the open removed the link, not its target
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("where", ["log", "lock"])
def test_a_symlink_planted_at_the_log_or_lock_path_is_refused(tmp_path: Path, where: str) -> None:
    path, victim = tmp_path / "jobs.log", tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    Path(str(path) + (".lock" if where == "lock" else "")).symlink_to(victim)
    assert "symbolic link" in open_error(path)
    assert victim.read_bytes() == b"precious"
    assert victim.stat().st_mode & 0o777 != 0o600 or where == "lock"


@pytest.mark.parametrize("bits", [0o020, 0o002], ids=["group", "world"])
def test_a_log_others_can_write_is_refused(tmp_path: Path, bits: int) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    path.chmod(0o600 | bits)
    before = path.read_bytes()
    error = open_error(path)
    assert str(path) in error
    assert "writable by group or others" in error
    assert path.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_log_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    os.chown(path, 4242, -1)
    assert "owned by uid 4242" in open_error(path)


# -- 2. damage is detected, never mistaken for a torn write --------------------------------


def test_a_whole_last_line_after_a_lost_line_is_damage_not_a_torn_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    rows = lines(path)
    del rows[-2]  # the line before the last is lost; the last is whole, checksum and all
    path.write_bytes(b"".join(rows))
    before = path.read_bytes()
    assert "sequence number" in open_error(path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("jobs.log.torn-*"))


@pytest.mark.parametrize("at", ["middle", "last"])
def test_a_deeply_nested_line_is_damage(
    tmp_path: Path, at: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    rows = lines(path)
    seq = len(rows) if at == "last" else 1
    deep = "[" * 100_000 + "]" * 100_000
    nested = sealed(seq, {}, raw=f'{{"seq":{seq},"op":{deep}}}')
    if at == "last":
        rows.append(nested)
    else:
        rows[1] = nested
    path.write_bytes(b"".join(rows))
    assert "nested too deeply" in open_error(path)
    Path(f"{path}.lock").unlink()
    assert main(["check", str(path)]) == 1
    assert main(["inspect", str(path)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err


@pytest.mark.parametrize(
    "created",
    [10**400, 1e300, -1e300, "NaN", "Infinity"],
    ids=["10**400", "1e300", "-1e300", "NaN", "Infinity"],
)
def test_a_created_time_out_of_range_or_not_a_number_is_damage(
    tmp_path: Path, created: object, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.log"
    with opened(path):
        pass
    if isinstance(created, str):  # not JSON, but what json.dumps wrote for nan and inf
        line = enqueued_line(1, 0.0).replace(b'"created":0.0', f'"created":{created}'.encode())
        body = line[: line.rindex(b',"crc"')]
        line = body + b',"crc":"%08x"}\n' % zlib.crc32(body)
    else:
        line = enqueued_line(1, created)
    append_line(path, line)
    assert "damaged" in open_error(path)
    Path(f"{path}.lock").unlink()
    assert main(["inspect", str(path)]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("created", [1e300, -1e300], ids=["1e300", "-1e300"])
def test_a_job_created_absurdly_far_in_the_past_or_future_is_refused(created: float) -> None:
    # The Job refuses it, so no queue writes it; a line that holds one anyway is
    # damage (test_a_created_time_out_of_range_or_not_a_number_is_damage), never a crash.
    with pytest.raises(ValueError, match="created must be seconds since the epoch"):
        Job(id="far", created=created)


@pytest.mark.parametrize("created", [math.nan, math.inf, -math.inf])
def test_the_log_never_writes_nan_or_infinity(tmp_path: Path, created: float) -> None:
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        try:
            job = Job(id="odd", created=created)
        except ValueError:
            return  # the Job refuses it already: nothing can reach the log
        with pytest.raises(ValueError, match="created must be a finite number"):
            log.enqueued(job)
        with pytest.raises(PersistenceError, match="retry_at must be a finite number"):
            log.retrying("odd", 1, created, "E")
    assert b"NaN" not in path.read_bytes()
    assert b"Infinity" not in path.read_bytes()
    assert recovered(path) == []


# -- 5. values read back get the same checks; close always lets go --------------------------


def test_a_poisoned_retry_time_in_the_log_does_not_kill_the_workers(tmp_path: Path) -> None:
    """A retry due in 1e10 s (written when such a delay was accepted): the queue waits
    at most a year for it, and its workers go on with other jobs."""
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(Job(id="poisoned"))
        log.retrying("poisoned", 1, time.time() + 1e10, "RuntimeError('x')")
    ran = threading.Event()
    config = Config(persist_path=path, handler=lambda payload: ran.set(), num_workers=1)
    with JobQueue(config) as q:
        assert q.status("poisoned") is Status.RETRYING
        q.enqueue(Job(id="fresh"))
        assert ran.wait(WAIT), "the worker died"
    stored = {s.job.id: s for s in recovered(path)}
    retry_at = stored["poisoned"].retry_at
    assert retry_at is not None
    assert retry_at < time.time() + 400 * 24 * 3600


class FailingClose(FileOps):
    """An fsync that raises something unexpected, as at close."""

    armed = False

    def fsync(self, fd: int) -> None:
        if self.armed:
            raise RuntimeError("the disk driver is confused")
        super().fsync(fd)


def test_close_releases_the_lock_and_stops_the_flusher_even_when_it_fails(
    tmp_path: Path,
) -> None:
    path, ops = tmp_path / "jobs.log", FailingClose()
    before = set(threading.enumerate())
    log = JobLog(path, ops=ops)
    log.recover()
    log.enqueued(Job(id="a"))
    ops.armed = True
    with pytest.raises(RuntimeError, match="confused"):
        log.close()
    assert not set(threading.enumerate()) - before  # its flusher has stopped
    assert [s.job.id for s in recovered(path)] == ["a"]  # the lock was released


def test_a_log_never_closed_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    code = (
        "import sys; from jobqueue.final.log import JobLog; from jobqueue.vocabulary import Job\n"
        "log = JobLog(sys.argv[1]); log.recover(); log.enqueued(Job(id='a')); print('ok')\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "jobs.log")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.stdout == "ok\n"
    assert read_log(tmp_path / "jobs.log").state.live.keys() == {"a"}
