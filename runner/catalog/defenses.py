"""Poisoning defenses (``poisoning.defense``): one line per plug-in, naming its class as
"module:attr" (pure; imports nothing).

Each class (a :class:`runner.defenses.base.Detector`) flags suspected poisons of a training set
from the penultimate-layer features of a model trained on it; the run then trains on the rest.
"""

from runner.registry import Registry

DEFENSES = Registry("poisoning defense")
# fmt: off
DEFENSES.register("none", "runner.defenses.none:NoDefense", "train on the training set as it is")
DEFENSES.register(
    "spectral_signatures", "runner.defenses.spectral_signatures:SpectralSignatures",
    "Tran, Li & Madry 2018: per class, remove the highest scores on the top singular vector of "
    "the centred features",
)
DEFENSES.register(
    "activation_clustering", "runner.defenses.activation_clustering:ActivationClustering",
    "Chen et al. 2018: per class, 2-means on ICA-reduced features; the small cluster is removed",
)
# fmt: on
