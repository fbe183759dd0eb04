"""A child Python process whose output the test reads line by line, on deadlines.

The crash tests (``jobqueue.lab.scenarios.crash_child``) and the PostgreSQL
tests (``tests.pgchild``) drive their children the same way: start
``python -m MODULE ARGS``, read what it prints with a timeout that is only a
bound, then kill it or let it finish.  Nothing here sleeps.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 30.0  # a child's interpreter start on a loaded machine; only a bound


class ChildProcess:
    """``python -m module *args``, its stdout read line by line, its stderr kept in a file."""

    def __init__(self, tmp_path: Path, module: str, *args: object) -> None:
        name = f"child-{args[0] if args else module}-{time.monotonic_ns()}.err"
        self._stderr = open(tmp_path / name, "ab")  # noqa: SIM115  (closed by _close_pipes)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        self._select = selectors.DefaultSelector()
        self._select.register(self._fd, selectors.EVENT_READ)
        self._buffer = b""

    def readline(self, timeout: float) -> str | None:
        """The next whole line, or None at EOF or when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._select.select(remaining):
                return None
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _close_pipes(self) -> None:
        self._select.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self._stderr.close()
