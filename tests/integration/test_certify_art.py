"""advrun's certification against ART's ``RandomizedSmoothing.certify`` (the reference
implementation users compare with): the same trained digits CNN, sigma, n0, n and alpha, on the
same test examples. The two draw independent noise, so they agree up to Monte-Carlo error:

- per radius, the certified accuracies differ by at most 4 standard errors of the difference of
  two independent estimates on the same N examples. Example i is certified with some probability
  q_i in each, so Var(diff) = sum_i 2 q_i (1 - q_i) / N^2 <= 2 p (1 - p) / N with p the mean of
  the q_i (Jensen); p is estimated by pooling both runs.
- per example certified with the same class by both, n_A (recovered from ART's radius, which is a
  strictly increasing function of it) differ by at most 5 standard errors sqrt(2 n p (1 - p)) of
  the difference of two Binomial(n, p_A) counts, plus one count for estimating p_A from them
  (5, not 4: it is checked on ~150 examples at once, a family-wise two-sided tail of ~1e-4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from digits_model import trained

from runner.certify import bounds
from runner.certify.run import CertifyContext, certify_model
from runner.spec.certify import CertifySpec

N, SIGMA, N0, SAMPLES, ALPHA = 150, 0.25, 100, 1000, 0.001
RADII = [0.0, 0.1, 0.2, 0.3, 0.4]


@pytest.fixture(scope="module")
def both():
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

    model, data = trained()
    x, y = data.x_test[:N], data.y_test[:N]
    cfg = CertifySpec(sigma=[SIGMA], n0=N0, n=SAMPLES, alpha=ALPHA, predict_n=0,
                      n_examples=N, radii=RADII, batch_size=4096)  # fmt: skip
    ours = certify_model(CertifyContext(model, x, y, 10, (0.0, 1.0), cfg, log=lambda s: None))
    art = PyTorchRandomizedSmoothing(
        model, torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
        clip_values=(0.0, 1.0), device_type="cpu", sample_size=N0, scale=SIGMA, alpha=ALPHA,
    )  # fmt: skip
    np.random.seed(0)  # ART draws its noise from NumPy's global stream
    pred, radius = art.certify(x.numpy(), n=SAMPLES, batch_size=1000)
    return ours, pred, radius, y.numpy()


def test_certified_accuracy_agrees_with_art_within_4_standard_errors(both):
    ours, pred, radius, y = both
    (summary,) = ours.summaries
    for point in summary["curve"]:
        r = point["radius"]
        theirs = float(np.mean((pred == y) & (radius >= r)))
        p = (point["accuracy"] + theirs) / 2
        se = np.sqrt(2 * p * (1 - p) / N)
        assert abs(point["accuracy"] - theirs) <= 4 * se + 1e-12, (r, point["accuracy"], theirs)
    abstained = float(np.mean(pred == -1))
    p = (summary["abstain_rate"] + abstained) / 2
    assert abs(summary["abstain_rate"] - abstained) <= 4 * np.sqrt(2 * p * (1 - p) / N) + 1e-12
    assert summary["curve"][0]["accuracy"] > 0.5  # a real comparison, not of two zeros


def test_per_example_counts_agree_with_art(both):
    ours, pred, radius, _ = both
    ex = ours.examples
    table = bounds.lower_bound(np.arange(SAMPLES + 1), SAMPLES, ALPHA)  # increasing in k
    same = (ex["pred"].to_numpy() == pred) & (pred >= 0)
    assert same.mean() > 0.8
    p_art = _cdf(radius / SIGMA)  # ART's p_lower, back from its radius
    k_art = np.minimum(np.searchsorted(table, p_art - 1e-9), SAMPLES)
    np.testing.assert_allclose(table[k_art][same], p_art[same], atol=1e-9)  # recovered exactly
    k_ours = ex["count"].to_numpy(dtype=np.int64)
    p = (k_art + k_ours) / (2 * SAMPLES)
    se = np.sqrt(2 * SAMPLES * p * (1 - p))
    gap = np.abs(k_art - k_ours)
    assert (gap[same] <= 5 * se[same] + 1).all(), np.c_[k_ours, k_art][same][
        gap[same] > 5 * se[same] + 1
    ]


def _cdf(z: np.ndarray) -> np.ndarray:
    from scipy.stats import norm

    return norm.cdf(z)
