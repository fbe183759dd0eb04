"""Persistence: jobs, their retry state and their outcome survive a restart.

``naive`` and ``improved`` ignore ``persist_path`` on purpose, so every cell
of theirs here is a strict xfail.  The log itself is tested, ``final`` only,
in ``test_log*.py``; ``kill -9`` in ``test_log_crash.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import WAIT, Harness, Recorder


def held_at_close(harness: Harness, path: Path, payloads: dict[str, bytes]) -> None:
    """A queue that closes while one job ("held") runs and ``payloads`` wait."""
    gate = harness.gate()
    q = harness.queue(persist_path=str(path), handler=gate, num_workers=1, shutdown_timeout=0.05)
    q.enqueue(harness.job("held"))
    gate.wait_entered()
    for name, payload in payloads.items():
        q.enqueue(harness.job(name, payload=payload))
    q.close()  # gives up on "held" after shutdown_timeout: as good as a crash for it


@pytest.mark.gap("persistence")
def test_queued_jobs_run_after_a_restart(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    held_at_close(harness, path, {"a": b"a", "b": b"b", "c": b"c"})
    recorder = Recorder()
    q = harness.queue(persist_path=str(path), handler=recorder)
    assert q.join(timeout=WAIT)
    # "held" was in flight when its queue went away: it runs again (at least once).
    assert sorted(recorder.runs) == [b"a", b"b", b"c", b"held"]


@pytest.mark.gap("persistence")
def test_completed_jobs_do_not_run_again_after_a_clean_close(
    harness: Harness, tmp_path: Path
) -> None:
    path = str(tmp_path / "jobs.log")
    first = harness.queue(persist_path=path, handler=Recorder())
    for i in range(5):
        first.enqueue(harness.job(f"done{i}"))
    assert first.join(timeout=WAIT)
    first.close()
    recorder = Recorder()
    q = harness.queue(persist_path=path, handler=recorder)
    q.enqueue(harness.job("fresh"))
    assert q.join(timeout=WAIT)
    assert recorder.runs == [b"fresh"]
    assert q.status("done0") is harness.stage.Status.COMPLETED  # remembered, too


@pytest.mark.gap("persistence")
def test_jobs_accepted_before_an_exception_survive_it(harness: Harness, tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.log")
    gate = harness.gate()
    config = harness.stage.Config(
        persist_path=path, handler=gate, num_workers=1, shutdown_timeout=0.05
    )
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="the producer crashed"),
        harness.stage.JobQueue(config) as q,
    ):
        q.enqueue(harness.job("blocker"))
        gate.wait_entered()
        q.enqueue(harness.job("accepted"))
        raise RuntimeError("the producer crashed")
    recorder = Recorder()
    q = harness.queue(persist_path=path, handler=recorder)
    assert q.join(timeout=WAIT)
    assert sorted(recorder.runs) == [b"accepted", b"blocker"]


@pytest.mark.gap("persistence")
def test_the_retry_budget_and_the_backoff_survive_a_restart(
    harness: Harness, tmp_path: Path
) -> None:
    path = str(tmp_path / "jobs.log")
    base = 0.3
    first_run = Recorder(fail=lambda payload: True)
    q = harness.queue(persist_path=path, handler=first_run, max_retries=2, retry_base_delay=base)
    q.enqueue(harness.job("flaky"))
    assert first_run.wait_for(1)
    q.close()  # while "flaky" waits out its first backoff
    recorder = Recorder(fail=lambda payload: True)
    q = harness.queue(persist_path=path, handler=recorder, max_retries=2, retry_base_delay=base)
    assert q.join(timeout=WAIT)
    # One attempt was used before the restart: two retries are left, not three.
    assert recorder.runs == [b"flaky", b"flaky"]
    assert q.status("flaky") is harness.stage.Status.FAILED
    # And the first retry still waited out its backoff (the log keeps its due time).
    assert recorder.times[0] - first_run.times[0] >= base * 0.95


@pytest.mark.gap("persistence")
def test_binary_payloads_survive_a_restart_exactly(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "jobs.log"
    payloads = {
        "all-bytes": bytes(range(256)),
        "empty": b"",
        "newlines": b"\n\r\n{}",
        "json": b'{"seq":1,"crc":"00000000"}\n',
    }
    held_at_close(harness, path, payloads)
    recorder = Recorder()
    q = harness.queue(persist_path=str(path), handler=recorder)
    assert q.join(timeout=WAIT)
    assert sorted(recorder.runs) == sorted([b"held", *payloads.values()])


@pytest.mark.gap("persistence")
def test_a_second_queue_on_the_same_log_is_refused(harness: Harness, tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.log")
    first = harness.queue(persist_path=path, handler=Recorder())
    with pytest.raises(harness.stage.PersistenceError, match="in use by another open queue"):
        harness.queue(persist_path=path, handler=Recorder())
    first.close()
    harness.queue(persist_path=path, handler=Recorder())  # free again
