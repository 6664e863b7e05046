"""The adversarial test set of one attack of a run's suite, regenerated from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import AdvrunError
from runner.exports.files import manifest_entry, write_export
from runner.exports.source import Loaded
from runner.fsio import sha256_file
from runner.spec.attacks import AttackBase
from runner.store import RunMetrics


def reported_accuracy(metrics: RunMetrics | None, attack: str) -> float | None:
    """The accuracy the run's metrics report for ``attack`` (None if they report none)."""
    return metrics.accuracy(attack) if metrics is not None else None


def check_inside(x, x_adv, eps: float, norm: str, lo: float, hi: float, what: str) -> None:
    """Refuse to export examples outside the threat model (eps-ball and pixel range)."""
    from runner.eval.evaluate import perturbation_norm

    dist = perturbation_norm(x, x_adv, norm)
    slack = 1e-5 * max(1.0, hi - lo)
    if dist.max().item() > eps + slack or x_adv.min() < lo - slack or x_adv.max() > hi + slack:
        raise AdvrunError(f"{what} left its threat model; nothing was exported")


def export_attack(ld: Loaded, attack: AttackBase, out: Path) -> dict[str, Any]:
    """Write the attack's adversarial test set to ``out``; its manifest entry."""
    import torch

    from runner.attacks.runner import generate
    from runner.device import seed_everything
    from runner.eval.evaluate import logits_of

    seed_everything(ld.run.seed, ld.run.deterministic)
    lo, hi = ld.run.threat.pixel_range
    n = ld.run.eval.n or len(ld.data.x_test)
    x, y = ld.data.x_test[:n], ld.data.y_test[:n]
    x_adv = generate(ld.model, x, y, attack, (lo, hi), ld.data.num_classes)
    check_inside(x, x_adv, float(attack.eps), attack.norm, lo, hi, f"attack '{attack.name}'")
    accuracy = float(
        (logits_of(ld.model, x_adv, ld.run.eval.batch_size).argmax(1) == y).float().mean().item()
    )
    meta = {
        "kind": "test",
        "run_id": ld.run.id,
        "attack": attack.model_dump(),
        "threat": ld.run.threat.to_json(),
        "checkpoint": ld.checkpoint.name,
        "checkpoint_sha256": sha256_file(ld.checkpoint),
        "data_sha256": ld.data.sha256,
        "split": "test",
        "n": int(n),
        "accuracy": accuracy,
        "reported_accuracy": reported_accuracy(ld.metrics, attack.name),
    }  # no timestamp inside the file: the same export gives the same bytes and hash
    digest = write_export(out, x_adv, y, torch.arange(int(n)), meta)
    return manifest_entry(ld.run.id, out, digest, meta, attack.name, float(attack.eps), attack.norm)
