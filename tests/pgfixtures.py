"""Fixtures for the tests that need a PostgreSQL server: one throwaway cluster per session.

No PostgreSQL on the machine (or no psycopg): the tests are skipped, with the
reason.  Under ``CI=true`` that is a failure instead: CI must run them all.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from jobqueue.lab.pgcluster import PgCluster, PgUnavailable

__all__ = [
    "FINAL_POSTGRES",
    "NOT_ON_POSTGRES",
    "on_postgres",
    "pg_cluster",
    "pg_queue_name",
    "pg_unavailable",
    "pg_url",
]


class _OnPostgres(str):
    """The stage "final" with ``postgres_url``: the matrix column ``final-postgres``.

    It is equal to "final", so the gap verdicts read for it are final's: the
    same contract, on a shared store.
    """

    __slots__ = ()


FINAL_POSTGRES = _OnPostgres("final")


#: Matrix tests that do not apply to final-postgres, with the reason.
NOT_ON_POSTGRES = {
    "test_jobs_accepted_before_an_exception_survive_it": (
        "opens its queue without the Harness, on a JSON-lines log"
    ),
    "test_a_second_queue_on_the_same_log_is_refused": (
        "a second queue on the same queue_name is allowed: sharing it is the point "
        "(test_postgres.py)"
    ),
    "test_every_job_of_a_100k_flood_completes": (
        "100,000 enqueues are 100,000 commits, minutes on CI; test_postgres.py shares "
        "5,000 jobs between processes, and the bench measures throughput"
    ),
}


def on_postgres(request: pytest.FixtureRequest) -> bool:
    """True in a ``final-postgres`` cell of the stage matrix."""
    callspec = getattr(request.node, "callspec", None)
    return callspec is not None and callspec.params.get("stage") is FINAL_POSTGRES


_names = itertools.count()
_cluster: PgCluster | None = None
_why_not: str | None = None


def pg_unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI, where every PostgreSQL test must run."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI=true, but the PostgreSQL tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _shared_cluster() -> PgCluster:
    # Started at most once per session, on first use, so a run that selects
    # no PostgreSQL test never pays for initdb.
    global _cluster, _why_not
    if _cluster is None and _why_not is None:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            _why_not = f"psycopg is not installed ({exc}); pip install 'jobqueue[postgres]'"
        else:
            try:
                _cluster = PgCluster()
            except PgUnavailable as exc:
                _why_not = str(exc)
    if _cluster is None:
        assert _why_not is not None
        pg_unavailable(_why_not)
    assert _cluster is not None
    return _cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's cluster: started on first use, removed at the end."""
    yield _shared_cluster()
    global _cluster
    if _cluster is not None:
        _cluster.remove()
        _cluster = None


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A libpq URI of the session's cluster."""
    return pg_cluster.url


@pytest.fixture
def pg_queue_name() -> str:
    """A queue name no other test uses: tests share the cluster, never a queue."""
    return f"t{os.getpid()}_{next(_names)}"
