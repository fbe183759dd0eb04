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

from jobqueue import gaps
from tests.helpers import Harness
from tests.pgfixtures import pg_cluster, pg_queue_name, pg_url  # noqa: F401 (fixtures)

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
        if not problem.solved_by(stage):
            reason = f"{stage} lacks {problem.problem!r}: {problem.verdicts[stage]}"
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(params=gaps.STAGES)
def stage(request: pytest.FixtureRequest) -> ModuleType:
    """The stage module under test: jobqueue.naive, .improved or .final."""
    return STAGES[request.param]


@pytest.fixture
def harness(stage: ModuleType) -> Iterator[Harness]:
    """Builds queues and gates for a test, and tears them down in a safe order."""
    h = Harness(stage)
    try:
        yield h
    finally:
        h.teardown()
