"""Speed and strength of advrun's worst-case suite against ART's default AutoAttack.

    .venv/bin/python bench/attacks.py [--art-n 60] [--spec specs/audit.yaml] [--out bench/attacks.json]

On the digits test split with a PGD-trained small CNN (trained here, ~10 s):

1. advrun's worst-case cascade (the at-threat attacks of ``--spec``) on the whole test split;
2. ART's default ``AutoAttack(...).generate`` (only eps and norm set) on the first ``--art-n``
   test examples, its time scaled linearly to the whole split (ART attacks examples
   independently, so time is linear in n; the issue measured 716 s on 397 digits on 2 cores);
3. robust accuracy of both on the same ``--art-n`` examples, paired (examples each one broke);
4. native APGD (CE, DLR) against ART's AutoProjectedGradientDescent on the whole split.

Timings are wall clock in one process on this machine; compare ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner.attacks import native  # noqa: E402
from runner.attacks.art_attacks import make_classifier  # noqa: E402
from runner.attacks.runner import generate  # noqa: E402
from runner.compile import compile_spec  # noqa: E402
from runner.eval.cascade import run_suite  # noqa: E402
from runner.execute.prepare import prepare  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.spec.attacks import APGDAttack  # noqa: E402


def train_pgd_model(data, eps: float, epochs: int = 15, seed: int = 0) -> torch.nn.Module:
    """Madry PGD training (7 steps of eps/4), as the quickstart's madry recipe."""
    torch.manual_seed(seed)
    model = build_model("small_cnn", data.input_shape, data.num_classes)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = data.x_train, data.y_train
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = perm[i : i + 128]
            model.eval()
            xa = native.pgd(model, x[b], y[b], eps, eps / 4, 7)
            model.train()
            loss = torch.nn.functional.cross_entropy(model(xa), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "specs" / "audit.yaml"))
    ap.add_argument("--art-n", type=int, default=60)
    ap.add_argument("--skip-apgd", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--out", default=None)
    ap.add_argument("--model-cache", default=None, help="save/load the trained model here")
    args = ap.parse_args()
    # one intra-op thread: with the small CNN, every op is tiny, and on a shared (oversubscribed)
    # machine OpenMP barriers make 2 threads up to 30x slower; ART and advrun get the same setting
    torch.set_num_threads(args.threads)
    plan = compile_spec(load_spec(args.spec).spec)
    threat, attacks = plan.threat, plan.attacks
    data = prepare(plan.runs[0].data, threat.pixel_range, torch.device("cpu"))
    x, y = data.x_test, data.y_test
    t0 = time.perf_counter()
    cache = Path(args.model_cache) if args.model_cache else None
    if cache and cache.exists():
        model = build_model("small_cnn", data.input_shape, data.num_classes)
        model.load_state_dict(torch.load(cache, weights_only=True))
        model.eval()
    else:
        model = train_pgd_model(data, threat.eps)
        if cache:
            torch.save(model.state_dict(), cache)
    print(f"PGD-trained model ready in {time.perf_counter() - t0:.1f}s; test n={len(x)}")
    out: dict = {
        "n_test": len(x),
        "threat": threat.to_json(),
        "torch_threads": torch.get_num_threads(),
    }

    attacks = [a for a in attacks if threat.covers(a)]  # the worst-case suite only
    n = min(args.art_n, len(x))

    def suite_on(m: int):
        t0 = time.perf_counter()
        res = run_suite(model, x[:m], y[:m], attacks, threat, data.num_classes, 512, "cascade",
                        print)  # fmt: skip
        secs = time.perf_counter() - t0
        w = res.examples[res.examples.attack == "worst_case"].sort_values("example")
        return secs, w["correct"].to_numpy(bool), res.at_threat

    t_full, ours, names = suite_on(len(x))
    out["suite"] = {
        "attacks": names,
        "n": len(x),
        "seconds": t_full,
        "robust_accuracy": ours.mean(),
    }
    print(f"advrun suite {names} on {len(x)}: {t_full:.1f}s, robust accuracy {ours.mean():.4f}")
    if args.art_n > 0:
        from art.attacks.evasion import AutoAttack

        clf = make_classifier(model, tuple(x.shape[1:]), data.num_classes, threat.pixel_range,
                              torch.device("cpu"))  # fmt: skip
        aa = AutoAttack(clf, norm=np.inf if threat.norm == "linf" else 2, eps=threat.eps)
        for sub in aa.attacks:
            sub.verbose = False
        t0 = time.perf_counter()
        x_art = aa.generate(x=x[:n].numpy(), y=y[:n].numpy())
        t_art = time.perf_counter() - t0
        with torch.no_grad():
            art_ok = (model(torch.as_tensor(x_art)).argmax(1) == y[:n]).numpy()
        t_n, ours_n, _ = suite_on(n)  # right after ART: same inputs, same machine load
        out["art_autoattack"] = {
            "n": n, "seconds": t_art, "robust_accuracy": art_ok.mean(),
            "advrun_seconds_same_inputs": t_n, "advrun_robust_accuracy_same_inputs": ours_n.mean(),
            "broken_by_art_only": int((ours_n & ~art_ok).sum()),
            "broken_by_advrun_only": int((~ours_n & art_ok).sum()),
            "speedup_same_inputs": t_art / t_n,
            "art_seconds_scaled_to_test": t_art * len(x) / n,
        }  # fmt: skip
        r = out["art_autoattack"]
        print(
            f"ART AutoAttack on {n}: {t_art:.1f}s, robust accuracy {art_ok.mean():.4f}; advrun "
            f"on the same {n}: {t_n:.1f}s, {ours_n.mean():.4f} (ART-only breaks "
            f"{r['broken_by_art_only']}, advrun-only {r['broken_by_advrun_only']}); speed-up "
            f"{r['speedup_same_inputs']:.1f}x (ART scaled linearly to {len(x)}: "
            f"{r['art_seconds_scaled_to_test']:.0f}s vs advrun {t_full:.1f}s)"
        )
    clf = make_classifier(model, tuple(x.shape[1:]), data.num_classes, threat.pixel_range,
                          torch.device("cpu"))  # fmt: skip

    if not args.skip_apgd:
        out["apgd"] = {}
        for loss in ("ce", "dlr"):
            cfg = APGDAttack(kind="apgd", name=f"apgd_{loss}", eps=threat.eps, norm=threat.norm,
                             loss=loss, targeted=False, n_targets=9, steps=100, restarts=1,
                             batch_size=512)  # fmt: skip
            res = {}
            for engine in ("native", "art"):
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(0)
                xa = generate(model, x, y, cfg.model_copy(update={"engine": engine}),
                              threat.pixel_range, data.num_classes, clf, gen)  # fmt: skip
                with torch.no_grad():
                    acc = float((model(xa).argmax(1) == y).float().mean())
                res[engine] = {"accuracy": acc, "seconds": time.perf_counter() - t0}
            out["apgd"][loss] = res
            print(f"APGD-{loss}: native {res['native']} vs ART {res['art']}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
