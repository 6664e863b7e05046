"""advrun's worst-case suite against the original AutoAttack and torchattacks', per example.

    .venv/bin/python bench/attacks.py [--models pgd,standard,cifar,plain_pgd,...]
        [--refs torchattacks,original] [--n N] [--threads 1] [--spec specs/audit.yaml]
        [--no-signals] [--art-n 0] [--apgd] [--same-layout] [--out FILE]
        [--report-dir reports] [--model-cache reports/model-cache]

Needs the ``bench`` extra (``make bench-install``): ``pyautoattack`` (Croce & Hein's original
AutoAttack) and ``torchattacks``, both installed without dependencies (bench/references.py).

For each model, on the same test examples and eps, in one process with ``--threads`` threads
(every method seeded the same way):

1. advrun's worst case: the at-threat attacks of ``--spec`` as a cascade (``run_suite``), timed
   twice (first and last, so a change of machine load shows; the mean is used), with the attack
   that broke each example first (``broken_by``) and the passes it spent;
2. torchattacks' ``AutoAttack(version='standard')`` (APGD-CE, APGD-T, FAB-T with 10 steps,
   Square 5000);
3. the original ``AutoAttack(version='standard')`` (APGD-CE 100, APGD-T 9x100, FAB-T 9x100,
   Square 5000) with the stage that broke each example and its own warnings; on randomized
   models also ``version='rand'`` (APGD-CE and APGD-DLR with 20 EoT iterations);
4. unless ``--no-signals``: what advrun's checklist said (all examples), each attack of the suite
   on its own (``suite: independent``), and larger budgets run on advrun's survivors
   (``escalations``: Square 1000/5000, APGD-CE 5 restarts, APGD-DLR, APGD-T 9x100, FAB-T), the
   evidence for the escalation rule of bench/ESCALATION.md.

Printed: one table (robust accuracy of each, examples broken only by advrun / only by each
reference, seconds); on a randomized model each method's own verdict is one draw per stage, so the
final inputs are judged again by 101 seeded draws (the same for every method): their expected
accuracy, and the only-by counts under the majority verdict (an example is broken when its final
input is misclassified in most draws: a property of the input). Written:
``reports/bench_attacks.json`` and ``.md`` (``--report-dir``) and ``--out``. Models: the three
of the bench before issue 17 (``pgd``, ``standard``: advrun's small CNN on digits at eps 0.1;
``cifar``: synthetic 32x32x3 at 8/255) and the zoo of bench/masked_models.py (third-party-style
and masked models built by plain PyTorch loops). On a CPU advrun runs the model channels-last;
``--same-layout`` gives torchattacks that layout too. ``--art-n N`` adds ART's AutoAttack on the
first N examples of ``pgd``; ``--apgd`` compares native APGD with ART's.
Timings are wall clock: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import advrun_api as adv  # noqa: E402
from bench import bench_report as report  # noqa: E402
from bench import masked_models as zoo  # noqa: E402
from bench import references as refs  # noqa: E402

MODELS = adv.TODAY + zoo.ZOO
REFS = ("torchattacks", "original")


def build(which: str, args) -> zoo.Case:
    if which in adv.TODAY:
        return adv.build_today(which, args.spec, args.cache)
    return zoo.build(which, args.cache)


def clean_draws(model, x, y, k: int = 20) -> dict[str, float]:
    """Clean accuracy over k forward passes: the noise floor of a randomized model's verdicts."""
    torch.manual_seed(0)
    with torch.no_grad():
        ok = torch.stack([model(x).argmax(1) == y for _ in range(k)]).float()
    return {"draws": k, "mean": float(ok.mean()), "sd": float(ok.mean(1).std()),
            "ever_wrong": float((ok.min(0).values == 0).float().mean())}  # fmt: skip


DRAWS = 101
"""Forward draws that judge a randomized model's final inputs (odd: a majority has no ties)."""


def draws(model, x_adv, y, k: int = DRAWS) -> np.ndarray:
    """Per example, the fraction of k seeded forward draws that classify ``x_adv`` correctly:
    a property of the input, where each method's own verdict is one draw per stage. Every
    method's inputs are judged by the same seeded draws (paired)."""
    torch.manual_seed(1)
    with torch.no_grad():
        ok = torch.stack([model(x_adv).argmax(1) == y for _ in range(k)]).float()
    return ok.mean(0).cpu().numpy()


def rejudged(frac: np.ndarray) -> dict[str, float]:
    """Expected accuracy and accuracy by majority vote (correct in more than half the draws)."""
    return {"draws": DRAWS, "expected": float(frac.mean()), "majority": float((frac > 0.5).mean())}


def compare_draws(ours: np.ndarray, ref: np.ndarray) -> dict[str, float | int]:
    """Per example under the majority verdict (broken: misclassified in most draws), and the
    paired difference of expected accuracy (advrun - reference) with its standard error."""
    d = ours - ref
    return {**compare(ours > 0.5, ref > 0.5), "expected_difference": float(d.mean()),
            "expected_difference_se": float(d.std(ddof=1) / len(d) ** 0.5)}  # fmt: skip


