"""Penultimate-layer features of a model, in batches on the device.

By default the features are the input of the model's last linear layer (its classifier head),
taken with a forward pre-hook; ``poisoning.feature_layer: name`` takes the output of the module
of that name in ``model.named_modules()`` instead (flattened). A model whose only layer with
weights is its head has no penultimate layer: the detectors would cluster raw pixels, so that is
an error that names the layers to choose from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import SpecValueError

if TYPE_CHECKING:
    from torch import Tensor, nn

WHERE = ("poisoning", "feature_layer")


def _names(model: nn.Module, limit: int = 12) -> str:
    names = [n for n, _ in model.named_modules() if n]
    shown = ", ".join(names[:limit]) + (
        f" and {len(names) - limit} more" if len(names) > limit else ""
    )
    return shown or "(it has no named submodules)"


def feature_module(model: nn.Module, name: str | None) -> tuple[nn.Module, bool]:
    """The module whose input (True) or output (False) holds the features."""
    from torch import nn

    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules or not name:
            raise SpecValueError(
                WHERE,
                f"the model has no module '{name}'; feature_layer names one of its modules: "
                f"{_names(model)}",
            )
        return modules[name], False
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weighted = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if not linears or weighted == [linears[-1]]:
        why = "no linear layer" if not linears else "one layer with weights, its head"
        raise SpecValueError(
            WHERE,
            f"the detectors read penultimate-layer features, but the model has {why}; name the "
            f"module whose output to use with poisoning.feature_layer: name (its modules: "
            f"{_names(model)}), or use a model with a hidden layer",
        )
    return linears[-1], True


def extract(model: nn.Module, x: Tensor, name: str | None, batch_size: int = 512) -> Tensor:
    """The features of ``x`` (N, D) on the model's device, in eval mode, without gradients."""
    import torch

    module, take_input = feature_module(model, name)
    device = next(model.parameters()).device
    caught: list[Tensor] = []

    def hook(_m, inputs, output=None) -> None:
        caught.append((inputs[0] if take_input else output).detach().flatten(1))

    handle = (
        module.register_forward_pre_hook(hook) if take_input else module.register_forward_hook(hook)
    )
    was = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                caught.clear()
                model(x[i : i + batch_size].to(device, non_blocking=True))
                out.append(caught[-1])
    finally:
        handle.remove()
        model.train(was)
    return torch.cat(out)
