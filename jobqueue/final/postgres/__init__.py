"""``final`` on PostgreSQL: ``JobQueue(Config(postgres_url=...))``, shared by processes.

Needs the ``postgres`` extra (psycopg 3).  Read ``queue.py`` first, then
``store.py`` (the SQL of enqueue, claims and outcomes), ``leases.py`` and
``chores.py`` (leases, retries, pruning), ``completions.py`` and
``schema.py``.
"""

try:
    import psycopg  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "Config(postgres_url=...) needs psycopg 3: pip install 'jobqueue[postgres]'"
    ) from exc

from jobqueue.final.postgres.queue import PostgresJobQueue

__all__ = ["PostgresJobQueue"]
