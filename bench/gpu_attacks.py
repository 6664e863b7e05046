"""advrun's worst-case suite on one device against torchattacks' and the original AutoAttack,
on the same model and inputs: seconds and robust accuracy of each.

    python3 bench/gpu_attacks.py --device cuda --out FILE [--size gpu|toy] [--n N]

Part 3 of bench/gpu_check.sh (bench/attacks.py is the fuller CPU benchmark; this driver runs on
whatever device it is given). The model: advrun's small CNN on synthetic 32x32x3 images (10
random low-frequency class patterns at random contrast plus pixel noise, as bench/attacks.py's
``cifar`` model) and standard training as there (on bench/attacks.py's CPU figures about a fifth
of its test examples stay robust at this eps, so every stage of AutoAttack has work); Linf eps
8/255. Then, in this order on the same test examples:

1. advrun's suite: the at-threat attacks of specs/audit.yaml as a cascade (``run_suite``), after
   an untimed warm-up on 8 examples (the device's start-up costs are not the suite's);
2. ``torchattacks.AutoAttack(model, norm='Linf', eps, version='standard', n_classes=10, seed=0)``;
3. the original AutoAttack (``pyautoattack.AutoAttack(model, eps, norm='Linf',
   version='standard', seed=0).run_standard_evaluation``);
4. advrun's suite again (the seconds of both runs are kept, the mean is used: a change of load
   on the machine shows).

A reference that is not installed is recorded as skipped with the reason. "Equal strength": the
suite's robust accuracy at most 0.5 point above the reference's. Sizes: ``gpu`` (an H100's
budget of about 90 s: width-1 CNN, 2000 training images for 4 epochs, 1000 test examples) and
``toy`` (a CPU in about a minute: width 0.25, 1000 images for 4 epochs, 16 test examples).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.compile import compile_spec  # noqa: E402
from runner.device import select_device  # noqa: E402
from runner.eval.cascade import run_suite  # noqa: E402
from runner.eval.context import EvalContext  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.spec.core import EvalSpec  # noqa: E402

EPS = 8 / 255
SIZES = {
    "gpu": {"width": 1.0, "n_train": 2000, "epochs": 4, "n": 1000, "batch": 500},
    "toy": {"width": 0.25, "n_train": 1000, "epochs": 4, "n": 16, "batch": 16},
}


def synthetic(n_train: int, n_test: int, device: torch.device, seed: int = 0):
    """32x32x3 images in [0, 1]: each class a random 4x4x3 pattern upsampled, at a random contrast
    (0.15-0.35) around grey, plus Gaussian pixel noise (sd 0.2)."""
    g = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.rand(10, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear")

    def draw(n: int):
        y = torch.randint(0, 10, (n,), generator=g)
        c = 0.15 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
        x = (0.5 + c * (patterns[y] - 0.5) + 0.2 * torch.randn(n, 3, 32, 32, generator=g)).clamp(
            0, 1
        )
        return x.to(device), y.to(device)

    return draw(n_train), draw(n_test)


def train(model, x, y, epochs: int):
    """Adam 1e-3, batches of 128, standard training, as bench/attacks.py's ``cifar`` model."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        for b in torch.randperm(len(x), device=x.device).split(128):
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for p in model.parameters():  # every method gets a model whose weights need no gradient
        p.requires_grad_(False)
    return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def advrun_suite(model, x, y, attacks, threat, batch: int) -> tuple[float, torch.Tensor]:
    """Seconds and per-example worst-case correctness of advrun's cascade."""
    _sync(x.device)
    t0 = time.perf_counter()
    ctx = EvalContext(model, x, y, threat, 10, EvalSpec(batch_size=batch, suite="cascade"),
                      attacks, lambda _: None)  # fmt: skip
    res = run_suite(ctx)
    _sync(x.device)
    secs = time.perf_counter() - t0
    w = res.examples[res.examples.attack == "worst_case"].sort_values("example")
    return secs, torch.from_numpy(w["correct"].to_numpy(bool).copy())


