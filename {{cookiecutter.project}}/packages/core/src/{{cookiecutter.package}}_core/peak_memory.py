"""The peak memory a benchmark reports for the process it measures."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_memory_mb() -> int:
    """This process's peak resident memory in MB.

    Linux's VmHWM belongs to the process image, while ru_maxrss survives exec and would report
    the (larger) parent's peak for a freshly started process.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
