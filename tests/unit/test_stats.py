"""Bootstrap intervals, seed spread and the paired McNemar test, against scipy where it applies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from runner.stats import bootstrap_ci, compare_runs, format_mean_std, mcnemar, mean_std


def test_bootstrap_ci_matches_binomial_spread():
    rng = np.random.default_rng(1)
    correct = rng.random(400) < 0.7
    lo, hi = bootstrap_ci(correct, n_boot=4000)
    p = correct.mean()
    se = np.sqrt(p * (1 - p) / len(correct))
    assert lo < p < hi
    # normal approximation. Seeded, so deterministic: measured width 1.003 x 2 * 1.96 * SE.
    # Over 200 other bootstrap seeds the ratio was 0.997, SD 0.020 (resampling noise and the
    # 1/400 lattice): rel=0.1 is 5 SD
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert bootstrap_ci(correct, n_boot=4000) == (lo, hi)  # seeded: reproducible


def test_bootstrap_ci_edges():
    assert bootstrap_ci(np.ones(50, bool)) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ci(np.array([], bool))))
    assert bootstrap_ci(np.array([1, 0, 1, 1]), n_boot=0) == (0.75, 0.75)


@pytest.mark.parametrize(("only_a", "only_b"), [(0, 0), (3, 0), (10, 4), (25, 40), (7, 7)])
def test_mcnemar_is_the_exact_binomial_test(only_a, only_b):
    both = np.ones(30, bool)
    a = np.concatenate([both, np.ones(only_a, bool), np.zeros(only_b, bool), np.zeros(5, bool)])
    b = np.concatenate([both, np.zeros(only_a, bool), np.ones(only_b, bool), np.zeros(5, bool)])
    r = mcnemar(a, b)
    assert (r["only_a"], r["only_b"]) == (only_a, only_b)
    n = only_a + only_b
    expect = 1.0 if n == 0 else sps.binomtest(only_a, n, 0.5).pvalue
    assert r["p_value"] == pytest.approx(expect, rel=1e-9)


def test_mcnemar_needs_paired_examples():
    with pytest.raises(ValueError, match="same examples"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))


def test_mean_std_across_seeds():
    s = mean_std([0.8, 0.82, 0.78])
    assert s["mean"] == pytest.approx(0.8) and s["n"] == 3
    assert s["std"] == pytest.approx(np.std([0.8, 0.82, 0.78], ddof=1))
    assert mean_std([0.5])["std"] == 0.0 and mean_std([])["n"] == 0
    assert format_mean_std([0.8, 0.82, 0.78]) == "0.800 ± 0.020 (n=3)"
    assert format_mean_std([0.5]) == "0.500 (n=1)"


def _examples(correct: list[bool]) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame(
        {"example": np.arange(n), "attack": "worst_case", "label": np.arange(n) % 3,
         "correct": correct}
    )  # fmt: skip


def test_compare_runs_on_examples_frames():
    a = _examples([True] * 20 + [False] * 5)
    b = _examples([True] * 10 + [False] * 15)
    r = compare_runs(a, b)
    assert (r["only_a"], r["only_b"]) == (10, 0)
    assert r["accuracy_a"] == pytest.approx(0.8) and r["p_value"] < 0.01
    with pytest.raises(ValueError, match="same test examples"):
        compare_runs(a, _examples([True] * 24))
