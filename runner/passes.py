"""Count forward and backward passes through a model (in examples), whoever drives it."""

from __future__ import annotations

from torch import Tensor, nn


class PassCounter:
    """Forward hook: counts examples forwarded, and examples whose logits get a gradient.

    Works for advrun's loops and for ART's internals alike, since both call the module.
    """

    def __init__(self, model: nn.Module) -> None:
        self.forward = 0
        self.backward = 0
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        n = int(output.shape[0]) if isinstance(output, Tensor) and output.dim() else 0
        self.forward += n
        if isinstance(output, Tensor) and output.requires_grad:
            output.register_hook(self._on_grad(n))

    def _on_grad(self, n: int):
        def hook(grad: Tensor) -> None:
            self.backward += n

        return hook

    def close(self) -> None:
        self._handle.remove()

    def as_dict(self) -> dict[str, int]:
        return {"forward_passes": self.forward, "backward_passes": self.backward}
