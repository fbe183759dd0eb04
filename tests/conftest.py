"""The test matrix: every test that takes the ``stage`` fixture runs once per stage.

A test that shows a problem names it with ``@pytest.mark.gap("key")``.  For a
stage that lacks the fix (see ``jobqueue.gaps``), the cell becomes a strict
xfail carrying the reason, so ``pytest -rxX`` prints the lesson, and a stage
that starts passing where it should not (XPASS) fails the suite.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import settings

from jobqueue import final, gaps
from tests.helpers import Harness, PgHarness
from tests.pgfixtures import (  # noqa: F401 (fixtures)
    FINAL_POSTGRES,
    NOT_ON_POSTGRES,
    on_postgres,
    pg_cluster,
    pg_queue_name,
    pg_url,
)

STAGES = {name: importlib.import_module(f"jobqueue.{name}") for name in gaps.STAGES}

# Locally, hypothesis explores new examples on every run; in CI (CI=true) it
# replays a fixed set, so a landing is never decided by the luck of a draw.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gap(key): the test shows the problem `key` of jobqueue.gaps"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("gap")
        if marker is None:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is None or "stage" not in callspec.params:
            raise pytest.UsageError(f"{item.nodeid}: @gap needs the `stage` fixture")
        stage = callspec.params["stage"]
        problem = gaps.gap(marker.args[0])
        # final-postgres reads the table's PostgreSQL column: final's verdicts,
        # except where a row gives it one of its own.
        verdict = problem.verdict(gaps.POSTGRES if stage is FINAL_POSTGRES else stage)
        if not verdict.solved:
            reason = f"{stage} lacks {problem.problem!r}: {verdict.why}"
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(params=[*gaps.STAGES, pytest.param(FINAL_POSTGRES, id="final-postgres")])
def stage(request: pytest.FixtureRequest) -> ModuleType:
    """The stage module under test: jobqueue.naive, .improved or .final; and final
    again on PostgreSQL (``final-postgres``), for the tests that build queues
    through the Harness."""
    if request.param is FINAL_POSTGRES and "harness" not in request.fixturenames:
        pytest.skip("final-postgres: this test builds its queues without the Harness")
    return STAGES[request.param]


@pytest.fixture
def harness(stage: ModuleType, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Builds queues and gates for a test, and tears them down in a safe order."""
    if on_postgres(request):
        reason = NOT_ON_POSTGRES.get(request.node.originalname)
        if reason is not None:
            pytest.skip(f"final-postgres: {reason}")
        h: Harness = PgHarness(stage, request.getfixturevalue("pg_url"))
    else:
        h = Harness(stage)
    try:
        yield h
    finally:
        h.teardown()


@pytest.fixture
def queues() -> Iterator[list[final.JobQueue]]:
    """``final`` queues a test builds by hand: closed when it ends, pass or fail."""
    made: list[final.JobQueue] = []
    yield made
    for q in made:
        q.close()
