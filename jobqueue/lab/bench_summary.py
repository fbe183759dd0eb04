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

from jobqueue.lab.bench_plan import REALISTIC_TARGETS, Outcome, default_fsync
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
    if "profile" in by_section:
        sections["profile"] = _summarize_profile(by_section["profile"])
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


#: What the realistic goals ask of each target, in multiples of the pool's rate.
GOAL_X_POOL = {"final": 3.0, "final-durable-interval": 1.5}


def _figure(row: dict[str, Any], name: str, values: list[float]) -> None:
    """``name``: the median of ``values``; ``name_spread``: their min and max."""
    row[name] = _median(values)
    row[f"{name}_spread"] = _spread(values)


def _summarize_profile(rows: dict[tuple[Any, ...], Outcome]) -> dict[str, Any]:
    """Per target and per job: the serial phases (µs), the contended run's usage,
    and what the goal's multiple of the pool's rate leaves (its ``budget_us``,
    from the pool's contended run in the same repetition)."""
    by_target: dict[str, dict[tuple[Any, ...], Outcome]] = {}
    for (target, *rest), outcome in rows.items():
        by_target.setdefault(target, {})[tuple(rest)] = outcome
    pool = by_target.get("threadpool", {}).get(("contended",))
    out = []
    for target in (t for t in REALISTIC_TARGETS if t in by_target):
        mine = by_target[target]
        row: dict[str, Any] = {"target": target}
        missing = next((m for o in mine.values() if (m := _status(o)) is not None), None)
        if missing is not None:
            out.append(row | missing)
            continue

        def per_job(results: list[Any], name: str, scale: float = 1e6) -> list[float]:
            return [getattr(r, name) / r.jobs * scale for r in results]

        serial = mine[("serial", 1, 4)].results
        alone = mine[("serial", 1, 1)].results
        busy = mine[("contended",)].results
        row |= {"status": "ok", "jobs": busy[0].jobs}
        _figure(row, "intake_us", per_job(serial, "intake_seconds"))
        _figure(row, "intake_cpu_us", per_job(serial, "intake_cpu_seconds"))
        _figure(row, "intake_gc_us", per_job(serial, "intake_gc_seconds"))
        for key, outcome in mine.items():
            if key[0] == "serial" and key[1] != 1:
                row["batch"] = key[1]
                _figure(row, "batch_intake_us", per_job(outcome.results, "intake_seconds"))
        _figure(row, "run_us", per_job(serial, "run_seconds"))
        _figure(row, "run_one_worker_us", per_job(alone, "run_seconds"))
        _figure(
            row,
            "serial_us",
            [(r.intake_seconds + r.run_seconds) / r.jobs * 1e6 for r in serial],
        )
        _figure(row, "wall_us", per_job(busy, "seconds"))
        _figure(row, "cpu_us", per_job(busy, "cpu_seconds"))
        _figure(row, "gc_us", per_job(busy, "gc_seconds"))
        _figure(row, "voluntary_per_job", per_job(busy, "voluntary", 1.0))
        _figure(row, "involuntary_per_job", per_job(busy, "involuntary", 1.0))
        _figure(row, "producer_us", per_job(busy, "producer_seconds"))
        _figure(row, "producer_cpu_us", per_job(busy, "producer_cpu_seconds"))
        # Two clocks: a producer that never waited can come out a hair below zero.
        off_cpu = [max(0.0, r.producer_seconds - r.producer_cpu_seconds) / r.jobs for r in busy]
        _figure(row, "producer_off_cpu_us", [seconds * 1e6 for seconds in off_cpu])
        _figure(row, "producer_sleeps_per_job", per_job(busy, "producer_voluntary", 1.0))
        _figure(row, "producer_preempted_per_job", per_job(busy, "producer_involuntary", 1.0))
        factor = GOAL_X_POOL.get(target)
        if factor is not None and pool is not None and _status(pool) is None:
            # The rate factor x the pool's leaves 1/(factor x rate) seconds per job.
            row["goal_x_pool"] = factor
            _figure(row, "budget_us", [r.seconds / r.jobs * 1e6 / factor for r in pool.results])
        out.append(row)
    return {"rows": out}


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
    whys = _profile_reasons(sections, real_durable, batch)
    out = []
    for goal, value, unit, bound, higher in checks:
        note = notes.get(goal)
        met = None if value is None else (value >= bound if higher else value <= bound)
        met = False if note is not None else met
        out.append(
            {
                "goal": goal,
                "measured": value,
                "unit": unit,
                "bound": bound,
                "met": met,
                "note": note,
                # What the profile section measured that stands in the way.
                "why": whys.get(goal) if met is False else None,
            }
        )
    return out


