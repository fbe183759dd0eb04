"""The scenario beyond one process: does a second process share the queue?

On a stage, a job is held running in this process while a second process
(``share_child``) opens the same ``persist_path`` and asks for the job's
status: it cannot see it (naive and improved keep nothing outside the
process; final's log is locked by the process that has it open).

On final with PostgreSQL (:func:`on_postgres`, the table's
``final + PostgreSQL`` column), ``jobqueue worker --processes 2 --workers 1``
runs on a throwaway server, and this process, a third one, enqueues two jobs.
Each job holds its worker until both have started, so they can only finish if
two processes, each with its own interpreter and its own core, claimed from
the one queue at the same time; meanwhile this process sees them processing.
Then SIGTERM, and the command must drain and exit 0.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType, ModuleType

from jobqueue import gaps
from jobqueue.lab.scenarios.base import WAIT, Gate, Observed, Outcome, Sizes

__all__ = ["HANDLERS", "ask_second_process", "on_postgres", "share"]

KEY = "beyond_one_process"
_SOCKET = "JOBQUEUE_SCENARIO_SOCKET"  # where the meet jobs report, in the workers' environment


def ask_second_process(stage_name: str, path: Path, job_id: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "jobqueue.lab.scenarios.share_child", stage_name, str(path), job_id],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        check=False,
    )
    lines = done.stdout.splitlines()
    return lines[-1] if lines else f"error: exit {done.returncode}: {done.stderr.strip()[-200:]}"


def share(stage: ModuleType, sizes: Sizes) -> Observed:
    """A job runs here; can a second process opening the same queue see it?"""
    del sizes  # one job is the whole experiment
    with tempfile.TemporaryDirectory(prefix="jobqueue-scenario-") as directory:
        path = Path(directory) / "jobs.log"
        gate = Gate()
        queue = stage.JobQueue(stage.Config(num_workers=1, handler=gate, persist_path=path))
        try:
            queue.enqueue(stage.Job(id="held", payload=b"held"))
            gate.wait_entered()
            answer = ask_second_process(stage.__name__.rsplit(".", 1)[-1], path, "held")
        finally:
            gate.open()
            queue.close()
    solved = answer == "status processing"
    if answer.startswith("status "):
        figure = f"a second process sees the running job as {answer.removeprefix('status ')}"
    elif "NotImplementedError" in answer:
        figure = "a second process gets a queue of its own, and cannot even ask for the job"
    elif "in use by another" in answer:
        figure = "a second process cannot open the queue: the first one holds the log's lock"
    else:
        figure = "a second process cannot see it: " + _short(answer.removeprefix("error: "))
    return Observed(solved, figure, {"second_process": answer})


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- final on PostgreSQL ------------------------------------------------------------------------


def meet(payload: bytes) -> None:
    """Report this process to the scenario, and hold the worker until it answers."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(WAIT * 3)
        conn.connect(os.environ[_SOCKET])
        conn.sendall(f"{os.getpid()}\n".encode())
        conn.recv(1)


HANDLERS = {"meet": meet}


def unavailable() -> str | None:
    """Why final on PostgreSQL cannot be measured here, or None."""
    from jobqueue.lab.pgcluster import PgUnavailable, find_bindir

    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'jobqueue[postgres]')"
    try:
        find_bindir()
    except PgUnavailable as exc:
        return str(exc)
    return None


def on_postgres(sizes: Sizes) -> Outcome | str:
    """The scenario on final with PostgreSQL; a string says why it was skipped."""
    del sizes
    why = unavailable()
    if why is not None:
        return why
    started = time.monotonic()
    try:
        observed = _measure_postgres()
    except Exception as exc:
        observed = Observed(False, f"error: {type(exc).__name__}: {exc}")
        error: str | None = f"{type(exc).__name__}: {exc}"
    else:
        error = None
    return Outcome(
        scenario=KEY,
        gap_key=KEY,
        stage=gaps.POSTGRES,
        solved=observed.solved,
        figure=observed.figure,
        data=MappingProxyType(dict(observed.data)),
        seconds=time.monotonic() - started,
        error=error,
    )


def _measure_postgres() -> Observed:
    from jobqueue import final
    from jobqueue.lab.pgcluster import PgCluster

    with (
        PgCluster() as cluster,
        tempfile.TemporaryDirectory(prefix="jobqueue-scenario-") as directory,
        socket.socket(socket.AF_UNIX) as server,
    ):
        address = str(Path(directory) / "meet.sock")
        server.bind(address)
        server.listen()
        server.settimeout(WAIT * 3)
        config = final.Config(postgres_url=cluster.url, queue_name="scenario", num_workers=0)
        producer = final.JobQueue(config)
        command = [sys.executable, "-m", "jobqueue", "worker", "--postgres-url", cluster.url]
        command += ["--queue", "scenario", "--handlers", f"{__name__}:HANDLERS"]
        command += ["--processes", "2", "--workers", "1", "--shutdown-timeout", str(WAIT)]
        worker = subprocess.Popen(
            command,
            env={**os.environ, _SOCKET: address},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        met: list[socket.socket] = []
        try:
            for n in range(2):
                producer.enqueue(final.Job(id=f"meet-{n}", handler="meet"))
            pids = set()
            try:
                while len(met) < 2:
                    conn, _ = server.accept()
                    met.append(conn)
                    pids.add(int(conn.makefile().readline()))
            except TimeoutError:
                return Observed(False, f"only {len(met)} of 2 jobs ran at once")
            seen = producer.status("meet-0")
            for conn in met:
                conn.sendall(b"x")
            drained = producer.join(timeout=WAIT * 3)
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(WAIT * 3)
        finally:
            for conn in met:
                conn.close()
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            producer.close()
    shown = seen.value if seen is not None else "unknown"
    solved = len(pids) == 2 and seen is final.Status.PROCESSING and drained and code == 0
    figure = (
        f"2 worker processes ran 2 jobs at once, a core each; a third saw them {shown}; "
        f"SIGTERM: exit {code}"
    )
    return Observed(solved, figure, {"pids": len(pids), "seen": shown, "exit": code})
