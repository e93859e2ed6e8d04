"""Where the CPU goes in a local run: CPU seconds of every process `clearing up` started.

Read from /proc/<pid>/stat (user + system time of the process and its threads) for the pids recorded
in <state_dir>/pids/, so the demo can say how many milliseconds of CPU each component spent per
order. On a 2-core machine that budget, not any one process, bounds end-to-end throughput:
throughput <= cores / (CPU seconds per order summed over all components). Linux only; elsewhere the
readings are empty and the demo says so.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SELF = "demo (OMS publisher, this process)"


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, or None when it is gone or /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def component_pids(state_path: Path) -> dict[str, int]:
    """Component name -> pid, from the pid files `clearing up` wrote (esm-worker-<mapping>.pid ...)."""
    pids = {}
    for path in sorted((state_path / "pids").glob("*.pid")):
        try:
            pids[path.stem.removeprefix("esm-worker-")] = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
    return pids


def cpu_snapshot(state_path: Path) -> dict[str, tuple[int, float]]:
    """Component -> (pid, CPU seconds so far), this process included."""
    snap = {}
    for name, pid in component_pids(state_path).items():
        seconds = process_cpu_seconds(pid)
        if seconds is not None:
            snap[name] = (pid, seconds)
    snap[SELF] = (os.getpid(), _own_cpu_seconds())
    return snap


def cpu_spent(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> dict[str, float]:
    """CPU seconds per component between two snapshots, largest first. A component restarted in
    between (new pid) counts its new process's whole CPU time, start-up included."""
    spent = {}
    for name, (pid, seconds) in after.items():
        earlier = before.get(name)
        spent[name] = seconds - earlier[1] if earlier and earlier[0] == pid else seconds
    return dict(sorted(spent.items(), key=lambda kv: -kv[1]))
