"""RobustBench's model zoo as architectures: ``arch: robustbench:<model name>``.

The architecture comes from the installed ``robustbench`` package (``model_dicts[dataset]
[threat_model][name]['model']()``, as ``robustbench.utils.load_model`` builds it); the weights come
from a local file only, ``--checkpoint`` or RobustBench's ``model_dir`` layout
``<model_dir>/<dataset>/<threat_model>/<name>.pt``, loaded by :mod:`runner.checkpoint` (never
``torch.load`` without ``weights_only``). Nothing is downloaded: while a zoo model is built, the
download functions it could reach (RobustBench's Google Drive helpers, ``gdown``,
``torch.hub``) raise instead, and timm models are created with ``pretrained=False``.

Zoo models normalise their input inside ``forward`` and take [0, 1] pixels: ``models[].normalize``
on top, or another ``pixel_range``, is refused (:mod:`runner.spec.checks` says so at validation).

:func:`load_model` mirrors ``robustbench.utils.load_model``'s signature for use from Python.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError
from runner.registry import did_you_mean

PREFIX = "robustbench:"
DEFAULTS = {"dataset": "cifar10", "threat_model": "Linf", "model_dir": "./models"}
SHAPES = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "imagenet": (3, 224, 224)}
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
# buffers some zoo architectures add for their normalisation, absent from their published files
# (robustbench.utils._safe_load_state_dict loads those non-strictly)
NORM_BUFFERS = {"mu", "sigma", "mean", "std", "normalize.mean", "normalize.std"}
INSTALL = "pip install 'advrun[robustbench]'"


def is_zoo(arch: str) -> bool:
    return arch.startswith(PREFIX)


def settings(arch: str, kwargs: Mapping[str, Any] | None) -> dict[str, str]:
    """name, dataset, threat_model and model_dir of a zoo model (RobustBench's defaults)."""
    return {
        "name": arch[len(PREFIX) :],
        **DEFAULTS,
        **{k: str(v) for k, v in (kwargs or {}).items()},
    }


def checkpoint_path(arch: str, kwargs: Mapping[str, Any] | None) -> Path:
    """RobustBench's layout: ``<model_dir>/<dataset>/<threat_model>/<name>.pt``."""
    s = settings(arch, kwargs)
    return Path(s["model_dir"]) / s["dataset"] / s["threat_model"] / f"{s['name']}.pt"


def fetch_hint(arch: str, kwargs: Mapping[str, Any] | None) -> str:
    """One command that downloads the zoo's file into that layout (with network, once)."""
    s = settings(arch, kwargs)
    return (
        'python -c "from robustbench.utils import load_model; load_model('
        f"'{s['name']}', model_dir='{s['model_dir']}', dataset='{s['dataset']}', "
        f"threat_model='{s['threat_model']}')\""
    )


def _zoo() -> tuple[Any, Any, Any]:
    """robustbench's ``model_dicts`` and its ``BenchmarkDataset`` and ``ThreatModel`` enums."""
    try:
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    except Exception as e:  # ImportError, or torchvision's RuntimeError beside another torch
        raise AdvrunError(
            f"arch 'robustbench:...' needs the robustbench package, which does not import here "
            f"({type(e).__name__}: {' '.join(str(e).split())[:200]}); {INSTALL} (it needs "
            "torchvision and timm built for your torch; docs: Auditing a published model)"
        ) from None
    return model_dicts, BenchmarkDataset, ThreatModel


def _refuse_download(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AdvrunError(
            f"building this RobustBench model would download {what} ({args[:1]!r}); advrun never "
            "downloads: put the file in RobustBench's model_dir layout or pass --checkpoint"
        )

    return refuse


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Every download function a zoo model's constructor could reach raises; timm's
    ``create_model`` runs with ``pretrained=False`` (the weights come from the local file)."""
    patches: list[tuple[Any, str, Any]] = []
    targets = {
        "robustbench.utils": ("download_gdrive", "download_gdrive_new"),
        "robustbench.zenodo_download": ("zenodo_download", "download_file"),
        "gdown": ("download",),
        "torch.hub": ("load_state_dict_from_url", "download_url_to_file"),
        # torchvision binds torch.hub's function at import (weights=..., pretrained=True)
        "torchvision._internally_replaced_utils": ("load_state_dict_from_url",),
        "huggingface_hub": ("hf_hub_download", "snapshot_download"),
    }
    for module, names in targets.items():
        mod = sys.modules.get(module)
        for name in names:
            if mod is not None and hasattr(mod, name):
                patches.append((mod, name, _refuse_download(f"{module}.{name}")))
    timm = sys.modules.get("timm")
    if timm is not None and hasattr(timm, "create_model"):
        create = timm.create_model
        patches.append(
            (timm, "create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False}))
        )
    saved = [(m, n, getattr(m, n)) for m, n, _ in patches]
    try:
        for m, n, new in patches:
            setattr(m, n, new)
        yield
    finally:
        for m, n, old in saved:
            setattr(m, n, old)


def _entry(s: dict[str, str]) -> Any:
    """The zoo's entry of the model: a dict with its constructor ``model`` and ``gdrive_id``."""
    model_dicts, dataset_enum, threat_enum = _zoo()
    try:
        ds, tm = dataset_enum(s["dataset"]), threat_enum(s["threat_model"])
    except ValueError as e:
        raise AdvrunError(f"RobustBench does not know {e}; check the model's kwargs") from None
    models = model_dicts.get(ds, {}).get(tm, {})
    if s["name"] not in models:
        raise AdvrunError(
            f"RobustBench has no model '{s['name']}' for {s['dataset']} {s['threat_model']}"
            f"{did_you_mean(s['name'], list(models))}; its names are those of the leaderboard "
            "(robustbench.model_zoo.model_dicts)"
        )
    return models[s["name"]]


def _timm_name(s: dict[str, str]) -> str | None:
    """The timm name RobustBench gives a model it keeps in timm's registry, if it is one."""
    timm = sys.modules.get("timm")
    name = f"{s['name'].lower().replace('-', '_')}_{s['dataset']}_{s['threat_model'].lower()}"
    return name if timm is not None and timm.is_model(name) else None


def build(
    arch: str, input_shape: Sequence[int], num_classes: int, kwargs: Mapping[str, Any]
) -> Any:
    """The zoo model's architecture (its weights still those of its constructor)."""
    s = settings(arch, kwargs)
    want = SHAPES.get(s["dataset"])
    if want is not None and tuple(input_shape) != want:
        raise AdvrunError(
            f"RobustBench's {s['dataset']} models take {want[0]}x{want[1]}x{want[2]} images; the "
            f"data gives {'x'.join(map(str, input_shape))}: use the data set they were trained on"
        )
    if CLASSES.get(s["dataset"], num_classes) != num_classes:
        raise AdvrunError(
            f"RobustBench's {s['dataset']} models have {CLASSES[s['dataset']]} classes; the data "
            f"has {num_classes}"
        )
    entry = _entry(s)
    if isinstance(entry.get("gdrive_id"), list):
        raise AdvrunError(
            f"RobustBench's '{s['name']}' is an ensemble of {len(entry['gdrive_id'])} checkpoints; "
            "advrun audits one model file: audit a member, or wrap the ensemble in a model "
            "factory (--allow-import)"
        )
    with no_downloads():
        timm_name = _timm_name(s)
        if timm_name is not None:
            return sys.modules["timm"].create_model(timm_name, num_classes=num_classes)
        return entry["model"]()


def adapt_keys(model: Any, state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The file's keys as the zoo architecture names them, as ``load_model`` adapts them: a
    ``model.`` prefix removed or added, normalisation buffers the file lacks kept from the
    architecture. Unchanged when nothing fits better (the mismatch is then reported)."""
    own = model.state_dict()
    candidates = [(state, None)]
    if all(k.startswith("model.") for k in state):
        candidates.append(({k[len("model.") :]: v for k, v in state.items()},
                           "stripped RobustBench's 'model.' prefix"))  # fmt: skip
    candidates.append(({f"model.{k}": v for k, v in state.items()},
                       "added the 'model.' prefix of RobustBench's normalising wrapper"))  # fmt: skip
    for cand, step in candidates:
        missing = set(own) - set(cand)
        if set(cand) <= set(own) and missing <= NORM_BUFFERS:
            steps = [step] if step else []
            if missing:
                cand = {**cand, **{k: own[k] for k in missing}}
                steps.append(f"kept the architecture's normalisation buffers {', '.join(sorted(missing))} "
                             "(not in the file; RobustBench's loader allows it)")  # fmt: skip
            return cand, steps
    return state, []


def load_model(
    model_name: str,
    model_dir: str | Path = "./models",
    dataset: str = "cifar10",
    threat_model: str = "Linf",
    custom_checkpoint: str = "",
) -> Any:
    """``robustbench.utils.load_model``'s signature: the zoo model with the weights of the local
    file (``custom_checkpoint``, or the ``model_dir`` layout), in eval mode; never downloads."""
    from runner.checkpoint import load_checkpoint, load_into

    arch = PREFIX + model_name
    kw = {"dataset": dataset, "threat_model": threat_model, "model_dir": str(model_dir)}
    path = Path(custom_checkpoint) if custom_checkpoint else checkpoint_path(arch, kw)
    if not path.is_file():
        raise AdvrunError(
            f"no local checkpoint for '{model_name}' at {path}; advrun never downloads: fetch it "
            f"once where the network is allowed ({fetch_hint(arch, kw)}) or pass its path"
        )
    model = build(arch, SHAPES[dataset], CLASSES[dataset], kw)
    state, _ = adapt_keys(model, load_checkpoint(path).state)
    load_into(model, state, path, f"RobustBench model '{model_name}'", "check the model name")
    return model.eval()
