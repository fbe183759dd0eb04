"""Bad input: each invalid field gets a TypeError or ValueError that names it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Harness, Recorder

BAD_JOBS = [
    ({"id": ""}, ValueError, "id"),
    ({"id": 7}, TypeError, "id"),
    ({"id": None}, TypeError, "id"),
    ({"id": "x", "priority": "HIGH"}, TypeError, "priority"),
    ({"id": "x", "priority": 0}, TypeError, "priority"),
    ({"id": "x", "payload": "text"}, TypeError, "payload"),
    ({"id": "x", "payload": bytearray(b"x")}, TypeError, "payload"),
    ({"id": "x", "attempts": -1}, ValueError, "attempts"),
    ({"id": "x", "handler": ""}, ValueError, "handler"),
]

BAD_CONFIGS = [
    ({"num_workers": 0}, ValueError, "num_workers"),
    ({"num_workers": 2.5}, TypeError, "num_workers"),
    ({"num_workers": True}, TypeError, "num_workers"),
    ({"queue_size": 0}, ValueError, "queue_size"),
    ({"max_retries": -1}, ValueError, "max_retries"),
    ({"retry_base_delay": -1.0}, ValueError, "retry_base_delay"),
    ({"retry_base_delay": float("nan")}, ValueError, "retry_base_delay"),
    ({"retry_base_delay": "1s"}, TypeError, "retry_base_delay"),
    ({"retry_base_delay": 2.0, "retry_max_delay": 1.0}, ValueError, "retry_max_delay"),
    ({"shutdown_timeout": -0.1}, ValueError, "shutdown_timeout"),
    ({"fairness_tokens": 0}, ValueError, "fairness_tokens"),
    ({"persist_path": 42}, TypeError, "persist_path"),
    ({"handler": "print"}, TypeError, "handler"),
]


@pytest.mark.parametrize(("fields", "error", "name"), BAD_JOBS, ids=repr)
def test_bad_job_fields_are_named(
    harness: Harness, fields: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        harness.stage.Job(**fields)


@pytest.mark.parametrize(("fields", "error", "name"), BAD_CONFIGS, ids=repr)
def test_bad_config_fields_are_named(
    harness: Harness, fields: dict[str, Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        harness.stage.Config(**fields)


def test_jobs_and_configs_are_frozen(harness: Harness) -> None:
    job = harness.stage.Job(id="x")
    with pytest.raises(AttributeError):
        job.id = "y"
    config = harness.stage.Config()
    with pytest.raises(AttributeError):
        config.num_workers = 9


def test_enqueue_rejects_what_is_not_a_job(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    with pytest.raises(TypeError, match="job"):
        q.enqueue({"id": "x"})


def test_enqueue_rejects_a_bad_timeout(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    with pytest.raises(ValueError, match="timeout"):
        q.enqueue(harness.job("x"), timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        q.enqueue(harness.job("x"), timeout="soon")


def test_enqueue_rejects_a_handler_that_is_not_callable(harness: Harness) -> None:
    q = harness.queue(handler=Recorder())
    with pytest.raises(TypeError, match="handler"):
        q.enqueue_with_handler(harness.job("x"), "not callable")


def test_a_job_without_any_handler_is_refused(harness: Harness) -> None:
    q = harness.queue()
    with pytest.raises(ValueError, match="handler"):
        q.enqueue(harness.job("x"))


def test_a_job_queue_needs_a_config(harness: Harness) -> None:
    with pytest.raises(TypeError, match="config"):
        harness.stage.JobQueue({"num_workers": 2})
