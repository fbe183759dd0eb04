"""Scenarios about what outlives the process: a clean restart, a retry, a kill -9.

Every stage accepts ``persist_path``; only ``final`` writes a log.  ``naive``
and ``improved`` ignore it, so the second queue on the same path starts empty
and the figures show what they lose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

from jobqueue.lab.scenarios.base import WAIT, Gate, Observed, Recorder, Sizes

__all__ = ["crash", "restart", "retry_state"]


def _drain(stage: ModuleType, path: Path, recorder: Recorder, **config: object) -> None:
    """Open a second queue on ``path`` and run whatever it recovers."""
    q = stage.JobQueue(stage.Config(num_workers=2, handler=recorder, persist_path=path, **config))
    try:
        if not q.join(timeout=WAIT):
            raise TimeoutError(f"the recovered jobs did not finish within {WAIT}s")
    finally:
        q.close()


def restart(stage: ModuleType, sizes: Sizes) -> Observed:
    """Jobs wait behind a busy worker when the queue is closed.  Do they run after a restart?"""
    n = sizes.restart_jobs
    with tempfile.TemporaryDirectory(prefix="jobqueue-scenario-") as directory:
        path = Path(directory) / "jobs.log"
        gate = Gate()
        ran_before: list[bytes] = []

        def first_life(payload: bytes) -> None:
            gate(payload)
            ran_before.append(payload)

        q = stage.JobQueue(
            stage.Config(num_workers=1, queue_size=n + 1, handler=first_life, persist_path=path)
        )
        opener = threading.Timer(0.1, gate.open)
        try:
            q.enqueue(stage.Job(id="held", payload=b"held"))
            gate.wait_entered()
            for i in range(n):
                q.enqueue(stage.Job(id=f"r{i}", payload=f"r{i}".encode()))
            # close() stops the worker taking more jobs, then waits for the held
            # one, which the timer lets go: the other n are still waiting.
            opener.start()
            q.close()
        finally:
            gate.open()
            opener.cancel()
            q.close()
        recorder = Recorder()
        _drain(stage, path, recorder)
    pending = {f"r{i}".encode() for i in range(n)} - set(ran_before)
    ran_after = set(recorder.runs)
    recovered = len(pending & ran_after)
    rerun = len(set(ran_before) & ran_after)  # finished before the close, yet run again
    figure = f"{recovered:,} of {len(pending):,} queued jobs ran after restart"
    if rerun:
        figure += f"; {rerun} finished jobs ran again"
    return Observed(
        solved=bool(pending) and recovered == len(pending) and rerun == 0,
        figure=figure,
        data={
            "enqueued": n,
            "ran_before_close": len(ran_before),
            "pending_at_close": len(pending),
            "ran_after_restart": recovered,
            "finished_jobs_rerun": rerun,
        },
    )


def retry_state(stage: ModuleType, sizes: Sizes) -> Observed:
    """A job fails once and waits to retry when the queue closes.  After a restart,
    does its retry still run, and do the attempts it used still count?"""
    max_retries = 1  # two runs in all: the one before the restart, one after
    backoff = sizes.retry_base_delay * 10  # long enough to still be pending at close()
    with tempfile.TemporaryDirectory(prefix="jobqueue-scenario-") as directory:
        path = Path(directory) / "jobs.log"
        before = Recorder(fail=lambda payload: True)
        q = stage.JobQueue(
            stage.Config(
                handler=before, max_retries=max_retries, retry_base_delay=backoff, persist_path=path
            )
        )
        try:
            q.enqueue(stage.Job(id="flaky", payload=b"flaky"))
            if not before.wait_for(1):
                raise TimeoutError("the job never ran")
        finally:
            q.close()
        after = Recorder(fail=lambda payload: True)
        _drain(
            stage,
            path,
            after,
            max_retries=max_retries,
            retry_base_delay=sizes.retry_base_delay,
        )
    runs_after = len(after.runs)
    attempts = len(before.runs) + runs_after
    if runs_after == 0:
        figure = "0 runs after restart: the pending retry was forgotten"
    elif attempts == max_retries + 1:
        figure = f"retry ran after restart: attempt {attempts} of {attempts}, then dead-lettered"
    else:
        figure = f"{attempts} runs for {max_retries + 1} allowed: the used attempt was forgotten"
    return Observed(
        solved=len(before.runs) == 1 and runs_after == max_retries,
        figure=figure,
        data={
            "max_retries": max_retries,
            "runs_before_close": len(before.runs),
            "runs_after_restart": runs_after,
        },
    )


def crash(stage: ModuleType, sizes: Sizes) -> Observed:
    """A child process acknowledges jobs, then dies by SIGKILL while running them.

    "Acknowledged" means ``enqueue`` returned: the child prints the id only then.
    A reopened queue must run every acknowledged job the child did not finish.
    A job finished just before the kill may run again (at least once).
    """
    n = sizes.crash_jobs
    stage_name = stage.__name__.rsplit(".", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="jobqueue-scenario-") as directory:
        path = Path(directory) / "jobs.log"
        acked, done = _run_child_until_acked(stage_name, path, n, Path(directory) / "stderr")
        recorder = Recorder()
        _drain(stage, path, recorder)
    ran_after = {payload.decode() for payload in recorder.runs}
    lost = acked - done - ran_after
    rerun = done & ran_after
    figure = f"kill -9: {len(lost)} of {len(acked)} acknowledged jobs lost"
    figure += f", {len(rerun)} re-run" if not lost else f" ({len(done)} had finished)"
    return Observed(
        solved=bool(acked) and not lost,
        figure=figure,
        data={
            "acknowledged": len(acked),
            "finished_before_kill": len(done),
            "ran_after_restart": len(ran_after),
            "lost": len(lost),
            "rerun": len(rerun),
        },
    )


def _run_child_until_acked(
    stage_name: str, path: Path, n: int, stderr_path: Path
) -> tuple[set[str], set[str]]:
    """Start the child, wait until it has acknowledged ``n`` jobs and finished a
    tenth of them, then SIGKILL it, mid-work.

    Returns the ids it acknowledged and the ids it finished before it died.
    """
    command = [
        sys.executable,
        "-m",
        "jobqueue.lab.scenarios.crash_child",
        "enqueue",
        stage_name,
        str(path),
        str(n),
    ]
    lines: list[str] = []
    time_to_kill = threading.Event()
    some_done = max(1, n // 10)
    with stderr_path.open("w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert child.stdout is not None

        def read() -> None:
            assert child.stdout is not None
            acked = done = 0
            for line in child.stdout:
                lines.append(line.strip())
                acked += line.startswith("all-acked")
                done += line.startswith("done ")
                if acked and done >= some_done:
                    time_to_kill.set()
            time_to_kill.set()  # end of output: the child died early (an error), or was killed

        reader = threading.Thread(target=read, name="crash-child-reader")
        reader.start()
        try:
            time_to_kill.wait(WAIT)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait(WAIT)
            reader.join(WAIT)
            child.stdout.close()
    if "all-acked" not in lines:
        problem = stderr_path.read_text().strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(
            f"the child exited with {child.returncode} before the kill: {problem[0]}"
        )
    acked = {line.split()[1] for line in lines if line.startswith("acked ")}
    done = {line.split()[1] for line in lines if line.startswith("done ")}
    return acked, done
