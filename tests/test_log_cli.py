"""``jobqueue inspect`` and ``jobqueue check``: what they show, and that they only read."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobqueue.lab.cli import main
from tests.logutil import lines, opened, write_sample


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, " ".join(capsys.readouterr().out.split())  # rich wraps long lines


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.log"
    write_sample(path)
    Path(f"{path}.lock").unlink()  # to see that the tools create nothing
    return path


def unchanged(path: Path, before: bytes) -> bool:
    siblings = {p.name for p in path.parent.iterdir()}
    return path.read_bytes() == before and siblings == {path.name}


def test_inspect_shows_live_jobs_by_status_and_priority(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sample.read_bytes()
    code, out = run(capsys, "inspect", str(sample))
    assert code == 0
    assert "3 live jobs, 2 finished" in out
    assert "live jobs by status and priority" in out
    assert "│ queued │ 0 │ 2 │ 0 │ 2 │" in out  # "b" and the odd id "e é...": MEDIUM
    assert "processing" not in out  # the log records no starts
    assert "│ retrying │ 1 │ 0 │ 0 │ 1 │" in out
    assert "history: 1 completed, 1 failed" in out
    assert unchanged(sample, before)


def test_check_passes_an_intact_log(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", str(sample))
    assert code == 0
    assert "ok: every record is intact" in out


def test_check_points_at_damage_and_fails(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lines(sample)
    rows[2] = rows[2].replace(b'"MEDIUM"', b'"LOW"')
    rows[5] = b"garbage\n"
    sample.write_bytes(b"".join(rows))
    before = sample.read_bytes()
    code, out = run(capsys, "check", str(sample))
    assert code == 1
    assert "line 3 (byte" in out
    assert "checksum mismatch" in out
    assert "line 6 (byte" in out  # every damaged line, not just the first
    assert unchanged(sample, before)
    assert main(["inspect", str(sample)]) == 1
    assert "line 3" in capsys.readouterr().err  # inspect fails: the error goes to stderr


def test_check_tolerates_a_torn_last_line_and_says_so(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample.write_bytes(sample.read_bytes()[:-10])
    before = sample.read_bytes()
    code, out = run(capsys, "check", str(sample))
    assert code == 0
    assert "torn last line 9" in out
    assert unchanged(sample, before)


def test_check_reports_a_log_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "jobs.log"
    with opened(path):
        code, out = run(capsys, "check", str(path))
    assert code == 0
    assert "in use by an open queue" in out


def test_a_missing_log_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("inspect", "check"):
        assert main([command, str(tmp_path / "nope.log")]) == 1
        captured = capsys.readouterr()
        assert not captured.out
        err = " ".join(captured.err.split())
        assert f"jobqueue {command}: error: no such file: {tmp_path / 'nope.log'}" in err
    assert not list(tmp_path.iterdir())