def compare(ours: np.ndarray, ref: np.ndarray) -> dict[str, int]:
    return {"only_advrun": int((~ours & ref).sum()), "only_ref": int((ours & ~ref).sum())}


def stage_counts(labels: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(labels[mask].astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def run_references(case: zoo.Case, args) -> dict[str, tuple[refs.RefResult, dict]]:
    """Each reference's result and the passes it spent (in examples)."""
    x, y, eps, pr, model = case.x, case.y, case.eps, case.pixel_range, case.model
    todo = []
    if "torchattacks" in args.refs:
        todo.append(("torchattacks", lambda: refs.torchattacks_autoattack(
            model, x, y, eps, pr, channels_last=args.same_layout)[0]))  # fmt: skip
    if "original" in args.refs:
        todo.append(
            ("original", lambda: refs.original_autoattack(model, x, y, eps, "standard", pr))
        )
        if case.randomized:
            todo.append(("original_rand",
                         lambda: refs.original_autoattack(model, x, y, eps, "rand", pr)))  # fmt: skip
    out = {}
    for name, run in todo:
        counter = adv.PassCounter(model)
        try:
            res = run()
        finally:
            counter.close()
        out[name] = (res, counter.as_dict())
    return out


def signals(case: zoo.Case, attacks, threat, first: adv.AdvrunResult) -> dict:
    """The checklist, each attack alone, and larger budgets on advrun's survivors."""
    model, x, y = case.model, case.x, case.y
    secs, items = adv.checklist(model, x, y, threat)
    torch.manual_seed(0)
    alone = adv.independent(model, x, y, attacks, threat)
    white = [a.name for a in attacks if a.kind != "square"]
    white_ok = np.logical_and.reduce([alone[n] for n in white])
    black_only = {n: int((white_ok & ~alone[n]).sum()) for n in alone if n not in white}
    surv = np.flatnonzero(first.correct)
    esc: dict[str, dict] = {}
    broken_any = np.zeros(len(y), dtype=bool)
    for name, cfg in adv.escalations(threat).items():
        on = surv
        if len(on) == 0:  # nothing left to escalate on (run_suite needs at least one example)
            break
        if name == "square_10000":  # the next rung of the Square ladder, where 5000 still broke
            if not esc["square_5000"]["broken"]:
                continue
            on = np.setdiff1d(surv, esc["square_5000"]["examples"])
        torch.manual_seed(0)
        r = adv.run_advrun(model, x[on], y[on], [cfg], threat)
        broke = on[~r.correct]
        broken_any[broke] = True
        esc[name] = {"attacked": len(on), "broken": len(broke), "seconds": r.seconds,
                     "passes": r.passes, "examples": broke.tolist()}  # fmt: skip
    return {
        "checklist": {i["check"]: {"status": i["status"], **i["evidence"]} for i in items},
        "checklist_seconds": secs,
        "independent_accuracy": {n: float(v.mean()) for n, v in alone.items()},
        "broken_by_black_box_only": black_only,
        "escalations": esc,
        "escalated_correct": first.correct & ~broken_any,
    }


def bench_model(which: str, args) -> dict:
    case = build(which, args)
    if args.n:
        case.x, case.y = case.x[: args.n], case.y[: args.n]
    attacks, threat = adv.suite(args.spec, case.eps)
    model, x, y, n = case.model, case.x, case.y, len(case.y)
    torch.manual_seed(0)
    clean = zoo.accuracy(model, x, y)
    print(f"\n== {which}: {n} test examples, clean {clean:.4f}, Linf eps {case.eps:.4g}; "
          f"masking: {case.masking}", flush=True)  # fmt: skip
    torch.manual_seed(0)
    ours = adv.run_advrun(model, x, y, attacks, threat, keep_adv=case.randomized, escalated=True)
    ref = run_references(case, args)
    torch.manual_seed(0)
    ours2 = adv.run_advrun(model, x, y, attacks, threat)  # the fast suite alone, timed again
    r: dict = {
        "n": n, "eps": case.eps, "masking": case.masking, "randomized": case.randomized,
        "clean_accuracy": clean,
        "advrun": {
            "attacks": [a.name for a in attacks],
            # [suite + checklist + escalation, the fast suite alone (a second run)]
            "seconds": [ours.seconds, ours2.seconds],
            "phase_seconds": ours.phase_seconds,
            "robust_accuracy": float(ours.correct.mean()),
            "fast_robust_accuracy": float(ours.fast_correct.mean()),
            "robust_accuracy_rerun": float(ours2.correct.mean()),
            "passes": ours.passes,
            "per_attack": ours.info,
            "escalation": ours.escalation,
        },
    }  # fmt: skip
    if case.randomized:
        r["clean_draws"] = clean_draws(model, x, y)
        ours_draws = draws(model, ours.x_adv, y)
        r["advrun"]["rejudged"] = rejudged(ours_draws)
    every = ours.correct.copy()
    for name, (res, passes) in ref.items():
        every &= res.correct
        c = compare(ours.correct, res.correct)
        r[name] = {
            "seconds": res.seconds, "robust_accuracy": float(res.correct.mean()), "passes": passes,
            "stage_seconds": res.stage_seconds,
            **c, "stage_broken": res.stage_broken, "warnings": res.warnings,
            "only_ref_by_stage": stage_counts(res.stage, ours.correct & ~res.correct),
            "only_advrun_by_stage": stage_counts(ours.broken_by, ~ours.correct & res.correct),
            # the fast suite (before escalation) against this reference
            "only_ref_fast": int((ours.fast_correct & ~res.correct).sum()),
        }  # fmt: skip
        if case.randomized:  # the same comparison by verdicts that are properties of inputs
            theirs = draws(model, res.x_adv, y)
            r[name]["rejudged"] = rejudged(theirs)
            r[name]["majority"] = compare_draws(ours_draws, theirs)
    r["all_methods_robust_accuracy"] = float(every.mean())
    if not args.no_signals:
        s = signals(case, attacks, threat, ours)
        esc_ok = s.pop("escalated_correct")
        r["signals"] = s
        r["escalated_robust_accuracy"] = float(esc_ok.mean())
        for name, (res, _) in ref.items():
            r[name]["only_ref_after_escalation"] = int((esc_ok & ~res.correct).sum())
    for line in report.model_lines(which, r):
        print("  " + line)
    if which == "pgd" and args.art_n > 0:
        r["art_autoattack"] = adv.art_autoattack(model, x, y, attacks, threat, args.art_n)
    if which == "pgd" and args.apgd:
        r["apgd"] = adv.apgd_vs_art(model, x, y, threat)
    return r


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS)
    )
    ap.add_argument("--refs", default=",".join(REFS), help="comma-separated: " + ", ".join(REFS))
    ap.add_argument("--n", type=int, default=0, help="the first N test examples (0: all)")
    ap.add_argument("--spec", default=str(ROOT / "specs" / "audit.yaml"))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: default)")
    ap.add_argument("--no-signals", action="store_true",
                    help="skip the checklist, the independent suite and the escalation probes")  # fmt: skip
    ap.add_argument("--art-n", type=int, default=0, help="ART's AutoAttack on this many examples")
    ap.add_argument("--apgd", action="store_true", help="native APGD against ART's")
    ap.add_argument("--same-layout", action="store_true",
                    help="give torchattacks the model in channels-last layout too, as advrun runs "
                    "it on a CPU: the speed-up then compares the attacks alone")  # fmt: skip
    ap.add_argument("--resume", action="store_true",
                    help="keep the models already in --report-dir's bench_attacks.json")  # fmt: skip
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    ap.add_argument("--report-dir", default=str(ROOT / "reports"),
                    help="write bench_attacks.json and bench_attacks.md here ('' : do not)")  # fmt: skip
    ap.add_argument("--model-cache", default=str(ROOT / "reports" / "model-cache"),
                    help="save/load the trained models here ('': train every time)")  # fmt: skip
    args = ap.parse_args(argv)
    args.cache = Path(args.model_cache) if args.model_cache else None
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.refs = [m.strip() for m in args.refs.split(",") if m.strip()]
    for given, allowed, what in ((args.models, MODELS, "model"), (args.refs, REFS, "reference")):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            ap.error(f"unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}")
    return args


