"""Time to robustness: the robust accuracy each recipe reaches against what its training cost.

    .venv/bin/python bench/time_to_robustness.py [--stage all|run|co|co-zoo|render]
        [--data digits,synthetic] [--budgets 2,6] [--recipes pgd,free,...] [--tag=-more]
        [--out bench-out/ttr] [--svg FILE] [--table FILE] [--co-data digits] [--co-eps 0.2]
        [--threads 1]

``run``: for each data set, one advrun experiment through the real CLI (``advrun run``): every
recipe of ``RECIPES`` (each with its paper's defaults, all with Adam at lr 3e-3 and batches of
128) at every epoch budget of ``--budgets`` (an ``epochs`` sweep: each run has its own full
learning-rate schedule), the last epoch evaluated on the whole test set by the worst case of the
at-threat attacks of ``specs/audit.yaml`` (FGSM, PGD-20, APGD-CE, APGD-T with 9 targets, Square
with 250 queries, as a cascade). Cost: the run's training wall time (``train_seconds``) and passes
(forward + backward, in examples, ``train_forward_passes`` + ``train_backward_passes``).
Validation is off in these runs (its PGD passes would count as training cost), and with it the
catastrophic-overfitting guard. Writes OUT/ttr-<data>.csv.

Data: ``digits`` (scikit-learn's 8x8 digits, L-inf eps 0.1, ``small_cnn``) and ``synthetic``
(bench/attacks.py's 32x32x3 images: 10 random low-frequency class patterns under random contrast
and pixel noise, 2,000 training and 300 test images, L-inf eps 8/255, ``small_cnn`` at width
0.25, as bench/attacks.py builds it).

The question: which recipe reaches the PGD recipe's robust accuracy (at its largest budget), to
within 1 point, at the smallest cost (passes; seconds)? ``render`` answers it per data set.

``co`` (catastrophic overfitting): plain FGSM (``fgsm_rs`` with ``random_start: false``) with the
guard off and on, FGSM from a random start with the largest step (alpha 2*eps), N-FGSM and
GradAlign, with validation on (PGD-10 on 200 held-out images per epoch, or all of digits' 180), on
``--co-data`` at ``--co-eps`` with a high learning rate. Writes OUT/co.csv and the epochs in
OUT/co-curves.csv.

``co-zoo``: the masked-model zoo's ``fgsm_co`` (bench/masked_models.py: plain FGSM training of a
small CNN on digits, the whole batch, no random start, step eps, eps 0.3, Adam at a constant lr
1e-3, batches of 128, 30 epochs) through advrun: ``fgsm_augment`` with ``ratio: 1`` and the same
optimizer, validation on (PGD-10 on digits' 180 held-out images), the guard off and on
(``overfit_drop: 0.2``, with ``overfit_gap`` at its default 0.3), evaluated at the last epoch (the guard's restored best one where it
fired) by the audit suite. Writes OUT/co-zoo.csv and the epochs in OUT/co-zoo-curves.csv.

``render``: the Markdown table (``--table``) and the figure (``--svg``: robust accuracy against
passes per data set, and the validation PGD accuracy per epoch of the ``co`` runs) from OUT's
CSV files. The stages may run side by side on one OUT (``all`` runs them in turn). Timings are
wall clock on whatever else the machine runs: compare passes first.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from advrun_api import synthetic_cifar  # noqa: E402

from runner.cli import main as advrun  # noqa: E402
from runner.compile import compile_spec  # noqa: E402
from runner.report import svg  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.yamlio import load_yaml  # noqa: E402

ITER = "steps: 7, step_size: eps/4"
RECIPES = {  # name -> fields: each kind with its paper's defaults (single-step: cyclic lr)
    "standard": "kind: standard",
    "fgsm_augment": "kind: fgsm_augment",
    "pgd": f"kind: pgd, {ITER}",
    "pgd-awp": f"kind: pgd, {ITER}, awp: {{gamma: 0.01}}",
    "pgd-ema": f"kind: pgd, {ITER}, ema: {{}}",
    "trades": f"kind: trades, {ITER}",
    "trades-awp": f"kind: trades, {ITER}, awp: {{gamma: 0.005}}",
    "mart": f"kind: mart, {ITER}",
    "fgsm_rs": "kind: fgsm_rs, overfit_drop: null",
    "free": "kind: free, m: 4",
    "n_fgsm": "kind: n_fgsm, overfit_drop: null",
    "grad_align": "kind: grad_align, overfit_drop: null",
}
COMMON = "monitor: {n: 0}, optimizer: {lr: 0.003}"
DATA = {
    "digits": ("{dataset: digits}", "0.1", "{name: cnn, arch: small_cnn}"),
    "synthetic": (
        "{dataset: npz, path: SYN}",
        "8/255",
        "{name: cnn, arch: small_cnn, kwargs: {width: 0.25}}",
    ),
}
ZOO_CO = {  # name -> fields: bench/masked_models.py's fgsm_co through advrun, validation on
    "fgsm (zoo)": "kind: fgsm_augment, ratio: 1.0",
    "fgsm (zoo) + guard": "kind: fgsm_augment, ratio: 1.0, overfit_drop: 0.2",  # overfit_gap 0.3
}
ZOO_COMMON = (
    "epochs: 30, batch_size: 128, optimizer: {name: adam, lr: 0.001}, "
    "schedule: {name: constant}, monitor: {n: 180, steps: 10}"
)
CO_RECIPES = {  # name -> fields, validation on
    "fgsm (plain)": "kind: fgsm_rs, random_start: false, overfit_drop: null",
    "fgsm (plain) + guard": "kind: fgsm_rs, random_start: false, overfit_drop: 0.2",
    "fgsm_rs alpha 2eps": "kind: fgsm_rs, alpha: 2*eps, overfit_drop: null",
    "n_fgsm": "kind: n_fgsm, overfit_drop: null",
    "grad_align": "kind: grad_align, overfit_drop: null",
}

SPEC = """\
name: {name}
seeds: [0]
device: cpu
threads: {threads}
data: {data}
threat: {{norm: linf, eps: {eps}}}
models: [{model}]
recipes:
{recipes}
attacks:
{attacks}
eval: {{checklist: false, bootstrap: 200, checkpoint: last}}
"""


def audit_attacks(eps: str) -> str:
    """specs/audit.yaml's attacks at the threat model (its L2 attacks are outside it)."""
    path = ROOT / "specs" / "audit.yaml"
    plan = compile_spec(load_spec(path).spec)
    inside = {a.name for a in plan.attacks if plan.threat.covers(a)}
    raw, _ = load_yaml(path.read_text(), str(path))
    at_threat = [a for a in raw["attacks"] if a["name"] in inside]
    names = [a["name"] for a in at_threat]
    assert names == ["fgsm", "pgd20", "apgd_ce", "apgd_t", "square"], names
    return "\n".join(
        "  - {" + ", ".join(f"{k}: {v}" for k, v in a.items()) + "}" for a in at_threat
    )


