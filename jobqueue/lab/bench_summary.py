"""How ``jobqueue bench``'s repetitions become figures, and the goals they are held to.

Every row is a median over repetitions.  Every ratio is taken within one
repetition (final and ThreadPoolExecutor from the same repetition, on the same
machine state), and the row shows the median of those ratios: a ratio of two
medians could pair a quiet run with a noisy one.

The rows are plain data (dicts of numbers and strings), so the same summary
renders as a table and dumps as JSON.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from jobqueue.lab.bench_plan import Outcome, default_fsync
from jobqueue.lab.measure import DURABLE_TARGETS, TARGETS

__all__ = ["goals", "summarize"]


# -- summaries: rows of plain data, ready for a table or JSON ---------------------------


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _status(outcome: Outcome | None) -> dict[str, Any] | None:
    """The row for a target without results, or None if it has some."""
    if outcome is None:
        return {"status": "not run"}
    if outcome.unavailable is not None:
        return {"status": "unavailable", "reason": outcome.unavailable}
    if outcome.error is not None:
        return {"status": "error", "reason": outcome.error}
    if not outcome.results:
        return {"status": "not run"}
    return None


def summarize(outcomes: dict[tuple[str, tuple[Any, ...]], Outcome]) -> dict[str, Any]:
    """Medians and within-repetition ratios for every section that ran."""
    sections: dict[str, Any] = {}
    by_section: dict[str, dict[tuple[Any, ...], Outcome]] = {}
    for (section, key), outcome in outcomes.items():
        by_section.setdefault(section, {})[key] = outcome
    if "realistic" in by_section:
        sections["realistic"] = _summarize_realistic(
            by_section["realistic"], by_section.get("realistic-latency", {})
        )
    if "throughput" in by_section:
        sections["throughput"] = _summarize_throughput(by_section["throughput"])
    if "latency" in by_section:
        sections["latency"] = _summarize_latency(by_section["latency"])
    if "memory" in by_section or "flood" in by_section:
        sections["memory"] = _summarize_memory(
            by_section.get("memory", {}), by_section.get("flood", {})
        )
    if "scaling" in by_section:
        sections["scaling"] = _summarize_scaling(by_section["scaling"])
    if "group-commit" in by_section:
        sections["group-commit"] = _summarize_group(by_section["group-commit"])
    return sections


def _ratios(mine: Outcome, theirs: Outcome | None) -> list[float]:
    """``mine / theirs`` in jobs/s, repetition by repetition."""
    if theirs is None or _status(theirs) is not None:
        return []
    return [
        a.jobs_per_second / b.jobs_per_second
        for a, b in zip(mine.results, theirs.results, strict=False)
    ]


def _summarize_throughput(rows: dict[tuple[Any, ...], Outcome]) -> dict[str, Any]:
    pool = rows.get(("threadpool",))
    in_memory = rows.get(("final",))
    out = []
    for (target,), outcome in sorted(rows.items(), key=lambda kv: TARGETS.index(kv[0][0])):
        row: dict[str, Any] = {"target": target}
        missing = _status(outcome)
        if missing is not None:
            out.append(row | missing)
            continue
        rates = [r.jobs_per_second for r in outcome.results]
        row |= {
            "status": "ok",
            "jobs": outcome.results[0].jobs,
            "workers": outcome.results[0].workers,
            "jobs_per_second": _median(rates),
            "runs": rates,
        }
        if target != "threadpool" and (ratios := _ratios(outcome, pool)):
            row |= {"vs_threadpool": _median(ratios), "vs_threadpool_runs": ratios}
        if target in DURABLE_TARGETS and (ratios := _ratios(outcome, in_memory)):
            row |= {"vs_final_in_memory": _median(ratios), "vs_final_in_memory_runs": ratios}
        out.append(row)
    return {"rows": out}


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "max": max(values)}


def _summarize_realistic(
    rows: dict[tuple[Any, ...], Outcome], paced: dict[tuple[Any, ...], Outcome]
) -> dict[str, Any]:
    """The headline: rows keyed (target, batch), ratios to the pool's single
    submits and to final in memory at the same batch size, each with its spread."""
    pool = rows.get(("threadpool", 1))
    out = []
    for (target, batch), outcome in rows.items():
        row: dict[str, Any] = {"target": target, "batch": batch}
        missing = _status(outcome)
        if missing is not None:
            out.append(row | missing)
            continue
        rates = [r.jobs_per_second for r in outcome.results]
        row |= {"status": "ok", "jobs": outcome.results[0].jobs, "jobs_per_second": _median(rates)}
        row |= {"runs": rates, "spread": _spread(rates)}
        if target != "threadpool" and (ratios := _ratios(outcome, pool)):
            row |= {"vs_threadpool": _median(ratios), "vs_threadpool_runs": ratios}
            row |= {"vs_threadpool_spread": _spread(ratios)}
        in_memory = rows.get(("final", batch))
        if target in DURABLE_TARGETS and (ratios := _ratios(outcome, in_memory)):
            row |= {"vs_final_in_memory": _median(ratios), "vs_final_in_memory_runs": ratios}
            row |= {"vs_final_in_memory_spread": _spread(ratios)}
        out.append(row)
    latency = []
    for (target, rate), outcome in paced.items():
        row = {"target": target, "rate": rate}
        missing = _status(outcome)
        if missing is not None:
            latency.append(row | missing)
            continue
        results = outcome.results
        p99 = [r.p99 for r in results]
        row |= {
            "status": "ok",
            "achieved_rate": _median(r.achieved_rate for r in results),
            "p50": _median(r.p50 for r in results),
            "p99": _median(p99),
            "p99_runs": p99,
            "p99_spread": _spread(p99),
        }
        latency.append(row)
    return {"rows": out, "latency": latency}


def _summarize_latency(rows: dict[tuple[Any, ...], Outcome]) -> dict[str, Any]:
    out = []
    for (target, rate, pacing, interval), outcome in rows.items():
        row: dict[str, Any] = {"target": target, "rate": rate, "pacing": pacing}
        missing = _status(outcome)
        if missing is not None:
            out.append(row | {"switch_interval": interval} | missing)
            continue
        results = outcome.results
        row |= {
            "status": "ok",
            "switch_interval": results[0].switch_interval,
            "jobs": results[0].jobs,
            "achieved_rate": _median(r.achieved_rate for r in results),
            "p50": _median(r.p50 for r in results),
            "p99": _median(r.p99 for r in results),
            "max": _median(r.max for r in results),
            "p99_runs": [r.p99 for r in results],
            "max_runs": [r.max for r in results],
        }
        out.append(row)
    return {"rows": out}


def _summarize_memory(
    traced: dict[tuple[Any, ...], Outcome], flood: dict[tuple[Any, ...], Outcome]
) -> dict[str, Any]:
    out = []
    for target in TARGETS:
        row: dict[str, Any] = {"target": target}
        mem, rss = traced.get((target,)), flood.get((target,))
        if mem is None and rss is None:
            continue
        if (missing := _status(mem)) is None:
            assert mem is not None
            row |= {"bytes_per_job": _median(mem.results), "bytes_per_job_runs": mem.results}
        else:
            row |= {"traced_status": missing["status"], "reason": missing.get("reason")}
        if rss is not None and (missing := _status(rss)) is None:
            result = rss.results[0]
            row |= {
                "flood_offered": result.offered,
                "flood_accepted": result.accepted,
                "rss_before": result.rss_before,
                "rss_after": result.rss_after,
                "rss_growth": result.growth,
            }
        elif rss is not None and missing is not None:
            row |= {"flood_status": missing["status"], "reason": missing.get("reason")}
        out.append(row)
    return {"rows": out}


def _summarize_scaling(rows: dict[tuple[Any, ...], Outcome]) -> dict[str, Any]:
    out = []
    for (target, kind, workers), outcome in rows.items():
        row: dict[str, Any] = {"target": target, "handler": kind, "workers": workers}
        missing = _status(outcome)
        if missing is not None:
            out.append(row | missing)
            continue
        rates = [r.jobs_per_second for r in outcome.results]
        out.append(row | {"status": "ok", "jobs_per_second": _median(rates), "runs": rates})
    return {"rows": out}


def _summarize_group(rows: dict[tuple[Any, ...], Outcome]) -> dict[str, Any]:
    out = []
    for (target, producers), outcome in rows.items():
        row: dict[str, Any] = {"target": target, "producers": producers}
        missing = _status(outcome)
        if missing is not None:
            out.append(row | missing)
            continue
        rates = [r.jobs_per_second for r in outcome.results]
        row |= {"status": "ok", "jobs_per_second": _median(rates), "runs": rates}
        single = rows.get((target, 1))
        if producers != 1 and single is not None and (ratios := _ratios(outcome, single)):
            row |= {"vs_one_producer": _median(ratios)}
        out.append(row)
    return {"rows": out}


# -- the goals (the project's and the spec's), checked against a summary ----------------


def goals(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with the figure this run measured, and whether it is met (None: not run)."""
    durable = f"final-durable-{default_fsync()}"
    throughput = {r["target"]: r for r in sections.get("throughput", {}).get("rows", [])}
    latency = {
        (r["target"], r["rate"]): r
        for r in sections.get("latency", {}).get("rows", [])
        if r["pacing"] == "sleep"
    }

    realistic = {
        (r["target"], r["batch"]): r for r in sections.get("realistic", {}).get("rows", [])
    }
    paced = {(r["target"], r["rate"]): r for r in sections.get("realistic", {}).get("latency", [])}
    real_durable = "final-durable-interval"
    batched = {batch for _, batch in realistic if batch != 1}
    batch = min(batched) if batched else 100

    def figure(row: dict[str, Any] | None, name: str) -> float | None:
        return None if row is None else row.get(name)

    def short_of_rate(key: tuple[str, int], rows: dict[Any, Any] = latency) -> str | None:
        """Why a latency at a rate does not count: the producer never reached the rate."""
        row = rows.get(key)
        if row is None or row.get("status") != "ok" or row["achieved_rate"] >= 0.95 * row["rate"]:
            return None
        return f"the producer reached only {row['achieved_rate']:,.0f} of {row['rate']:,.0f} jobs/s"

    checks: list[tuple[str, float | None, str, float, bool]] = [
        # (goal, measured, unit, bound, higher is better)
        (
            "realistic: final in memory ≥ 3x the pool",
            figure(realistic.get(("final", 1)), "vs_threadpool"),
            "x",
            3.0,
            True,
        ),
        (
            f"realistic: {real_durable} ≥ 1.5x the pool",
            figure(realistic.get((real_durable, 1)), "vs_threadpool"),
            "x",
            1.5,
            True,
        ),
        (
            f"realistic: durable enqueue_many({batch}) within 25% of in memory",
            figure(realistic.get((real_durable, batch)), "vs_final_in_memory"),
            "x",
            0.75,
            True,
        ),
        (
            f"realistic: {real_durable} p99 ≤ 1 ms at 2,000 jobs/s",
            figure(paced.get((real_durable, 2_000)), "p99"),
            "s",
            0.001,
            False,
        ),
        (
            f"realistic: {real_durable} p99 ≤ 2 ms at 20,000 jobs/s",
            figure(paced.get((real_durable, 20_000)), "p99"),
            "s",
            0.002,
            False,
        ),
        (
            "spec: final ≥ 10,000 jobs/s",
            figure(throughput.get("final"), "jobs_per_second"),
            "jobs/s",
            10_000,
            True,
        ),
        (
            "final in memory ≥ 2x ThreadPoolExecutor",
            figure(throughput.get("final"), "vs_threadpool"),
            "x",
            2.0,
            True,
        ),
        (
            f"{durable} ≥ 1.5x ThreadPoolExecutor",
            figure(throughput.get(durable), "vs_threadpool"),
            "x",
            1.5,
            True,
        ),
        (
            f"{durable} within 25% of in memory",
            figure(throughput.get(durable), "vs_final_in_memory"),
            "x",
            0.75,
            True,
        ),
        (
            f"spec: {durable} within 10% of in memory",
            figure(throughput.get(durable), "vs_final_in_memory"),
            "x",
            0.90,
            True,
        ),
        (
            f"{durable} p99 ≤ 1 ms at 2,000 jobs/s",
            figure(latency.get((durable, 2_000)), "p99"),
            "s",
            0.001,
            False,
        ),
        (
            f"{durable} p99 ≤ 2 ms at 20,000 jobs/s",
            figure(latency.get((durable, 20_000)), "p99"),
            "s",
            0.002,
            False,
        ),
        (
            "spec: final p99 < 10 ms at 20,000 jobs/s",
            figure(latency.get(("final", 20_000)), "p99"),
            "s",
            0.010,
            False,
        ),
    ]
    notes = {
        f"realistic: {real_durable} p99 ≤ 1 ms at 2,000 jobs/s": short_of_rate(
            (real_durable, 2_000), paced
        ),
        f"realistic: {real_durable} p99 ≤ 2 ms at 20,000 jobs/s": short_of_rate(
            (real_durable, 20_000), paced
        ),
        f"{durable} p99 ≤ 1 ms at 2,000 jobs/s": short_of_rate((durable, 2_000)),
        f"{durable} p99 ≤ 2 ms at 20,000 jobs/s": short_of_rate((durable, 20_000)),
        "spec: final p99 < 10 ms at 20,000 jobs/s": short_of_rate(("final", 20_000)),
    }
    out = []
    for goal, value, unit, bound, higher in checks:
        note = notes.get(goal)
        met = None if value is None else (value >= bound if higher else value <= bound)
        out.append(
            {
                "goal": goal,
                "measured": value,
                "unit": unit,
                "bound": bound,
                "met": False if note is not None else met,
                "note": note,
            }
        )
    return out
