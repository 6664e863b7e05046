"""The state_dict inside what a checkpoint file holds: wrappers, EMA weights, key prefixes.

Published checkpoints wrap their weights in a dict (``{'state_dict': ...}``, ``{'model': ...}``,
``{'model_state_dict': ...}``, ``{'net': ...}``), keep exponential-moving-average weights beside
the raw ones (``ema``, ``model_ema``, ``state_dict_ema``), and prefix every key with ``module.``
(``DataParallel``/DDP) or ``_orig_mod.`` (``torch.compile``). Each step taken is recorded, in
words, for the run log and the model card; an ambiguous file (raw and EMA weights, no choice) is
refused rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.errors import AdvrunError

RAW_KEYS = ("state_dict", "model_state_dict", "model", "net")
EMA_KEYS = ("ema", "model_ema", "state_dict_ema", "ema_state_dict")
# prefixes stripped when every key has one: DataParallel/DDP, then torch.compile's wrapper
PREFIXES = {"module.": "DataParallel/DDP", "_orig_mod.": "torch.compile"}
WEIGHTS_CHOICE = "--weights ema|raw (or models[].weights in the spec)"
_DEPTH = 3


@dataclass(frozen=True)
class Unwrapped:
    state: dict[str, Any]
    found: str  # what the file's top-level object is, in words
    steps: tuple[str, ...]  # what was done to reach the state_dict
    weights: str | None  # raw | ema: which of the file's weights were taken, when it said
    ignored: tuple[str, ...]  # keys kept beside the weights (optimizer, epoch, ...)


def is_state_dict(obj: Any) -> bool:
    import torch

    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _shown_keys(obj: dict[str, Any], limit: int = 8) -> str:
    keys = [repr(k) if isinstance(k, str) and k.isprintable() else ascii(k) for k in obj]
    return ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")


def describe(obj: Any) -> str:
    """The top-level object of a file, in words (keys shown for a wrapper)."""
    if is_state_dict(obj):
        return f"a state_dict of {len(obj)} tensors"
    if isinstance(obj, dict):
        return f"a dict with keys {_shown_keys(obj)}" if obj else "an empty dict"
    return f"a {type(obj).__name__}"


def _candidates(obj: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if isinstance(obj.get(k), dict) and obj.get(k)]


def _pick(obj: dict[str, Any], weights: str | None, where: str) -> tuple[str, str | None]:
    """The wrapper key holding the weights to audit, and whether they are raw or EMA."""
    raw, ema = _candidates(obj, RAW_KEYS), _candidates(obj, EMA_KEYS)
    if weights == "ema" and not ema:
        raise AdvrunError(
            f"{where}: no EMA weights in it (looked for {', '.join(EMA_KEYS)}; it has keys "
            f"{_shown_keys(obj)}); drop --weights ema / models[].weights to audit the raw ones"
        )
    if weights == "raw" and not raw:
        raise AdvrunError(
            f"{where}: no raw weights in it (looked for {', '.join(RAW_KEYS)}; it has keys "
            f"{_shown_keys(obj)})"
        )
    if weights is None and raw and ema:
        raise AdvrunError(
            f"{where}: holds raw weights under {raw[0]!r} and EMA weights under {ema[0]!r}; "
            f"say which to audit: {WEIGHTS_CHOICE} (published robust models usually report "
            "the EMA weights)"
        )
    chosen = ema if weights == "ema" or (weights is None and not raw) else raw
    # "raw" is worth recording only where there was a choice (EMA weights beside, or asked for)
    kind = "ema" if chosen is ema else "raw" if (weights or ema) else None
    if len(chosen) > 1:
        raise AdvrunError(
            f"{where}: holds weights under several keys ({', '.join(map(repr, chosen))}); "
            "save the one to audit alone: torch.save(ckpt[KEY], 'model.pt')"
        )
    if not chosen:
        raise AdvrunError(
            f"{where}: expected a state_dict (a mapping of names to tensors), got "
            f"{describe(obj)}, none of which is a known wrapper ({', '.join(RAW_KEYS + EMA_KEYS)}); "
            "save the weights alone: torch.save(model.state_dict(), PATH)"
        )
    return chosen[0], kind


def unwrap(obj: Any, weights: str | None, where: str) -> Unwrapped:
    """The state_dict in ``obj`` (``weights``: raw | ema | None when the file must not hold
    both), with every step recorded; an AdvrunError when there is none or the choice is open."""
    found = describe(obj)
    steps: list[str] = []
    ignored: list[str] = []
    kind = None
    for _ in range(_DEPTH):
        if is_state_dict(obj) or not isinstance(obj, dict):
            break
        key, picked = _pick(obj, weights, where)
        kind = picked or kind
        label = "EMA weights" if picked == "ema" else "the weights"
        steps.append(f"took {label} under {key!r}")
        ignored += [str(k) for k in obj if k != key]
        obj = obj[key]
    if not is_state_dict(obj):
        raise AdvrunError(
            f"{where}: expected a state_dict (a mapping of names to tensors), got "
            f"{describe(obj) if isinstance(obj, dict) and obj else _kind(obj)}; "
            "save the weights alone: torch.save(model.state_dict(), PATH)"
        )
    if weights == "ema" and kind != "ema":
        raise AdvrunError(
            f"{where}: holds one set of weights ({found}), no EMA weights beside them; drop "
            "--weights ema / models[].weights to audit them"
        )
    state, more = strip_prefixes(dict(obj))
    return Unwrapped(state, found, (*steps, *more), kind, tuple(ignored))


def _kind(obj: Any) -> str:
    if isinstance(obj, dict):
        return "an empty mapping" if not obj else "a mapping that holds more than tensors"
    return type(obj).__name__


def strip_prefixes(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``module.`` / ``_orig_mod.`` removed while every key has it (AveragedModel's
    ``n_averaged`` counter dropped first when it is the only key without ``module.``)."""
    steps = []
    rest = [k for k in state if k != "n_averaged"]
    if "n_averaged" in state and rest and all(k.startswith("module.") for k in rest):
        state = {k: state[k] for k in rest}
        steps.append("dropped 'n_averaged' (the counter of torch.optim.swa_utils.AveragedModel)")
    changed = True
    while changed:
        changed = False
        for prefix, origin in PREFIXES.items():
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                steps.append(f"stripped the {origin} prefix {prefix!r} from all {len(state)} keys")
                changed = True
    return state, steps