def run_experiment(name: str, data: str, eps: str, model: str, recipes: list[str], out: Path,
                   threads: int) -> pd.DataFrame:  # fmt: skip
    text = SPEC.format(
        name=name, threads=threads, data=data, eps=eps, model=model,
        recipes="\n".join(recipes), attacks=audit_attacks(eps),
    )  # fmt: skip
    path = out / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    code = advrun(["run", str(path), "-o", str(out / name), "-q", "--no-report"])
    if code != 0:
        raise SystemExit(f"advrun run {path} failed ({code})")
    return pd.read_csv(out / name / "results.csv")


def summarise(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One row per run: recipe, epochs, cost, clean and worst-case accuracy with its CI."""
    rows = []
    for rid, g in df.groupby("run_id", sort=False):
        worst, clean = g[g.attack == "worst_case"].iloc[0], g[g.attack == "clean"].iloc[0]
        rows.append({
            "data": dataset, "recipe": worst["recipe"], "epochs": int(worst["hp_epochs"]),
            "passes": int(worst["train_forward_passes"] + worst["train_backward_passes"]),
            "seconds": float(worst["train_seconds"]), "clean": float(clean["accuracy"]),
            "worst_case": float(worst["accuracy"]), "ci_low": float(worst["ci_low"]),
            "ci_high": float(worst["ci_high"]), "n": int(worst["n"]), "run_id": rid,
        })  # fmt: skip
    return pd.DataFrame(rows)


def answer(rows: pd.DataFrame) -> dict[str, object]:
    """The PGD recipe's robust accuracy at its largest budget, and the cheapest runs within 1
    point of it (by passes, by seconds)."""
    pgd = rows[rows.recipe == "pgd"].sort_values("epochs").iloc[-1]
    target = pgd["worst_case"] - 0.01
    reach = rows[rows.worst_case >= target]
    by_passes = reach.sort_values(["passes", "seconds"]).iloc[0]
    by_seconds = reach.sort_values(["seconds", "passes"]).iloc[0]
    return {"pgd": pgd, "target": target, "by_passes": by_passes, "by_seconds": by_seconds}


def cost_panel(rows: pd.DataFrame, title: str) -> str:
    series = []
    for i, (recipe, g) in enumerate(rows.groupby("recipe", sort=False)):
        g = g.sort_values("passes")
        series.append(svg.Series(
            f"{recipe} ({', '.join(str(e) for e in g.epochs)} ep.)", list(g.passes / 1e3),
            list(g.worst_case), color=svg.color(i), dash=i >= len(svg.PALETTE),
        ))  # fmt: skip
    return str(svg.line_plot(series, title, "training passes (thousands of examples, fwd + bwd)",
                             "worst-case robust accuracy", width=760, height=360,
                             ylim=(0.0, 1.0)))  # fmt: skip


def zoo_panel(curves: dict[str, pd.DataFrame], title: str) -> str:
    """Validation clean (solid) and PGD-10 (dashed) accuracy per epoch of the co-zoo runs, and
    FGSM (points) where the guard measured it."""
    series = []
    for i, (name, c) in enumerate(curves.items()):
        series += [
            svg.Series(f"{name}: clean", list(c.epoch), list(c.val_clean), color=svg.color(i)),
            svg.Series(f"{name}: PGD-10", list(c.epoch), list(c.val_robust), color=svg.color(i),
                       dash=True),
        ]  # fmt: skip
        if "val_fgsm" in c and c.val_fgsm.notna().any():  # the guard's FGSM monitor
            series.append(svg.Series(f"{name}: FGSM", list(c.epoch), list(c.val_fgsm),
                                     color=svg.color(i), points_only=True))  # fmt: skip
    return str(svg.line_plot(series, title, "epoch", "validation accuracy", width=760,
                             height=360, ylim=(0.0, 1.0)))  # fmt: skip


def co_panel(curves: dict[str, pd.DataFrame], title: str) -> str:
    series = [
        svg.Series(
            name, list(c.epoch), list(c.val_robust), color=svg.color(i), dash="guard" in name
        )
        for i, (name, c) in enumerate(curves.items())
    ]
    return str(svg.line_plot(series, title, "epoch", "validation PGD-10 accuracy", width=760,
                             height=360, ylim=(0.0, 1.0)))  # fmt: skip


def stack(panels: list[str], width: int = 760, height: int = 360) -> str:
    body = "".join(
        f'<g transform="translate(0,{i * height})">{p}</g>' for i, p in enumerate(panels)
    )
    total = height * len(panels)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total}" width="{width}" '
        f'height="{total}"><rect width="100%" height="100%" fill="white"/>{body}</svg>\n'
    )


def reach_table(g: pd.DataFrame, target: float, pgd: pd.Series) -> list[str]:
    """Per recipe, its cheapest run within 1 point of pgd's robust accuracy: time to robustness."""
    lines = [
        "| recipe | reaches the target at | passes (k) | × pgd's passes | train s |",
        "|---|---|---|---|---|",
    ]
    for recipe, runs in g.groupby("recipe", sort=False):
        hit = runs[runs.worst_case >= target].sort_values("passes")
        if hit.empty:
            lines.append(
                f"| {recipe} | not within {', '.join(map(str, runs.epochs))} epochs | – | – | – |"
            )
            continue
        r = hit.iloc[0]
        lines.append(
            f"| {recipe} | {r.epochs} epochs ({r.worst_case:.3f}) | {r.passes / 1e3:.1f} | "
            f"{r.passes / pgd.passes:.2f} | {r.seconds:.0f} |"
        )
    return [*lines, ""]


def zoo_table(zoo: pd.DataFrame) -> list[str]:
    lines = [
        "**Plain FGSM at eps 0.3** (the zoo's `fgsm_co` through advrun: `fgsm_augment`, "
        "`ratio: 1`, Adam lr 1e-3 constant, 30 epochs; test n = "
        f"{int(zoo.n.iloc[0])}; validation n = 180)",
        "",
        "| run | epochs trained | val PGD: max (epoch) | val PGD: last | val clean: last | guard "
        "| test clean | test FGSM | test FGSM, PGD-20 | worst case [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in zoo.iterrows():
        lines.append(
            f"| {r.recipe} | {r.trained} | {r.best:.3f} ({r.best_epoch}) | {r.last:.3f} | "
            f"{r.last_clean:.3f} | {r.guard} | {r.clean:.3f} | {r.fgsm:.3f} | {r.pgd20:.3f} | "
            f"{r.worst_case:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] |"
        )
    return [*lines, ""]


def table(rows: pd.DataFrame, answers: dict[str, dict], co: pd.DataFrame | None,
          header: str, zoo: pd.DataFrame | None = None) -> str:  # fmt: skip
    lines = [header, ""]
    for dataset, g in rows.groupby("data", sort=False) if len(rows) else []:
        a = answers.get(dataset)
        lines += [
            f"**{dataset}** (n = {int(g.n.iloc[0])} test images; worst case of the audit suite)",
            "",
            "| recipe | epochs | passes (k) | train s | clean | worst case [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in g.iterrows():
            mark = " **≥ target**" if a and r.worst_case >= a["target"] else ""
            lines.append(
                f"| {r.recipe} | {r.epochs} | {r.passes / 1e3:.1f} | {r.seconds:.0f} | "
                f"{r.clean:.3f} | {r.worst_case:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]{mark} |"
            )
        if not a:
            lines.append("")
            continue
        p, bp, bs = a["pgd"], a["by_passes"], a["by_seconds"]
        lines += [
            "",
            f"Target: pgd at {p.epochs} epochs reaches {p.worst_case:.3f}; within 1 point: "
            f">= {a['target']:.3f}. Cheapest run there by passes: **{bp.recipe}** at {bp.epochs} "
            f"epochs ({bp.passes / 1e3:.1f} k passes, {bp.passes / p.passes:.2f}x pgd's; "
            f"{bp.worst_case:.3f}); by seconds: **{bs.recipe}** at {bs.epochs} epochs "
            f"({bs.seconds:.0f} s vs {p.seconds:.0f} s; {bs.worst_case:.3f}).",
            "",
            *reach_table(g, a["target"], p),
        ]
    if co is not None:
        lines += [
            "**Catastrophic overfitting** (validation on, at the large eps)",
            "",
            "| recipe | epochs trained | best val PGD | last val PGD | guard | worst case |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in co.iterrows():
            lines.append(
                f"| {r.recipe} | {r.trained} | {r.best:.3f} | {r.last:.3f} | {r.guard} | "
                f"{r.worst_case:.3f} |"
            )
        lines.append("")
    if zoo is not None:
        lines += zoo_table(zoo)
    return "\n".join(lines)


def co_experiment(out: Path, data: str, eps: str, model: str, epochs: int, lr: float,
                  threads: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:  # fmt: skip
    val_n = 180 if "digits" in data else 200  # digits' validation split holds 180 images
    common = f"epochs: {epochs}, optimizer: {{lr: {lr}}}, monitor: {{n: {val_n}, steps: 10}}"
    return guard_experiment(out, "co", CO_RECIPES, common, data, eps, model, threads)


def guard_experiment(out: Path, name: str, recipes: dict[str, str], common: str, data: str,
                     eps: str, model: str,
                     threads: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:  # fmt: skip
    """Runs with validation on: per run, its epochs (epochs.csv), what the guard did (log.txt)
    and the audit suite's test accuracies (clean, FGSM, worst case)."""
    names = {n: f"{name}{i}" for i, n in enumerate(recipes)}
    lines = [f"  - {{name: {names[n]}, {f}, {common}}}" for n, f in recipes.items()]
    df = run_experiment(name, data, eps, model, lines, out, threads)
    rows, curves = [], {}
    for label, rname in names.items():
        (d,) = [p for p in (out / name / "runs").iterdir() if f"@{rname}@" in p.name]
        epochs_csv = pd.read_csv(d / "epochs.csv")
        curves[label] = epochs_csv
        mine = df[df.recipe == rname].set_index("attack")
        log = (d / "log.txt").read_text()
        guard = "stopped: " + log.split("stopped early: ", 1)[1].split("; restored epoch")[0] if (
            "stopped early" in log) else "did not fire" if "guard" in label else "off"  # fmt: skip
        best = int(epochs_csv.val_robust.idxmax())
        rows.append({
            "recipe": label, "trained": len(epochs_csv), "best": epochs_csv.val_robust.max(),
            "best_epoch": int(epochs_csv.epoch[best]), "last": epochs_csv.val_robust.iloc[-1],
            "last_clean": epochs_csv.val_clean.iloc[-1], "guard": guard,
            "clean": float(mine.loc["clean", "accuracy"]),
            "fgsm": float(mine.loc["fgsm", "accuracy"]),
            "pgd20": float(mine.loc["pgd20", "accuracy"]),  # after FGSM in the cascade
            "worst_case": float(mine.loc["worst_case", "accuracy"]),
            "ci_low": float(mine.loc["worst_case", "ci_low"]),
            "ci_high": float(mine.loc["worst_case", "ci_high"]),
            "n": int(mine.loc["worst_case", "n"]),
        })  # fmt: skip
    return pd.DataFrame(rows), curves


def synthetic_npz(out: Path) -> Path:
    """bench/attacks.py's 32x32x3 set as an npz advrun reads (written atomically: the stages
    may run side by side)."""
    path = out / "synthetic.npz"
    if not path.exists():
        (xt, yt), (xs, ys) = synthetic_cifar()
        tmp = out / f"synthetic.{os.getpid()}.npz"
        np.savez(tmp, x_train=xt.numpy(), y_train=yt.numpy(), x_test=xs.numpy(), y_test=ys.numpy())
        os.replace(tmp, path)
    return path


def run_stage(args: argparse.Namespace, out: Path) -> None:
    """Every chosen recipe at every budget on each data set: OUT/ttr-<data>.csv."""
    budgets = "[" + ", ".join(b.strip() for b in args.budgets.split(",")) + "]"
    chosen = [r.strip() for r in args.recipes.split(",") if r.strip()]
    recipes = [f"  - {{name: {n}, {RECIPES[n]}, epochs: {budgets}, {COMMON}}}" for n in chosen]
    for dataset in [d.strip() for d in args.data.split(",") if d.strip()]:
        data, eps, model = DATA[dataset]
        data = data.replace("SYN", str(synthetic_npz(out)))
        name = f"{dataset}{args.tag}"  # a tagged experiment adds budgets beside the first
        df = run_experiment(name, data, eps, model, recipes, out, args.threads)
        summarise(df, dataset).to_csv(out / f"ttr-{name}.csv", index=False)


def co_stage(args: argparse.Namespace, out: Path) -> None:
    """The catastrophic-overfitting runs: OUT/co.csv and their epochs in OUT/co-curves.csv."""
    data, _, model = DATA[args.co_data]
    data = data.replace("SYN", str(synthetic_npz(out)))
    co, curves = co_experiment(out, data, args.co_eps, model, args.co_epochs, args.co_lr,
                               args.threads)  # fmt: skip
    co.to_csv(out / "co.csv", index=False)
    long = [c.assign(recipe=name) for name, c in curves.items()]
    pd.concat(long, ignore_index=True).to_csv(out / "co-curves.csv", index=False)


def co_zoo_stage(args: argparse.Namespace, out: Path) -> None:
    """The zoo's fgsm_co through advrun: OUT/co-zoo.csv and its epochs in OUT/co-zoo-curves.csv."""
    data, _, model = DATA["digits"]
    zoo, curves = guard_experiment(out, "co-zoo", ZOO_CO, ZOO_COMMON, data, "0.3", model,
                                   args.threads)  # fmt: skip
    zoo.to_csv(out / "co-zoo.csv", index=False)
    long = [c.assign(recipe=name) for name, c in curves.items()]
    pd.concat(long, ignore_index=True).to_csv(out / "co-zoo-curves.csv", index=False)


def machine() -> str:
    cpu = platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = f"{names[0]} ({len(names)} logical CPUs)" if names else cpu
    return f"{cpu}, torch {torch.__version__}, {sys.platform}"


def render_stage(args: argparse.Namespace, out: Path) -> None:
    """The table (``--table``) and the figure (``--svg``) from the stages' CSV files."""
    parts = [pd.read_csv(p) for p in sorted(out.glob("ttr-*.csv"))]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(rows):  # recipes in RECIPES' order, each by budget, whichever stage ran it
        order = {r: i for i, r in enumerate(RECIPES)}
        rows = rows.sort_values(["data", "recipe", "epochs"], key=lambda c: c.map(order).fillna(
            len(order)) if c.name == "recipe" else c, kind="stable", ignore_index=True)  # fmt: skip
    answers, panels = {}, []
    for dataset, g in rows.groupby("data", sort=False) if len(rows) else []:
        if "pgd" in set(g.recipe):
            answers[dataset] = answer(g)
        eps = DATA[dataset][1]
        panels.append(cost_panel(g, f"{dataset} (L-inf {eps}): robust accuracy vs passes"))
    co = None
    if (out / "co.csv").exists():
        co = pd.read_csv(out / "co.csv")
        long = pd.read_csv(out / "co-curves.csv")
        curves = {n: long[long.recipe == n] for n in co.recipe}
        title = f"{args.co_data} (L-inf {args.co_eps}), Adam lr {args.co_lr}: overfitting?"
        panels.append(co_panel(curves, title))
    zoo = None
    if (out / "co-zoo.csv").exists():
        zoo = pd.read_csv(out / "co-zoo.csv")
        long = pd.read_csv(out / "co-zoo-curves.csv")
        curves = {n: long[long.recipe == n] for n in zoo.recipe}
        title = "digits (L-inf 0.3), plain FGSM as the zoo's fgsm_co (Adam 1e-3, 30 ep.)"
        panels.append(zoo_panel(curves, title))
    budgets = {d: sorted(set(g.epochs)) for d, g in rows.groupby("data")} if len(rows) else {}
    header = (
        f"Measured {datetime.date.today().isoformat()} on {machine()}; "
        f"{args.threads} torch thread(s) per run, OMP_NUM_THREADS=1, under `nice` on a machine "
        f"shared with other jobs (wall times are noisy: compare passes first); epoch budgets "
        f"{budgets}; one seed per run."
    )
    text = table(rows, answers, co, header, zoo)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
    if args.svg:
        args.svg.write_text(stack(panels))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stage", default="all", choices=["all", "run", "co", "co-zoo", "render"],
                    help="run: the recipes; co: catastrophic overfitting; co-zoo: plain FGSM as "
                    "the masked-model zoo's fgsm_co; render: table and figure "
                    "from OUT's CSV files (stages may run side by side on one OUT)")  # fmt: skip
    ap.add_argument("--data", default="digits,synthetic")
    ap.add_argument("--budgets", default="2,6", help="epoch budgets (an epochs sweep)")
    ap.add_argument("--tag", default="", help="run: suffix of the experiments' names, for more "
                    "budgets of some recipes beside a first run (render merges them)")  # fmt: skip
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--out", default="bench-out/ttr", type=Path)
    ap.add_argument("--svg", type=Path, default=None, help="write the figure here")
    ap.add_argument("--table", type=Path, default=None, help="write the Markdown table here")
    ap.add_argument("--co-data", default="digits", choices=list(DATA))
    ap.add_argument("--co-eps", default="0.2", help="the co runs' threat eps (a large one)")
    ap.add_argument("--co-epochs", type=int, default=15)
    ap.add_argument("--co-lr", type=float, default=0.01, help="peak of the cyclic schedule")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "run"):
        run_stage(args, out)
    if args.stage in ("all", "co"):
        co_stage(args, out)
    if args.stage in ("all", "co-zoo"):
        co_zoo_stage(args, out)
    if args.stage in ("all", "render"):
        render_stage(args, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
