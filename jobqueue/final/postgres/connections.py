"""Connections that come back: each background thread owns a ``Link``; callers share a ``Pool``.

A psycopg connection serializes its users, so every thread of the queue
(fetcher, completion writer, maintenance) owns one, and the calls of the
user's threads (enqueue, status, metrics, join) borrow one from a small pool.
When the server goes away (a restart, a crash), a broken connection is thrown
away and the next use connects again: the queue recovers by itself once the
server is back, and the user's calls fail with ``PersistenceError`` meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from jobqueue.final.postgres.store import Conn, connect
from jobqueue.vocabulary import PersistenceError

__all__ = ["Link", "Pool"]

_IDLE = psycopg.pq.TransactionStatus.IDLE
_POOL_IDLE = 8  # idle connections kept; more callers at once open more, then close them


class Link:
    """One thread's connection, opened on first use and again after it broke."""

    __slots__ = ("_conn", "_sync", "_url", "listen")

    def __init__(self, url: str, *, synchronous_commit: bool = True, listen: str | None = None):
        self._url = url
        self._sync = synchronous_commit
        self._conn: Conn | None = None
        self.listen = listen  # a channel to LISTEN on, again after every reconnect

    def get(self) -> Conn:
        """The connection, connecting first if needed (``psycopg.OperationalError`` if down)."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url, synchronous_commit=self._sync)
            if self.listen is not None:
                self._conn.execute(f"LISTEN {self.listen}")
        return self._conn

    def broken(self) -> None:
        """Drop the connection after an error: the next ``get()`` opens a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    close = broken


class Pool:
    """A few idle connections for the calls of the user's threads.  Thread-safe."""

    __slots__ = ("_closed", "_idle", "_lock", "_url")

    def __init__(self, url: str) -> None:
        self._url = url
        self._idle: list[Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self, what: str) -> Iterator[Conn]:
        """Borrow a connection; errors talking to the server become ``PersistenceError``
        whose message starts with ``what`` (for example ``"enqueue 'a1'"``)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = connect(self._url)
            yield conn
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, psycopg.OperationalError):
                problem = "the PostgreSQL server is unreachable"
            else:
                problem = "PostgreSQL refused it"
            raise PersistenceError(f"{what}: {problem}: {exc}") from exc
        except BaseException:
            if (
                conn is not None
                and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                conn.close()  # mid-transaction: not fit for the next borrower
            self._give_back(conn)
            raise
        else:
            self._give_back(conn)

    def _give_back(self, conn: Conn | None) -> None:
        if conn is None or conn.closed:
            return
        with self._lock:
            if not self._closed and len(self._idle) < _POOL_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
