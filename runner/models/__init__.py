"""Model construction: built-in architectures by name, or a user factory ``"pkg.module:attr"``.

Every model is an ``nn.Module`` built as ``Model(input_shape=(C, H, W), num_classes=K, **kw)``
whose forward returns logits of shape (B, K). :func:`build_for_spec` builds a model of the spec
(``models[]``), wrapped in its input normalisation when it names one.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from runner.errors import AdvrunError
from runner.registry import did_you_mean

__all__ = ["build_model", "build_for_spec", "check_io", "import_allowed"]

_FIXED = ("self", "input_shape", "num_classes")  # passed by build_model, not user kwargs
MAX_PARAMETERS = 1_000_000_000  # built-in architectures; 4 GB of float32 weights


def check_io(name: str, input_shape: Sequence[int], num_classes: int) -> tuple[int, int, int]:
    """Validate (C, H, W) and the class count; return the shape as a tuple of ints."""
    try:
        # operator.index accepts ints and NumPy integers but not floats or strings
        shape = tuple(operator.index(d) for d in input_shape if not isinstance(d, bool))
        classes = operator.index(num_classes)
    except TypeError:
        shape, classes = (), 0
    if len(shape) != 3 or min(shape) <= 0:
        raise AdvrunError(
            f"{name}: input_shape must be three positive integers (C, H, W), got {input_shape!r}"
        )
    if isinstance(num_classes, bool) or classes < 2:
        raise AdvrunError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
    return (shape[0], shape[1], shape[2])


def import_allowed(module: str, patterns: Sequence[str]) -> bool:
    """Whether ``module`` matches an fnmatch pattern; ``pkg.*`` also admits ``pkg`` itself."""
    return any(
        fnmatch.fnmatchcase(module, p) or (p.endswith(".*") and module == p[:-2]) for p in patterns
    )


def build_model(
    arch: str,
    input_shape: Sequence[int],
    num_classes: int,
    kwargs: Mapping[str, Any] | None = None,
    allow_import: Sequence[str] = (),
) -> nn.Module:
    """Build ``arch``: a name in ``runner.catalog.MODELS``, or ``"pkg.module:factory"``.

    A factory's module is imported only if it matches a pattern in ``allow_import`` (importing
    runs arbitrary code, so a spec alone must not be able to trigger it).
    """
    kw = dict(kwargs or {})
    shape = check_io(arch, input_shape, num_classes)
    num_classes = int(num_classes)
    if arch.startswith("robustbench:"):  # an optional extra of advrun, like torchvision
        from runner.models.robustbench import build

        return build(arch, shape, num_classes, kw)
    if ":" in arch:
        return _build_user(arch, shape, num_classes, kw, allow_import)

    from runner.catalog import MODELS

    cls = MODELS.load(arch)
    params = inspect.signature(cls).parameters
    accepted = [p for p in params if p not in _FIXED]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise AdvrunError(
            f"model '{arch}' does not take {', '.join(map(repr, unknown))}"
            f"{did_you_mean(unknown[0], accepted)}; it accepts: "
            + (", ".join(accepted) if accepted else "no options")
        )
    # built on the meta device first (no memory): kwargs like hidden: [1000000000] are refused
    # with a message instead of exhausting RAM, and bad kwarg values fail before any real work
    try:
        with torch.device("meta"):
            probe = cls(input_shape=shape, num_classes=num_classes, **kw)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise AdvrunError(
            f"model '{arch}' cannot be built with kwargs {kw} for input {shape} and "
            f"{num_classes} classes: {type(exc).__name__}: {str(exc)[:200]}; check models[].kwargs"
        ) from exc
    n_params = sum(p.numel() for p in probe.parameters())
    if n_params > MAX_PARAMETERS:
        raise AdvrunError(
            f"model '{arch}' with kwargs {kw} would have {n_params:,} parameters, more than the "
            f"limit of {MAX_PARAMETERS:,}; check models[].kwargs for a typo"
        )
    return cls(input_shape=shape, num_classes=num_classes, **kw)


def _build_user(
    arch: str,
    shape: tuple[int, int, int],
    num_classes: int,
    kw: dict[str, Any],
    allow_import: Sequence[str],
) -> nn.Module:
    """Build a user's model by its factory, imported only where ``allow_import`` covers it."""
    factory = _user_factory(arch, allow_import)
    attr = arch.partition(":")[2]
    try:
        model = factory(input_shape=shape, num_classes=num_classes, **kw)
    except Exception as exc:
        # chained (from exc), so a traceback is still there for --debug
        raise AdvrunError(
            f"model factory '{arch}' failed: {type(exc).__name__}: {exc}; it is called as "
            f"{attr}(input_shape={shape}, num_classes={num_classes}"
            + "".join(f", {k}=..." for k in kw)
            + ")"
        ) from exc
    if not isinstance(model, nn.Module):
        raise AdvrunError(
            f"model factory '{arch}' returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _user_factory(arch: str, allow_import: Sequence[str]) -> Any:
    """The function or nn.Module class ``arch`` ('package.module:factory') names, imported only
    if ``allow_import`` covers its module and the module it is defined in."""
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise AdvrunError(f"model factory '{arch}' must look like 'package.module:factory'")
    if not import_allowed(module_name, allow_import):
        top = module_name.split(".")[0]
        raise AdvrunError(
            f"model factory '{arch}' would import module '{module_name}', which is not allowed; "
            f"pass --allow-import {top}.* (or the exact module name) if you trust that code"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdvrunError(
            f"cannot import module '{module_name}' for model factory '{arch}' ({exc}); "
            "check the name and that its folder is on PYTHONPATH"
        ) from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise AdvrunError(
            f"module '{module_name}' ({getattr(module, '__file__', '?')}) has no callable "
            f"'{attr}' for model factory '{arch}'"
        )
    _check_factory(arch, factory, attr, allow_import)
    return factory


def _check_factory(arch: str, factory: Any, attr: str, allow_import: Sequence[str]) -> None:
    # The pattern admits code, not names: an object re-exported from another module (os:system
    # is posix.system) runs that module's code, so its own module must be allowed too.
    origin = getattr(factory, "__module__", None) or type(factory).__module__
    if not import_allowed(origin, allow_import):
        raise AdvrunError(
            f"model factory '{arch}' resolves to {origin}.{getattr(factory, '__qualname__', attr)}, "
            f"defined in module '{origin}', which --allow-import "
            f"{' '.join(repr(p) for p in allow_import)} does not cover; only a factory defined in "
            f"an allowed module is called: point arch at where it is defined, or pass "
            f"--allow-import {origin} if you really trust that code"
        )
    if not (inspect.isfunction(factory) or inspect.isclass(factory)):
        raise AdvrunError(
            f"model factory '{arch}' is a {type(factory).__name__}, not a Python function or "
            "class; a factory is called as f(input_shape=..., num_classes=..., **kwargs) and "
            "returns a torch.nn.Module"
        )
    if inspect.isclass(factory) and not issubclass(factory, nn.Module):
        raise AdvrunError(
            f"model factory '{arch}' is the class {factory.__qualname__}, which is not a "
            "torch.nn.Module"
        )


def _field(obj: Any, key: str, default: Any = None) -> Any:
    """A field of a model spec, whether a plain dict (run.json) or a spec object."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def build_for_spec(
    model: Any,
    input_shape: Sequence[int],
    num_classes: int,
    pixel_range: Sequence[float] = (0.0, 1.0),
    allow_import: Sequence[str] = (),
) -> nn.Module:
    """The model a ``models[]`` entry describes (``arch``, ``kwargs``, ``normalize``).

    With ``normalize`` the architecture is wrapped in :class:`runner.models.normalize.Normalized`,
    so it takes pixels in ``pixel_range``; its ``state_dict`` keys stay the architecture's.
    """
    arch = _field(model, "arch")
    norm = _field(model, "normalize")
    if arch.startswith("robustbench:"):
        _zoo_inputs(_field(model, "name"), arch, norm, pixel_range)
    net = build_model(arch, input_shape, num_classes, _field(model, "kwargs") or {}, allow_import)
    if not norm:
        return net
    from runner.models.normalize import Normalized

    mean, std = list(_field(norm, "mean")), list(_field(norm, "std"))
    channels = int(input_shape[0])
    if len(mean) not in (1, channels):
        what = (
            f"'{_field(norm, 'preset')}' normalisation" if _field(norm, "preset") else "normalize"
        )
        raise AdvrunError(
            f"model '{_field(model, 'name')}': {what} has {len(mean)} channel(s) but the images "
            f"have {channels}; give {channels} values (or one for all channels)"
        )
    lo, hi = (float(v) for v in pixel_range)
    return Normalized(net, mean, std, (lo, hi), _field(norm, "preset"))


def _zoo_inputs(name: str, arch: str, norm: Any, pixel_range: Sequence[float]) -> None:
    """A RobustBench model normalises its [0, 1] input itself: nothing may be added on top."""
    if norm:
        raise AdvrunError(
            f"model '{name}': '{arch}' normalises its input inside the model as RobustBench built "
            "it; models[].normalize would apply it twice: remove it"
        )
    if tuple(float(v) for v in pixel_range) != (0.0, 1.0):
        raise AdvrunError(
            f"model '{name}': '{arch}' takes pixels in [0, 1], as RobustBench evaluates it; set "
            "threat.pixel_range: [0, 1] (eps in those units, e.g. 8/255)"
        )