def _floors(sections: dict[str, Any]) -> str:
    """What the floors of the realistic section reached, if they ran: how far a queue
    without final's features gets, and with them."""
    rows = {
        r["target"]: r
        for r in sections.get("realistic", {}).get("rows", [])
        if r.get("status") == "ok" and r["batch"] == 1 and "vs_threadpool" in r
    }
    bare, full = rows.get("floor"), rows.get("floor+features")
    if bare is None or full is None:
        return ""
    return (
        f"; a queue without its features (floor) reaches {bare['vs_threadpool']:.2f}x, "
        f"with fairness, status and metrics {full['vs_threadpool']:.2f}x"
    )


def _profile_reasons(sections: dict[str, Any], durable: str, batch: int) -> dict[str, str]:
    """For each realistic goal, the profile's figures that explain a miss (if it ran)."""
    rows = {
        r["target"]: r
        for r in sections.get("profile", {}).get("rows", [])
        if r.get("status") == "ok"
    }
    mem, disk, pool = rows.get("final"), rows.get(durable), rows.get("threadpool")
    whys: dict[str, str] = {}

    def serial_cost(name: str, row: dict[str, Any]) -> str:
        text = (
            f"{name}'s queue code costs {row['serial_us']:.1f} µs/job serially "
            f"(intake {row['intake_us']:.1f}, run {row['run_us']:.1f}; "
            f"{row['run_one_worker_us']:.1f} to run with 1 worker"
        )
        text += f"; pool {pool['serial_us']:.1f})" if pool is not None else ")"
        if "budget_us" in row:
            text += f"; {row['goal_x_pool']:g}x the pool leaves {row['budget_us']:.1f} µs/job"
        return text

    if mem is not None:
        whys["realistic: final in memory ≥ 3x the pool"] = serial_cost("final", mem) + _floors(
            sections
        )
    if disk is not None:
        whys[f"realistic: {durable} ≥ 1.5x the pool"] = (
            serial_cost("durable", disk)
            + f"; its producer waits {disk['producer_off_cpu_us']:.1f} µs/job off CPU"
        )
        producer = (
            f"durable's enqueue takes {disk['producer_us']:.1f} µs/job under load "
            f"({disk['producer_off_cpu_us']:.1f} off CPU), "
            f"{disk['voluntary_per_job']:.2f} thread sleeps/job"
        )
        whys[f"realistic: {durable} p99 ≤ 1 ms at 2,000 jobs/s"] = producer
        whys[f"realistic: {durable} p99 ≤ 2 ms at 20,000 jobs/s"] = (
            producer + "; 20,000 jobs/s leaves 50 µs/job"
        )
        if mem is not None and "batch_intake_us" in disk and "batch_intake_us" in mem:
            whys[f"realistic: durable enqueue_many({batch}) within 25% of in memory"] = (
                f"serially, durable takes {disk['batch_intake_us']:.1f} µs/job to accept "
                f"batches (in memory {mem['batch_intake_us']:.1f}) and "
                f"{disk['run_us']:.1f} to run them ({mem['run_us']:.1f})"
            )
    return whys
