"""The shared training loop: every recipe plugs its batch loss (or ART's trainer) into it.

Per epoch it runs the recipe over a seeded permutation, watches for non-finite losses without a
per-batch device sync, measures clean and PGD accuracy on a validation subset, and writes the
last and best checkpoints (best robust; best clean for clean baselines) plus a resume point (model, optimizer, scheduler, RNG states).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from runner import faults
from runner.attacks import native
from runner.device import generator
from runner.errors import AdvrunError, RunFailed
from runner.fsio import atomic_path, write_text
from runner.recipes.base import Recipe, TrainContext
from runner.spec.recipes import RecipeBase
from runner.train.optim import make_optimizer, make_scheduler

if TYPE_CHECKING:
    from runner.execute.distributed import Dist

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: str | None  # the reason, e.g. catastrophic overfitting
    stopped_epoch: int | None = None  # the epoch after which training stopped early


def save_state_dict(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, device: torch.device) -> Any:
    """One of the run's own checkpoints (weights_only: a tampered file cannot run code)."""
    from runner.checkpoint import safe_load

    return safe_load(path, device, what="run checkpoint", fix=_retrain(path))


def load_weights(model: nn.Module, path: Path, device: torch.device) -> None:
    """Load one of the run's own weight files into ``model``, with a clear error if it does not fit."""
    from runner.checkpoint import load_into

    load_into(model, load_checkpoint(path, device), path, "this run's model", _retrain(path))


def _retrain(path: Path) -> str:
    return (
        f"delete {path.parent} to retrain this run from scratch, or rerun with --force (with "
        "--only ID to limit it to this run)"
    )


@torch.no_grad()
def _clean_correct(model: nn.Module, x: Tensor, y: Tensor, bs: int) -> Tensor:
    return torch.cat(
        [model(x[i : i + bs]).argmax(1) == y[i : i + bs] for i in range(0, len(x), bs)]
    )


def validate(
    model: nn.Module, x: Tensor, y: Tensor, ctx: TrainContext, steps: int, bs: int = 512
) -> tuple[float, float]:
    """Clean and PGD accuracy at the threat model (step 2.5*eps/steps), in eval mode."""
    if len(x) == 0:
        return float("nan"), float("nan")
    was = model.training
    model.eval()
    lo, hi = ctx.pixel_range
    eps = ctx.threat.eps
    clean = _clean_correct(model, x, y, bs)
    robust = []
    for i in range(0, len(x), bs):
        xa = native.pgd(
            model,
            x[i : i + bs],
            y[i : i + bs],
            eps,
            2.5 * eps / steps,
            steps,
            ctx.threat.norm,
            lo,
            hi,
        )
        robust.append(_clean_correct(model, xa, y[i : i + bs], bs))
    model.train(was)
    return clean.float().mean().item(), torch.cat(robust).float().mean().item()


def _csv(history: list[dict[str, Any]]) -> str:
    cols = list(history[0])
    lines = [",".join(cols)] + [
        ",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        for r in history
    ]
    return "\n".join(lines) + "\n"


def _native_epoch(
    model,
    recipe: Recipe,
    opt,
    sched,
    x: Tensor,
    y: Tensor,
    bs: int,
    gen: torch.Generator,
    epoch: int,
    autocast: contextlib.AbstractContextManager,
    dist: Dist | None = None,
) -> tuple[float, int, float]:
    """One epoch of the recipe's batch loss; returns mean loss, first bad batch (-1), lr at it.

    Batch losses stay on the device until the epoch ends (one sync per epoch, not per batch);
    the first non-finite one is found then. Under torchrun (``dist``) every rank draws the same
    permutation and trains on its shard of each global batch.
    """
    model.train()
    device = recipe.ctx.device
    perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
    batches = perm.split(bs)
    weights = [1.0] * len(batches)
    if dist is not None:  # a last batch smaller than the ranks would leave a rank with nothing
        batches = [b for b in batches if len(b) >= dist.world_size]
        # DDP averages the ranks' gradients of their shard means; weighting each shard's mean by
        # world * shard / batch makes that average the gradient of the global batch's mean, as
        # in a single process, also when the shards differ in size (an odd batch on 2 ranks)
        weights = [dist.world_size * len(dist.shard(b)) / len(b) for b in batches]
        batches = [dist.shard(b) for b in batches]
    losses, lrs = [], []
    augment = recipe.ctx.augment  # data.augment: training batches only, before the attack
    for b, idx in enumerate(batches):
        xb, yb = _batch(x, y, idx, device)
        xb = augment(xb, gen) if augment else xb
        with autocast:
            loss = recipe.batch_loss(model, xb, yb, epoch + b / len(batches))
        if weights[b] != 1.0:  # the ranks' mean of these is the global batch's mean loss
            loss = loss * weights[b]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(loss.detach())
    per_batch = torch.stack(losses).float()
    bad = (~torch.isfinite(per_batch)).nonzero()
    first = int(bad[0]) if len(bad) else -1
    return per_batch.mean().item(), first, lrs[first] if first >= 0 else 0.0


