"""advrun's side of bench/attacks.py: every ``runner`` import of the bench lives here.

The structure work of issue 19 moves ``runner.attacks``, ``runner.eval`` and ``runner.spec``;
this is the one file of the bench to follow them. It runs advrun through its evaluation API as
``advrun eval`` does: the spec's at-threat attacks as a cascade (``run_suite``) and the
evaluation checklist (``run_checklist``).
"""

from __future__ import annotations

import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import runner.eval.context as eval_context  # noqa: E402
import runner.eval.escalation as escalation  # noqa: E402
from bench.masked_models import Case  # noqa: E402
from runner.attacks import native  # noqa: E402
from runner.attacks.apgd import APGDAttack  # noqa: E402
from runner.attacks.fab import FABAttack  # noqa: E402
from runner.attacks.square import SquareAttack  # noqa: E402
from runner.compile import compile_spec  # noqa: E402
from runner.eval.cascade import run_suite  # noqa: E402
from runner.eval.checklist import run_checklist  # noqa: E402
from runner.eval.context import EvalContext  # noqa: E402
from runner.eval.escalation import escalate  # noqa: E402
from runner.execute.prepare import prepare  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.passes import PassCounter  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.spec.core import EvalSpec  # noqa: E402

BATCH = 512
CHECKLIST_N = 256  # the checklist's default sample (eval.checklist_n), as advrun eval runs it
TODAY = ("pgd", "standard", "cifar")  # the three models of the bench before issue 17


@dataclass
class AdvrunResult:
    seconds: float
    correct: np.ndarray  # worst case per example
    broken_by: np.ndarray  # "" (robust), "clean" or the first attack that broke it
    info: dict[str, dict[str, Any]]  # per attack: attacked, broken, seconds, passes
    passes: dict[str, int]
    x_adv: torch.Tensor | None = None  # the input that broke each example (x where none did)
    # escalate=True: the fast suite's worst case, each phase's seconds, the escalation record
    fast_correct: np.ndarray | None = None
    phase_seconds: dict[str, float] | None = None
    escalation: dict[str, Any] | None = None


def context(model, x, y, attacks, threat, mode: str = "cascade", n: int | None = None,
            **settings: Any) -> EvalContext:  # fmt: skip
    """advrun's evaluation of (x, y) as ``advrun eval`` builds it (quiet, seed 0; the checklist
    on the first ``n`` examples, default all; escalation with the spec defaults)."""
    cfg = EvalSpec(batch_size=BATCH, suite=mode, checklist_n=max(8, n or len(x)), **settings)
    return EvalContext(model, x, y, threat, 10, cfg, tuple(attacks), log=lambda _: None)


def suite(spec: str, eps: float):
    """(at-threat attacks of ``spec`` at Linf ``eps``, the threat)."""
    plan = compile_spec(load_spec(spec, [f"threat.eps={eps!r}"]).spec)
    return [a for a in plan.attacks if plan.threat.covers(a)], plan.threat


def _worst(res) -> tuple[np.ndarray, np.ndarray]:
    w = res.examples[res.examples.attack == "worst_case"].sort_values("example")
    return w["correct"].to_numpy(bool), w["broken_by"].to_numpy(object)


def _escalated(ctx: EvalContext) -> tuple[Any, Any, dict[str, float], Any]:
    """What ``advrun eval`` runs for the worst case: the suite, the checklist (seeded as
    :func:`runner.eval.evaluate._phase` seeds it) and the escalation it asks for."""
    t = [time.perf_counter()]
    res = run_suite(ctx)
    t.append(time.perf_counter())
    seed = zlib.crc32(b"checklist")
    np.random.seed(seed)
    torch.manual_seed(seed)
    items = run_checklist(ctx, suite=res)  # as evaluate_run: the suite's Square evidence shared
    t.append(time.perf_counter())
    esc = escalate(ctx, res, items)
    t.append(time.perf_counter())
    secs = {k: t[i + 1] - t[i] for i, k in enumerate(("suite", "checklist", "escalation"))}
    return res, (esc.suite if esc else res), secs, esc


def run_advrun(model, x, y, attacks, threat, mode: str = "cascade", keep_adv: bool = False,
               escalated: bool = False, **settings: Any) -> AdvrunResult:  # fmt: skip
    """advrun's worst case (``run_suite``), timed, with its passes counted; ``escalated``: as
    ``advrun eval`` runs it, with the checklist and the escalation its evidence asks for;
    ``settings``: ``eval`` settings other than the defaults (e.g. ``escalation``).

    ``keep_adv`` (cascade mode) also keeps the input that broke each example, as the references
    return theirs, by recording what the evaluation's ``generate`` returned (bench only).
    """
    counter = PassCounter(model)
    outputs: list[torch.Tensor] = []
    generate, square_run = eval_context.generate, escalation._ContinuedSquare.run

    def recorded(*a, **k):
        outputs.append(generate(*a, **k).detach())
        return outputs[-1]

    def square_recorded(self, rung, idx, *a, **k):  # the Square ladder's rungs skip generate
        result = square_run(self, rung, idx, *a, **k)
        outputs.append(self.points(idx).detach())
        return result

    if keep_adv:
        eval_context.generate = recorded
        escalation._ContinuedSquare.run = square_recorded
    ctx = context(model, x, y, attacks, threat, mode, n=CHECKLIST_N, **settings)
    esc = None
    try:
        t0 = time.perf_counter()
        if escalated:
            fast, res, phases, esc = _escalated(ctx)
        else:
            fast = res = run_suite(ctx)
            phases = None
        secs = time.perf_counter() - t0
    finally:
        eval_context.generate, escalation._ContinuedSquare.run = generate, square_run
        counter.close()
    correct, broken_by = _worst(res)
    out = AdvrunResult(secs, correct, broken_by, res.info, counter.as_dict(),
                       fast_correct=_worst(fast)[0], phase_seconds=phases,
                       escalation=esc.record.model_dump() if esc else None)  # fmt: skip
    if keep_adv:
        out.x_adv = _breakers(x, out.broken_by, list(res.info), outputs)
    return out


