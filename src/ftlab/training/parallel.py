"""How runs share hardware: the processes of one data-parallel run, and runs side by side.

``torchrun`` and ``accelerate launch`` start one process per device and tell each its place in
environment variables; the Prefect flow runs several cells at once, on threads or on the worker
processes of a Dask cluster, and gives each a share of the machine's cores.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes training one model together (the launcher's WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a data-parallel run, or a plain process: the one that writes the run's outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def processes_on_this_node() -> int:
    """This machine's processes of a DDP run (the launcher's LOCAL_WORLD_SIZE; 1 without one)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def threads_per_process(processes: int) -> int:
    """Torch threads for each of ``processes`` that share this machine's cores: more threads than
    cores made concurrent runs 5-15x slower on 2 cores."""
    return max(1, (os.cpu_count() or 1) // max(1, processes))


def dask_slots_on_this_host() -> int | None:
    """When called in a task on a Dask worker: how many tasks this machine runs at once (the threads
    of all Dask workers on it); None elsewhere."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        worker = get_worker()
    except ValueError:  # not inside a Dask worker
        return None
    workers = worker.client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(w["nthreads"] for w in workers if w["host"] == worker.ip) or 1
