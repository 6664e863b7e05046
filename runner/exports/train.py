"""The training-time adversarial examples of a run's final epoch, regenerated (``--train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import AdvrunError
from runner.exports.attack import check_inside
from runner.exports.files import manifest_entry, write_export
from runner.exports.source import Loaded
from runner.fsio import sha256_file
from runner.store import read_epochs


def training_examples(ld: Loaded):
    """The training-time adversarial examples of the final epoch, regenerated.

    The recipe's own attack (its ``perturb``: eps, step size, steps, start, loss) is run by the
    recipe's own batch code on the final epoch's batches (the same seeded permutation of the
    training set the loop drew, the same eps schedule position), against the **last checkpoint**
    (the weights after the final epoch, in eval mode), with torch's RNG seeded by the run seed
    for random starts. During training each batch was attacked with the weights of that moment
    and the RNG state of that moment, so these are not a byte-for-byte replay of training: they
    are what the recipe's attack makes of the final model on the final epoch's examples, and
    they are the same every time they are exported. Returns (clean inputs, x_adv, y, index into
    the recipe's training set, epoch, recipe eps).
    """
    import torch

    from runner.device import generator, seed_everything

    run = ld.run
    ctx, recipe = _recipe(ld)
    x, y = recipe.training_data(*_training_set(ld, ctx))
    trained = len(read_epochs(ld.run_dir))
    if trained == 0:
        raise AdvrunError(f"{ld.run_dir}: no epoch in epochs.csv; train the run first")
    epoch = trained - 1  # 0-based, as the loop counts
    gen = generator(
        run.seed * 100003 + epoch, ld.device if ld.device.type != "mps" else torch.device("cpu")
    )
    perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
    batches = perm.split(int(run.recipe.batch_size))
    seed_everything(run.seed, run.deterministic)
    cleans, xs, ys, idxs = _replay(ld, ctx, recipe, x, y, batches, gen, epoch)
    eps = float(recipe.eps_at(epoch + 1))
    return torch.cat(cleans), torch.cat(xs), torch.cat(ys), torch.cat(idxs), epoch + 1, eps


def _training_set(ld: Loaded, ctx: Any) -> tuple[Any, Any]:
    """The training set the run trained on: poisoned, and filtered by its defense (both kept in
    the run directory when they needed a model, so nothing is trained again here)."""
    from runner.defenses.pipeline import PoisonJob, training_set
    from runner.models import build_for_spec
    from runner.store import RunDir

    run, data = ld.run, ld.data
    if run.poisoning is None:
        return data.x_train, data.y_train

    def build() -> Any:
        return build_for_spec(run.model, data.input_shape, data.num_classes,
                              run.threat.pixel_range, ld.allow_import).to(ld.device)  # fmt: skip

    found = training_set(PoisonJob(run, RunDir(ld.run_dir), data, ctx, build, lambda _m: None))
    return found.x, found.y


def _recipe(ld: Loaded) -> tuple[Any, Any]:
    """The run's training context and recipe, as the loop built them; adversarial ones only."""
    from runner.catalog import RECIPES
    from runner.recipes.base import TrainContext
    from runner.train.augment import Augment

    run, data = ld.run, ld.data
    ctx = TrainContext(
        ld.device, run.threat.pixel_range, run.threat, data.num_classes, data.input_shape,
        None, run.poisoning,
    )  # fmt: skip
    ctx.augment = Augment(run.data.augment, run.threat.pixel_range, data.input_shape) or None
    recipe = RECIPES.load(run.recipe.kind)(run.recipe, ctx)
    if not recipe.adversarial:
        raise AdvrunError(
            f"recipe '{run.recipe.name}' ({run.recipe.kind}) trains on clean examples: it has no "
            "training-time adversarial examples to export"
        )
    return ctx, recipe


def _replay(
    ld: Loaded, ctx, recipe, x, y, batches, gen, epoch: int
) -> tuple[list, list, list, list]:
    """Each batch through the recipe's batch loss, its one ``perturb`` call captured: the clean
    inputs, adversarial examples, labels and training-set indices of every batch."""
    import torch

    run = ld.run
    captured: list[tuple[Any, Any]] = []
    inner = recipe.perturb

    def record(model, xb, *args, **kwargs):
        out = inner(model, xb, *args, **kwargs)
        captured.append((xb, out))
        return out

    recipe.perturb = record  # type: ignore[method-assign]
    cleans, xs, ys, idxs = [], [], [], []
    for p in ld.model.parameters():
        p.requires_grad_(False)  # only input gradients: nothing is trained here
    for b, idx in enumerate(batches):
        captured.clear()
        xb, yb = x[idx].to(ld.device), y[idx].to(ld.device)
        # data.augment: the batch drawn as the loop draws it (same generator, same order)
        xb = ctx.augment(xb, gen) if ctx.augment else xb
        ld.model.train()  # as the loop calls batch_loss; the inner attack switches to eval
        recipe.batch_loss(ld.model, xb, yb, epoch + b / len(batches))
        if len(captured) != 1 or not torch.equal(captured[0][0], xb[: len(captured[0][0])]):
            raise AdvrunError(
                f"recipe kind {run.recipe.kind} does not attack its batch in one perturb call; "
                "its training-time examples cannot be regenerated"
            )
        m = len(captured[0][0])
        cleans.append(captured[0][0])
        xs.append(captured[0][1])
        ys.append(yb[:m])
        idxs.append(idx[:m])
    ld.model.eval()
    return cleans, xs, ys, idxs


def export_train(ld: Loaded, out: Path) -> dict[str, Any]:
    """The training-time adversarial examples of the final epoch (see training_examples)."""
    lo, hi = ld.run.threat.pixel_range
    x, x_adv, y, index, epoch, eps = training_examples(ld)
    check_inside(x, x_adv, eps, ld.run.threat.norm, lo, hi, f"recipe {ld.run.recipe.name}")
    meta = {
        "kind": "train",
        "what": "training-time adversarial examples of the final epoch, regenerated: the "
        "recipe's own attack on the final epoch's seeded batches (after data.augment, drawn as "
        "the training loop draws it) against the last checkpoint, random starts seeded with the "
        "run seed",
        "run_id": ld.run.id,
        "recipe": ld.run.recipe.model_dump(),
        "epoch": epoch,
        "eps": eps,
        "threat": ld.run.threat.to_json(),
        "checkpoint": ld.checkpoint.name,
        "checkpoint_sha256": sha256_file(ld.checkpoint),
        "data_sha256": ld.data.sha256,
        "split": "train",
        "n": len(x_adv),
    }
    digest = write_export(out, x_adv, y, index, meta)
    kind = f"train:{ld.run.recipe.kind}"
    return manifest_entry(ld.run.id, out, digest, meta, kind, eps, ld.run.threat.norm)
