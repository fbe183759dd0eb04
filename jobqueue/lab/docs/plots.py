"""The figures of docs/, drawn from the JSON committed beside them.

    make docs                                  # installs matplotlib into .venv, then runs this
    python -m jobqueue.lab.docs.plots --docs docs

Every figure reads one committed file and measures nothing:

- ``scaling.svg`` (docs/questions.json): speed-up over one worker, CPU-bound
  vs I/O-bound handlers;
- ``latency.svg`` (docs/bench-results.json): p50, p99 and max from
  ``enqueue()`` to handler start, per stage, at two arrival rates;
- ``starvation.svg`` (docs/questions.json): where LOW jobs ran under a HIGH
  flood, strict priority (improved) against fairness tokens (final);
- ``herd.svg`` (docs/questions.json): retries against a recovering service,
  with and without jitter;
- ``fsync.svg`` (docs/bench-results.json): throughput per fsync policy.

The output is deterministic: glyphs are drawn as paths (no font needed to view
it), element ids come from a fixed salt and no date is written, so running
this again on unchanged JSON rewrites identical files.  matplotlib is the
optional ``docs`` extra: ``pip install -e '.[docs]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

__all__ = ["FIGURES", "draw_all"]

Document = dict[str, Any]

#: Written into each SVG instead of a version and a date, so the files stay identical.
METADATA = {"Creator": "jobqueue.lab.docs.plots", "Date": None}

STYLE: dict[Any, Any] = {  # matplotlib types its keys as Literals
    "svg.fonttype": "path",  # glyphs as outlines: renders the same with no font installed
    "svg.hashsalt": "jobqueue",  # stable element ids
    "font.family": "DejaVu Sans",  # bundled with matplotlib, so every machine draws the same
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
}

#: Meaning never rests on colour alone: every series also has a marker or a hatch.
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
MARKERS = ["o", "s", "^", "D", "v"]
HATCHES = ["", "//", "..", "xx"]


#: Tick labels as people write numbers: 1, 2, 4 ... and 40k, not 2^2 or 40000.
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")
THOUSANDS = FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")


def _load(docs: Path, name: str) -> Document:
    data: Document = json.loads((docs / name).read_text())
    return data


def _source(fig: Figure, document: Document) -> None:
    """Say under the figure where its numbers come from, and on what machine."""
    machine = document["machine"]
    cpu = machine.get("cpu") or machine.get("cpu_model") or "unknown CPU"
    fig.text(
        0.01,
        0.01,
        f"data: `{document['command']}` · {machine['cpus']} CPUs ({cpu}), "
        f"Python {machine['python']}",
        fontsize=7,
        color="0.4",
    )


# -- worker scaling --------------------------------------------------------------------------


def scaling(docs: Path) -> Figure:
    """Speed-up over one worker per handler: only work that releases the GIL scales."""
    document = _load(docs, "questions.json")
    study = document["scaling"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, about) in enumerate(study["handlers"].items()):
        rows = [r for r in study["rows"] if r["handler"] == name]
        ax.plot(
            [r["workers"] for r in rows],
            [r["speedup"] for r in rows],
            marker=MARKERS[i],
            color=COLOURS[i],
            label=f"{name}: {about}",
        )
    ax.axhline(document["machine"]["cpus"], color="0.5", linestyle="--", linewidth=1)
    ax.annotate(
        f"{document['machine']['cpus']} cores",
        (1, document["machine"]["cpus"]),
        textcoords="offset points",
        xytext=(2, 3),
        fontsize=8,
        color="0.4",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.xaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    ax.set_xlabel("workers")
    ax.set_ylabel("jobs/s over one worker (log)")
    ax.set_title("Worker scaling of final: CPU-bound vs I/O-bound handlers")
    ax.legend(fontsize=7, loc="upper left")
    _source(fig, document)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


# -- latency ---------------------------------------------------------------------------------


def latency(docs: Path) -> Figure:
    """p50, p99 and max from enqueue to handler start, per target, at each paced rate."""
    document = _load(docs, "bench-results.json")
    rows = [r for r in document["sections"]["latency"]["rows"] if r["pacing"] == "sleep"]
    rates = sorted({r["rate"] for r in rows})
    fig, axes = plt.subplots(1, len(rates), figsize=(8, 4), sharey=True, squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        at_rate = [r for r in rows if r["rate"] == rate and r["status"] == "ok"]
        targets = [r["target"] for r in at_rate]
        height = 0.27
        for j, key in enumerate(("p50", "p99", "max")):
            ax.barh(
                [i + (j - 1) * height for i in range(len(targets))],
                [r[key] * 1e6 for r in at_rate],
                height=height,
                color=COLOURS[j],
                hatch=HATCHES[j],
                edgecolor="white",
                label=key,
            )
        ax.set_yticks(range(len(targets)), targets)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PLAIN)
        ax.set_xlabel("µs from enqueue() to handler start (log)")
        ax.set_title(f"{rate:,} jobs/s offered")
    axes[0][0].invert_yaxis()  # once: the axes share it; the first target on top
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncols=3)
    fig.suptitle("Latency per stage: p50, p99 and max (lower is better)", x=0.02, ha="left")
    _source(fig, document)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


# -- starvation ------------------------------------------------------------------------------


def starvation(docs: Path) -> Figure:
    """Where LOW jobs ran in the run order under a HIGH flood, per picking policy."""
    document = _load(docs, "questions.json")
    study = document["fairness"]
    rows = study["rows"]
    total = study["high"] + study["low"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    labels = [r["policy"] for r in rows]
    height = 0.38
    for j, (key, label) in enumerate(
        (("low_first_position", "first LOW job"), ("low_median_position", "median LOW job"))
    ):
        values = [r[key] for r in rows]
        bars = ax.barh(
            [i + (j - 0.5) * height for i in range(len(rows))],
            values,
            height=height,
            color=COLOURS[j],
            hatch=HATCHES[j],
            edgecolor="white",
            label=label,
        )
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7, padding=2)
    ax.axvline(
        study["high"],
        color="0.5",
        linestyle="--",
        linewidth=1,
        label=f"after all {study['high']:,} HIGH jobs",
    )
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, total * 1.12)
    ax.set_xlabel(f"position in the run order (of {total:,} jobs, one worker)")
    ax.set_title(
        f"LOW's wait under a HIGH flood: {study['high']:,} HIGH and {study['low']:,} LOW queued"
    )
    ax.legend(fontsize=8, loc="center right")
    _source(fig, document)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


# -- thundering herd -------------------------------------------------------------------------


def herd(docs: Path) -> Figure:
    """The retries' peak against the service's capacity, and what it cost, per policy."""
    document = _load(docs, "questions.json")
    study = document["herd"]
    settings = study["settings"]
    rows = study["rows"]
    labels = [r["policy"].replace("exponential", "exp.").replace(" + ", "\n+ ") for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 4))

    peaks = [r["peak_per_window"] for r in rows]
    bars = left.bar(
        range(len(rows)),
        peaks,
        color=[COLOURS[1] if "jitter" not in r["policy"] else COLOURS[2] for r in rows],
        hatch=["" if "jitter" not in r["policy"] else "//" for r in rows],
        edgecolor="white",
    )
    left.bar_label(bars, fontsize=7, padding=2)
    left.axhline(
        settings["capacity"],
        color="0.3",
        linestyle="--",
        linewidth=1,
        label=f"the service's capacity: {settings['capacity']:.0f}",
    )
    left.legend(fontsize=7, loc="upper right")
    left.set_ylim(0, max(peaks) * 1.15)
    left.set_xticks(range(len(rows)), labels, fontsize=7)
    left.set_ylabel(f"most attempts in one {settings['window'] * 1e3:.0f} ms window")
    left.set_title("Peak load once the service is back")

    width = 0.38
    costs = (
        ("rejected_overload", "attempts refused: overloaded"),
        ("dead", "jobs dead (retries spent)"),
    )
    for j, (key, label) in enumerate(costs):
        values = [r[key] for r in rows]
        bars = right.bar(
            [i + (j - 0.5) * width for i in range(len(rows))],
            values,
            width=width,
            color=COLOURS[3 + j],
            hatch=HATCHES[j + 1],
            edgecolor="white",
            label=label,
        )
        right.bar_label(bars, fontsize=7, padding=2)
    right.set_xticks(range(len(rows)), labels, fontsize=7)
    right.set_ylim(0, max(max(r["rejected_overload"], r["dead"]) for r in rows) * 1.3)
    right.set_title("What the herd cost")
    right.legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"Thundering herd: {settings['clients']:.0f} jobs fail at once, the service is down "
        f"{settings['outage']} s, then serves {settings['capacity']:.0f} per "
        f"{settings['window'] * 1e3:.0f} ms"
    )
    _source(fig, document)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


# -- fsync policies --------------------------------------------------------------------------


def fsync(docs: Path) -> Figure:
    """Throughput in memory and per fsync policy; and how producers share fsyncs."""
    document = _load(docs, "bench-results.json")
    sections = document["sections"]
    by_target = {r["target"]: r for r in sections["throughput"]["rows"] if r["status"] == "ok"}
    order = ["final", "final-durable-never", "final-durable-interval", "final-durable-always"]
    shown = [t for t in order if t in by_target]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(8.5, 3.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    values = [by_target[t]["jobs_per_second"] for t in shown]
    bars = left.barh(
        range(len(shown)),
        values,
        color=[COLOURS[i] for i in range(len(shown))],
        hatch=[HATCHES[i % len(HATCHES)] for i in range(len(shown))],
        edgecolor="white",
    )
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7, padding=2)
    left.set_yticks(
        range(len(shown)),
        ["in memory" if t == "final" else f"fsync={t.rsplit('-', 1)[1]!r}" for t in shown],
    )
    left.invert_yaxis()
    if "threadpool" in by_target:
        pool = by_target["threadpool"]["jobs_per_second"]
        left.axvline(pool, color="0.3", linestyle="--", linewidth=1)
        left.annotate(
            "ThreadPoolExecutor",
            (pool, len(shown) - 0.5),
            textcoords="offset points",
            xytext=(3, 0),
            fontsize=7,
        )
    left.set_xlim(0, max(values) * 1.2)
    left.xaxis.set_major_formatter(THOUSANDS)
    left.set_xlabel("no-op jobs/s, 4 workers, 1 producer")
    left.set_title("final: in memory and per fsync policy")

    group = [r for r in sections.get("group-commit", {}).get("rows", []) if r["status"] == "ok"]
    for i, target in enumerate(sorted({r["target"] for r in group})):
        rows = [r for r in group if r["target"] == target]
        right.plot(
            [r["producers"] for r in rows],
            [r["jobs_per_second"] for r in rows],
            marker=MARKERS[i + 1],
            color=COLOURS[i + 2],
            label=f"fsync={target.rsplit('-', 1)[1]!r}",
        )
    right.set_xscale("log", base=2)
    right.set_xticks(sorted({r["producers"] for r in group}))
    right.xaxis.set_major_formatter(PLAIN)
    right.yaxis.set_major_formatter(THOUSANDS)
    right.set_ylim(bottom=0)
    right.set_xlabel("producer threads")
    right.set_ylabel("jobs/s")
    right.set_title("Producers sharing fsyncs")
    right.legend(fontsize=7)
    _source(fig, document)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


#: file name -> what draws it
FIGURES: dict[str, Callable[[Path], Figure]] = {
    "scaling.svg": scaling,
    "latency.svg": latency,
    "starvation.svg": starvation,
    "herd.svg": herd,
    "fsync.svg": fsync,
}


def draw_all(docs: Path, out: Path | None = None) -> list[Path]:
    """Draw every figure from the JSON in ``docs`` into ``out`` (default: ``docs``)."""
    out = docs if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context(STYLE):
        for name, draw in FIGURES.items():
            fig = draw(docs)
            try:
                fig.savefig(out / name, format="svg", metadata=METADATA)
            finally:
                plt.close(fig)
            written.append(out / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where the JSON is")
    parser.add_argument("--out", type=Path, help="where the SVGs go (default: --docs)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    for path in draw_all(args.docs, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
