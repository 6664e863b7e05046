"""The poisoned training set of a run, filtered by its defense: what the final training sees.

Steps, each kept in the run directory (``poisoning/``) so that a killed run resumes without
redoing it:

1. The poisoned set: the pattern backdoor (:mod:`runner.poisoning`, cheap, recomputed), or the
   clean-label backdoor (:mod:`runner.defenses.clean_label`: a proxy model trained on the clean
   set in ``poisoning/proxy/``, then the crafted images in ``poisoning/clean_label.pt``).
2. With a defense other than ``none``: the detector's model, clean training (``standard``) of
   the run's architecture on the poisoned set with the run's epochs, batch size, optimizer and
   schedule (the papers train the network on the poisoned data as usual), resumable in
   ``poisoning/detector/``; its penultimate features in batches on the device; the detector's
   flags per class; the filter's metrics against the known poisons and the detector model's
   clean accuracy, source-class accuracy and ASR ("before the defense"). All of it lands in
   ``poisoning/filter.json`` (:class:`~runner.store.PoisonFilter`) in one atomic write.
3. The training set without the flagged examples.

The auxiliary trainings run under a forked RNG (seeded by the run seed), so the final training
draws the same random numbers whether or not they ran in this process (a resume).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from runner import poisoning
from runner.catalog import DEFENSES, RECIPES
from runner.defenses import clean_label
from runner.defenses.features import extract
from runner.defenses.metrics import effect, filter_metrics
from runner.errors import AdvrunError, RunFailed
from runner.fsio import write_with
from runner.spec.recipes import RECIPE_SPECS
from runner.store import PoisonFilter, RunDir
from runner.train.loop import FitContext, fit, load_weights

if TYPE_CHECKING:
    from torch import Tensor, nn

    from runner.compile import Run
    from runner.recipes.base import TrainContext

CLEAN_LABEL_FILE = "clean_label.pt"


@dataclass(frozen=True)
class PoisonJob:
    """What the poisoning steps of one run need: the run, its directory, its prepared data (the
    clean split), the recipe's context, a builder of fresh models of its architecture on the
    device, its log and the claim's guard (checked before every write)."""

    run: Run
    run_dir: RunDir
    data: Any  # runner.execute.prepare.Prepared
    ctx: TrainContext
    build: Callable[[], nn.Module]
    log: Callable[[str], None]
    guard: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class TrainingSet:
    """The final training set, the ground truth of the poisoned one and the defense's outcome."""

    x: Tensor
    y: Tensor
    poisoned: np.ndarray  # boolean, over the poisoned set (before filtering)
    kept: PoisonFilter | None  # None: defense none

    @property
    def poisons(self) -> int:
        return int(self.poisoned.sum())


def training_set(job: PoisonJob) -> TrainingSet:
    """The run's poisoned training set, filtered by its defense (see the module's steps)."""
    run = job.run
    cfg = run.poisoning
    if cfg is None:
        raise AdvrunError("training_set needs a run with a poisoning block")
    x, y, idx = poisoned_set(job)
    truth = np.zeros(len(y), dtype=bool)
    truth[idx] = True
    detector = DEFENSES.load(str(cfg.defense))(cfg, run.seed)
    if not detector.needs_features:
        return TrainingSet(x, y, truth, None)
    kept = job.run_dir.read_poison_filter()
    if kept is None or kept.train_hash != run.train_hash:
        kept = _defend(job, detector, x, y, truth)
        job.guard()
        job.run_dir.write_poison_filter(kept)
    else:
        job.log(
            f"defense {cfg.defense}: kept from an earlier attempt ({len(kept.removed)} removed)"
        )
    keep = np.ones(len(y), dtype=bool)
    keep[np.asarray(kept.removed, dtype=np.int64)] = False
    where = torch.as_tensor(np.flatnonzero(keep), device=x.device)
    return TrainingSet(x[where], y[where], truth, kept)


def poisoned_set(job: PoisonJob) -> tuple[Tensor, Tensor, np.ndarray]:
    """The poisoned training set and the indices of its poisons."""
    run, data = job.run, job.data
    cfg = run.poisoning
    assert cfg is not None
    pr = run.threat.pixel_range
    if cfg.scenario == "backdoor":
        x, y, info = poisoning.poison_training_set(
            data.x_train, data.y_train, cfg, pr, data.num_classes
        )
        return x, y, np.asarray(info["indices"])
    return _clean_label_set(job)


