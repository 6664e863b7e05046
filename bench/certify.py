"""Speed of advrun's batched randomized-smoothing certification against ART's ``certify``.

    .venv/bin/python bench/certify.py [--models digits,cifar] [--examples 10] [--n 100000]
        [--n0 100] [--batch 4096] [--art-batch 32] [--threads 1] [--out FILE]

For each model, on the same test examples, at the same sigma, n0, n and alpha, in one process with
``--threads`` torch threads (timings are wall clock; compare the ratios, measured in the same
process on the same inputs):

1. a bare loop: the same number of forward passes (examples x (n0 + n) noisy inputs, ``--batch``
   per pass) with the noise drawn by one ``torch.randn`` per batch and nothing counted: the floor
   any implementation pays for its forward passes;
2. advrun's CERTIFY (``runner.certify.run.certify_model``, PREDICT off): several examples' noise
   samples per forward pass (``--batch`` rows), per-example seeded noise streams, counts on the
   device;
3. ART 1.20's ``PyTorchRandomizedSmoothing.certify(x, n, batch_size)``: a Python loop over the
   examples, each drawing its n0 + n noisy copies with NumPy and predicting them through the
   classifier in batches of ``--art-batch`` (its default 32), and once more with ``--batch``.

Reported: seconds per example of each, advrun's speed-up over ART at both ART batch sizes, advrun
against the bare loop (its overhead), and both certified accuracies at radius 0 (a sanity check;
tests/integration/test_certify_art.py is the statistical comparison).

Models: ``linear`` (a linear classifier: the per-sample cost is the noise alone), ``mlp`` (one
hidden layer of 64) and ``cnn`` (the small CNN, about 2.3 MFLOP per input) on
the embedded 8x8 digits, each trained for 4 epochs on noisy inputs; ``cifar``: the small CNN
(width 0.25) on random 3x32x32 inputs, untrained (speed only: its certified accuracy means
nothing). The ratio to ART grows as a forward pass gets cheaper than ART's per-batch and
per-example overhead (NumPy noise in float64, copies, a classifier call per batch), i.e. for
small models and on GPUs; when the model's own compute dominates on a CPU, no implementation
can be much faster than the bare loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.certify.run import CertifyContext, certify_model  # noqa: E402
from runner.execute.prepare import prepare  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.spec.certify import CertifySpec  # noqa: E402
from runner.spec.core import DataSpec  # noqa: E402

SIGMA, ALPHA = 0.25, 0.001


def digits_model(arch: str, kwargs: dict) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    data = prepare(DataSpec(dataset="digits"), (0.0, 1.0), torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(arch, data.input_shape, data.num_classes, kwargs)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(4):
        perm = torch.randperm(len(data.x_train))
        for i in range(0, len(perm), 64):
            b = perm[i : i + 64]
            x = data.x_train[b] + SIGMA * torch.randn_like(data.x_train[b])  # noise-trained
            loss = F.cross_entropy(model(x), data.y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data.x_test, data.y_test


def cifar_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("small_cnn", (3, 32, 32), 10, {"width": 0.25})
    x = torch.rand(64, 3, 32, 32)
    return model.eval(), x, torch.randint(0, 10, (64,))


MODELS = {
    "linear": lambda: digits_model("mlp", {"hidden": []}),
    "mlp": lambda: digits_model("mlp", {"hidden": [64]}),
    "cnn": lambda: digits_model("small_cnn", {}),
    "cifar": cifar_model,
}


@torch.inference_mode()
def bare_loop(model, x: torch.Tensor, samples: int, batch: int) -> float:
    """Forward passes of ``samples`` noisy copies of each example, ``batch`` rows a pass, the
    noise one ``torch.randn`` a pass: the least any implementation does."""
    t0 = time.perf_counter()
    for xi in x:
        for start in range(0, samples, batch):
            rows = min(batch, samples - start)
            model(xi + SIGMA * torch.randn((rows, *x.shape[1:]))).argmax(1)
    return time.perf_counter() - t0


def ours(model, x, y, args) -> tuple[float, float]:
    cfg = CertifySpec(sigma=[SIGMA], n0=args.n0, n=args.n, alpha=ALPHA, predict_n=0,
                      n_examples=len(x), batch_size=args.batch, radii=[0.0])  # fmt: skip
    ctx = CertifyContext(model, x, y, 10, (0.0, 1.0), cfg, log=lambda s: None)
    t0 = time.perf_counter()
    out = certify_model(ctx)
    return time.perf_counter() - t0, out.summaries[0]["curve"][0]["accuracy"]


def art(model, x, y, args, batch: int) -> tuple[float, float]:
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    rs = PyTorchRandomizedSmoothing(
        model, torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
        clip_values=(0.0, 1.0), device_type="cpu", sample_size=args.n0, scale=SIGMA, alpha=ALPHA,
    )  # fmt: skip
    np.random.seed(0)
    t0 = time.perf_counter()
    pred, _ = rs.certify(x.numpy(), n=args.n, batch_size=batch)
    return time.perf_counter() - t0, float(np.mean(pred == y.numpy()))


def bench(name: str, args) -> dict:
    model, x, y = MODELS[name]()
    x, y = x[: args.examples], y[: args.examples]
    k = len(x)
    bare = bare_loop(model, x, args.n0 + args.n, args.batch)
    t_ours, acc_ours = ours(model, x, y, args)
    t_art, acc_art = art(model, x, y, args, args.art_batch)
    t_art_b, _ = art(model, x, y, args, args.batch) if args.batch != args.art_batch else (t_art, 0)
    row = {
        "model": name, "input": list(x.shape[1:]), "examples": k, "n0": args.n0, "n": args.n,
        "batch": args.batch, "art_batch": args.art_batch, "threads": torch.get_num_threads(),
        "s_per_example": {"bare": bare / k, "advrun": t_ours / k, "art": t_art / k,
                          f"art_batch_{args.batch}": t_art_b / k},
        "speedup_vs_art": t_art / t_ours, f"speedup_vs_art_batch_{args.batch}": t_art_b / t_ours,
        "advrun_vs_bare": t_ours / bare,
        "certified_accuracy_r0": {"advrun": acc_ours, "art": acc_art},
    }  # fmt: skip
    print(
        f"{name} {tuple(x.shape[1:])}, {k} examples, n0 {args.n0}, n {args.n}: per example "
        f"bare {bare / k:.3f}s, advrun {t_ours / k:.3f}s, ART(batch {args.art_batch}) "
        f"{t_art / k:.3f}s, ART(batch {args.batch}) {t_art_b / k:.3f}s -> advrun "
        f"{t_art / t_ours:.1f}x faster than ART's default, {t_art_b / t_ours:.1f}x at the same "
        f"batch; {t_ours / bare:.2f}x the bare loop; certified@0 advrun {acc_ours:.3f} ART "
        f"{acc_art:.3f}",
        flush=True,
    )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="linear,mlp,cnn,cifar")
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--batch", type=int, default=4096, help="advrun's (and the bare loop's) rows")
    p.add_argument("--art-batch", type=int, default=32, help="ART's batch_size (its default 32)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(m, args) for m in args.models.split(",")]
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
