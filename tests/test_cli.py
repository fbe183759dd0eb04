"""The ``jobqueue`` command's conventions: version, entry points, errors, options.

Options are checked before any long work starts; errors go to stderr, in one
wording for a missing file; a refused option is a usage error (exit status 2).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import jobqueue
from jobqueue.lab.cli import main
from tests.logutil import lines, write_sample


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``jobqueue argv``, which must be refused as a usage error; its stderr."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert not captured.out, "nothing ran"
    return " ".join(captured.err.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"jobqueue {jobqueue.__version__}\n"


@pytest.mark.timeout(60)
def test_python_dash_m_jobqueue_is_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobqueue", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (0, f"jobqueue {jobqueue.__version__}\n")
    done = subprocess.run(
        [sys.executable, "-m", "jobqueue", "gaps"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0
    assert "What each stage gets right" in done.stdout


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required: COMMAND" in usage_error(capsys)


@pytest.mark.parametrize("command", ["bench", "report"])
def test_an_output_file_in_a_missing_directory_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    target = tmp_path / "missing_dir" / "x.json"
    err = usage_error(capsys, command, "--quick", "--json", str(target))
    assert f"argument --json: no such directory: {target.parent}" in err
    assert not (tmp_path / "missing_dir").exists()


def test_an_output_file_that_is_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, "bench", "--quick", "--json", str(tmp_path))
    assert f"is a directory: {tmp_path}" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["bench", "--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
        (["bench", "--repeat", "two"], "argument --repeat: must be a whole number, got 'two'"),
        (["inspect", "--jobs", "-3", "x.log"], "argument --jobs: must be >= 0, got -3"),
    ],
)
def test_bad_counts_are_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert words in usage_error(capsys, *argv)


def test_check_does_not_advise_running_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.log"
    write_sample(path)
    rows = lines(path)
    rows[2] = b"garbage\n"
    path.write_bytes(b"".join(rows))
    assert main(["check", str(path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "line 3 (byte" in out
    assert "jobqueue check" not in out
    assert main(["inspect", str(path)]) == 1  # inspect's error does point to check
    assert "run `jobqueue check` on it" in " ".join(capsys.readouterr().err.split())
