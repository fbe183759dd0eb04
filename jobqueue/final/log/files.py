"""The job log's file handling: OS calls, the lock, and repairing a torn tail.

Every call that changes a file goes through :class:`FileOps`, so tests can
inject ENOSPC, EIO and short writes (``DEFAULT_OPS`` is looked up when a
``JobLog`` is built) without patching ``os`` for the whole process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time

from jobqueue.final.log.format import seal
from jobqueue.final.log.replay import Replay
from jobqueue.vocabulary import PersistenceError

__all__ = [
    "DEFAULT_OPS",
    "FileOps",
    "is_locked",
    "remove",
    "set_aside",
    "take_lock",
    "write_all",
    "write_records",
]

logger = logging.getLogger(__name__)

_CHUNK = 1024  # records per write when compacting


class FileOps:
    """The OS calls that change the log's files, in one place."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def fsync_dir(self, path: str) -> None:
        """Make a rename, or a new file, in ``path``'s directory durable."""
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)


#: The operations a new ``JobLog`` uses unless it is given others.
DEFAULT_OPS = FileOps()


def write_all(ops: FileOps, fd: int, data: bytes) -> int:
    """Write all of ``data``, resuming after short writes; return its length.

    A short write is usually followed by an error (the disk just filled up);
    the caller then truncates back to where it began.
    """
    done = ops.write(fd, data)
    if done == len(data):  # the common case: no view, no loop
        return done
    if done <= 0:
        raise OSError(errno.EIO, f"write returned {done}")
    view = memoryview(data)
    while done < len(data):
        n = ops.write(fd, view[done:])
        if n <= 0:
            raise OSError(errno.EIO, f"write returned {n}")
        done += n
    return done


def write_records(
    ops: FileOps, fd: int, records: list[bytes], seq: int, stop: threading.Event
) -> tuple[int, int]:
    """Write records (their fields: see ``format.fields``) numbered from ``seq``,
    in chunks; return (bytes, next seq).

    Gives up with ``PersistenceError`` between chunks once ``stop`` is set.
    """
    written = 0
    for start in range(0, len(records), _CHUNK):
        if stop.is_set():
            raise PersistenceError("closed while compacting")
        chunk = records[start : start + _CHUNK]
        written += write_all(ops, fd, b"".join(seal(r, seq + i) for i, r in enumerate(chunk)))
        seq += len(chunk)
    return written, seq


def take_lock(path: str) -> int:
    """Hold ``path + ".lock"`` exclusively, or raise ``PersistenceError``.

    A lock file of its own, because compaction replaces the log itself.
    ``flock`` belongs to an open file description, so a second open in this
    very process is refused too; and the kernel drops it when the process
    dies, so no stale lock survives a ``kill -9``.  Closing the returned fd
    releases it.
    """
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PersistenceError(f"{path}: cannot open its lock file {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise PersistenceError(
                f"{path}: the log is in use by another open queue (lock {lock_path}); "
                "close that queue first"
            ) from None
        raise PersistenceError(f"{path}: cannot lock {lock_path}: {exc}") from exc
    return fd


def is_locked(path: str) -> bool:
    """Whether an open queue holds the log (for ``jobqueue check``; creates nothing)."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if we got it
    return False


def set_aside(ops: FileOps, path: str, found: Replay) -> str:
    """Move a torn last line to ``PATH.torn-<time>``, truncate the log before it.

    Done before anything new is appended: otherwise the next append would
    bury the garbage mid-file, and the next open would refuse the whole log.
    Returns the name of the file that keeps the torn bytes.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        aside = f"{path}.torn-{stamp}" + (f"-{n}" if n else "")
        try:
            fd = ops.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "no free name to keep the torn line", aside)
    try:
        write_all(ops, fd, found.torn)
        ops.fsync(fd)
    finally:
        os.close(fd)
    fd = ops.open(path, os.O_WRONLY)
    try:
        ops.truncate(fd, found.good_bytes)
        ops.fsync(fd)
    finally:
        os.close(fd)
    ops.fsync_dir(path)
    logger.warning(
        "%s: line %d was torn (%d bytes: %s); moved it to %s and truncated the log "
        "to its last good record",
        path,
        found.torn_line,
        len(found.torn),
        found.torn_reason,
        aside,
    )
    return aside


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
