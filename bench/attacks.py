"""Speed and strength of advrun's worst-case suite against torchattacks' AutoAttack (and ART's).

    .venv/bin/python bench/attacks.py [--models pgd,standard,cifar] [--threads 1]
        [--spec specs/audit.yaml] [--art-n 0] [--apgd] [--out FILE] [--model-cache DIR]

Needs torchattacks, the ``bench`` extra, installed without its dependencies: its metadata asks
for torchvision, which does not install beside this project's torch; the AutoAttack path
(APGD, APGD-T, FAB, Square) imports only torch, numpy and scipy (``make bench-install``).

For each model, on the same test examples, in one process with ``--threads`` torch threads:

1. advrun's worst case: the at-threat attacks of ``--spec`` as a cascade (``run_suite``), timed
   twice (before and after the baseline, so a change of machine load shows; the mean is used);
2. ``torchattacks.AutoAttack(model, norm='Linf', eps=..., version='standard', n_classes=10,
   seed=0)``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), 10 steps each, Square with 5000
   queries, each attacking what the previous left;
3. robust accuracy of both, the per-example comparison (broken only by advrun / only by
   AutoAttack), the speed-up, and forward/backward passes per example (``PassCounter``).

Models (trained here in seconds, or loaded from ``--model-cache``):

- ``pgd``: small CNN, Madry PGD training (7 steps of eps/4), digits, Linf eps 0.1;
- ``standard``: the same CNN with standard training (weak robustness), digits, Linf eps 0.1;
- ``cifar``: a small CNN (width 0.25) on 32x32x3 synthetic images (10 random low-frequency
  class patterns under random contrast and pixel noise), standard training for 4 epochs,
  Linf eps 8/255.

On a CPU advrun runs the model with channels-last weights (faster convolutions and pools,
the same logits); ``--same-layout`` gives torchattacks that layout too, so that the speed-up
measures the attacks alone. ``--art-n N`` adds ART's default ``AutoAttack(...).generate`` on the first N examples of the
PGD model (about 2 s per example here); ``--apgd`` compares native APGD with ART's.
Timings are wall clock; compare the ratios, measured in the same process on the same inputs.
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

from runner.attacks import native  # noqa: E402
from runner.compile import compile_spec  # noqa: E402
from runner.eval.cascade import run_suite  # noqa: E402
from runner.eval.context import EvalContext  # noqa: E402
from runner.execute.prepare import prepare  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.passes import PassCounter  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.spec.core import EvalSpec  # noqa: E402

MODELS = ("pgd", "standard", "cifar")


def train(model, x, y, eps: float, epochs: int, adversarial: bool, seed: int = 0):
    """Adam 1e-3, batches of 128; Madry PGD (7 steps of eps/4) when ``adversarial``."""
    torch.manual_seed(seed)  # batches and PGD's random starts
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = perm[i : i + 128]
            model.eval()
            xb = native.pgd(model, x[b], y[b], eps, eps / 4, 7) if adversarial else x[b]
            model.train()
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def synthetic_cifar(n_train: int = 2000, n_test: int = 300, seed: int = 0):
    """32x32x3 images in [0, 1]: each of 10 classes a random 4x4x3 pattern upsampled, shown
    at a random contrast (0.15-0.35) around grey, plus Gaussian pixel noise (sd 0.2)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(10, 3, 4, 4, generator=g)
    patterns = F.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)

    def draw(n: int):
        y = torch.randint(0, 10, (n,), generator=g)
        c = 0.15 + 0.2 * torch.rand(n, 1, 1, 1, generator=g)
        x = 0.5 + c * (patterns[y] - 0.5) + 0.2 * torch.randn(n, 3, 32, 32, generator=g)
        return x.clamp(0, 1), y

    return draw(n_train), draw(n_test)


def build(which: str, spec: str, cache: Path | None):
    """(model, x_test, y_test, eps, resolved at-threat attacks, threat) for one bench model."""
    eps_override = ["threat.eps=8/255"] if which == "cifar" else []
    plan = compile_spec(load_spec(spec, eps_override).spec)
    threat = plan.threat
    if which == "cifar":
        (xt, yt), (x, y) = synthetic_cifar()
        shape, kwargs = (3, 32, 32), {"width": 0.25}
    else:
        data = prepare(plan.runs[0].data, threat.pixel_range, torch.device("cpu"))
        xt, yt, x, y = data.x_train, data.y_train, data.x_test, data.y_test
        shape, kwargs = data.input_shape, {}
    torch.manual_seed(0)  # the same weights whatever ran before in this process
    model = build_model("small_cnn", shape, 10, kwargs)
    path = cache / f"{which}.pt" if cache else None
    if path and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        epochs = 4 if which == "cifar" else 15
        model = train(model, xt, yt, threat.eps, epochs, adversarial=which == "pgd")
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
    attacks = [a for a in plan.attacks if threat.covers(a)]  # the worst-case suite only
    return model, x, y, attacks, threat


