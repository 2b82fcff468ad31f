"""Time and memory of whole processes: each benchmarked task runs in a fresh child process.

The parent takes the wall time and the CPU time from ``os.wait4`` (per child, unlike
``RUSAGE_CHILDREN``, which sums every child). Peak RSS comes from the child itself (``VmHWM``), not
from ``ru_maxrss``: Linux charges a child the parent's high-water mark at fork and exec, so a parent
that has just written a large workload would inflate every child's figure. The child reports its RSS
after imports and loading and the peak of the computation alone: it resets the kernel's high-water
mark (``/proc/self/clear_refs``) once the data is loaded, so a transient of the Parquet reader is not
charged to the computation; the process peak is the larger of the peaks before and after the reset.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in KiB (``VmRSS``, ``VmHWM``); 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def worker_pids(service_pid: int) -> list[int]:
    """The worker processes ``aims-agent run`` spawned (not multiprocessing's resource tracker)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == service_pid and b"spawn_main" in Path(f"/proc/{entry}/cmdline").read_bytes():
                out.append(int(entry))
        except OSError:
            continue  # it exited between listing and reading
    return out


def rss_bytes() -> int:
    """Resident set size of this process now."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Highest resident set size of this process since it started or since :func:`reset_peak`."""
    return _status_kib("VmHWM") * 1024


def reset_peak() -> bool:
    """Reset the peak RSS to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class ProcessRun:
    """One child process: wall and CPU time seen from outside, its peak RSS, and what it reported."""

    task: str
    wall_s: float
    cpu_s: float  # user + system time of the child: far less sensitive than wall time to a busy machine
    peak_rss: int
    report: dict[str, Any]
    load_average: float  # of the machine over the last minute when the child ended

    @property
    def extra_peak(self) -> int:
        """Peak RSS of the computation minus the RSS after imports and loading."""
        return int(self.report["compute_peak_rss"]) - int(self.report["rss_after_load"])


def run_task(task: str, args: list[str], out: Path) -> ProcessRun:
    """Run ``python -m benchmarks.tasks TASK ARGS --out OUT`` in a fresh process and measure it."""
    command = [sys.executable, "-m", "benchmarks.tasks", task, *args, "--out", str(out)]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"benchmark task {task} failed with exit code {child.returncode}")
    report: dict[str, Any] = json.loads(out.read_text())
    peak = int(report["process_peak_rss"])
    return ProcessRun(task, wall, usage.ru_utime + usage.ru_stime, peak, report, os.getloadavg()[0])


def command_start_time(command: list[str], *, repeats: int = 5) -> float:
    """Median wall time of ``command`` (output discarded), after one untimed run to warm the file cache."""
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
