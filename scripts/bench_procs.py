"""CPU and memory of running processes from /proc (and the daemon's own mosaic count), for the benchmarks.

CPU is user+sys clock ticks (/proc/<pid>/stat, threads included), so a figure is what
the process itself burnt, whatever else ran beside it; a process that was starved of
CPU shows up elsewhere (frames skipped, latency), not as a lower figure here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> list[str]:
    # The command name may contain spaces and ')': fields start after the last ')'.
    return path.read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """user+sys CPU seconds of a process, all its threads; 0 once it is gone."""
    try:
        fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (comm, at most 15 bytes) of a process, summed over
    threads of the same name."""
    out: dict[str, float] = defaultdict(float)
    task = Path(f"/proc/{pid}/task")
    try:
        tids = list(task.iterdir())
    except OSError:
        return {}
    for tid in tids:
        try:
            name = (tid / "comm").read_text().strip()
            fields = _stat_fields(tid / "stat")
        except (OSError, IndexError):
            continue  # the thread ended in between
        out[name] += (int(fields[11]) + int(fields[12])) / TICK
    return dict(out)


def rss_bytes(pid: int) -> int:
    """Resident set size now (VmRSS), 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def mosaic_cpu_seconds(stats: dict[str, Any]) -> float:
    """The daemon's own count of the mosaic's CPU (tiles + composing + JPEG) in a stats message."""
    mosaic = stats.get("mosaic", {})
    return float(mosaic.get("compose_cpu_s", 0.0)) + float(mosaic.get("tile_cpu_s", 0.0))


def load_average() -> float:
    """The 1-minute load average: other people's work on a shared machine shows here."""
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class Sample:
    """CPU seconds of every watched process group (and of named thread groups) at one moment."""

    at: float
    cpu: dict[str, float]
    rss: dict[str, int]


@dataclass
class Watch:
    """Named groups of processes (a group's CPU is the sum over its processes) plus, for
    one process, thread groups by name prefix (e.g. the daemon's camera and record workers)."""

    groups: dict[str, list[int]] = field(default_factory=dict)
    thread_pid: int | None = None
    thread_groups: dict[str, Callable[[str], bool]] = field(default_factory=dict)

    def sample(self, now: float) -> Sample:
        cpu = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.groups.items()}
        rss = {name: sum(rss_bytes(pid) for pid in pids) for name, pids in self.groups.items()}
        if self.thread_pid is not None:
            threads = thread_cpu(self.thread_pid)
            for group, matches in self.thread_groups.items():
                cpu[group] = sum(seconds for name, seconds in threads.items() if matches(name))
        return Sample(now, cpu, rss)


def usage(windows: Iterable[tuple[Sample, Sample]]) -> tuple[dict[str, float], float]:
    """CPU of each group over several windows as a percentage of one core, and the seconds covered."""
    used: dict[str, float] = defaultdict(float)
    seconds = 0.0
    for start, end in windows:
        seconds += end.at - start.at
        for name, value in end.cpu.items():
            used[name] += value - start.cpu.get(name, 0.0)
    return {name: 100.0 * value / seconds for name, value in used.items()} if seconds else {}, seconds
