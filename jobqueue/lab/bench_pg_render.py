"""The tables and ratios of ``jobqueue bench --postgres``, from its rows."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from jobqueue.lab.bench_pg_targets import OURS, PEERS, TARGETS

__all__ = ["ratios", "tables"]

GOAL = 2.0  # our end-to-end jobs/s against the faster peer's


def _value(rows: list[dict[str, Any]], section: str, target: str, **match: Any) -> Any:
    for row in rows:
        if (
            row["section"] == section
            and row["target"] == target
            and row["status"] == "ok"
            and all(row.get(k) == v for k, v in match.items())
        ):
            return row["value"]
    return None


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else ours / theirs


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ours against each peer, and against the faster one, for every figure they share."""
    found: list[dict[str, Any]] = []
    for processes in sorted({r["processes"] for r in rows if r["section"] == "drain"}):
        ours = _value(rows, "drain", OURS, processes=processes)
        peers = {p: _value(rows, "drain", p, processes=processes) for p in PEERS}
        found.append(_row(f"end to end, {processes} proc.", ours, peers, goal=GOAL))
    ours = _value(rows, "enqueue", OURS)
    found.append(_row("enqueue, one by one", ours, {p: _value(rows, "enqueue", p) for p in PEERS}))
    threads = _value(rows, "cpu", OURS, processes=1, threads=2)
    processes = _value(rows, "cpu", OURS, processes=2, threads=1)
    found.append(
        {
            "figure": "CPU-bound: 2 proc. / 2 threads",
            "x": _ratio(processes, threads),
            "goal": 1.0,
            "met": None if _ratio(processes, threads) is None else processes > threads,
        }
    )
    return found


def _row(
    figure: str, ours: float | None, peers: dict[str, float | None], goal: float | None = None
) -> dict[str, Any]:
    known = [v for v in peers.values() if v is not None]
    faster = max(known) if known else None
    x = _ratio(ours, faster)
    return {
        "figure": figure,
        **{f"x {peer}": _ratio(ours, value) for peer, value in peers.items()},
        "x": x,
        "goal": goal,
        "met": None if goal is None or x is None else x >= goal,
    }


def _cell(row: dict[str, Any] | None, unit: str = "rate") -> str:
    if row is None:
        return ""
    if row["status"] != "ok":
        return f"[yellow]{row['status']}[/]"
    value = row["value"]
    shown = f"{value:,.0f}" if unit == "rate" else f"{value * 1e3:.2f}"
    return f"{shown} [dim]@{row['load_after']:.1f}[/]"


def _find(rows: list[dict[str, Any]], section: str, target: str, **match: Any) -> Any:
    for row in rows:
        same = row["section"] == section and row["target"] == target
        if same and all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _times(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}x"


def tables(rows: list[dict[str, Any]]) -> list[Table]:
    """Throughput, enqueue, latency, CPU scaling, then the ratios and reasons."""
    counts = sorted({r["processes"] for r in rows if r["section"] == "drain"})
    drain = Table(title="End to end: no-op jobs/s, pre-filled queue, by worker processes")
    drain.add_column("target")
    for count in counts:
        drain.add_column(f"{count} processes", justify="right")
    enqueue = Table(title="Enqueue, one job per call and per transaction (jobs/s)")
    enqueue.add_column("target")
    enqueue.add_column("jobs/s", justify="right")
    latency = Table(title="Latency: enqueue to handler start, one idle worker process (ms)")
    for column in ("target", "p50", "p99", "max"):
        latency.add_column(column, justify="left" if column == "target" else "right")
    for target in TARGETS:
        drain.add_row(target, *(_cell(_find(rows, "drain", target, processes=c)) for c in counts))
        enqueue.add_row(target, _cell(_find(rows, "enqueue", target)))
        row = _find(rows, "latency", target)
        if row is not None and row["status"] == "ok":
            latency.add_row(
                target, *(f"{row['value'][k] * 1e3:.2f}" for k in ("p50", "p99", "max"))
            )
        elif row is not None:
            latency.add_row(target, f"[yellow]{row['status']}[/]")
    drain.caption = enqueue.caption = "median of the runs; @ the highest 1-minute load average"
    cpu = Table(title="CPU-bound handler (pure Python), final on PostgreSQL (jobs/s)")
    for column in ("processes", "threads each", "jobs/s"):
        cpu.add_column(column, justify="right")
    for row in rows:
        if row["section"] == "cpu":
            cpu.add_row(str(row["processes"]), str(row["threads"]), _cell(row))
    found = ratios(rows)
    ratio = Table(title=f"Ratios: final on PostgreSQL against the peers (goal {GOAL:g}x)")
    ratio.add_column("figure")
    for peer in PEERS:
        ratio.add_column(f"x {peer}", justify="right")
    ratio.add_column("x faster peer", justify="right")
    ratio.add_column("goal met", justify="center")
    for item in found:
        met = {None: "", True: "[green]yes[/]", False: "[red]no[/]"}[item["met"]]
        peers = [_times(item.get(f"x {peer}")) for peer in PEERS]
        ratio.add_row(item["figure"], *peers, _times(item["x"]), met)
    reasons = Table(title="Rows without figures", show_header=False)
    for row in rows:
        if row.get("reason"):
            reasons.add_row(row["target"], row["section"], row["reason"])
    return [drain, enqueue, latency, cpu, ratio, *([reasons] if reasons.row_count else [])]
