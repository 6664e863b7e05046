"""The process group of a torchrun execution: this process's rank, its device and the few
collective operations training needs (broadcast, mean, any, barrier).

A low-level helper: the torchrun launcher (:mod:`runner.execute.launchers.torchrun`) joins the
group with :func:`init`, and execution and the training loop receive the :class:`Dist`. Backend
nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import Tensor

from runner.errors import AdvrunError


def world_size_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise AdvrunError("WORLD_SIZE must be a whole number (torchrun sets it)") from None


def under_torchrun() -> bool:
    """Whether this process is a rank whose runs train with DDP: torchrun with WORLD_SIZE > 1, or
    one process with ``ADVRUN_DDP=1`` (DDP on a single rank: a smoke of the DDP path, nccl
    included, on a machine with one GPU, where two ranks cannot share it)."""
    world = world_size_from_env()
    return world > 1 or (
        world == 1 and "WORLD_SIZE" in os.environ and os.environ.get("ADVRUN_DDP") == "1"
    )


def timeout() -> dt.timedelta:
    """How long ranks wait for each other (rank 0 evaluates while the others wait)."""
    return dt.timedelta(seconds=float(os.environ.get("ADVRUN_DIST_TIMEOUT_S", str(24 * 3600))))


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """This rank's device: its own GPU (LOCAL_RANK) on CUDA, else the CPU."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def shard(self, idx: Tensor) -> Tensor:
        """This rank's part of a global batch of indices (contiguous, sizes differ by <= 1)."""
        return idx.tensor_split(self.world_size)[self.rank]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj if self.main else None]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: float, device: torch.device) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=device)
        torch_dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        torch_dist.barrier()


def init(device_name: str) -> Dist | None:
    """Join the process group torchrun describes in the environment; None when not under it."""
    if not under_torchrun():
        return None
    world = world_size_from_env()
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise AdvrunError(
                f"WORLD_SIZE={world} but {key} is not set: start several processes with torchrun "
                "(torchrun --nproc_per_node=K -m runner run SPEC)"
            )
    cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if device_name.startswith("cuda:"):
        raise AdvrunError(
            f"device '{device_name}' names one GPU; under torchrun each rank takes the GPU of its "
            "LOCAL_RANK: use device: auto or cuda"
        )
    backend = "nccl" if cuda else "gloo"
    local = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend, timeout=timeout())
    return Dist(torch_dist.get_rank(), torch_dist.get_world_size(), local, backend)


def shutdown(d: Dist | None) -> None:
    if d is not None and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
