"""How CPU cores and GPUs are split between parallel jobs (``run --jobs``, ``tune --workers``).

One rule for both commands: on CPU each job gets ``cores // jobs`` torch threads (at least one)
unless ``OMP_NUM_THREADS`` is set; with GPUs each job gets one GPU of its own through
``CUDA_VISIBLE_DEVICES``, and a GPU is shared only when ``--jobs-per-gpu`` asks for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """Where one job runs: its GPU (None on CPU) and its torch CPU threads (None: as set)."""

    index: int
    gpu: str | None  # a CUDA_VISIBLE_DEVICES entry: an index or a GPU UUID
    threads: int | None

    def env(self) -> dict[str, str]:
        """Environment for the job's process, set before torch starts."""
        out: dict[str, str] = {}
        if self.gpu is not None:
            out["CUDA_VISIBLE_DEVICES"] = self.gpu
        if self.threads is not None:
            out["OMP_NUM_THREADS"] = str(self.threads)
        return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int | None:
    """torch threads of each of ``jobs`` CPU jobs; None when ``OMP_NUM_THREADS`` decides."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, cpu_count() // max(1, jobs))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (it narrows them)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip():
        return [s.strip() for s in env.split(",") if s.strip()][:n]
    return [str(i) for i in range(n)]


def slots(jobs: int, device: str, jobs_per_gpu: int = 1) -> tuple[list[Slot], str | None]:
    """The job slots for ``jobs`` parallel jobs on ``device``; and a note when fewer are used."""
    use_gpu = device in ("auto", "cuda")  # cuda:N names one GPU: every job shares it
    gpus = visible_gpus() if use_gpu else []
    if gpus:
        n = min(jobs, len(gpus) * jobs_per_gpu)
        note = None
        if n < jobs:
            note = (
                f"--jobs {jobs}: {len(gpus)} GPU(s) x {jobs_per_gpu} job(s) per GPU allow {n}; "
                "running "
                f"{n} at once (--jobs-per-gpu shares a GPU between jobs)"
            )
        cpu = threads_per_job(n)
        return [Slot(i, gpus[i % len(gpus)], cpu) for i in range(n)], note
    threads = threads_per_job(jobs)
    return [Slot(i, None, threads) for i in range(jobs)], None
