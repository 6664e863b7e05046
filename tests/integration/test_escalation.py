"""Escalation (issue 17): budgets that grow where the evidence says so, and only there.

The masked model is built here: the session's standard-trained digits CNN behind an input
quantisation to 4 levels (``round``: a zero input gradient everywhere), so white-box attacks
see nothing and only a black-box attack (Square) breaks examples.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from digits_model import trained
from resolved import LINF_01, evaluation
from resolved import attack as resolved_attack
from torch import nn

from runner.compile import Threat
from runner.eval.cascade import run_suite
from runner.eval.evaluate import EvalContext, evaluate_run
from runner.store import RunMetrics
from runner.store.files import dump

N = 120


class Quantized(nn.Module):
    """The input rounded to ``levels`` grey levels before the network (no gradient passes)."""

    def __init__(self, inner: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.inner, self.levels = inner, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.levels - 1
        return self.inner(torch.round(x * k) / k)


def attack(name, kind, **kw):
    return resolved_attack(kind, name, **{"engine": "native", "norm": "linf", "eps": 0.1,
                                          "batch_size": 128, **kw})  # fmt: skip


FAST = [
    attack("fgsm", "fgsm"),
    attack("pgd10", "pgd", steps=10, step_size=0.025, restarts=1, random_start=True),
    attack("square", "square", queries=100, p_init=0.8, restarts=1),
]


def _evaluate(model, attacks, enabled: bool, checklist: bool = False, threat=LINF_01, **esc):
    _, data = trained()
    cfg = evaluation(batch_size=128, bootstrap=100, checklist=checklist,
                     escalation={"enabled": enabled, **esc})  # fmt: skip
    ctx = EvalContext(model, data.x_test[:N], data.y_test[:N], threat, 10, cfg, attacks,
                      lambda s: None)  # fmt: skip
    return evaluate_run(ctx)


@functools.cache
def masked(enabled: bool):
    model, _ = trained()
    return _evaluate(Quantized(model).eval(), FAST, enabled, max_queries=1000)


def _rows(ev):
    """Each results row by attack, without its wall-clock seconds (never compared)."""
    return {r["attack"]: {k: v for k, v in r.items() if k != "seconds"} for r in ev.results}


def test_square_breaking_what_white_box_missed_escalates_and_breaks_more():
    fast, esc = masked(False), masked(True)
    rows, fast_rows = _rows(esc), _rows(fast)
    assert fast.escalation is None and "square_1000" not in fast_rows
    assert fast_rows["square"]["broken"] > 0  # the signal: Square broke what fgsm, pgd10 missed
    rec = esc.escalation
    assert rec is not None
    assert rec.signals == [
        f"square (black box) broke {fast_rows['square']['broken']} example(s) that fgsm, "
        "pgd10 missed"
    ]
    (rung,) = rec.rungs  # max_queries 1000: one rung above the suite's 100 queries
    assert (rung.attack, rung.kind, rung.ladder, rung.budget) == (
        "square_1000", "square", "square", "1000 queries")  # fmt: skip
    # it attacked exactly the fast suite's survivors and broke some of them
    survivors = round(fast_rows["worst_case"]["accuracy"] * N)
    assert rung.attacked == survivors
    assert rung.broken > 0
    assert rung.forward_passes > 0 and rung.backward_passes == 0  # Square: forward passes only
    assert rec.settled is False  # the cap's rung still broke examples
    assert rec.broken == rung.broken
    # the worst case includes it, its row is cumulative after the suite, and per example
    assert rows["square_1000"]["scope"] == "cascade"
    assert rows["square_1000"]["broken"] == rung.broken
    assert round(rows["worst_case"]["accuracy"] * N) == survivors - rung.broken
    assert rows["worst_case"]["accuracy"] == rows["square_1000"]["accuracy"]
    w = esc.examples[esc.examples.attack == "worst_case"].sort_values("example")
    assert (w["broken_by"] == "square_1000").sum() == rung.broken
    assert not w.loc[w["broken_by"] == "square_1000", "correct"].any()
    # the suite's own rows are those of the fast budget, exactly
    for name in ("clean", "fgsm", "pgd10", "square"):
        assert rows[name] == fast_rows[name], name
    # every example broken by the fast suite stays broken by the same attack
    wf = fast.examples[fast.examples.attack == "worst_case"].sort_values("example")
    hit = wf["broken_by"].to_numpy() != ""
    assert np.array_equal(w["broken_by"].to_numpy()[hit], wf["broken_by"].to_numpy()[hit])


def test_a_larger_square_rung_continues_the_search_of_the_one_before():
    """With a cap of 2,000 queries the ladder is 1,000 -> 2,000: the second rung goes on from
    the first rung's points on its survivors (1,000 more queries each, not 2,000 from fresh
    stripes), and the first rung is exactly the one a cap of 1,000 runs (same seed, same search)."""
    model, _ = trained()
    ev = _evaluate(Quantized(model).eval(), FAST, True, max_queries=2000)
    first, second = ev.escalation.rungs
    alone = masked(True).escalation.rungs[0]
    assert first.model_dump(exclude={"seconds"}) == alone.model_dump(exclude={"seconds"})
    assert first.broken > 0  # so the ladder climbed
    assert (second.attack, second.ladder) == ("square_2000", "square")
    assert second.budget.startswith(
        "2000 queries, continuing square_1000's search (+1000 a survivor)"
    )
    assert second.attacked == first.attacked - first.broken
    assert 0 < second.forward_passes <= 1000 * second.attacked
    assert second.backward_passes == 0
    rows = _rows(ev)
    assert round(rows["worst_case"]["accuracy"] * N) == second.attacked - second.broken
    assert ev.escalation.settled == (second.broken == 0)


def test_escalation_is_recorded_in_metrics_and_survives_a_round_trip():
    rec = masked(True).escalation
    m = RunMetrics(run_id="r", slug="s", eval_hash="h", model="m", arch="a", recipe="audit",
                   kind="audit", results=masked(True).results, escalation=rec)  # fmt: skip
    back = RunMetrics.model_validate(dump(m))
    assert back.escalation == rec
    assert "square_1000 (1000 queries: broke" in rec.words
    assert "did not settle" in rec.words


def test_a_healthy_model_escalates_nothing_and_its_results_are_unchanged():
    """The unmasked CNN at eps 0.05 with the whole fast suite and the checklist: every check
    passes and Square breaks nothing new, so no signal, and the evaluation is exactly the one
    with escalation off (same rows, same per-example outcomes)."""
    model, _ = trained()
    eps = 0.05
    suite = [a.model_copy(update={"eps": eps, **({"step_size": eps / 4} if a.kind == "pgd" else {})})
             for a in FAST]  # fmt: skip
    threat = Threat("linf", eps, (0.0, 1.0))
    on = _evaluate(model, suite, True, checklist=True, threat=threat)
    off = _evaluate(model, suite, False, checklist=True, threat=threat)
    assert [c["status"] for c in on.checklist] == ["pass"] * len(on.checklist)
    assert _rows(on)["square"]["broken"] == 0
    assert on.escalation is None
    assert _rows(on) == _rows(off)
    assert on.examples.equals(off.examples)


def test_a_checklist_warning_climbs_the_white_box_ladder_until_a_rung_breaks_nothing():
    """A weak suite (FGSM, PGD-10) on the unmasked CNN at eps 0.1: the checklist's more_steps
    warns (PGD-20 -> 40 moves accuracy more than a point, measured 1.7 at n = 120), so the
    white-box ladder runs on the survivors and stops at the first rung that breaks nothing."""
    model, _ = trained()
    ev = _evaluate(model, FAST[:2], True, checklist=True)
    warned = [c["check"] for c in ev.checklist if c["status"] != "pass"]
    rec = ev.escalation
    assert rec is not None and warned
    assert rec.signals == [f"checklist {c}: warn" for c in warned]
    assert {r.ladder for r in rec.rungs} == {"white_box"}
    assert [r.attack for r in rec.rungs] == ["apgd_ce_5r", "apgd_dlr", "apgd_t_100", "fab_t"][
        : len(rec.rungs)
    ]
    assert rec.rungs[-1].broken == 0 and all(r.broken > 0 for r in rec.rungs[:-1])
    assert rec.settled is True
    rows = _rows(ev)
    assert round((rows["pgd10"]["accuracy"] - rows["worst_case"]["accuracy"]) * N) == rec.broken


class Noisy(nn.Module):
    """Gaussian input noise (sd ``sd``) in every pass, test time included: a random model."""

    def __init__(self, inner: nn.Module, sd: float = 0.3) -> None:
        super().__init__()
        self.inner, self.sd = inner, sd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + self.sd * torch.randn_like(x))


def test_a_random_model_climbs_the_white_box_ladder_with_eot():
    """The digits CNN behind input noise: the checklist's deterministic fails, so the white-box
    rungs are the original AutoAttack's rand version (APGD-CE, APGD-DLR with 20 EoT passes a
    step), recorded with their eot_iter, and the card does not call the audit unreliable for
    want of EoT."""
    from runner.report.cards import unreliable

    model, _ = trained()
    torch.manual_seed(0)
    ev = _evaluate(Noisy(model).eval(), FAST[:2], True, checklist=True, max_queries=1000)
    checks = {c["check"]: c["status"] for c in ev.checklist}
    assert checks["deterministic"] == "fail"
    rec = ev.escalation
    assert rec is not None and "checklist deterministic: fail" in rec.signals
    white = [r for r in rec.rungs if r.ladder == "white_box"]
    assert white, rec
    assert [r.attack for r in white] == ["apgd_ce_eot20", "apgd_dlr_eot20"][: len(white)]
    assert all(r.kind == "apgd" and r.eot_iter == 20 and r.budget == "100 steps, EoT 20"
               for r in white)  # fmt: skip
    # each EoT step costs 20 passes: at least 20 backward passes per attacked example (its
    # first step; APGD drops an example once it is fooled)
    assert all(r.backward_passes >= 20 * r.attacked > 0 for r in white), white
    back = RunMetrics(run_id="r", slug="s", eval_hash="h", model="m", arch="a", recipe="audit",
                      kind="audit", results=ev.results, escalation=rec)  # fmt: skip
    assert RunMetrics.model_validate(dump(back)).escalation.rungs == rec.rungs
    flag, why = unreliable(ev.checklist, dump(rec), [dump(a) for a in FAST[:2]])
    assert "the model is random (deterministic failed) and no attack used EoT" not in why
    rows = _rows(ev)
    assert all(rows[r.attack]["scope"] == "cascade" for r in white)


class Flaky(nn.Module):
    """A random model whose randomness ignores the input: each pass misclassifies each example
    with probability ``p`` (the network's top class moved one on). Any break is one lucky draw."""

    def __init__(self, inner: nn.Module, p: float = 0.1) -> None:
        super().__init__()
        self.inner, self.p = inner, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        flip = torch.rand(len(x), device=x.device) < self.p
        wrong = (logits.argmax(1) + 1) % logits.shape[1]
        bump = torch.zeros_like(logits).scatter(1, wrong[:, None], 1e3)
        return torch.where(flip[:, None], logits + bump, logits)


def test_on_a_random_model_a_break_without_eot_counts_only_where_most_draws_confirm_it():
    """On a random model a verdict is one forward draw, so an attack without EoT "breaks" examples
    by luck. There such a break counts only where most of 20 draws at the breaking input confirm
    it: luck is not counted, the example stays in the cascade for the next stage (the EoT rungs
    included), and the Square ladder does not climb on luck. The model's randomness ignores its
    input, so every break the draws confirm is the network's own."""
    model, data = trained()
    torch.manual_seed(0)
    n = 40
    cfg = evaluation(batch_size=128, bootstrap=100, checklist=True,
                     escalation={"enabled": True, "max_queries": 10000})  # fmt: skip
    ctx = EvalContext(Flaky(model).eval(), data.x_test[:n], data.y_test[:n], LINF_01, 10, cfg,
                      FAST, lambda s: None)  # fmt: skip
    ev = evaluate_run(ctx)
    assert {c["check"]: c["status"] for c in ev.checklist}["deterministic"] == "fail"
    rows = _rows(ev)
    stages = [rows[a.name] for a in FAST]  # cheap to expensive: the cascade's order
    assert all(r["fooled"] >= r["broken"] for r in stages), stages
    assert sum(r["fooled"] - r["broken"] for r in stages) > 0, "some one-draw breaks were luck"
    for before, after in zip(stages, stages[1:], strict=False):  # unconfirmed ones attacked again
        assert after["attacked"] == before["attacked"] - before["broken"], (before, after)
    rec = ev.escalation
    assert rec is not None and "checklist deterministic: fail" in rec.signals
    assert all(r.confirmed == r.broken for r in rec.rungs if r.ladder == "square"), rec.rungs
    white = [r for r in rec.rungs if r.ladder == "white_box"]
    assert white and all(r.eot_iter == 20 and r.confirmed is None for r in white), rec.rungs
    alive = stages[-1]["attacked"] - stages[-1]["broken"]
    first = (rec.rungs[0].attacked, rec.rungs[0].broken)
    assert first[0] == alive, "the first rung attacks every example no confirmed break took"
    # the network itself is deterministic: its suite takes every one-draw verdict as it is
    plain = run_suite(EvalContext(model.eval(), data.x_test[:n], data.y_test[:n], LINF_01, 10,
                                  cfg, FAST, lambda s: None))  # fmt: skip
    assert not plain.random and all(i["fooled"] == i["broken"] for i in plain.info.values())


def _script(queries: list[int], broken: list[int]):
    """A Square ladder over ``queries`` whose rungs break ``broken`` in turn (no model runs):
    the names and budgets of the rungs climbed, and whether it settled."""
    from types import SimpleNamespace

    from runner.eval import escalation as esc

    climb = esc._Climb.__new__(esc._Climb)
    climb.signals, climb.settled = [], True
    climb.worst = SimpleNamespace(alive=torch.ones(4, dtype=torch.bool))
    ran, left = [], list(broken)

    def rung(r, reasons):
        ran.append((r.attack.name, r.budget))
        return left.pop(0)

    climb._rung = rung
    rungs = [esc.Rung(esc.SQUARE, attack(f"square_{q}", "square", queries=q), f"{q} queries")
             for q in queries]  # fmt: skip
    climb.ladder(esc.SQUARE, rungs)
    assert not left, "every scripted rung ran"
    return [n for n, _ in ran], climb.settled


def test_the_square_ladder_settles_at_its_first_rung_that_breaks_nothing():
    """One rung per budget (no second draw: the continued search restarts stuck examples
    itself); a rung that still breaks examples climbs on; the cap's rung breaking: not settled."""
    assert _script([1000, 5000, 10000], [3, 0]) == (["square_1000", "square_5000"], True)
    assert _script([1000, 5000, 10000], [0]) == (["square_1000"], True)
    assert _script([1000, 5000, 10000], [3, 1, 2]) == (
        ["square_1000", "square_5000", "square_10000"], False)  # fmt: skip


def _ladder(cap: int, engine: str = "native", norm: str = "linf", have: int = 100) -> list[int]:
    from types import SimpleNamespace

    import runner.eval.escalation as esc

    suite = attack("square", "square", queries=have, engine=engine, norm=norm)
    threat = SimpleNamespace(eps=0.1, norm=norm, covers=lambda a: True)
    ctx = SimpleNamespace(settings=SimpleNamespace(escalation=SimpleNamespace(max_queries=cap)),
                          threat=threat, batch_size=128)  # fmt: skip
    rungs = esc._square_rungs(ctx, [suite])
    assert [r.attack.name for r in rungs] == [f"square_{r.attack.queries}" for r in rungs]
    return [r.attack.queries for r in rungs]


def test_the_square_ladder_s_budgets():
    """A continued search (native Linf) pays a rung's increment only, so it steps 1,000 ->
    2,500 -> 5,000, then doubles to the cap; fresh runs per rung (ART) skip the 2,500 step;
    budgets the suite's own Square already spent are not rungs."""
    assert _ladder(10000) == [1000, 2500, 5000, 10000]
    assert _ladder(30000) == [1000, 2500, 5000, 10000, 20000, 30000]
    assert _ladder(3000) == [1000, 2500, 3000]
    assert _ladder(1000) == [1000]
    assert _ladder(10000, engine="art", norm="l2") == [1000, 5000, 10000]
    assert _ladder(10000, have=2500) == [5000, 10000]


class _Flat(nn.Module):
    """Logits that ignore the input (no proposal ever gains), recording every input queried."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.tensor([[1.0, 0.0]]).repeat(len(x), 1)


def test_square_search_restarts_a_stuck_search_and_never_wastes_a_query_on_an_unchanged_image():
    """8 x 8 grey images: windows are one pixel from query 1,000 on (final_it 1000), 2 x 64
    proposals of that size, so a search that gained nothing for 4 x 128 = 512 queries after that
    starts afresh; the budget per example is exact across continued runs."""
    from runner.attacks.kernels.square import SquareSearch

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(3, dtype=torch.long)
    model = _Flat()
    s = SquareSearch(model, x, y, 0.1, generator=torch.Generator().manual_seed(1),
                     skip_noop=True, restart_stale=True)  # fmt: skip
    assert (s.final_it, s.patience) == (1000, 512)
    s.run(1000)
    assert s.queries.tolist() == [1000] * 3 and s.searches.tolist() == [1] * 3
    # a search is stuck once past query 1000 of its schedule with 512 queries gained nothing
    # (here from the start): it restarts after 1,002 queries (stripes + 1,001 proposals)
    s.run(4000)
    assert s.queries.tolist() == [4000] * 3
    assert s.searches.tolist() == [4] * 3
    # every proposal of the first search changed its current image (its stripes: none gained)
    assert len(model.seen) == 4000  # one pass a query for all three, restarts included
    assert not any(torch.equal(q, model.seen[0]) for q in model.seen[1:1002])
    # AutoAttack's own search (no skip, no restart) wastes about half its one-pixel proposals
    # (its last 498 proposals x 3 examples; binomial SE 19 of 1,494, the bounds 15 SE apart)
    plain = _Flat()
    SquareSearch(plain, x, y, 0.1, generator=torch.Generator().manual_seed(1)).run(1500)
    same = sum(int((q == plain.seen[0]).flatten(1).all(1).sum()) for q in plain.seen[1002:])
    assert 0.3 * 1494 < same < 0.7 * 1494


def test_the_checklist_reads_the_suites_square_stage_instead_of_running_its_own():
    """black_box_vs_white_box shares the suite's evidence: on the quantized model its figures are
    the cascade's own (what Square broke that fgsm and pgd10 missed), exactly, and no Square probe
    runs; a suite without a Square stage leaves the check to its own probe."""
    model, _ = trained()
    ev = _evaluate(Quantized(model).eval(), FAST, False, checklist=True)
    rows = _rows(ev)
    item = next(c for c in ev.checklist if c["check"] == "black_box_vs_white_box")
    e = item["evidence"]
    assert e["shared_with_suite"] == 1.0
    assert e["white_box"] == rows["pgd10"]["accuracy"]
    assert e["square"] == rows["worst_case"]["accuracy"] == rows["square"]["accuracy"]
    assert round(e["square_only"] * N) == rows["square"]["broken"] > 0.02 * N
    assert item["status"] == "fail" and "the suite's Square (square; 100 queries" in item["detail"]
    plain = _evaluate(Quantized(model).eval(), FAST[:2], False, checklist=True)
    item = next(c for c in plain.checklist if c["check"] == "black_box_vs_white_box")
    assert "shared_with_suite" not in item["evidence"] and "500 queries" in item["detail"]
