"""Attack-strength mode: search an attack's parameters to minimise a trained model's accuracy.

The target run of the matrix is trained (and evaluated) first if it is not done; each trial then
attacks its checkpoint on the evaluation examples at the fixed threat eps. Every trial's
adversarial examples are checked to lie in the threat model, so each trial's accuracy is a valid
upper bound on the model's robust accuracy, and the minimum over trials is one too.
"""

from __future__ import annotations

import optuna
import torch
from torch import Tensor, nn

from runner.attacks import native
from runner.attacks.pgd import PGDAttack
from runner.errors import AdvrunError
from runner.spec.attacks import AttackBase
from runner.tune.build import Infeasible, attack_config, target_run
from runner.tune.objective import TuneContext, run_lock
from runner.tune.storage import Gate, worker_tag
from runner.tune.study import suggest


def _others_max(logits: Tensor, y: Tensor) -> Tensor:
    return logits.scatter(1, y[:, None], float("-inf")).amax(1)


def cw_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Carlini-Wagner margin, summed: best other logit minus the true logit (ascend it)."""
    return (_others_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)).sum()


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Croce & Hein's difference of logits ratio, summed (scale invariant; ascend it)."""
    top = logits.sort(1, descending=True).values
    margin = _others_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)
    return (margin / (top[:, 0] - top[:, 2] + 1e-12)).sum()


LOSSES = {"ce": None, "cw": cw_loss, "dlr": dlr_loss}  # None: native PGD's cross-entropy


def run_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    cfg: AttackBase,
    pr: tuple[float, float],
    k: int,
    pgd_loss: str = "ce",
) -> Tensor:
    """Adversarial examples of ``cfg``; PGD with a searched loss runs natively on the device."""
    lo, hi = pr
    model.eval()
    if isinstance(cfg, PGDAttack) and pgd_loss != "ce":
        bs = cfg.batch_size or 512
        parts = [
            native.pgd(
                model,
                x[i : i + bs],
                y[i : i + bs],
                cfg.eps,
                cfg.step_size,
                cfg.steps,
                cfg.norm,
                lo,
                hi,
                cfg.random_start,
                cfg.restarts,
                loss_fn=LOSSES[pgd_loss],
                eot_iter=cfg.eot_iter,
            )  # fmt: skip
            for i in range(0, len(x), bs)
        ]
        x_adv = torch.cat(parts)
    else:
        from runner.attacks.runner import generate

        x_adv = generate(model, x, y, cfg, pr, k)
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if cfg.norm == "linf" else d.norm(dim=1)
    slack = 1e-5 * max(1.0, hi - lo)
    if dist.max().item() > float(cfg.eps) * (1 + 1e-5) + slack or not (
        lo - slack <= x_adv.min().item() and x_adv.max().item() <= hi + slack
    ):
        raise AdvrunError(
            f"searched attack {cfg.name} left the threat model; refusing its accuracy"
        )
    return x_adv


class AttackObjective:
    """Minimise robust accuracy of the target run's model over the attack's parameters."""

    def __init__(self, ctx: TuneContext, gate: Gate) -> None:
        from runner.device import select_device
        from runner.execute import execute_run
        from runner.execute.prepare import prepare
        from runner.models import build_for_spec
        from runner.train.state import load_checkpoint

        self.ctx, self.gate = ctx, gate
        self.spec = ctx.loaded.spec
        self.tune = self.spec.tune
        self.current: int | None = None
        self.run = target_run(self.spec, ctx.loaded.data)
        with run_lock(ctx, self.run.id) as claim:  # trained (and evaluated) if needed
            execute_run(self.run, ctx.store, ctx.opts, claim=claim)
        run = self.run
        self.device = select_device(ctx.opts.device)
        self.pr = run.threat.pixel_range
        data = prepare(run.data, self.pr, self.device)
        self.num_classes = data.num_classes
        self.model = build_for_spec(
            run.model, data.input_shape, data.num_classes, run.threat.pixel_range,
            ctx.opts.allow_import,
        ).to(self.device)  # fmt: skip
        ck = ctx.store.run_dir(run) / "checkpoints" / f"{run.eval.checkpoint}.pt"
        if not ck.exists():
            ck = ck.with_name("last.pt")
        self.model.load_state_dict(load_checkpoint(ck, self.device))
        self.model.eval()
        n = run.eval.n or len(data.x_test)
        self.x, self.y = data.x_test[:n], data.y_test[:n]

    def __call__(self, trial: optuna.Trial) -> float:
        from runner.device import seed_everything

        self.gate.release()
        self.current = trial.number
        trial.set_user_attr("worker", worker_tag())
        trial.set_user_attr("run_id", self.run.id)
        params = suggest(trial, self.tune.space)
        try:
            cfg = attack_config(self.spec, self.ctx.loaded.data, params)
        except Infeasible as e:  # pruned, so that the sampler learns to avoid the region
            trial.set_user_attr("infeasible", str(e))
            raise optuna.TrialPruned(f"infeasible: {e}") from None
        seed_everything(
            self.run.seed, self.run.deterministic
        )  # the same random starts for every trial
        loss = str(params.get("loss", "ce"))
        x_adv = run_attack(self.model, self.x, self.y, cfg, self.pr, self.num_classes, loss)
        with torch.no_grad():
            correct = torch.cat(
                [
                    self.model(x_adv[i : i + 512]).argmax(1) == self.y[i : i + 512]
                    for i in range(0, len(x_adv), 512)
                ]
            )
        trial.set_user_attr("n", len(correct))
        return correct.float().mean().item()
