"""Hostile input and hostile handlers: workers never die, absurd numbers get clear errors."""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import WAIT, Harness

# -- workers never die ----------------------------------------------------------

BASE_EXCEPTIONS = [SystemExit, KeyboardInterrupt, GeneratorExit]


@pytest.mark.parametrize("kind", BASE_EXCEPTIONS, ids=lambda k: k.__name__)
def test_a_handler_raising_a_base_exception_does_not_kill_its_worker(
    harness: Harness, kind: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    ran = threading.Event()

    def handler(payload: bytes) -> None:
        if payload == b"bad":
            raise kind("from a handler")
        ran.set()

    q = harness.queue(num_workers=1, handler=handler, max_retries=0)
    with caplog.at_level(logging.ERROR):
        q.enqueue(harness.job("bad"))
        q.enqueue(harness.job("good"))
        # One worker only: if the first job killed it, the second never runs.
        assert ran.wait(WAIT), f"the worker died of {kind.__name__}"
        assert q.join(WAIT)
    assert any(kind.__name__ in r.getMessage() or r.exc_info for r in caplog.records)


@pytest.mark.gap("retry")
def test_a_base_exception_is_retried_then_failed_like_any_failure(harness: Harness) -> None:
    runs: list[bytes] = []

    def handler(payload: bytes) -> None:
        runs.append(payload)
        raise SystemExit(3)

    q = harness.queue(num_workers=1, handler=handler, max_retries=2, retry_base_delay=0.001)
    q.enqueue(harness.job("exits"))
    assert q.join(WAIT)
    assert len(runs) == 3
    assert q.metrics().failed == 1


@pytest.mark.gap("status")
def test_a_base_exception_leaves_the_job_failed(harness: Harness) -> None:
    def handler(payload: bytes) -> None:
        raise KeyboardInterrupt

    q = harness.queue(num_workers=1, handler=handler, max_retries=0)
    q.enqueue(harness.job("interrupted"))
    assert q.join(WAIT)
    assert q.status("interrupted") is harness.stage.Status.FAILED


def test_join_from_inside_a_handler_raises(harness: Harness) -> None:
    errors: list[BaseException] = []
    done = threading.Event()
    q: Any = None

    def handler(payload: bytes) -> None:
        try:
            q.join()
        except RuntimeError as exc:
            errors.append(exc)
        done.set()

    q = harness.queue(num_workers=1, handler=handler)
    q.enqueue(harness.job("joiner"))
    assert done.wait(WAIT)
    assert len(errors) == 1
    assert "joiner" in str(errors[0])
    assert q.join(WAIT)


# -- absurd numbers -------------------------------------------------------------

ABSURD_CONFIGS = [
    ({"retry_base_delay": 1e10}, "retry_base_delay"),
    ({"retry_max_delay": 1e10}, "retry_max_delay"),
    ({"retry_max_delay": math.inf}, "retry_max_delay"),
    ({"num_workers": 10**6}, "num_workers"),
    ({"queue_size": 10**5000}, "queue_size"),
    ({"max_retries": 10**9}, "max_retries"),
    ({"fairness_tokens": 10**12}, "fairness_tokens"),
    ({"shutdown_timeout": math.nan}, "shutdown_timeout"),
    ({"persist_path": ""}, "persist_path"),
    ({"persist_path": "a\0b"}, "persist_path"),
]


def _field_id(value: object) -> str:
    # repr() of 10**5000 raises: name the field, and the size for big ints.
    if isinstance(value, dict):
        return ",".join(
            f"{k}={'huge' if isinstance(v, int) and v > 10**100 else v!r}" for k, v in value.items()
        )
    return str(value)


@pytest.mark.parametrize(("fields", "name"), ABSURD_CONFIGS, ids=_field_id)
def test_absurd_config_numbers_are_refused_by_name(
    harness: Harness, fields: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        harness.stage.Config(**fields)


class _BytesPath(os.PathLike[bytes]):
    def __fspath__(self) -> bytes:
        return b"jobs.log"


def test_a_path_like_giving_bytes_is_refused_by_name(harness: Harness) -> None:
    with pytest.raises(TypeError, match="persist_path"):
        harness.stage.Config(persist_path=_BytesPath())


def test_an_empty_persist_path_leaves_no_stray_lock(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="persist_path"):
        harness.stage.Config(persist_path="")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"attempts": 10**5000}, "attempts"),
        ({"attempts": 2_000_000}, "attempts"),
        ({"created": math.nan}, "created"),
        ({"created": math.inf}, "created"),
        ({"created": -math.inf}, "created"),
        ({"created": 1e300}, "created"),
    ],
    ids=_field_id,
)
def test_absurd_job_numbers_are_refused_by_name(
    harness: Harness, fields: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        harness.stage.Job(id="x", **fields)


def test_an_infinite_shutdown_timeout_means_wait(harness: Harness) -> None:
    gate = harness.gate()
    finished = threading.Event()

    def handler(payload: bytes) -> None:
        gate(payload)
        finished.set()

    q = harness.queue(num_workers=1, handler=handler, shutdown_timeout=math.inf)
    q.enqueue(harness.job("slow"))
    gate.wait_entered()
    opener = threading.Timer(0.05, gate.open)
    opener.start()
    try:
        q.close()  # no OverflowError
    finally:
        opener.join(WAIT)


def test_a_huge_shutdown_timeout_does_not_raise_in_close(harness: Harness) -> None:
    q = harness.queue(num_workers=1, handler=lambda payload: None, shutdown_timeout=1e300)
    q.enqueue(harness.job("a"))
    assert q.join(WAIT)
    q.close()


def test_join_with_an_infinite_timeout_waits(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(num_workers=1, handler=gate)
    q.enqueue(harness.job("held"))
    gate.wait_entered()
    opener = threading.Timer(0.05, gate.open)
    opener.start()
    try:
        assert q.join(timeout=math.inf)
    finally:
        opener.join(WAIT)


def test_enqueue_with_an_infinite_timeout_waits_for_room(harness: Harness) -> None:
    gate = harness.gate()
    q = harness.queue(num_workers=1, handler=gate, queue_size=1)
    q.enqueue(harness.job("running"))
    gate.wait_entered()
    q.enqueue(harness.job("waiting"))  # fills the queue, where there is a bound
    opener = threading.Timer(0.05, gate.open)
    opener.start()
    try:
        q.enqueue(harness.job("blocked"), timeout=math.inf)
        assert q.join(WAIT)
    finally:
        opener.join(WAIT)


def test_a_backoff_in_the_log_longer_than_retry_max_delay_is_cut_to_it(tmp_path: Path) -> None:
    # A log written by a queue with an absurd backoff (or under a wrong clock)
    # must not kill the workers of the next queue, which has a sane Config.
    import time

    from jobqueue.final import Config, Job, JobQueue
    from jobqueue.final.log import JobLog
    from tests.helpers import Recorder

    path = tmp_path / "jobs.log"
    log = JobLog(path)
    log.recover()
    log.enqueued(Job(id="poisoned"))
    log.retrying("poisoned", 1, time.time() + 1e10, "RuntimeError('boom')")
    log.close()
    recorder = Recorder()
    config = Config(
        handler=recorder, persist_path=path, retry_base_delay=0.01, retry_max_delay=0.01
    )
    with JobQueue(config) as q:
        assert recorder.wait_for(1), "the retry never ran"
        assert q.join(WAIT)
