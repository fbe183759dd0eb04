"""The job log's file handling: OS calls, the file-safety rules, the lock, torn tails.

Every call that changes a file goes through :class:`FileOps`, so tests can
inject ENOSPC, EIO and short writes (``DEFAULT_OPS`` is looked up when a
``JobLog`` is built) without patching ``os`` for the whole process.

The file-safety rules (``docs/durability.md`` states them for users), as
careful servers apply them to files in directories others may write to:

- The log and its lock file are opened with ``O_NOFOLLOW``: a symbolic link
  at either path is refused, never followed.  Compaction renames a new file
  over the log's path; over a symlink, that would move the log out of the
  directory it points into.  Point ``persist_path`` at the file itself.
- The log must be a regular file with one name (one hard link).  The lock is
  taken on ``PATH.lock``, a name; a second name for the same file would let
  a second queue lock a different name and append to the same file.
- Both must be owned by the process's user and writable by no one else
  (no group or world write bit): whoever can write the log chooses the jobs
  this queue runs.  A new log and lock file are created with mode 0600.
- Files the log creates next to itself (``PATH.compact``, ``PATH.torn-*``)
  are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a file or symlink
  planted there is never truncated or written through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import threading
import time

from jobqueue.final.log.format import seal
from jobqueue.vocabulary import PersistenceError

__all__ = [
    "DEFAULT_OPS",
    "FileOps",
    "is_locked",
    "open_log",
    "read_all",
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


_NEW = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW  # for files the log creates beside itself


def open_log(ops: FileOps, path: str) -> int:
    """Open (or create, mode 0600) the log for reading and appending, under the
    file-safety rules (module docstring); ``PersistenceError`` names the rule broken."""
    try:
        fd = ops.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PersistenceError(_symlink(path, "the log")) from None
        raise
    try:
        _check_file(path, fd, "the log", one_name=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_all(fd: int) -> bytes:
    """The whole file open at ``fd``, from its first byte."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _symlink(path: str, what: str) -> str:
    return (
        f"{path}: {what} is a symbolic link, which a queue does not follow (compaction "
        "would replace the link, not the file it points to); give the real file's path"
    )


def _check_file(path: str, fd: int, what: str, *, one_name: bool) -> None:
    """Refuse a file another user could change, or that has another name."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise PersistenceError(f"{path}: {what} is not a regular file")
    if st.st_uid != os.geteuid():
        raise PersistenceError(
            f"{path}: {what} is owned by uid {st.st_uid}, not by this process's user "
            f"(uid {os.geteuid()}); a queue only opens its own files"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PersistenceError(
            f"{path}: {what} is writable by group or others (mode {st.st_mode & 0o777:#o}); "
            "whoever can write it chooses the jobs this queue runs: `chmod go-w` it"
        )
    if one_name and st.st_nlink != 1:
        raise PersistenceError(
            f"{path}: {what} has {st.st_nlink} names (hard links); a log must have one, "
            "so that its lock file guards every way to it"
        )


def take_lock(path: str) -> int:
    """Hold ``path + ".lock"`` exclusively, or raise ``PersistenceError``.

    A lock file of its own, because compaction replaces the log itself.
    ``flock`` belongs to an open file description, so a second open in this
    very process is refused too; and the kernel drops it when the process
    dies, so no stale lock survives a ``kill -9``.  Closing the returned fd
    releases it.  The lock follows the file, not the name: the log may have
    no other name (see :func:`open_log`), and another path to the same
    directory reaches the same lock file.
    """
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PersistenceError(_symlink(lock_path, "its lock file")) from None
        raise PersistenceError(f"{path}: cannot open its lock file {lock_path}: {exc}") from exc
    try:
        _check_file(lock_path, fd, "its lock file", one_name=False)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise PersistenceError(
                f"{path}: the log is in use by another open queue (lock {lock_path}); "
                "close that queue first"
            ) from None
        raise PersistenceError(f"{path}: cannot lock {lock_path}: {exc}") from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_locked(path: str) -> bool:
    """Whether an open queue holds the log (for ``jobqueue check``; creates nothing)."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if we got it
    return False


def set_aside(ops: FileOps, path: str, fd: int, good_bytes: int, *, torn: bytes, why: str) -> str:
    """Move a torn last line to ``PATH.torn-<time>``, truncate the log (open at
    ``fd``) to ``good_bytes``, before it.

    Done before anything new is appended: otherwise the next append would
    bury the garbage mid-file, and the next open would refuse the whole log.
    Returns the name of the file that keeps the torn bytes.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        aside = f"{path}.torn-{stamp}" + (f"-{n}" if n else "")
        try:
            kept = ops.open(aside, os.O_WRONLY | _NEW)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "no free name to keep the torn line", aside)
    try:
        write_all(ops, kept, torn)
        ops.fsync(kept)
    finally:
        os.close(kept)
    ops.truncate(fd, good_bytes)
    ops.fsync(fd)
    ops.fsync_dir(path)
    logger.warning(
        "%s: %s (%d bytes); moved it to %s and truncated the log to its last good record",
        path,
        why,
        len(torn),
        aside,
    )
    return aside


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
