"""Randomized smoothing's algorithms against closed forms, its counting of abstentions, and its
independence of batching (torch, no training).

Closed forms: a constant classifier's top class has probability 1 under any noise, so CERTIFY
sees n_A = n and certifies sigma * Phi^-1(alpha^(1/n)) exactly; a linear classifier
f(x) = [w.x + b > 0] under N(0, sigma^2 I) noise has p_A = Phi(|w.x + b| / (sigma ||w||)), so the
smoothed classifier's exact radius sigma * Phi^-1(p_A) is the distance |w.x + b| / ||w|| to the
decision boundary, which a certificate may never exceed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from runner.certify import bounds
from runner.certify.results import per_sigma_results
from runner.certify.sampling import class_counts
from runner.certify.smoothing import ABSTAIN, Outcome, Settings, smooth
from runner.spec.certify import CertifySpec

D = 16  # inputs [1, 4, 4]


class Constant(nn.Module):
    def __init__(self, c: int, classes: int = 3) -> None:
        super().__init__()
        self.c, self.classes = c, classes

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, self.c] = 1.0
        return out


class Linear(nn.Module):
    """Class 1 where w.x + b > 0, else class 0 (logits [0, w.x + b])."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


def _settings(**kw) -> Settings:
    base = dict(sigma=0.5, n0=100, n=2000, predict_n=2000, alpha=0.001, batch_size=512, seed=0)
    return Settings(**{**base, **kw})


