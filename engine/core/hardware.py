"""What the machine offers the engine: physical cores (a good default for CPU inference threads)."""

from __future__ import annotations

import os
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")


def usable_cpus() -> set[int]:
    """Logical CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(sys_cpu: Path = SYS_CPU) -> int:
    """Distinct physical cores among the usable CPUs (SMT siblings share one); the logical count if unknown.

    llama.cpp's matrix kernels saturate a core with one thread, so a second thread per core only adds contention.
    """
    cpus = usable_cpus()
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores) or len(cpus))


def default_threads(cap: int = 16) -> int:
    """Threads for CPU inference: one per physical core, at most `cap`."""
    return max(1, min(physical_cores(), cap))