def _correct(model, x_adv, x, y) -> torch.Tensor:
    """Per-example correctness on ``x_adv``, after checking it stays in the threat model."""
    x_adv = x_adv.detach()
    inside = float((x_adv - x).abs().amax()) <= EPS + 1e-5
    if not (inside and float(x_adv.min()) >= -1e-6 and float(x_adv.max()) <= 1 + 1e-6):
        raise RuntimeError("the reference left the threat model; its accuracy is not comparable")
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).cpu()


def torchattacks_aa(model, x, y, batch: int) -> tuple[float, torch.Tensor]:
    import torchattacks

    aa = torchattacks.AutoAttack(model, norm="Linf", eps=EPS, version="standard", n_classes=10,
                                 seed=0)  # fmt: skip
    _sync(x.device)
    t0 = time.perf_counter()
    x_adv = torch.cat([aa(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)])
    _sync(x.device)
    return time.perf_counter() - t0, _correct(model, x_adv, x, y)


def original_aa(model, x, y, batch: int) -> tuple[float, torch.Tensor]:
    from pyautoattack import AutoAttack

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    aa = AutoAttack(model, eps=EPS, norm="Linf", version="standard", device=x.device, seed=0)
    _sync(x.device)
    t0 = time.perf_counter()
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch)  # (x_adv, its predictions)
    _sync(x.device)
    return time.perf_counter() - t0, _correct(model, x_adv, x, y)


def compare(name: str, fn, ours: torch.Tensor) -> dict:
    """One reference's figures beside the suite's, or why it was skipped (its speed-up is added
    once both runs of the suite are timed)."""
    try:
        secs, ok = fn()
    except ImportError as e:
        return {"skipped": f"{name} is not installed ({e}); make gpu-wheels carries it"}
    return {
        "seconds": secs,
        "robust_accuracy": float(ok.float().mean()),
        "gap_points": 100 * (float(ours.float().mean()) - float(ok.float().mean())),
        "broken_only_by_advrun": int((~ours & ok).sum()),
        "broken_only_by_reference": int((ours & ~ok).sum()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--size", choices=list(SIZES), default=None, help="gpu on CUDA, else toy")
    ap.add_argument("--n", type=int, default=0, help="test examples (0: the size's)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--out", required=True, help="write the figures as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    size = SIZES[args.size or ("gpu" if device.type == "cuda" else "toy")]
    n, batch = args.n or size["n"], size["batch"]
    (xt, yt), (x, y) = synthetic(size["n_train"], n, device)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = build_model("small_cnn", (3, 32, 32), 10, {"width": size["width"]}).to(device)
    model = train(model, xt, yt, size["epochs"])
    train_s = time.perf_counter() - t0
    plan = compile_spec(load_spec(str(ROOT / "specs" / "audit.yaml"), ["threat.eps=8/255"]).spec)
    threat = plan.threat
    attacks = [a for a in plan.attacks if threat.covers(a)]
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    out = {"device": str(device), "torch": torch.__version__, "n": n, "eps": EPS,
           "model": f"small_cnn width {size['width']}, standard training {size['epochs']} epochs on "
                    f"{size['n_train']} synthetic 32x32x3 images",
           "train_s": train_s, "clean_accuracy": clean,
           "advrun": {"attacks": [a.name for a in attacks]}}  # fmt: skip
    advrun_suite(model, x[:8], y[:8], attacks, threat, batch)  # warm-up: CUDA and cuDNN start-up
    t1, ours = advrun_suite(model, x, y, attacks, threat, batch)
    out["torchattacks"] = compare("torchattacks", lambda: torchattacks_aa(model, x, y, batch), ours)
    out["original"] = compare("pyautoattack", lambda: original_aa(model, x, y, batch), ours)
    t2, ours2 = advrun_suite(model, x, y, attacks, threat, batch)
    for ref in ("torchattacks", "original"):  # against the mean of both runs of the suite
        if "seconds" in out[ref]:
            out[ref]["speedup"] = out[ref]["seconds"] / ((t1 + t2) / 2)
    out["advrun"] |= {"seconds": [t1, t2], "robust_accuracy": float(ours.float().mean()),
                      "same_outcome_both_runs": bool((ours == ours2).all())}  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