def _breakers(x, broken_by, order: list[str], outputs: list[torch.Tensor]) -> torch.Tensor:
    """Each stage attacked the examples alive before it, in index order (the cascade's rule)."""
    x_adv = x.clone()
    alive = broken_by != "clean"
    for name, out in zip(order, outputs, strict=True):
        idx = np.flatnonzero(alive)
        assert len(idx) == len(out), "the cascade attacked other examples than replayed"
        hit = broken_by[idx] == name
        x_adv[idx[hit]] = out[hit]
        alive[idx[hit]] = False
    return x_adv


def independent(model, x, y, attacks, threat) -> dict[str, np.ndarray]:
    """Each attack's own per-example correctness (``suite: independent``)."""
    res = run_suite(context(model, x, y, attacks, threat, "independent"))
    t = res.examples.pivot(index="example", columns="attack", values="correct")
    return {a.name: t[a.name].to_numpy(bool) for a in attacks}


def checklist(model, x, y, threat) -> tuple[float, list[dict[str, Any]]]:
    """advrun's evaluation checklist on all of x (seconds, items)."""
    torch.manual_seed(0)
    t0 = time.perf_counter()
    items = run_checklist(context(model, x, y, [], threat))
    return time.perf_counter() - t0, items


def escalations(threat) -> dict[str, Any]:
    """Larger budgets of the suite's stages (what part B may escalate to), as advrun attacks."""
    common = {"eps": threat.eps, "norm": threat.norm, "engine": "native", "batch_size": BATCH}
    return {
        "square_1000": SquareAttack(name="square_1000", kind="square", queries=1000, **common),
        "square_5000": SquareAttack(name="square_5000", kind="square", queries=5000, **common),
        # run only on square_5000's survivors, and only where it broke any (bench/attacks.py)
        "square_10000": SquareAttack(name="square_10000", kind="square", queries=10000, **common),
        "apgd_ce_5r": APGDAttack(
            name="apgd_ce_5r", kind="apgd", loss="ce", steps=100, restarts=5, **common
        ),  # fmt: skip
        "apgd_dlr": APGDAttack(name="apgd_dlr", kind="apgd", loss="dlr", steps=100, **common),
        "apgd_t_100": APGDAttack(
            name="apgd_t_100",
            kind="apgd",
            loss="dlr",
            targeted=True,
            n_targets=9,
            steps=100,
            **common,
        ),  # fmt: skip
        "fab_t": FABAttack(name="fab_t", kind="fab", steps=100, n_targets=9, **common),
    }


# --- today's three bench models (advrun's small CNN; training as before issue 17) -------------


def _train(model, x, y, eps: float, epochs: int, adversarial: bool, seed: int = 0):
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


def build_today(which: str, spec: str, cache: Path | None) -> Case:
    """One of :data:`TODAY`: pgd / standard (digits, eps 0.1), cifar (synthetic, eps 8/255)."""
    plan = compile_spec(load_spec(spec).spec)
    threat = plan.threat
    if which == "cifar":
        (xt, yt), (x, y) = synthetic_cifar()
        shape, kwargs, eps = (3, 32, 32), {"width": 0.25}, 8 / 255
    else:
        data = prepare(plan.runs[0].data, threat.pixel_range, torch.device("cpu"))
        xt, yt, x, y = data.x_train, data.y_train, data.x_test, data.y_test
        shape, kwargs, eps = data.input_shape, {}, threat.eps
    torch.manual_seed(0)  # the same weights whatever ran before in this process
    model = build_model("small_cnn", shape, 10, kwargs)
    path = cache / f"{which}.pt" if cache else None
    if path and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        epochs = 4 if which == "cifar" else 15
        model = _train(model, xt, yt, eps, epochs, adversarial=which == "pgd")
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
    for p in model.parameters():
        p.requires_grad_(False)
    what = {"pgd": "none (advrun-style PGD model)", "standard": "none (standard training)",
            "cifar": "none (standard training, synthetic 32x32x3)"}  # fmt: skip
    return Case(which, model.eval(), x, y, float(eps), what[which],
                pixel_range=tuple(threat.pixel_range))  # fmt: skip


# --- ART comparisons (flags --art-n and --apgd) -----------------------------------------------


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
    ours = run_advrun(model, x[:m], y[:m], attacks, threat)
    print(f"  ART AutoAttack on {m}: {t_art:.1f}s, robust accuracy {art_ok.mean():.4f}; advrun "
          f"{ours.seconds:.1f}s, {ours.correct.mean():.4f}; speed-up "
          f"{t_art / ours.seconds:.1f}x")  # fmt: skip
    return {"n": m, "seconds": t_art, "robust_accuracy": float(art_ok.mean()),
            "advrun_seconds": ours.seconds,
            "advrun_robust_accuracy": float(ours.correct.mean())}  # fmt: skip


def apgd_vs_art(model, x, y, threat) -> dict:
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
