"""Per-example early exit in the native attacks: an example leaves the batch once it is broken,
keeps that adversarial point, stays inside the threat model, and the attack is never weaker than
the same attack, same seed, without early exit; it costs fewer passes (counted, not timed)."""

from __future__ import annotations

import pytest
import torch
from digits_model import trained

from runner.attacks import native
from runner.attacks.kernels.apgd import apgd
from runner.attacks.kernels.fab import fab_t, fab_targeted
from runner.passes import PassCounter

EPS = 0.1


def data(n: int = 160):
    model, d = trained()
    return model, d.x_test[:n], d.y_test[:n]


def fooled(model, x_adv, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def inside(x, x_adv, eps=EPS, norm="linf") -> bool:
    d = (x_adv - x).flatten(1)
    dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    return bool(dist.max() <= eps * (1 + 1e-5) + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1)


def counted(model, fn):
    c = PassCounter(model)
    try:
        out = fn()
    finally:
        c.close()
    return out, c.backward


@pytest.mark.parametrize(
    "kw",
    [{"loss": "ce"}, {"loss": "dlr", "targeted": True, "n_targets": 3}, {"norm": "l2"}],
    ids=["apgd-ce", "apgd-t", "apgd-l2"],
)
def test_apgd_early_exit_breaks_the_same_examples_for_fewer_passes(kw):
    model, x, y = data()
    eps = 1.0 if kw.get("norm") == "l2" else EPS

    def attack(early_exit: bool):
        gen = torch.Generator().manual_seed(0)
        return apgd(model, x, y, eps, steps=30, generator=gen, early_exit=early_exit, **kw)

    (full, p_full), (fast, p_fast) = (
        counted(model, lambda: attack(False)),
        counted(model, lambda: attack(True)),
    )
    norm = kw.get("norm", "linf")
    assert inside(x, fast, eps, norm) and inside(x, full, eps, norm)
    f_full, f_fast = fooled(model, full, y), fooled(model, fast, y)
    assert f_full.sum() > 10  # the attack bites, so early exit has something to skip
    assert torch.equal(f_fast, f_full)  # same trajectories: the same examples broken
    assert p_fast < p_full


def test_pgd_early_exit_keeps_the_point_where_an_example_broke():
    model, x, y = data()

    def attack(steps: int, early_exit: bool, restarts: int = 1):
        gen = torch.Generator().manual_seed(0)
        return native.pgd(model, x, y, EPS, EPS / 4, steps, restarts=restarts, generator=gen,
                          early_exit=early_exit)  # fmt: skip

    short, long = attack(3, True), attack(20, True)
    broke_early = fooled(model, short, y)
    assert broke_early.sum() > 5
    # an example broken within 3 steps left the batch there: 17 more steps do not move it
    assert torch.equal(long[broke_early], short[broke_early])
    assert fooled(model, long, y)[broke_early].all()
    # never weaker than the same attack without early exit (which returns its last step)
    for restarts in (1, 2):
        full, fast = attack(20, False, restarts), attack(20, True, restarts)
        assert inside(x, fast)
        f_full, f_fast = fooled(model, full, y), fooled(model, fast, y)
        assert (f_fast | ~f_full).all()  # every example the full attack breaks, this one does
    _, p_full = counted(model, lambda: attack(20, False))
    _, p_fast = counted(model, lambda: attack(20, True))
    assert p_fast < p_full


def test_pgd_early_exit_with_per_example_eps():
    """Curves and eps warm-up pass eps and step size per example; rows leave with theirs."""
    model, x, y = data()
    eps = torch.linspace(0.02, 0.2, len(x)).view(-1, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    out = native.pgd(model, x, y, eps, eps / 4, 10, generator=gen, early_exit=True)
    dist = (out - x).flatten(1).abs().amax(1)
    assert (dist <= eps.flatten() + 1e-6).all() and out.min() >= 0 and out.max() <= 1
    # a larger eps breaks more: measured 38 of the 40 largest-eps examples vs 5 of the 40
    # smallest; SE of that difference sqrt(0.95 * 0.05 / 40 + 0.125 * 0.875 / 40) = 0.063: 13 SE
    assert fooled(model, out, y)[-40:].float().mean() > fooled(model, out, y)[:40].float().mean()


def test_fab_stops_an_example_once_it_is_adversarial_within_eps():
    model, x, y = data(96)
    with torch.no_grad():
        target = model(x).scatter(1, y[:, None], float("-inf")).argmax(1)
    (adv_all, d_all), p_all = counted(model, lambda: fab_targeted(model, x, y, target, steps=30))
    (adv_eps, d_eps), p_eps = counted(
        model, lambda: fab_targeted(model, x, y, target, steps=30, eps=EPS)
    )
    assert torch.equal(d_all <= EPS, d_eps <= EPS)  # the same examples found within eps
    assert (d_eps[d_eps <= EPS] >= d_all[d_eps <= EPS] - 1e-7).all()  # (not minimised further)
    assert fooled(model, adv_eps[d_eps <= EPS], y[d_eps <= EPS]).all()
    assert p_eps < p_all
    x_adv = fab_t(model, x, y, EPS, steps=30, n_targets=2)
    x_adv = x + native.project(x, x_adv - x, EPS, "linf", 0.0, 1.0)
    assert inside(x, x_adv) and fooled(model, x_adv, y).sum() >= (d_eps <= EPS).sum()
