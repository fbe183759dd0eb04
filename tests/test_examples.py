"""The examples run on their own, against local stand-ins, and say what happened.

Each runs as a user would run it (``python -m examples.<name>``), in a
subprocess with a timeout, at a small size; the test checks its exit status
and the lines that carry its point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_email_sender_delivers_every_email_once_with_retries() -> None:
    out = run_example("email_sender", "--emails", "40")
    assert " 1 worker : 40 delivered" in out
    assert "10 workers: 40 delivered" in out
    assert "6 refused once and retried (metrics: completed=40, retried=6, failed=0)" in out
    assert "Every email delivered exactly once: yes." in out


def test_image_pipeline_lets_uploads_overtake_the_backlog() -> None:
    out = run_example("image_pipeline", "--images", "40")
    assert "Part 1: 40 images of 256 KiB" in out
    assert "Part 2: 20 LOW batch images queued" in out
    assert "Uploads overtook the backlog: yes." in out


def test_webhook_delivery_survives_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "webhooks.jsonl"
    out = run_example("webhook_delivery", "--webhooks", "30", "--log", str(log))
    assert "accepted 30 webhooks" in out
    assert "Delivered 29 of 30" in out  # one endpoint is gone for good
    assert "'gone' endpoint: 1 dead-lettered after 1 attempts" in out  # PermanentFailure
    assert "payment reminder scheduled, then cancelled: True" in out
    assert "a ping submitted and waited on: HTTP 200" in out
    assert "after the restart: reminder cancelled, redelivery delivered" in out
    assert "flaky endpoint took 3 attempts" in out
    assert "Nothing lost: yes." in out
    assert log.exists()  # the log it was given, kept for `jobqueue inspect`


@pytest.mark.parametrize(
    ("pitfall", "lines"),
    [
        ("workers", ["right:", "wrong: 100 workers"]),
        ("starvation", ["LOW job ran 301st of 301", "LOW job ran 11th of 301",
                        "ALARM: LOW has waited", "no alarm"]),
        ("count", ["wrong: wait() before any worker ran: returned 'all done' with 0 of 5 done",
                   "right: wait() before any worker ran: timed out: 5 jobs pending"]),
        ("timeout", ["blocked=True", "right: enqueue(job, timeout=0.1): QueueFull after"]),
        ("shutdown", ["with 2 jobs in flight", "waited", "0 of 500 queued jobs ran after restart",
                      "500 of 500 queued jobs ran after restart"]),
    ],
)  # fmt: skip
def test_each_pitfall_shows_wrong_and_right(pitfall: str, lines: list[str]) -> None:
    out = run_example("pitfalls", pitfall)
    for line in lines:
        assert line in out, f"{line!r} not in:\n{out}"


def test_questions_measures_every_study_and_records_the_machine(tmp_path: Path) -> None:
    out_json = tmp_path / "questions.json"
    out = run_example("questions", "--quick", "--json", str(out_json))
    assert "Worker scaling" in out
    assert "Fairness vs throughput" in out
    assert "Thundering herd" in out
    document = json.loads(out_json.read_text())
    assert document["command"].startswith("python -m examples.questions --quick")
    assert document["machine"]["cpus"] >= 1
    assert {r["handler"] for r in document["scaling"]["rows"]} == {"cpu-python", "cpu-c", "io"}
    policies = [r["policy"] for r in document["fairness"]["rows"]]
    assert policies[0] == "strict (improved)"
    strict, *_ = document["fairness"]["rows"]
    assert strict["low_first_position"] == document["fairness"]["high"] + 1  # LOW waits for all
    assert len(document["herd"]["rows"]) == 4
