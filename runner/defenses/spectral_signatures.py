"""``defense: spectral_signatures`` (Tran, Li & Madry 2018, Algorithm 1).

Per class: centre the penultimate features R (n x d) of the class, take the top right singular
vector v of the centred matrix, score each example by its squared projection ((R_i - mean) . v)^2
and remove the round(eps_multiplier x expected_fraction x n) highest scores. All of it runs on the
device (``torch.linalg.svd`` in float64, so a poorly conditioned class does not lose the
direction to float32 round-off).

ART's ``SpectralSignatureDefense`` (the reference) differs in two details: it scores the
projection of the *uncentred* features (|R_i . v|) and cuts at a quantile (scores >= the
(1 - share) quantile) instead of removing a count; see ``tests/integration/test_defenses.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.defenses.base import Detector

if TYPE_CHECKING:
    from torch import Tensor


def scores(features: Tensor) -> Tensor:
    """The outlier score of each row: its squared projection on the top singular vector of the
    centred rows."""
    import torch

    r = features.to(torch.float64)
    centred = r - r.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).square()


class SpectralSignatures(Detector):
    """Removes the highest spectral scores of every class."""

    paper = "Tran, Li & Madry 2018, Spectral Signatures in Backdoor Attacks"

    def removal_fraction(self, expected: float) -> float | None:
        return self.cfg.removal_fraction(expected)

    def flag_class(self, features: Tensor, expected: float) -> Tensor:
        import torch

        share = self.cfg.removal_fraction(expected)
        k = min(len(features), round(share * len(features)))
        out = torch.zeros(len(features), dtype=torch.bool, device=features.device)
        if k > 0:
            out[torch.topk(scores(features), k).indices] = True
        return out
