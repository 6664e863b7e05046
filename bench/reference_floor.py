"""The per-example floor of a reference: the original AutoAttack against itself, another seed.

    .venv/bin/python bench/reference_floor.py --model noise [--version rand] [--n 0]
        [--seeds 0,1] [--threads 1] [--model-cache reports/model-cache]

On a random model a method's own verdict is one draw, so ``bench/attacks.py`` judges every method's
final inputs again by the same 101 seeded draws (the majority verdict). Two runs of the same
reference with different seeds then still break different examples: this script measures how many,
so that "broken only by the reference" counts for advrun can be read against what the reference
does to itself. Needs the ``bench`` extra (``make bench-install``). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import masked_models as zoo  # noqa: E402
from bench import references as refs  # noqa: E402
from bench.attacks import compare_draws, draws, rejudged  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="noise", help="one of: " + ", ".join(zoo.ZOO))
    ap.add_argument("--version", default="rand", choices=("rand", "standard"))
    ap.add_argument("--n", type=int, default=0, help="the first N test examples (0: all)")
    ap.add_argument("--seeds", default="0,1", help="two comma-separated seeds")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: default)")
    ap.add_argument("--model-cache", default=str(ROOT / "reports" / "model-cache"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    a, b = (int(s) for s in args.seeds.split(","))
    case = zoo.build(args.model, Path(args.model_cache))
    x, y = (case.x[: args.n], case.y[: args.n]) if args.n else (case.x, case.y)
    out: dict = {"model": args.model, "version": args.version, "n": len(y)}
    judged = {}
    for seed in (a, b):
        t0 = time.perf_counter()
        r = refs.original_autoattack(case.model, x, y, case.eps, args.version, case.pixel_range,
                                     seed=seed)  # fmt: skip
        judged[seed] = draws(case.model, r.x_adv, y)
        out[f"seed {seed}"] = {"accuracy": float(r.correct.mean()),
                               "seconds": round(time.perf_counter() - t0, 1),
                               **rejudged(judged[seed])}  # fmt: skip
    d = compare_draws(judged[a], judged[b])  # its "advrun" is the seed-a run, "ref" the seed-b one
    out[f"seed {a} vs seed {b}"] = {
        f"broken only by seed {a}": d["only_advrun"],
        f"broken only by seed {b}": d["only_ref"],
        "expected_difference": d["expected_difference"],
        "expected_difference_se": d["expected_difference_se"],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
