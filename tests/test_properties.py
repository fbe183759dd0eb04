"""Properties over arbitrary workloads: nothing accepted is lost, retries are exact."""

from __future__ import annotations

import threading
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import WAIT

workloads = st.lists(
    st.tuples(st.sampled_from(["HIGH", "MEDIUM", "LOW"]), st.binary(max_size=64)),
    max_size=60,
)
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(workload=workloads, workers=st.integers(min_value=1, max_value=4))
def test_every_accepted_job_runs_once_with_its_payload(
    stage: ModuleType, workload: list[tuple[str, bytes]], workers: int
) -> None:
    seen: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def make_handler(job_id: str) -> object:
        def handler(payload: bytes) -> None:
            with lock:
                seen.append((job_id, payload))

        return handler

    with stage.JobQueue(stage.Config(num_workers=workers, queue_size=8)) as q:
        for i, (priority, payload) in enumerate(workload):
            job = stage.Job(id=f"j{i}", priority=stage.Priority[priority], payload=payload)
            q.enqueue_with_handler(job, make_handler(job.id), timeout=WAIT)
        assert q.join(timeout=WAIT)
    assert sorted(seen) == sorted((f"j{i}", payload) for i, (_, payload) in enumerate(workload))


@pytest.mark.gap("retry")
@SETTINGS
@given(
    failures=st.lists(st.integers(min_value=0, max_value=4), max_size=20),
    max_retries=st.integers(min_value=0, max_value=3),
)
def test_each_job_runs_until_success_or_out_of_retries(
    stage: ModuleType, failures: list[int], max_retries: int
) -> None:
    runs: dict[str, int] = {}
    lock = threading.Lock()

    def handler_failing(times: int, job_id: str) -> object:
        def handler(payload: bytes) -> None:
            with lock:
                runs[job_id] = runs.get(job_id, 0) + 1
                attempt = runs[job_id]
            if attempt <= times:
                raise RuntimeError(f"attempt {attempt} of {job_id} fails")

        return handler

    config = stage.Config(max_retries=max_retries, retry_base_delay=0.0, retry_max_delay=0.0)
    with stage.JobQueue(config) as q:
        for i, times in enumerate(failures):
            q.enqueue_with_handler(stage.Job(id=f"j{i}"), handler_failing(times, f"j{i}"))
        assert q.join(timeout=WAIT)
    expected = {f"j{i}": min(times, max_retries) + 1 for i, times in enumerate(failures)}
    assert runs == expected
