"""A zoo of third-party-style models, masked ones included, for judging attack strength.

Every model here is built with plain PyTorch (its own layers, its own training loop and its own
attacks for adversarial training), not with advrun's recipes or models, so that a benchmark or a
test on them measures advrun against models it did not shape. Each is seeded and deterministic
(same weights on every run on the same machine) and its weights are cached (``cache`` argument,
a git-ignored folder such as ``reports/model-cache``), so a rerun skips training.

Cases (digits: sklearn's 8x8 images in [0, 1], a stratified 80/20 split, 360 test examples):

- ``plain_pgd``: Madry PGD training (10 steps of eps/4, eps 0.1) of a small CNN; the control:
  a robust model without a masking mechanism.
- ``fgsm_co``: FGSM training without random start at a large eps (0.3, step eps): catastrophic
  overfitting, FGSM accuracy far above PGD's.
- ``temperature``: ``plain_pgd``'s weights with logits multiplied by 1e4 at test time: a
  saturated softmax, the cross-entropy's input gradient underflows to zero in float32.
- ``quantized``: inputs rounded to 4 levels in training (straight-through, PGD training) and
  in test (plain rounding: zero input gradient everywhere).
- ``noise``: Gaussian input noise (sd 0.2) in every forward pass, training and test; PGD
  training; a randomized defense.
- ``bn_dropout``: BatchNorm + dropout CNN, PGD training by a plain loop, evaluated in eval mode.
- ``bn_dropout_rand``: the same weights with dropout left active at test time (randomized).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


# --- data -------------------------------------------------------------------------------------


def digits(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn's digits as (x_train, y_train, x_test, y_test), images (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    i_tr, i_te = train_test_split(
        range(len(y)), test_size=0.2, random_state=seed, stratify=d.target
    )
    return x[i_tr], y[i_tr], x[i_te], y[i_te]


# --- architectures and wrappers ---------------------------------------------------------------


class DigitsCNN(nn.Module):
    """conv3x3(32) [BN] ReLU conv3x3(64) [BN] ReLU maxpool2 [dropout] fc256 [BN] ReLU [dropout] fc.

    ``dropout_at_test`` keeps dropout active in eval mode (a randomized defense); BatchNorm then
    still uses its running statistics, so the randomness is dropout's alone.
    """

    def __init__(self, channels: int = 1, side: int = 8, classes: int = 10, bn: bool = False,
                 dropout: float = 0.0, dropout_at_test: bool = False) -> None:  # fmt: skip
        super().__init__()
        norm2d = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), norm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), norm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.fc1 = nn.Linear(64 * (side // 2) ** 2, 256)
        self.bn1 = nn.BatchNorm1d(256) if bn else nn.Identity()
        self.fc2 = nn.Linear(256, classes)
        self.p = dropout
        self.dropout_at_test = dropout_at_test

    def _drop(self, h: Tensor) -> Tensor:
        return F.dropout(h, self.p, training=self.training or self.dropout_at_test)

    def forward(self, x: Tensor) -> Tensor:
        h = self._drop(self.features(x).flatten(1))
        return self.fc2(self._drop(F.relu(self.bn1(self.fc1(h)))))


class Scaled(nn.Module):
    """Logits times ``temperature``: the same decisions, a saturated softmax."""

    def __init__(self, inner: nn.Module, temperature: float) -> None:
        super().__init__()
        self.inner, self.temperature = inner, temperature

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x) * self.temperature


class Quantized(nn.Module):
    """Inputs rounded to ``levels`` evenly spaced values in [0, 1] before ``inner``.

    ``straight_through`` (training) passes the gradient through the rounding unchanged; without
    it (test) the rounding is a step function, whose gradient is zero almost everywhere.
    """

    def __init__(self, inner: nn.Module, levels: int, straight_through: bool = False) -> None:
        super().__init__()
        self.inner, self.levels, self.straight_through = inner, levels, straight_through

    def forward(self, x: Tensor) -> Tensor:
        k = self.levels - 1
        q = torch.round(x.clamp(0, 1) * k) / k
        if self.straight_through:
            q = x + (q - x).detach()
        return self.inner(q)


class NoisyInput(nn.Module):
    """Gaussian noise of sd ``sigma`` added to the input in every forward pass (from torch's
    global generator, so a seeded caller gets reproducible draws)."""

    def __init__(self, inner: nn.Module, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x + self.sigma * torch.randn_like(x))


# --- attacks used for training (and by the tests' masking checks) ------------------------------


def input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed cross-entropy w.r.t. the input."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """One signed-gradient step of size eps from x (no random start), clipped to [0, 1]."""
    return (x + eps * input_grad(model, x, y).sign()).clamp(0, 1).detach()


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int,
        generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """Linf PGD on the cross-entropy from a uniform random start in the eps-ball."""
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
    xa = (x + eps * noise.to(x.device)).clamp(0, 1)
    for _ in range(steps):
        xa = xa + alpha * input_grad(model, xa, y).sign()
        xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1).detach()
    return xa


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def fit(model: nn.Module, x: Tensor, y: Tensor, epochs: int, attack: Attack | None = None,
        lr: float = 1e-3, batch: int = 128) -> nn.Module:  # fmt: skip
    """A plain loop: Adam, shuffled batches; ``attack`` (in eval mode) makes the training
    inputs adversarial. The caller seeds torch's global generator."""
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            b = perm[i : i + batch]
            xb = x[b]
            if attack is not None:
                model.eval()
                xb = attack(model, xb, y[b])
            model.train()
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


