"""Randomized-smoothing certification (Cohen, Rosenfeld & Kolter, ICML 2019).

The smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), is certified by
sampling: CERTIFY picks the top class from n0 noisy samples, bounds its probability from below
with a one-sided Clopper-Pearson interval on n fresh samples, and certifies the L2 radius
sigma * Phi^-1(p_lower) (abstaining when p_lower <= 1/2); PREDICT gives the smoothed classifier's
prediction with its own binomial test. Sampling runs on the device, many noise samples of several
examples per forward pass, each example drawing from its own seeded streams
(:mod:`runner.certify.noise`), so the numbers do not depend on batching or on resuming.

- :mod:`runner.certify.bounds`: the statistics (SciPy): bounds, radii, tests, intervals.
- :mod:`runner.certify.noise`: per-example noise streams, in blocks of a fixed size.
- :mod:`runner.certify.sampling`: class counts of noisy samples, batched on the device.
- :mod:`runner.certify.smoothing`: CERTIFY and PREDICT for a set of examples at one sigma.
- :mod:`runner.certify.run`: the resumable certification of a model and its results.
"""