def test_the_bounds_are_scipys_exact_binomial_ones():
    for n in (1, 10, 1000):
        for k in sorted({0, 1, n // 2, n - 1, n}):
            for alpha in (0.001, 0.05):
                want = stats.binomtest(k, n).proportion_ci(1 - 2 * alpha, "exact").low
                assert bounds.lower_bound(np.array([k]), n, alpha)[0] == pytest.approx(want)
            ci = stats.binomtest(k, n).proportion_ci(0.95, "exact")
            assert bounds.interval(k, n) == pytest.approx((ci.low, ci.high))
    for a in range(0, 30):
        for b in range(0, 30):
            want = stats.binomtest(a, a + b, 0.5).pvalue if a + b else 1.0
            assert bounds.predict_pvalue(np.array([a]), np.array([b]))[0] == pytest.approx(want)
    assert np.isnan(bounds.radius(np.array([0.5]), 1.0)[0])  # p_lower <= 1/2: abstain
    assert bounds.radius(np.array([stats.norm.cdf(2.0)]), 0.25)[0] == pytest.approx(0.5)


def test_a_constant_classifier_is_certified_exactly():
    x = torch.rand(5, 1, 4, 4)
    s = _settings(n=1000, predict_n=300)
    o = smooth(Constant(2), x, list(range(5)), 3, s)
    p = s.alpha ** (1 / s.n)  # Beta.ppf(alpha, n, 1): the lower bound when every sample agrees
    assert (o.certified == 2).all() and (o.count == s.n).all()
    np.testing.assert_allclose(o.p_lower, p, rtol=1e-12)
    np.testing.assert_allclose(o.radius, s.sigma * stats.norm.ppf(p), rtol=1e-12)
    assert (o.predicted == 2).all() and (o.p_value == 2 * 0.5**s.predict_n).all()


def test_a_linear_classifier_is_certified_within_its_distance_to_the_boundary():
    w = torch.zeros(D)
    w[:4] = torch.tensor([1.0, -2.0, 0.5, 1.0])
    b = -0.3
    x = torch.rand(24, 1, 4, 4)
    s = _settings(n=20000, predict_n=0)
    o = smooth(Linear(w, b), x, list(range(24)), 2, s)
    margin = (x.flatten(1) @ w + b).numpy()
    dist = np.abs(margin) / float(w.norm())
    p_a = stats.norm.cdf(dist / s.sigma)
    top = (margin > 0).astype(int)
    # n_A counts the class the n0 samples selected: ~ Binomial(n, p_A) for the top class, or
    # Binomial(n, 1 - p_A) when the selection picked the other (only near p_A = 1/2); within 4
    # standard errors sqrt(n p (1 - p)) (at most 71 samples here)
    se = np.sqrt(s.n * p_a * (1 - p_a))
    near = np.minimum(np.abs(o.count - s.n * p_a), np.abs(o.count - s.n * (1 - p_a)))
    assert (near <= 4 * se + 1).all()
    off = np.abs(p_a - 0.5) > 4 * np.sqrt(0.25 / s.n0)  # selection sure: the top class is counted
    assert (np.abs(o.count - s.n * p_a)[off] <= 4 * se[off] + 1).all()
    sure = off & (p_a > 0.52)  # well off the boundary: the top class is found and certified
    assert (o.certified[sure] == top[sure]).all()
    # the guarantee: a certificate never exceeds the exact radius (each holds w.p. >= 1 - alpha)
    certified = o.certified != ABSTAIN
    assert (o.radius[certified] <= dist[certified] + 1e-9).all()
    # and is close to it: p_lower is n_A/n minus about z_{1-alpha} = 3.1 standard errors
    low = s.sigma * stats.norm.ppf(np.clip(p_a - 8 * np.sqrt(p_a * (1 - p_a) / s.n), 0.5, 1))
    assert (o.radius[sure] >= low[sure] - 1e-9).all()


def test_abstentions_count_as_not_certified_and_are_reported_apart():
    """ART issue 699: every example stays in the denominator; abstentions are not certified at
    any radius (not even 0) and are counted on their own."""
    y = np.array([0, 1, 1, 2, 0])
    o = Outcome(
        certified=np.array([0, 1, 2, ABSTAIN, ABSTAIN]),  # right, right, wrong, abstain, abstain
        count=np.array([990, 900, 800, 400, 510]),
        p_lower=np.array([0.98, 0.85, 0.7, 0.35, 0.49]),
        radius=np.array([1.0, 0.5, 0.3, np.nan, np.nan]),
        predicted=np.array([0, 1, ABSTAIN, 2, ABSTAIN]),
        p_value=np.array([1e-9, 1e-6, 0.5, 1e-5, 0.7]),
    )
    cfg = CertifySpec(sigma=[0.5], n=1000, radii=[0, 0.5, 1.0, 1.5])
    frame, rows, s = per_sigma_results(o, y, [0, 20, 40, 60, 80], 0.5, cfg, (0.0, 1.0), 64)
    assert [p["accuracy"] for p in s["curve"]] == [2 / 5, 2 / 5, 1 / 5, 0.0]
    assert s["abstained"] == 2 and s["abstain_rate"] == 2 / 5
    assert s["acr"] == pytest.approx((1.0 + 0.5) / 5)  # wrong and abstained count 0
    assert s["smoothed_accuracy"] == 3 / 5 and s["smoothed_abstained"] == 2
    assert {r["n"] for r in rows} == {5} and rows[0]["scope"] == "smoothed"
    assert [r["abstained"] for r in rows[1:]] == [2] * 4
    assert rows[2]["linf_radius"] == pytest.approx(0.5 / 8)  # r / sqrt(64)
    assert list(frame["abstained"]) == [False, False, False, True, True]
    assert list(frame["certified_radius"]) == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert list(frame["example"]) == [0, 20, 40, 60, 80]


def test_an_example_on_the_boundary_abstains():
    w = torch.zeros(D)
    w[0] = 1.0
    x = torch.zeros(3, 1, 4, 4)  # w.x + b = 0: p_A = 1/2 exactly
    o = smooth(Linear(w, 0.0), x, [0, 1, 2], 2, _settings(n=5000))
    assert (o.certified == ABSTAIN).all() and np.isnan(o.radius).all()


def test_results_do_not_depend_on_batching_or_on_which_examples_share_a_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    x = torch.rand(10, 1, 4, 4)
    idx = list(range(100, 110))  # test indices key the noise

    def counts(rows, examples, batch):
        return class_counts(model, rows, examples, 777, 4, 0.5, "estimate", 3, batch)

    ref = counts(x, idx, 100_000)  # every example in one pass
    for batch in (1, 7, 256):
        assert torch.equal(counts(x, idx, batch), ref), batch
    alone = counts(x[[3, 7]], [idx[3], idx[7]], 50)  # two of them, in another grouping
    assert torch.equal(alone, ref[[3, 7]])
    other_seed = class_counts(model, x, idx, 777, 4, 0.5, "estimate", 4, 256)
    assert not torch.equal(other_seed, ref)  # the seed matters; the batching does not
    full = smooth(model, x, idx, 4, _settings(batch_size=64))
    part = smooth(model, x[5:], idx[5:], 4, _settings(batch_size=3000))
    for k in ("certified", "count", "p_lower", "predicted"):
        np.testing.assert_array_equal(getattr(full, k)[5:], getattr(part, k))


def test_a_study_reads_certified_and_smoothed_accuracy_from_the_metrics():
    from runner.errors import AdvrunError
    from runner.spec.tune import ObjectiveSpec
    from runner.store import RunMetrics
    from runner.tune.objective import metric_value

    def level(sigma, acc):
        curve = [
            {
                "radius": r,
                "linf_radius": r / 8,
                "accuracy": a,
                "ci_low": 0.0,
                "ci_high": 1.0,
                "certified": 0,
            }
            for r, a in zip((0.0, 0.5), acc, strict=True)
        ]
        return {"sigma": sigma, "n0": 10, "n": 100, "alpha": 0.001, "predict_n": 100,
                "n_examples": 10, "dim": 64, "abstained": 0, "abstain_rate": 0.0, "acr": 0.1,
                "acr_linf": 0.0125, "curve": curve, "smoothed_accuracy": acc[0] + 0.05}  # fmt: skip

    m = RunMetrics(run_id="r", slug="r", eval_hash="h", model="m", arch="a", recipe="g",
                   kind="gaussian_augment", hyperparameters={"sigma": 0.5},
                   certified=[level(0.25, (0.9, 0.4)), level(0.5, (0.8, 0.6))])  # fmt: skip
    goal = ObjectiveSpec.model_validate
    assert (
        metric_value(m, goal({"maximize": "certified_accuracy", "radius": 0.5, "sigma": 0.25}))
        == 0.4
    )
    assert (
        metric_value(m, goal({"maximize": "certified_accuracy", "radius": 0.5, "sigma": "train"}))
        == 0.6
    )
    assert metric_value(m, goal({"maximize": "smoothed_accuracy", "sigma": 0.5})) == pytest.approx(
        0.85
    )
    with pytest.raises(AdvrunError, match="not certified at sigma 1"):
        metric_value(m, goal({"maximize": "smoothed_accuracy", "sigma": 1.0}))
