"""What a figure was measured on: one record, written beside every committed result.

``jobqueue bench``, ``jobqueue report`` and the docs' studies all call
:func:`machine_info` before they measure and :func:`finished` after, so their
JSON files carry the same keys:

=================  ============================================================
``cpu``            the processor's name (``/proc/cpuinfo``, else ``platform``)
``cpus``           ``os.cpu_count()``
``python``         e.g. ``"3.11.7"``
``implementation`` e.g. ``"CPython"``
``platform``       ``platform.platform()``
``switch_interval`` ``sys.getswitchinterval()``, in seconds
``load_before``    1-minute load average before the run (None: not known)
``load_after``     the same, after the run
=================  ============================================================

Files written before these keys were settled used others (``cpu_model``,
``loadavg_start`` as three figures, ``load_before`` as text):
:func:`read_machine` reads either.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

__all__ = [
    "KEYS",
    "cpu_model",
    "describe",
    "finished",
    "load_average",
    "machine_info",
    "read_machine",
]

#: The keys of a machine record, in the order written.
KEYS = (
    "cpu",
    "cpus",
    "python",
    "implementation",
    "platform",
    "switch_interval",
    "load_before",
    "load_after",
)


def cpu_model() -> str:
    """The processor's name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> float | None:
    """The 1-minute load average; None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine record, taken before a run (``load_after`` is None until :func:`finished`)."""
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "switch_interval": sys.getswitchinterval(),
        "load_before": load_average(),
        "load_after": None,
    }


def finished(machine: Mapping[str, Any]) -> dict[str, Any]:
    """``machine`` with the load average after the run filled in."""
    return {**machine, "load_after": load_average()}


def read_machine(record: Mapping[str, Any]) -> dict[str, Any]:
    """A machine record from a JSON file, old keys or new, with the keys above."""
    out = dict(record)
    if "cpu_model" in out:
        out.setdefault("cpu", out.pop("cpu_model"))
    for old, new in (("loadavg_start", "load_before"), ("loadavg_end", "load_after")):
        if old in out:
            figures = out.pop(old)
            out.setdefault(new, figures[0] if figures else None)
    for key in ("load_before", "load_after"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = None if value == "n/a" else float(value)
    for key in KEYS:
        out.setdefault(key, None)  # not recorded then: not known now
    return out


def describe(machine: Mapping[str, Any]) -> str:
    """One line for a person: "2 CPUs (AMD EPYC), CPython 3.11.7, load 0.33 before, ..."."""
    m = read_machine(machine)

    def load(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    line = f"{m['cpus']} CPUs ({m['cpu']}), {m['implementation']} {m['python']}, "
    if m["switch_interval"] is not None:
        line += f"switch interval {m['switch_interval'] * 1e3:g} ms, "
    line += f"load average {load(m['load_before'])} before"
    if m["load_after"] is not None:
        line += f", {load(m['load_after'])} after"
    return line
