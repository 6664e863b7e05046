"""The training state's resume point and the seams of the loop and the checklist.

state.pt's keys are a promise (a run killed by one advrun resumes with the next); a per-batch
hook is called around every optimizer step and its state joins the resume point under its key;
the checklist measures each probe once however many checks read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from digits_model import CPU, DATA
from resolved import LINF_01, evaluation

from runner.catalog import RECIPES
from runner.eval.checklist import CHECKS, Evidence, planned, run_checklist
from runner.eval.context import EvalContext
from runner.execute.prepare import prepare
from runner.models import build_model
from runner.recipes.base import TrainContext
from runner.train.loop import FitContext, fit
from runner.train.optim import make_optimizer, make_scheduler
from runner.train.state import TrainingState, load_checkpoint

STATE_KEYS = ["model", "optimizer", "scheduler", "rng_cpu", "rng_cuda", "rng_numpy", "epoch",
              "best", "history", "stopped", "stopped_epoch"]  # fmt: skip


def _job(run_dir: Path, epochs: int = 2) -> FitContext:
    data = prepare(DATA, (0.0, 1.0), CPU)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes, {"hidden": [16]})
    ctx = TrainContext(CPU, (0.0, 1.0), LINF_01, data.num_classes, data.input_shape)
    fields = {"name": "p", "kind": "pgd", "epochs": epochs, "steps": 2, "step_size": 0.05,
              "eps": 0.1, "batch_size": 128, "monitor": {"n": 32, "steps": 2}}  # fmt: skip
    plugin = RECIPES.load("pgd")
    recipe = plugin(plugin.config.model_validate(fields), ctx)
    x, y = data.x_train[:512], data.y_train[:512]
    return FitContext(model, recipe, x, y, data.x_val, data.y_val, ctx, 0, run_dir, lambda _: None)


def _state(job: FitContext) -> TrainingState:
    cfg = job.recipe.cfg
    opt = make_optimizer(job.model, cfg.optimizer)
    return TrainingState(job.model, opt, make_scheduler(opt, cfg.schedule, 8, cfg.epochs))


def test_the_resume_point_keeps_its_keys_and_restores_the_state(tmp_path):
    job = _job(tmp_path)
    result = fit(job)
    path = tmp_path / "checkpoints" / "state.pt"
    saved = load_checkpoint(path, CPU)
    assert list(saved) == STATE_KEYS
    state = _state(_job(tmp_path))
    state.restore(path, CPU)
    assert (state.epoch, state.best["epoch"], state.history) == (
        2,
        result.best_epoch,
        result.history,
    )
    assert all(torch.equal(v, saved["model"][k]) for k, v in state.model.state_dict().items())
    assert state.optimizer.state_dict()["state"].keys() == saved["optimizer"]["state"].keys()


class Counting:
    """A per-batch hook that counts its calls and keeps the count in the resume point."""

    key = "counting"

    def __init__(self) -> None:
        self.calls = {"before_loss": 0, "before_step": 0, "after_step": 0}

    def before_loss(self, model: Any, batch: Any) -> None:
        self.calls["before_loss"] += 1

    def before_step(self, model: Any) -> None:
        self.calls["before_step"] += 1

    def after_step(self, model: Any) -> None:
        self.calls["after_step"] += 1

    def state_dict(self) -> dict[str, Any]:
        return dict(self.calls)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = dict(state)


def test_a_batch_hook_runs_around_every_step_and_joins_the_resume_point(tmp_path):
    from runner.train.engines import NativeEngine

    job = _job(tmp_path, epochs=1)
    hook = Counting()
    state = TrainingState(**{**vars(_state(job)), "hooks": (hook,)})
    engine = NativeEngine(job, state, job.x, job.y, torch.autocast("cpu", enabled=False))
    engine.run_epoch(0, torch.Generator().manual_seed(0))
    batches = -(-len(job.x) // 128)
    assert hook.calls == {"before_loss": batches, "before_step": batches, "after_step": batches}
    state.save(tmp_path / "state.pt", state.weights())
    again = Counting()
    TrainingState(**{**vars(_state(job)), "hooks": (again,)}).restore(tmp_path / "state.pt", CPU)
    assert again.calls == hook.calls


def test_the_checklist_measures_each_probe_once_in_the_order_of_the_checks():
    from digits_model import trained

    model, data = trained()
    ctx = EvalContext(model, data.x_test, data.y_test, LINF_01, 10,
                      evaluation(batch_size=512, checklist_n=16), log=lambda _: None)  # fmt: skip
    evidence = Evidence(ctx.first(16), planned=planned(ctx.first(16)))
    items = run_checklist(ctx, evidence)
    # four checks read seven accuracies: clean, FGSM, PGD-20, PGD-50 at a large eps, PGD-40,
    # PGD-20 with two restarts and Square, each measured once, in this order; the PGD probes at
    # one setting come from one run (PGD-20's request ran PGD-40 and the second restart too)
    probes = list(evidence.accuracy)
    assert len(items) == len(CHECKS)
    assert [(p.kind, p.steps, p.restarts) for p in probes] == [
        ("clean", 0, 1), ("fgsm", 0, 1), ("pgd", 20, 1), ("pgd", 50, 1), ("pgd", 40, 1),
        ("pgd", 20, 2), ("square", 0, 1),
    ]  # fmt: skip
    assert items[0]["evidence"]["pgd20"] == items[2]["evidence"]["pgd20"] == evidence[probes[2]]
    assert len(evidence.runs) == 2  # two PGD settings: the threat's and the large eps