def advrun_suite(model, x, y, attacks, threat):
    """Seconds, per-example worst-case correctness, per-attack info, passes."""
    counter = PassCounter(model)
    t0 = time.perf_counter()
    settings = EvalSpec(batch_size=512, suite="cascade")
    res = run_suite(EvalContext(model, x, y, threat, 10, settings, attacks, lambda _: None))
    secs = time.perf_counter() - t0
    counter.close()
    w = res.examples[res.examples.attack == "worst_case"].sort_values("example")
    return secs, w["correct"].to_numpy(bool), res.info, counter.as_dict()


def torchattacks_autoattack(model, x, y, threat, channels_last: bool = False):
    try:
        import torchattacks
    except ImportError:
        sys.exit(
            "bench/attacks.py needs torchattacks: `make bench-install` (pip install --no-deps "
            "torchattacks==3.5.1; its torchvision requirement is not used by AutoAttack)"
        )
    lo, hi = threat.pixel_range
    aa = torchattacks.AutoAttack(model, norm="Linf", eps=threat.eps, version="standard",
                                 n_classes=10, seed=0)  # fmt: skip
    if channels_last:  # the layout advrun's suite uses on a CPU (runner.eval.common.fast_layout)
        model.to(memory_format=torch.channels_last)
    counter = PassCounter(model)
    t0 = time.perf_counter()
    x_adv = aa(x, y)
    secs = time.perf_counter() - t0
    counter.close()
    model.to(memory_format=torch.contiguous_format)
    x_adv = x_adv.detach()
    inside = float((x_adv - x).abs().amax()) <= threat.eps + 1e-5
    if not (inside and float(x_adv.min()) >= lo - 1e-6 and float(x_adv.max()) <= hi + 1e-6):
        sys.exit("torchattacks' AutoAttack left the threat model; its accuracy is not comparable")
    with torch.no_grad():
        ok = (model(x_adv).argmax(1) == y).numpy()
    return secs, ok, counter.as_dict()


def per_example(passes: dict[str, int], n: int) -> str:
    return f"{passes['forward_passes'] / n:.0f} fwd + {passes['backward_passes'] / n:.0f} bwd"


def bench_model(which: str, args) -> dict:
    model, x, y, attacks, threat = build(which, args.spec, args.cache)
    for p in model.parameters():  # both engines get a model whose weights need no gradient
        p.requires_grad_(False)
    n = len(x)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(f"\n== {which}: {n} test examples, clean accuracy {clean:.4f}, Linf eps {threat.eps:.4g}")
    t1, ours, info, passes = advrun_suite(model, x, y, attacks, threat)
    t_aa, aa_ok, aa_passes = torchattacks_autoattack(model, x, y, threat, args.same_layout)
    t2, ours2, _, _ = advrun_suite(model, x, y, attacks, threat)
    t_ours = (t1 + t2) / 2
    only_ours = int((~ours & aa_ok).sum())
    only_aa = int((ours & ~aa_ok).sum())
    for name, i in info.items():
        print(f"  {name:10s} attacked {i['attacked']:4d} broke {i['broken']:4d} "
              f"{i['seconds']:7.2f}s  {per_example(i, max(i['attacked'], 1))} per example")  # fmt: skip
    r = {
        "n": n,
        "eps": threat.eps,
        "clean_accuracy": clean,
        "advrun": {
            "attacks": [a.name for a in attacks],
            "seconds": [t1, t2],
            "robust_accuracy": float(ours.mean()),
            "same_outcome_both_runs": bool((ours == ours2).all()),
            "passes": passes,
            "per_attack": info,
        },
        "torchattacks": {
            "channels_last": args.same_layout,
            "seconds": t_aa,
            "robust_accuracy": float(aa_ok.mean()),
            "passes": aa_passes,
        },  # fmt: skip
        "broken_only_by_advrun": only_ours,
        "broken_only_by_torchattacks": only_aa,
        "speedup": t_aa / t_ours,
        "accuracy_gap_points": 100 * (ours.mean() - aa_ok.mean()),
    }
    print(
        f"  advrun suite: {t1:.1f}s / {t2:.1f}s, robust accuracy {ours.mean():.4f} "
        f"({per_example(passes, n)} per example)\n"
        f"  torchattacks AutoAttack: {t_aa:.1f}s, robust accuracy {aa_ok.mean():.4f} "
        f"({per_example(aa_passes, n)} per example)\n"
        f"  broken only by advrun: {only_ours}, only by AutoAttack: {only_aa}; "
        f"speed-up {r['speedup']:.1f}x; accuracy advrun - AutoAttack "
        f"{r['accuracy_gap_points']:+.2f} points"
    )
    if which == "pgd" and args.art_n > 0:
        r["art_autoattack"] = art_autoattack(model, x, y, attacks, threat, args.art_n)
    if which == "pgd" and args.apgd:
        r["apgd"] = apgd_vs_art(model, x, y, threat)
    return r