def _clean_label_set(job: PoisonJob) -> tuple[Tensor, Tensor, np.ndarray]:
    run, data = job.run, job.data
    x, y = data.x_train, data.y_train
    idx = clean_label.select(y, run, data.num_classes, tuple(x.shape[1:]))
    path = job.run_dir.poisoning_dir / CLEAN_LABEL_FILE
    crafted = _read_crafted(path, idx, run.train_hash)
    if crafted is None:
        where = torch.as_tensor(idx, device=x.device)
        with _aux_rng(run.seed, job.ctx.device):
            proxy = _fit_aux(job, "proxy", x, y)
            job.log(f"clean-label: crafting {len(idx)} poisons ({run.poisoning.engine})")  # type: ignore[union-attr]
            crafted = clean_label.craft(proxy, x[where], y[where], run).cpu()
        job.guard()
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {"indices": torch.as_tensor(idx), "x": crafted, "train_hash": run.train_hash}
        write_with(path, lambda p: torch.save(blob, p))
    x = x.clone()
    x[torch.as_tensor(idx, device=x.device)] = crafted.to(x.device, x.dtype)
    return x, y, idx


def _read_crafted(path, idx: np.ndarray, train_hash: str) -> Tensor | None:
    """The crafted poisons of an earlier attempt, if they are this run's."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        same = np.array_equal(blob["indices"].numpy(), idx) and blob["train_hash"] == train_hash
    except Exception:  # noqa: BLE001 - a damaged or foreign file: craft them again
        return None
    return blob["x"] if same else None


def _defend(job: PoisonJob, detector, x: Tensor, y: Tensor, truth: np.ndarray) -> PoisonFilter:
    """Train the detector's model, flag, and measure (step 2 of the module)."""
    run, data = job.run, job.data
    cfg = run.poisoning
    assert cfg is not None
    t0 = time.perf_counter()
    target = int(cfg.target)
    labels = y.cpu().numpy()
    expected = float(truth[labels == target].mean()) if (labels == target).any() else 0.0
    share = detector.removal_fraction(expected)
    if share is not None and not 0 < share < 1:
        raise RunFailed(
            f"spectral_signatures would remove eps_multiplier x expected_fraction = "
            f"{cfg.eps_multiplier:g} x {expected:.3g} (the poisons' share of the target class) = "
            f"{share:.3g} of each class, not in (0, 1); set poisoning.expected_fraction or a "
            "lower eps_multiplier"
        )
    with _aux_rng(run.seed, job.ctx.device):
        model = _fit_aux(job, "detector", x, y)
        features = extract(model, x, cfg.feature_layer)
        flagged = detector.flag(features, y.to(features.device), data.num_classes, expected)
    removed = flagged.cpu().numpy()
    n = run.eval.n or len(data.x_test)
    before = effect(model, data.x_test[:n], data.y_test[:n], cfg, run.threat.pixel_range,
                    run.eval.batch_size, run.eval.bootstrap)  # fmt: skip
    metrics = filter_metrics(
        removed, truth, labels, str(cfg.defense), run.eval.bootstrap,
        feature_layer=cfg.feature_layer, removal_fraction=share,
        detector_epochs=int(run.recipe.epochs), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    job.log(
        f"defense {cfg.defense}: removed {metrics.removed} of {metrics.examples} "
        f"(TP {metrics.tp}, FP {metrics.fp}, FN {metrics.fn}; precision "
        f"{metrics.precision.value:.3f}, recall {metrics.recall.value:.3f})"
    )
    removed_idx = [int(i) for i in np.flatnonzero(removed)]
    return PoisonFilter(train_hash=run.train_hash, removed=removed_idx, metrics=metrics,
                        before=before)  # fmt: skip


@contextlib.contextmanager
def _aux_rng(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global RNG forked and seeded by the run seed for the block, restored after."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _fit_aux(job: PoisonJob, name: str, x: Tensor, y: Tensor) -> nn.Module:
    """A model of the run's architecture, trained cleanly on (x, y) in ``poisoning/<name>/``
    (resumable there), with the run's epochs, batch size, optimizer and schedule; the weights of
    its last epoch, in eval mode."""
    run = job.run
    r = run.recipe
    cfg = RECIPE_SPECS["standard"].model_validate(
        {"name": name, "kind": "standard", "epochs": int(r.epochs), "batch_size": r.batch_size,
         "optimizer": r.optimizer.model_dump(), "schedule": r.schedule.model_dump(),
         "monitor": {"n": 0}, "amp": r.amp, "channels_last": r.channels_last}
    )  # fmt: skip
    ctx = dataclasses.replace(job.ctx, counter=None)
    recipe = RECIPES.load("standard")(cfg, ctx)
    model = job.build()
    where = job.run_dir.poisoning_dir / name
    job.log(f"{name}: clean training on {len(x)} examples for {cfg.epochs} epochs")
    data = job.data
    fit(FitContext(model, recipe, x, y, data.x_val, data.y_val, ctx, run.seed, where,
                   lambda m: job.log(f"{name}: {m}"), guard=job.guard))  # fmt: skip
    load_weights(model, where / "checkpoints" / "last.pt", job.ctx.device)
    return model.eval()