def _batch(x: Tensor, y: Tensor, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """One training batch on the run's device. A training set too large for the GPU stays in
    pinned host memory: the batch is gathered there and copied without blocking the host."""
    if x.device == device:
        return x[idx], y[idx]
    rows = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
    torch.index_select(x, 0, idx, out=rows)
    return rows.to(device, non_blocking=True), y[idx].to(device, non_blocking=True)


def score_of(row: dict[str, Any], n_val: int, adversarial: bool) -> tuple[float, float]:
    """What "best" means: the most robust epoch for adversarial recipes (Rice et al. 2020),
    the most accurate one for clean baselines (selecting a clean model by robustness would
    cherry-pick the baseline), the latest one without validation data."""
    if not n_val:
        return (float(row["epoch"]), 0.0)
    robust, clean = row.get("val_robust", row.get("robust")), row.get("val_clean", row.get("clean"))
    return (robust, clean) if adversarial else (clean, robust)


def fit(
    model: nn.Module,
    recipe: Recipe,
    x: Tensor,
    y: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    ctx: TrainContext,
    seed: int,
    run_dir: Path,
    log: Callable[[str], None],
    on_epoch: EpochCallback | None = None,
    progress=None,
    guard: Callable[[], None] | None = None,
    dist: Dist | None = None,
) -> FitResult:
    """Train ``model`` in place with ``recipe``; resumable from ``run_dir/checkpoints/state.pt``.

    ``guard`` is called before each epoch's files are written (the run claim's ownership check).
    Under torchrun (``dist``) the model is trained with DistributedDataParallel; rank 0 validates
    and writes, and its checkpoints are a single-process run's.
    """
    main = dist is None or dist.main
    cfg = recipe.cfg
    ck = run_dir / "checkpoints"
    epochs, bs = int(cfg.epochs), int(cfg.batch_size)
    x, y = recipe.training_data(x, y)
    if x.device != ctx.device:  # kept on the host (too large for the GPU): pinned, labels too
        x, y = (t if t.is_pinned() else t.pin_memory() for t in (x.cpu(), y.cpu()))
    steps_per_epoch = -(-len(x) // bs)
    opt = make_optimizer(model, cfg.optimizer)
    sched = make_scheduler(opt, cfg.schedule, epochs * steps_per_epoch, epochs)
    n_val = min(cfg.monitor.n, len(x_val))
    xv, yv = x_val[:n_val], y_val[:n_val]
    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "robust": -1.0, "clean": -1.0}
    start = 0
    autocast = _device_options(model, cfg, ctx.device, log)
    if cfg.channels_last and ctx.device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    classifier = None
    if cfg.engine == "art":
        from runner.attacks.art_attacks import make_classifier

        classifier = make_classifier(
            model, ctx.input_shape, ctx.num_classes, ctx.pixel_range, ctx.device
        )
        classifier._optimizer = opt  # noqa: SLF001 - ART trains with the classifier's optimizer

    trained = model
    if cfg.compile and ctx.device.type == "cuda":  # checkpoints keep the plain model's keys
        trained = torch.compile(model)
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=ids)  # averages weight gradients
        if cfg.compile and ctx.device.type == "cuda":
            trained = torch.compile(trained)
    state_path = ck / "state.pt"
    if (
        state_path.exists()
    ):  # resume after a kill: same weights, optimizer, schedule and RNG streams
        st = load_checkpoint(state_path, ctx.device)
        try:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # tampered or other code
            detail = " ".join(str(e).split())[:200]
            raise AdvrunError(
                f"run checkpoint {state_path} does not fit this run ({type(e).__name__}: "
                f"{detail}); {_retrain(state_path)}"
            ) from None
        torch.set_rng_state(st["rng_cpu"].cpu())
        if torch.cuda.is_available() and st.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in st["rng_cuda"]])
        if st.get("rng_numpy") is not None:  # ART's trainers shuffle with NumPy's global stream
            _set_numpy_state(st["rng_numpy"])
        start, best, history = st["epoch"], dict(st["best"]), list(st["history"])
        if st.get("stopped"):  # it had stopped early before the kill: nothing left to train
            load_weights(model, ck / "best.pt", ctx.device)
            return FitResult(history, best["epoch"], st["stopped"], st["stopped_epoch"])
        log(f"resumed at epoch {start}")

    # forward/backward passes (examples) so far, carried across resumes in the epoch table
    done = history[-1] if history else {}
    counted = (ctx.counter.forward, ctx.counter.backward) if ctx.counter else (0, 0)
    stopped = None
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        if dist is not None:  # each rank its own attack starts, the same on a resume
            torch.manual_seed(seed * 100003 + epoch * 7919 + dist.rank + 1)
        gen = generator(
            seed * 100003 + epoch, ctx.device if ctx.device.type != "mps" else torch.device("cpu")
        )
        if classifier is not None:
            lr0 = opt.param_groups[0]["lr"]
            with contextlib.redirect_stderr(io.StringIO()):  # ART draws a tqdm bar per call
                loss = recipe.art_epoch(classifier, x, y, epoch, sched)
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise RunFailed(
                    f"training diverged: ART's trainer left non-finite weights in epoch {epoch + 1} "
                    f"(lr {lr0:g} at its start; ART does not say which batch); lower "
                    "recipes.*.optimizer.lr or use sgd"
                )
        else:
            loss, bad, bad_lr = _native_epoch(
                trained, recipe, opt, sched, x, y, bs, gen, epoch, autocast, dist
            )
            if dist is not None:  # every rank logs the mean loss and stops together
                loss = dist.mean(loss, ctx.device)
                if dist.any(bad >= 0, ctx.device) and bad < 0:
                    raise RunFailed(f"training diverged on another rank in epoch {epoch + 1}")
            if bad >= 0:
                raise RunFailed(
                    f"training diverged: the loss became non-finite at epoch {epoch + 1}, batch "
                    f"{bad + 1} (lr {bad_lr:g}); lower recipes.*.optimizer.lr, add warm-up, or use sgd"
                )
        val_clean, val_robust = (
            validate(model, xv, yv, ctx, cfg.monitor.steps)
            if n_val and main
            else (float("nan"),) * 2
        )
        if dist is not None:  # rank 0's numbers on every rank: the same best and stop decisions
            val_clean, val_robust = dist.broadcast((val_clean, val_robust))
        row = {
            "epoch": epoch + 1,
            "loss": loss,
            "lr": opt.param_groups[0]["lr"],
            "eps": recipe.eps_at(epoch + 1) if recipe.adversarial else 0.0,
            "val_clean": val_clean,
            "val_robust": val_robust,
            "seconds": time.perf_counter() - t0,
        }
        if ctx.counter is not None:
            row["forward_passes"] = done.get("forward_passes", 0) + ctx.counter.forward - counted[0]
            row["backward_passes"] = (
                done.get("backward_passes", 0) + ctx.counter.backward - counted[1]
            )
        history.append(row)
        if guard is not None:
            guard()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        improved = score_of(row, n_val, recipe.adversarial) > score_of(
            best, n_val, recipe.adversarial
        )
        if improved:
            best = {"epoch": epoch + 1, "robust": val_robust, "clean": val_clean}
        stopped = recipe.should_stop(history)
        if not main:  # only rank 0 writes the run store
            if stopped:
                dist.barrier()  # rank 0 has written best.pt
                load_weights(model, ck / "best.pt", ctx.device)
                return FitResult(history, best["epoch"], stopped, epoch + 1)
            continue
        save_state_dict(state, ck / "last.pt")
        if improved:
            save_state_dict(state, ck / "best.pt")
        write_text(run_dir / "epochs.csv", _csv(history))
        save_state_dict(
            {
                "model": state,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "rng_numpy": _numpy_state(),
                "epoch": epoch + 1,
                "best": best,
                "history": history,
                "stopped": stopped,
                "stopped_epoch": epoch + 1 if stopped else None,
            },
            state_path,
        )
        log(
            f"epoch {epoch + 1}/{epochs} loss {loss:.4f} val clean {val_clean:.3f} robust {val_robust:.3f}"
        )
        faults.reached(f"epoch:{epoch + 1}")
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", val_rob=f"{val_robust:.3f}")
        if on_epoch is not None:
            on_epoch(row)
        if stopped:
            # restore the best epoch: the run's model is the one from before the collapse
            if dist is not None:
                dist.barrier()
            load_weights(model, ck / "best.pt", ctx.device)
            log(f"stopped early: {stopped}; restored epoch {best['epoch']}")
            return FitResult(history, best["epoch"], stopped, epoch + 1)
    return FitResult(history=history, best_epoch=best["epoch"], stopped_early=None)


def _device_options(model: nn.Module, cfg: RecipeBase, device: torch.device, log):
    """bf16 autocast and channels_last on CUDA; elsewhere a note that they are ignored."""
    flags = (("amp", cfg.amp != "off"), ("channels_last", cfg.channels_last),
             ("compile", cfg.compile))  # fmt: skip
    wanted = [k for k, on in flags if on]
    if wanted and device.type != "cuda":
        log(f"note: {' and '.join(wanted)} apply on CUDA only; ignored on {device.type}")
        return contextlib.nullcontext()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.amp == "bf16":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": pos,
        "gauss": [has_gauss, cached],
    }


def _set_numpy_state(st: dict[str, Any]) -> None:
    keys = st["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, int(st["pos"]), int(st["gauss"][0]), float(st["gauss"][1]))
    )
