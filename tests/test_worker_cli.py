"""``jobqueue worker``: its options, and its graceful drain on SIGTERM and SIGINT.

The drain tests run the command's own process and signal logic on an
in-memory queue (``tests/workerchild.py``), so they need no PostgreSQL; the
same command on a real server is tested in ``test_worker_postgres.py``.  A
job in flight holds a Unix socket open to the test, which decides when it
ends: every step waits on a line read, never on a sleep.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobqueue.lab import cli, worker

DEADLINE = 30.0  # seconds any one step may take before the test fails


# -- options ---------------------------------------------------------------------------------


def _argv(*extra: str) -> list[str]:
    return ["worker", "--postgres-url", "postgresql:///x", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--handlers", "tests.workerchild"], "--handlers must look like package.module:NAME"),
        (["--handlers", ":HANDLERS"], "--handlers must look like package.module:NAME"),
        (["--handlers", "tests.no_such_module:X"], "--handlers: cannot import"),
        (["--handlers", "tests.workerchild:NOPE"], "has no 'NOPE'"),
        (["--handlers", "tests.workerchild:NOT_A_MAPPING"], "must be a mapping, got list"),
        (["--handlers", "tests.workerchild:NOT_CALLABLE"], "['hold'] is not callable"),
        (["--handlers", "tests.workerchild:EMPTY"], "is empty"),
        (["--handlers", "tests.workerchild:HANDLERS", "--workers", "0"], "--workers must be >= 1"),
        (
            ["--handlers", "tests.workerchild:HANDLERS", "--processes", "0"],
            "--processes must be >= 1",
        ),
        (
            ["--handlers", "tests.workerchild:HANDLERS", "--shutdown-timeout", "-1"],
            "--shutdown-timeout must be >= 0",
        ),
        (
            ["--handlers", "tests.workerchild:HANDLERS", "--lease-timeout", "0"],
            "--lease-timeout must be > 0",
        ),
        (["--handlers", "tests.workerchild:HANDLERS", "--queue", ""], "--queue must not be empty"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(_argv(*extra))
    assert str(exited.value).startswith("jobqueue worker: ")
    assert message in str(exited.value)


def test_a_missing_required_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["worker", "--handlers", "tests.workerchild:HANDLERS"])
    assert exited.value.code == 2
    assert "--postgres-url" in capsys.readouterr().err


def test_handlers_are_found_by_dotted_name() -> None:
    from tests import workerchild

    assert worker.load_handlers("tests.workerchild:HANDLERS") is workerchild.HANDLERS


def test_the_options_cross_to_a_spawned_child_as_plain_data() -> None:
    args = cli.build_parser().parse_args(_argv("--handlers", "m:H", "--processes", "3"))
    options = worker.options_from_args(args)
    assert (options.processes, options.workers, options.queue) == (3, 4, "default")
    assert (options.shutdown_timeout, options.lease_timeout) == (30.0, 30.0)


# -- the drain -------------------------------------------------------------------------------


class Lines:
    """Lines of a child's stream, gathered by a thread, awaited on a deadline."""

    def __init__(self, stream: Iterator[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()  # notified by _read on each line and at EOF
        self._eof = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_count(self, text: str, count: int) -> None:
        deadline = time.monotonic() + DEADLINE
        with self._changed:
            while sum(text in line for line in self.lines) < count:
                remaining = deadline - time.monotonic()
                assert not self._eof, f"stream ended before {count} x {text!r}: {self.lines}"
                assert remaining > 0, f"no {count} x {text!r} in time: {self.lines}"
                self._changed.wait(remaining)


class Run:
    """``python -m tests.workerchild``, with the jobs it holds in flight."""

    def __init__(self, tmp_path: Path, processes: int, shutdown_timeout: float) -> None:
        path = str(tmp_path / "jobs.sock")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen()
        self.server.settimeout(DEADLINE)
        argv = [path, str(processes), str(shutdown_timeout)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.workerchild", *argv],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.log = Lines(self.proc.stderr)
        self.jobs: dict[int, socket.socket] = {}  # worker process id -> its job in flight

    def accept(self, count: int) -> None:
        """Wait until ``count`` jobs are running."""
        while len(self.jobs) < count:
            conn, _ = self.server.accept()
            conn.settimeout(DEADLINE)
            self.jobs[int(conn.makefile().readline())] = conn

    def finish_jobs(self) -> None:
        """Let every job in flight end, and see each one end."""
        for conn in self.jobs.values():
            conn.sendall(b"x")
        for conn in self.jobs.values():
            assert conn.makefile().readline() == "done\n"

    def exit_code(self) -> int:
        return self.proc.wait(DEADLINE)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for conn in self.jobs.values():
            conn.close()
        self.server.close()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_job_in_flight_finish_then_exits_0(
    runs: list[Run], tmp_path: Path, signum: signal.Signals
) -> None:
    run = Run(tmp_path, processes=1, shutdown_timeout=DEADLINE)
    runs.append(run)
    run.accept(1)
    run.proc.send_signal(signum)
    run.log.wait_count("stopping intake", 1)
    assert run.proc.poll() is None  # still draining: the job has not ended
    run.finish_jobs()
    assert run.exit_code() == 0
    run.log.wait_count("stopped", 1)


@pytest.mark.timeout(120)
def test_a_job_still_running_at_the_shutdown_timeout_makes_it_exit_1(
    runs: list[Run], tmp_path: Path
) -> None:
    run = Run(tmp_path, processes=1, shutdown_timeout=0.1)
    runs.append(run)
    run.accept(1)
    run.proc.send_signal(signal.SIGTERM)
    assert run.exit_code() == 1
    run.log.wait_count("leases will expire", 1)


@pytest.mark.timeout(120)
def test_a_second_signal_stops_at_once(runs: list[Run], tmp_path: Path) -> None:
    run = Run(tmp_path, processes=1, shutdown_timeout=DEADLINE)
    runs.append(run)
    run.accept(1)
    run.proc.send_signal(signal.SIGTERM)
    run.log.wait_count("stopping intake", 1)
    run.proc.send_signal(signal.SIGINT)
    assert run.exit_code() == 1
    run.log.wait_count("second signal", 1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_processes_drain_together_on_one_signal_to_the_parent(
    runs: list[Run], tmp_path: Path, signum: signal.Signals
) -> None:
    run = Run(tmp_path, processes=2, shutdown_timeout=DEADLINE)
    runs.append(run)
    run.accept(2)
    assert len(run.jobs) == 2  # two processes, one job in flight in each
    assert run.proc.pid not in run.jobs
    run.proc.send_signal(signum)
    run.log.wait_count("stopping intake", 3)  # the parent, then each child
    run.finish_jobs()
    assert run.exit_code() == 0


@pytest.mark.timeout(120)
def test_a_child_that_dies_stops_the_others_and_the_parent_exits_1(
    runs: list[Run], tmp_path: Path
) -> None:
    run = Run(tmp_path, processes=2, shutdown_timeout=DEADLINE)
    runs.append(run)
    run.accept(2)
    victim, survivor = run.jobs
    os.kill(victim, signal.SIGKILL)
    run.log.wait_count("stopping intake", 1)  # the survivor drains
    run.jobs[survivor].sendall(b"x")
    assert run.jobs[survivor].makefile().readline() == "done\n"
    assert run.exit_code() == 1
    assert any("exited with -9" in line for line in run.log.lines)


def test_a_queue_that_cannot_open_is_a_clear_error_not_a_traceback() -> None:
    pytest.importorskip("psycopg")
    argv = _argv("--handlers", "tests.workerchild:HANDLERS")
    argv[2] = "postgresql://postgres@/x?host=/nonexistent&connect_timeout=5"
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert str(exited.value).startswith("jobqueue worker: ")
    assert "/nonexistent" in str(exited.value)


@pytest.mark.timeout(120)
def test_children_drain_and_exit_when_the_parent_is_killed(runs: list[Run], tmp_path: Path) -> None:
    run = Run(tmp_path, processes=2, shutdown_timeout=DEADLINE)
    runs.append(run)
    run.accept(2)
    run.proc.kill()  # the supervisor dies without a word to its children
    run.proc.wait(DEADLINE)
    run.log.wait_count("stopping intake", 2)  # each child noticed, and drains
    run.finish_jobs()
    run.log.wait_count("stopped", 2)  # and exits: no orphan keeps claiming jobs