# --- the zoo ----------------------------------------------------------------------------------


@dataclass
class Case:
    """A model to attack: eval mode, weights frozen, with its test data and threat model."""

    name: str
    model: nn.Module
    x: Tensor
    y: Tensor
    eps: float
    masking: str  # what the model is built to show
    randomized: bool = False
    pixel_range: tuple[float, float] = (0.0, 1.0)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """How one set of weights is trained (the cache key is a hash of these fields)."""

    arch: dict
    epochs: int
    attack: str  # "none", "fgsm", "pgd"
    eps: float = 0.0
    wrap: str = "none"  # in training: "none", "quantize_ste", "noise"
    seed: int = 0
    version: int = 1  # bump when DigitsCNN, fit or the training attacks change (new cache key)

    def key(self) -> str:
        blob = json.dumps(self.__dict__, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


QUANT_LEVELS, NOISE_SD, TEMPERATURE = 4, 0.2, 1e4
RECIPES = {
    "plain_pgd": Recipe({}, 20, "pgd", 0.1),
    "fgsm_co": Recipe({}, 30, "fgsm", 0.3),
    "quantized": Recipe({}, 20, "pgd", 0.1, wrap="quantize_ste"),
    "noise": Recipe({}, 20, "pgd", 0.1, wrap="noise"),
    "bn_dropout": Recipe({"bn": True, "dropout": 0.3}, 20, "pgd", 0.1),
}


def _wrap(net: nn.Module, wrap: str, training: bool) -> nn.Module:
    if wrap == "quantize_ste":
        return Quantized(net, QUANT_LEVELS, straight_through=training)
    if wrap == "noise":
        return NoisyInput(net, NOISE_SD)
    return net


def _train_attack(r: Recipe) -> Attack | None:
    if r.attack == "fgsm":
        return lambda m, x, y: fgsm(m, x, y, r.eps)
    if r.attack == "pgd":
        return lambda m, x, y: pgd(m, x, y, r.eps, r.eps / 4, 10)
    return None


def trained(name: str, cache: Path | None = None) -> DigitsCNN:
    """The inner network of recipe ``name``, trained (or loaded from ``cache``)."""
    r = RECIPES[name]
    torch.manual_seed(r.seed)
    net = DigitsCNN(**r.arch)
    path = cache / f"{name}-{r.key()}.pt" if cache is not None else None
    if path is not None and path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    xt, yt, _, _ = digits()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU float sums depend on the thread count: same weights everywhere
    try:
        fit(_wrap(net, r.wrap, training=True), xt, yt, r.epochs, _train_attack(r))
    finally:
        torch.set_num_threads(threads)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)  # atomic: a killed run leaves no half-written weights
    return net.eval()


def _frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def build(name: str, cache: Path | None = None) -> Case:
    """Case ``name`` of :data:`ZOO` (the models in eval mode, weights frozen)."""
    _, _, x, y = digits()
    if name == "plain_pgd":
        return Case(name, _frozen(trained(name, cache)), x, y, 0.1, "none (control)")
    if name == "fgsm_co":
        return Case(name, _frozen(trained(name, cache)), x, y, 0.3,
                    "catastrophic overfitting (FGSM training, no random start)")  # fmt: skip
    if name == "temperature":
        model = Scaled(trained("plain_pgd", cache), TEMPERATURE)
        return Case(name, _frozen(model), x, y, 0.1,
                    f"saturated softmax (logits x {TEMPERATURE:g})")  # fmt: skip
    if name == "quantized":
        model = Quantized(trained(name, cache), QUANT_LEVELS)
        return Case(name, _frozen(model), x, y, 0.1,
                    f"input quantisation to {QUANT_LEVELS} levels (zero gradient)")  # fmt: skip
    if name == "noise":
        model = NoisyInput(trained(name, cache), NOISE_SD)
        return Case(name, _frozen(model), x, y, 0.1,
                    f"randomized: Gaussian input noise sd {NOISE_SD}", randomized=True)  # fmt: skip
    if name == "bn_dropout":
        return Case(name, _frozen(trained(name, cache)), x, y, 0.1,
                    "none (BatchNorm + dropout, eval mode)")  # fmt: skip
    if name == "bn_dropout_rand":
        net = trained("bn_dropout", cache)
        net.dropout_at_test = True
        return Case(name, _frozen(net), x, y, 0.1,
                    "randomized: dropout active at test time", randomized=True)  # fmt: skip
    raise KeyError(f"unknown model {name!r}; choose from {', '.join(ZOO)}")


ZOO = ("plain_pgd", "fgsm_co", "temperature", "quantized", "noise", "bn_dropout",
       "bn_dropout_rand")  # fmt: skip