def save(out: dict, args) -> list[Path]:
    """Write the figures so far (after every model: a long run killed keeps what it finished)."""
    text = json.dumps(out, indent=2, default=float) + "\n"
    paths = [Path(args.out)] if args.out else []
    if args.report_dir:
        d = Path(args.report_dir)
        d.mkdir(parents=True, exist_ok=True)
        paths += [d / "bench_attacks.json", d / "bench_attacks.md"]
    for p in paths:
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(report.document(out) if p.suffix == ".md" else text)
        tmp.replace(p)
    return paths


def main(argv=None) -> None:
    args = parse(argv)
    # one intra-op thread: with these small CNNs every op is tiny, and on a shared machine OpenMP
    # barriers make 2 threads many times slower; every engine gets the same setting
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {"torch_threads": torch.get_num_threads(), "spec": args.spec, "models": {}}
    kept = Path(args.report_dir) / "bench_attacks.json" if args.report_dir else None
    if args.resume and kept is not None and kept.exists():
        out["models"] = json.loads(kept.read_text())["models"]
        print(f"resumed: {', '.join(out['models'])} kept from {kept}")
    paths: list[Path] = []
    for which in args.models:
        if which in out["models"]:
            continue
        out["models"][which] = bench_model(which, args)
        paths = save(out, args)
    print("\n" + "\n".join(report.table_lines(out["models"])))
    if paths:
        print("\nwrote " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