def art_autoattack(model, x, y, attacks, threat, m: int) -> dict:
    """ART's default AutoAttack on the first m examples, against advrun's suite on the same."""
    from art.attacks.evasion import AutoAttack

    from runner.attacks.art_attacks import make_classifier

    clf = make_classifier(model, tuple(x.shape[1:]), 10, threat.pixel_range, torch.device("cpu"))
    aa = AutoAttack(clf, norm=np.inf, eps=threat.eps)
    for sub in aa.attacks:
        sub.verbose = False
    t0 = time.perf_counter()
    x_art = aa.generate(x=x[:m].numpy(), y=y[:m].numpy())
    t_art = time.perf_counter() - t0
    with torch.no_grad():
        art_ok = (model(torch.as_tensor(x_art)).argmax(1) == y[:m]).numpy()
    t_ours, ours, _, _ = advrun_suite(model, x[:m], y[:m], attacks, threat)
    print(f"  ART AutoAttack on {m}: {t_art:.1f}s, robust accuracy {art_ok.mean():.4f}; advrun "
          f"{t_ours:.1f}s, {ours.mean():.4f}; speed-up {t_art / t_ours:.1f}x")  # fmt: skip
    return {"n": m, "seconds": t_art, "robust_accuracy": float(art_ok.mean()),
            "advrun_seconds": t_ours, "advrun_robust_accuracy": float(ours.mean())}  # fmt: skip


def apgd_vs_art(model, x, y, threat) -> dict:
    from runner.attacks.apgd import APGDAttack
    from runner.attacks.art_attacks import make_classifier
    from runner.attacks.runner import generate

    clf = make_classifier(model, tuple(x.shape[1:]), 10, threat.pixel_range, torch.device("cpu"))
    out = {}
    for loss in ("ce", "dlr"):
        cfg = APGDAttack(kind="apgd", name=f"apgd_{loss}", eps=threat.eps, norm=threat.norm,
                         loss=loss, steps=100, batch_size=512)  # fmt: skip
        res = {}
        for engine in ("native", "art"):
            t0 = time.perf_counter()
            xa = generate(model, x, y, cfg.model_copy(update={"engine": engine}),
                          threat.pixel_range, 10, clf, torch.Generator().manual_seed(0))  # fmt: skip
            with torch.no_grad():
                acc = float((model(xa).argmax(1) == y).float().mean())
            res[engine] = {"accuracy": acc, "seconds": time.perf_counter() - t0}
        out[loss] = res
        print(f"  APGD-{loss}: native {res['native']} vs ART {res['art']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS)
    )
    ap.add_argument("--spec", default=str(ROOT / "specs" / "audit.yaml"))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: default)")
    ap.add_argument("--art-n", type=int, default=0, help="ART's AutoAttack on this many examples")
    ap.add_argument("--apgd", action="store_true", help="native APGD against ART's")
    ap.add_argument(
        "--same-layout",
        action="store_true",
        help="give torchattacks the model in channels-last layout too, as advrun runs it on a "
        "CPU: the speed-up then compares the attacks alone",
    )
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--model-cache", default=None, help="save/load the trained models here")
    args = ap.parse_args()
    args.cache = Path(args.model_cache) if args.model_cache else None
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    # one intra-op thread: with these small CNNs every op is tiny, and on a shared machine OpenMP
    # barriers make 2 threads many times slower; both engines get the same setting
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {"torch_threads": torch.get_num_threads(), "spec": args.spec, "models": {}}
    for which in models:
        out["models"][which] = bench_model(which, args)
    print("\nmodel     advrun s  torchattacks s  speed-up  robust acc advrun / AutoAttack  "
          "only advrun / only AA")  # fmt: skip
    for which, r in out["models"].items():
        print(f"{which:9s} {np.mean(r['advrun']['seconds']):8.1f} {r['torchattacks']['seconds']:15.1f}"
              f" {r['speedup']:8.1f}x  {r['advrun']['robust_accuracy']:.4f} / "
              f"{r['torchattacks']['robust_accuracy']:.4f}  {r['broken_only_by_advrun']:>12d} / "
              f"{r['broken_only_by_torchattacks']}")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
