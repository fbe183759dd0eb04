"""Dead letters (``final``): list the jobs that failed for good, whole, and requeue them.

In memory, through a restart, through compaction, and from the command line.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from jobqueue.final import Config, DeadJob, Job, JobQueue, Priority, Status
from jobqueue.final.dead import ERROR_LIMIT, error_text
from jobqueue.final.log.format import Op, Record
from jobqueue.lab.cli import main
from tests.helpers import WAIT, Recorder
from tests.logutil import append_record, opened, recovered


class Flaky:
    """A handler that fails while ``broken`` is set, and records what it ran."""

    def __init__(self) -> None:
        self.broken = True
        self.runs = Recorder()

    def __call__(self, payload: bytes) -> None:
        if self.broken:
            raise ValueError(f"cannot handle {payload!r}")
        self.runs(payload)


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


def failing_queue(queues: list[JobQueue], flaky: Flaky, **config: object) -> JobQueue:
    options: dict[str, object] = {"handlers": {"flaky": flaky}, "max_retries": 0}
    options.update(config)
    q = JobQueue(Config(**options))  # type: ignore[arg-type]
    queues.append(q)
    return q


def job(job_id: str, priority: Priority = Priority.MEDIUM) -> Job:
    return Job(id=job_id, priority=priority, payload=job_id.encode(), handler="flaky")


def fail_all(q: JobQueue, *ids: str) -> None:
    for job_id in ids:
        q.enqueue(job(job_id))
    assert q.join(timeout=WAIT)


def test_dead_lists_jobs_failed_for_good_newest_first(queues: list[JobQueue], flaky: Flaky) -> None:
    q = failing_queue(queues, flaky, max_retries=1, retry_base_delay=0.001, num_workers=1)
    fail_all(q, "a")
    fail_all(q, "b")
    dead = q.dead()
    assert [d.job.id for d in dead] == ["b", "a"]
    first = dead[1]
    assert isinstance(first, DeadJob)
    assert first.job.payload == b"a"
    assert first.job.handler == "flaky"
    assert first.attempts == 2  # the first run and one retry
    assert first.error == "ValueError(\"cannot handle b'a'\")"
    assert dead[0].failed_at >= first.failed_at > 0
    assert q.dead(limit=1) == dead[:1]
    assert q.dead(limit=0) == []


def test_dead_limit_is_checked(queues: list[JobQueue], flaky: Flaky) -> None:
    q = failing_queue(queues, flaky)
    with pytest.raises(ValueError, match="limit must be >= 0"):
        q.dead(-1)
    with pytest.raises(TypeError, match="limit must be an int"):
        q.dead("5")  # type: ignore[arg-type]


def test_dead_keeps_at_most_status_history_jobs(queues: list[JobQueue], flaky: Flaky) -> None:
    q = failing_queue(queues, flaky, status_history=2, num_workers=1)
    fail_all(q, "a", "b", "c")
    assert [d.job.id for d in q.dead()] == ["c", "b"]


def test_a_huge_error_is_cut_and_says_so() -> None:
    text = error_text(ValueError("x" * 10 * ERROR_LIMIT))
    assert len(text) == ERROR_LIMIT
    assert text.startswith("ValueError('xxx")
    assert text.endswith("more characters)")


def test_requeue_runs_a_dead_job_again_with_its_attempts_reset(
    queues: list[JobQueue], flaky: Flaky
) -> None:
    q = failing_queue(queues, flaky, max_retries=1, retry_base_delay=0.001)
    fail_all(q, "a")
    assert q.status("a") is Status.FAILED
    flaky.broken = False  # the fix is deployed
    assert q.requeue("a") is True
    assert q.join(timeout=WAIT)
    assert flaky.runs.runs == [b"a"]
    assert q.status("a") is Status.COMPLETED
    assert q.dead() == []
    assert q.metrics().completed == 1


def test_requeue_resets_the_retry_budget(queues: list[JobQueue], flaky: Flaky) -> None:
    q = failing_queue(queues, flaky, max_retries=1, retry_base_delay=0.001)
    fail_all(q, "a")
    assert q.requeue("a")
    assert q.join(timeout=WAIT)
    (again,) = q.dead()
    assert again.attempts == 2  # a whole new budget, spent again: not 4
    assert q.metrics().failed == 2


def test_requeue_refuses_what_is_not_dead(queues: list[JobQueue], flaky: Flaky) -> None:
    flaky.broken = False
    q = failing_queue(queues, flaky)
    fail_all(q, "done")
    assert q.requeue("done") is False
    assert q.requeue("never-seen") is False
    with pytest.raises(TypeError, match="job_id must be a str"):
        q.requeue(7)  # type: ignore[arg-type]


def test_a_dead_id_enqueued_anew_is_no_longer_dead(queues: list[JobQueue], flaky: Flaky) -> None:
    q = failing_queue(queues, flaky)
    fail_all(q, "a")
    flaky.broken = False
    q.enqueue(job("a"))
    assert q.join(timeout=WAIT)
    assert q.dead() == []
    assert q.requeue("a") is False


def test_dead_jobs_survive_a_restart_payload_included(
    queues: list[JobQueue], flaky: Flaky, tmp_path: Path
) -> None:
    path = str(tmp_path / "jobs.log")
    q = failing_queue(queues, flaky, persist_path=path)
    fail_all(q, "a", "b")
    before = q.dead()
    q.close()
    again = failing_queue(queues, flaky, persist_path=path)
    assert again.dead() == before
    assert again.status("a") is Status.FAILED


def test_a_requeue_survives_a_restart(queues: list[JobQueue], flaky: Flaky, tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.log")
    q = failing_queue(queues, flaky, persist_path=path)
    fail_all(q, "a")
    q.pause()  # the requeued job waits: closing leaves it queued in the log
    assert q.requeue("a")
    q.close()
    flaky.broken = False
    again = failing_queue(queues, flaky, persist_path=path)
    assert again.join(timeout=WAIT)
    assert flaky.runs.runs == [b"a"]
    assert again.dead() == []


def test_dead_jobs_keep_their_payload_through_compaction(
    queues: list[JobQueue], flaky: Flaky, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.log"
    q = failing_queue(queues, flaky, persist_path=str(path))
    fail_all(q, "a")
    flaky.broken = False
    for n in range(20):  # finished jobs that compaction may drop
        q.enqueue(Job(id=f"ok-{n}", handler="flaky"))
    assert q.join(timeout=WAIT)
    before = q.dead()
    q.close()
    with opened(path, history=100) as (log, _):
        size = log.size
        log.compact()
        assert log.size < size
    again = failing_queue(queues, flaky, persist_path=str(path))
    assert again.dead() == before


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), " ".join(err.split())


def test_cli_lists_dead_jobs_and_requeues_them_into_a_closed_log(
    queues: list[JobQueue], flaky: Flaky, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "jobs.log")
    q = failing_queue(queues, flaky, persist_path=path, num_workers=1)  # they fail in order
    fail_all(q, "mail-1", "mail-2")
    q.close()
    code, out, _ = cli(capsys, "dead", path)
    assert code == 0
    assert "dead jobs (2 of 2)" in out
    assert out.index("mail-2") < out.index("mail-1")  # newest first
    assert "ValueError" in out
    code, out, err = cli(capsys, "requeue", path, "mail-1", "nope")
    assert code == 1
    assert "requeued mail-1" in out
    assert "nope: not a dead job" in err
    flaky.broken = False
    again = failing_queue(queues, flaky, persist_path=path)
    assert again.join(timeout=WAIT)
    assert flaky.runs.runs == [b"mail-1"]
    assert [d.job.id for d in again.dead()] == ["mail-2"]


def test_cli_requeue_is_refused_while_a_queue_has_the_log_open(
    queues: list[JobQueue], flaky: Flaky, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "jobs.log")
    q = failing_queue(queues, flaky, persist_path=path)
    fail_all(q, "a")
    before = Path(path).read_bytes()
    code, _, err = cli(capsys, "requeue", path, "a")
    assert code == 1
    assert "a queue has this log open" in err
    assert Path(path).read_bytes() == before
    assert [d.job.id for d in q.dead()] == ["a"]


def test_requeue_from_another_thread_while_workers_run(
    queues: list[JobQueue], flaky: Flaky
) -> None:
    q = failing_queue(queues, flaky)
    fail_all(q, *[f"j{n}" for n in range(20)])
    flaky.broken = False
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(q.requeue("j3"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert q.join(timeout=WAIT)
    assert results.count(True) >= 1
    assert flaky.runs.runs.count(b"j3") == results.count(True)


def test_a_failed_record_written_before_dead_letters_still_reads(
    queues: list[JobQueue], flaky: Flaky, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.log"
    with opened(path) as (log, _):
        log.enqueued(job("old"))
    append_record(path, Record(Op.FAILED, "old", attempts=1, error="ValueError('x')"))
    q = failing_queue(queues, flaky, persist_path=str(path))
    assert q.status("old") is Status.FAILED
    assert q.dead() == []  # no payload kept: nothing to list or requeue
    assert q.requeue("old") is False


def test_failed_and_requeued_records_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    dead = Job(id="d", priority=Priority.LOW, payload=b"\x00\xff", attempts=3, handler="flaky")
    with opened(path) as (log, _):
        log.enqueued(job("d"))
        log.failed(dead, 3, "E", 1_700_000_000.5)
    (stored,) = recovered(path)
    assert stored.job == dead
    assert (stored.status, stored.error, stored.failed_at) == (Status.FAILED, "E", 1_700_000_000.5)
    with opened(path) as (log, _):
        log.requeued(replace(dead, attempts=0))
    (stored,) = recovered(path)
    assert stored.job == replace(dead, attempts=0)
    assert stored.status is Status.QUEUED
