"""Launchers: where the runs of a plan execute, one registry entry each (imports no torch).

Every launcher runs the same per-run step (:mod:`runner.execute.step`: claim, skip if done,
execute, settle); it only decides where: ``serial`` in this process, ``jobs`` in spawned processes
on this machine (``--jobs N``), ``ray`` as Ray tasks (``--launcher ray``), ``torchrun`` on every
rank of a torchrun (chosen when ``WORLD_SIZE`` > 1, or ``ADVRUN_DDP=1`` on one rank).
"""

from __future__ import annotations

from runner.execute.launchers.base import Launcher, LaunchSettings
from runner.registry import Registry

__all__ = ["LAUNCHERS", "LaunchSettings", "Launcher"]

LAUNCHERS = Registry("launcher")
# fmt: off
LAUNCHERS.register("serial", "runner.execute.launchers.serial:SerialLauncher", "one run after another in this process")
LAUNCHERS.register("jobs", "runner.execute.launchers.jobs:JobsLauncher", "--jobs N: up to N runs at once, one spawned process each")
LAUNCHERS.register("ray", "runner.execute.launchers.ray:RayLauncher", "--launcher ray: one Ray task per run")
LAUNCHERS.register("torchrun", "runner.execute.launchers.torchrun:TorchrunLauncher", "under torchrun: each run on every rank (DDP)")
# fmt: on
