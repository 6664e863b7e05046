"""``defense: activation_clustering`` (Chen et al. 2018, Detecting Backdoor Attacks on Deep
Neural Networks by Activation Clustering).

Per class: reduce the penultimate features to ``dims`` dimensions (ICA as the paper, or PCA),
split them in two with k-means (scikit-learn's KMeans, seeded), and remove the smaller cluster
when it holds at most ``size_threshold`` of the class (the paper's relative-size analysis;
0.5 removes the smaller cluster always, as ART's ``cluster_analysis="smaller"``). The features
leave the device once per class for scikit-learn; PCA runs on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.defenses.base import Detector

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor


def reduced(features: Tensor, dims: int, method: str, seed: int) -> np.ndarray:
    """``features`` in ``dims`` dimensions (as they are when they have no more)."""
    import torch

    r = features.to(torch.float64)
    if r.shape[1] <= dims:
        return r.cpu().numpy()
    if method == "pca":
        centred = r - r.mean(0, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        return (centred @ vh[:dims].T).cpu().numpy()
    import warnings

    from sklearn.decomposition import FastICA

    ica = FastICA(n_components=dims, max_iter=1000, tol=0.005, random_state=seed)
    with warnings.catch_warnings():  # a class that does not converge is still clustered
        warnings.simplefilter("ignore")
        return ica.fit_transform(r.cpu().numpy())


def two_means(points: np.ndarray, seed: int) -> np.ndarray:
    """Cluster labels 0/1 of k-means with two clusters (10 seeded initialisations)."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(points)


class ActivationClustering(Detector):
    """Removes the smaller of two k-means clusters of each class when it is small enough."""

    paper = "Chen et al. 2018, Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering"

    def flag_class(self, features: Tensor, expected: float) -> Tensor:
        import numpy as np
        import torch

        cfg = self.cfg
        labels = two_means(reduced(features, cfg.dims, cfg.reduce, self.seed), self.seed)
        sizes = np.bincount(labels, minlength=2)
        small = int(np.argmin(sizes))
        flagged = (
            labels == small if sizes[small] / len(labels) <= cfg.size_threshold else labels < 0
        )
        return torch.as_tensor(flagged, dtype=torch.bool, device=features.device)
