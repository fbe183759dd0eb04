"""Beyond one process: processes share one queue, and CPU-bound work gets a core each.

Every stage keeps its queue inside one process, so a second process that
opens the same ``persist_path`` cannot see a job the first one is running
(strict xfail on all three).  final on PostgreSQL can: the scenario runs
``jobqueue worker --processes 2`` on a throwaway server and checks that two
jobs run at once in two processes while a third process watches.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from jobqueue import gaps
from jobqueue.lab import cli
from jobqueue.lab.scenarios import QUICK, processes
from jobqueue.lab.scenarios.base import Gate
from tests.pgfixtures import pg_unavailable


@pytest.mark.gap("beyond_one_process")
@pytest.mark.timeout(120)
def test_a_second_process_sees_the_job_the_first_is_running(
    stage: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.log"
    gate = Gate()
    queue = stage.JobQueue(stage.Config(num_workers=1, handler=gate, persist_path=path))
    try:
        queue.enqueue(stage.Job(id="held"))
        gate.wait_entered()
        answer = processes.ask_second_process(stage.__name__.rsplit(".", 1)[-1], path, "held")
    finally:
        gate.open()
        queue.close()
    assert answer == "status processing"


@pytest.mark.timeout(180)
def test_final_on_postgres_runs_jobs_at_once_in_two_processes_and_drains() -> None:
    got = processes.on_postgres(QUICK)
    if isinstance(got, str):
        pg_unavailable(got)
        return
    assert got.error is None, got.error
    assert got.solved, got.figure
    assert got.data["pids"] == 2
    assert got.data["exit"] == 0
    assert got.agrees  # the gap table says final + PostgreSQL solves it


def test_without_postgres_the_report_says_the_column_was_skipped_and_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(processes, "unavailable", lambda: "no server on this machine")
    argv = ["report", "--quick", "--stage", "final", "--scenario", processes.KEY]
    assert cli.main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"The {gaps.POSTGRES} column was skipped: no server on this machine" in out


def test_postgres_keeps_finals_verdict_except_where_a_row_says_otherwise() -> None:
    for gap in gaps.GAPS:
        if gap.postgres is None:
            assert gap.solved_by(gaps.POSTGRES) == gap.solved_by("final")
        else:  # a verdict of its own must say something final's does not
            assert gap.postgres != gap.verdicts["final"], gap.key
    beyond = gaps.gap(processes.KEY)
    assert [beyond.solved_by(column) for column in gaps.COLUMNS] == [False, False, False, True]
