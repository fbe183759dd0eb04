"""``jobqueue bench --postgres``: its options are checked first, and its ratios say the truth."""

from __future__ import annotations

from typing import Any

import pytest

from jobqueue.lab import bench_pg_render, cli
from jobqueue.lab.bench_pg_targets import OURS, PGQUEUER, PROCRASTINATE


def test_only_does_not_mix_with_postgres() -> None:
    with pytest.raises(SystemExit, match="--only does not apply with --postgres"):
        cli.main(["bench", "--postgres", "--only", "throughput"])


def test_a_json_file_in_a_missing_directory_is_refused_before_the_run(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["bench", "--postgres", "--json", str(tmp_path / "no" / "x.json")])
    assert refused.value.code == 2  # argparse's usage error, before any cluster starts
    assert "--json: no such directory" in capsys.readouterr().err


def _row(section: str, target: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {
        "section": section,
        "target": target,
        "value": value,
        "status": "ok",
        "load_after": 0.5,
        **extra,
    }


ROWS = [
    _row("drain", OURS, 6000.0, processes=1),
    _row("drain", PGQUEUER, 2000.0, processes=1),
    _row("drain", PROCRASTINATE, 300.0, processes=1),
    _row("enqueue", OURS, 1500.0),
    _row("enqueue", PGQUEUER, 1000.0),
    {"section": "enqueue", "target": PROCRASTINATE, "status": "error", "reason": "boom"},
    _row("latency", OURS, {"p50": 0.001, "p99": 0.002, "max": 0.003}),
    _row("cpu", OURS, 400.0, processes=1, threads=2),
    _row("cpu", OURS, 700.0, processes=2, threads=1),
]


def test_ratios_compare_with_the_faster_peer_and_check_the_goals() -> None:
    by_figure = {r["figure"]: r for r in bench_pg_render.ratios(ROWS)}
    drain = by_figure["end to end, 1 proc."]
    assert drain["x"] == pytest.approx(3.0)  # against PgQueuer, the faster
    assert drain[f"x {PROCRASTINATE}"] == pytest.approx(20.0)
    assert drain["met"] is True
    enqueue = by_figure["enqueue, one by one"]
    assert enqueue["x"] == pytest.approx(1.5)
    assert enqueue[f"x {PROCRASTINATE}"] is None  # its row failed: no ratio, not zero
    cpu = by_figure["CPU-bound: 2 proc. / 2 threads"]
    assert cpu["x"] == pytest.approx(1.75)
    assert cpu["met"] is True


def test_every_table_renders_and_rows_without_figures_say_why() -> None:
    tables = bench_pg_render.tables(ROWS)
    assert tables[-1].title == "Rows without figures"
    assert tables[-1].row_count == 1


def test_repetitions_become_medians_and_a_failed_run_is_not_hidden() -> None:
    from jobqueue.lab.bench_pg import medians

    runs = [
        _row("drain", OURS, 100.0, processes=1),
        _row("drain", OURS, 300.0, processes=1),
        _row("drain", OURS, 200.0, processes=1),
        _row("latency", OURS, {"p50": 1.0, "p99": 4.0, "max": 9.0}),
        _row("latency", OURS, {"p50": 3.0, "p99": 2.0, "max": 5.0}),
        _row("enqueue", PGQUEUER, 10.0),
        {**_row("enqueue", PGQUEUER, None), "status": "error", "reason": "lost"},
    ]
    rows = {(r["section"], r["target"]): r for r in medians(runs)}
    assert rows["drain", OURS]["value"] == 200.0
    assert rows["drain", OURS]["runs"] == [100.0, 300.0, 200.0]
    assert rows["latency", OURS]["value"] == {"p50": 2.0, "p99": 3.0, "max": 7.0}
    assert rows["enqueue", PGQUEUER]["status"] == "error"
    assert rows["enqueue", PGQUEUER]["reason"] == "lost"
