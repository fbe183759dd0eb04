"""``final`` on PostgreSQL: ``JobQueue(Config(postgres_url=...))``, shared by processes.

Needs the ``postgres`` extra (psycopg 3).  Read ``queue.py`` first, then
``store.py`` (every SQL statement), ``leases.py``, ``completions.py`` and
``schema.py``.
"""

from jobqueue.final.postgres.queue import PostgresJobQueue

__all__ = ["PostgresJobQueue"]
