"""The launcher interface: *where* the runs of a plan execute (the step of each run is
:func:`runner.execute.step.step`, the same everywhere)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from runner.compile import Run
    from runner.execute.options import Options
    from runner.execute.step import Outcome
    from runner.store import Store


@dataclass(frozen=True)
class LaunchSettings:
    """What the command line says about where runs go (``advrun run``'s scaling-out flags)."""

    jobs: int = 1  # --jobs: runs at once on this machine
    jobs_per_gpu: int = 1  # --jobs-per-gpu
    address: str | None = None  # --address: the Ray cluster (None: a local Ray)
    retries: int = 2  # --retries: Ray task retries after its worker died
    cpus_per_run: float = 1.0  # --cpus-per-run: CPUs of a CPU run's Ray task


class Launcher(ABC):
    """Executes runs somewhere and returns their outcomes in plan order.

    :meth:`start` comes before the preflight (torchrun joins its process group there) and
    :meth:`stop` after the results are written; ``main`` is False in the processes that must not
    write the experiment's shared files nor report (torchrun's ranks but 0).
    """

    name: ClassVar[str]
    main: bool = True

    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings

    def start(self, opts: Options) -> None:  # noqa: B027 - optional hook
        """Join what the runs execute on (nothing by default)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Leave it again (nothing by default)."""

    @abstractmethod
    def launch(self, store: Store, opts: Options, runs: list[Run]) -> list[Outcome]:
        """Execute every run not yet done; a failed run does not stop the others."""
