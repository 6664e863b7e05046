"""``advrun export-adv RUN_DIR (--attack NAME | --all) [--train] [-o PATH]``: adversarial data.

Regenerates an attack from the run's checkpoint and resolved config, writes an npz (``x_adv``,
``y``, ``index`` into the test split, ``meta`` as JSON text) and records its SHA-256 in the run's
``exports.json``, so the exact adversarial data behind a reported number can be audited later.
``--all`` exports every attack of the suite; ``--train`` the training-time adversarial examples
of the final epoch (see :func:`training_examples`). Every export is listed in
``exports/manifest.json`` (file, sha256, attack, eps, checkpoint hash, data hash, advrun
version), which holds no timestamp: the same exports give the same manifest, byte for byte, so
the folder can be versioned with DVC (``dvc add RUN_DIR/exports``) or logged as an artifact.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.compile import Run
from runner.errors import AdvrunError
from runner.fsio import contained, read_json, sha256_file
from runner.registry import unknown_name_message
from runner.spec.attacks import AttackBase


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory: <output>/runs/<run>")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--attack", metavar="NAME", help="an attack of the run's suite")
    which.add_argument("--all", action="store_true", help="every attack of the run's suite")
    p.add_argument(
        "--train",
        action="store_true",
        help="also the training-time adversarial examples of the final epoch: the recipe's own "
        "attack, regenerated from the last checkpoint, seeded (exports/train-KIND.npz)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="with --attack: the npz file (default: RUN_DIR/exports/adv-NAME.npz); with --all or "
        "--train: the folder (default: RUN_DIR/exports), which gets manifest.json",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="PATTERN",
        help="allow user model factories from modules matching PATTERN",
    )


def _stored_run(run_dir: Path, cfg: dict[str, Any]) -> Run:
    """The typed run behind a run directory's run.json."""
    from pydantic import ValidationError

    if cfg.get("kind") == "audit":
        raise AdvrunError(
            f"{run_dir} is an audit of an external checkpoint (advrun eval); export-adv rebuilds "
            "trained runs from their own checkpoints"
        )
    try:
        return Run.from_json(cfg)
    except (KeyError, ValidationError) as e:
        raise AdvrunError(
            f"{run_dir / 'run.json'} is not a run this advrun can read ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160]}); run the spec again to rewrite it"
        ) from None


def _attack(run: Run, name: str) -> AttackBase:
    attacks = {a.name: a for a in run.attacks}
    if not attacks:
        raise AdvrunError("this run's spec has no attacks; there is nothing to export")
    if name not in attacks:
        raise AdvrunError(unknown_name_message("attack", name, list(attacks)))
    return attacks[name]


def _checkpoint(run_dir: Path, metrics: dict[str, Any] | None, run: Run) -> Path:
    which = (metrics or {}).get("checkpoint") or run.eval.checkpoint
    for name in (str(which), "last"):
        path = contained(run_dir, "checkpoints", f"{name}.pt")
        if path.exists():
            return path
    raise AdvrunError(f"{run_dir}: no checkpoint under checkpoints/; train the run first")


def write_npz(fh, arrays: dict[str, Any]) -> None:
    """np.savez_compressed, but with fixed zip timestamps: the same arrays give the same bytes,
    so the recorded SHA-256 can be reproduced by exporting again."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def record_export(run_dir: Path, entry: dict[str, Any]) -> None:
    """Add (or replace, same file) an entry in RUN_DIR/exports.json, atomically."""
    from runner.fsio import write_json

    path = run_dir / "exports.json"
    data = read_json(path) or {}
    items = [e for e in data.get("adversarial_exports", []) if e.get("file") != entry["file"]]
    write_json(path, {**data, "adversarial_exports": [*items, entry]})


MANIFEST = "manifest.json"
SCHEMA = "advrun.adversarial_exports/1"


@dataclass
class Loaded:
    """What every export of one run needs, loaded once."""

    run_dir: Path
    run: Run
    metrics: dict[str, Any] | None
    device: Any
    data: Any
    model: Any
    checkpoint: Path


def _load(run_dir: Path, device_name: str, allow_import: list[str], which: str | None) -> Loaded:
    cfg = read_json(run_dir / "run.json")
    if not cfg:
        raise AdvrunError(f"{run_dir}: no run.json; give a run directory such as OUT/runs/<run>")
    metrics = read_json(run_dir / "metrics.json")
    stored = _stored_run(run_dir, cfg)
    if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", device_name):
        raise AdvrunError(f"--device '{device_name}' is not one of auto, cpu, mps, cuda, cuda:N")
    from runner.device import select_device, set_threads
    from runner.execute.prepare import prepare
    from runner.models import build_for_spec
    from runner.train.loop import load_checkpoint

    device = select_device(device_name)
    set_threads(stored.threads, stored.deterministic)
    data = prepare(stored.data, stored.threat.pixel_range, device)
    recorded = (metrics or {}).get("data_sha256")
    if recorded and recorded != data.sha256:
        raise AdvrunError(
            f"the data changed since this run was evaluated (sha256 {data.sha256[:12]} != "
            f"{recorded[:12]}); an export would not match its reported accuracy"
        )
    model = build_for_spec(
        stored.model, data.input_shape, data.num_classes, stored.threat.pixel_range, allow_import
    ).to(device)
    if which == "last":
        ck = contained(run_dir, "checkpoints", "last.pt")
        if not ck.exists():
            raise AdvrunError(f"{run_dir}: no checkpoints/last.pt; train the run first")
    else:
        ck = _checkpoint(run_dir, metrics, stored)
    model.load_state_dict(load_checkpoint(ck, device))
    model.eval()
    return Loaded(run_dir, stored, metrics, device, data, model, ck)


def _write(out: Path, arrays: dict[str, Any]) -> str:
    from runner.fsio import write_with

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            write_npz(fh, arrays)

    write_with(out, write)
    return sha256_file(out)


def export_attack(ld: Loaded, attack: AttackBase, out: Path) -> dict[str, Any]:
    """The adversarial test set of one attack of the suite; its manifest entry."""
    import numpy as np

    from runner.attacks.runner import generate
    from runner.device import seed_everything
    from runner.eval.evaluate import logits_of

    seed_everything(ld.run.seed, ld.run.deterministic)
    lo, hi = ld.run.threat.pixel_range
    n = ld.run.eval.n or len(ld.data.x_test)
    x, y = ld.data.x_test[:n], ld.data.y_test[:n]
    x_adv = generate(ld.model, x, y, attack, (lo, hi), ld.data.num_classes)
    _check_inside(x, x_adv, float(attack.eps), attack.norm, lo, hi, f"attack '{attack.name}'")
    accuracy = float(
        (logits_of(ld.model, x_adv, ld.run.eval.batch_size).argmax(1) == y).float().mean().item()
    )
    reported = next(
        (
            r["accuracy"]
            for r in (ld.metrics or {}).get("results", [])
            if r["attack"] == attack.name
        ),
        None,
    )
    meta = {
        "kind": "test",
        "run_id": ld.run.id,
        "attack": attack.model_dump(),
        "threat": ld.run.threat.to_json(),
        "checkpoint": ld.checkpoint.name,
        "checkpoint_sha256": sha256_file(ld.checkpoint),
        "data_sha256": ld.data.sha256,
        "split": "test",
        "n": int(n),
        "accuracy": accuracy,
        "reported_accuracy": reported,
    }  # no timestamp inside the file: the same export gives the same bytes and hash
    digest = _write(
        out,
        {
            "x_adv": x_adv.detach().cpu().numpy().astype(np.float32),
            "y": y.cpu().numpy().astype(np.int64),
            "index": np.arange(int(n), dtype=np.int64),
            "meta": np.array(json.dumps(meta, sort_keys=True)),
        },
    )
    return _entry(ld, out, digest, meta, attack.name, float(attack.eps), attack.norm)


def _check_inside(x, x_adv, eps: float, norm: str, lo: float, hi: float, what: str) -> None:
    from runner.eval.evaluate import perturbation_norm

    dist = perturbation_norm(x, x_adv, norm)
    slack = 1e-5 * max(1.0, hi - lo)
    if dist.max().item() > eps + slack or x_adv.min() < lo - slack or x_adv.max() > hi + slack:
        raise AdvrunError(f"{what} left its threat model; nothing was exported")


def training_examples(ld: Loaded):
    """The training-time adversarial examples of the final epoch, regenerated.

    The recipe's own attack (its ``perturb``: eps, step size, steps, start, loss) is run by the
    recipe's own batch code on the final epoch's batches (the same seeded permutation of the
    training set the loop drew, the same eps schedule position), against the **last checkpoint**
    (the weights after the final epoch, in eval mode), with torch's RNG seeded by the run seed
    for random starts. During training each batch was attacked with the weights of that moment
    and the RNG state of that moment, so these are not a byte-for-byte replay of training: they
    are what the recipe's attack makes of the final model on the final epoch's examples, and
    they are the same every time they are exported. Returns (clean inputs, x_adv, y, index into
    the recipe's training set, epoch, recipe eps).
    """
    import torch

    from runner import poisoning
    from runner.catalog import RECIPES
    from runner.device import generator, seed_everything
    from runner.recipes.base import TrainContext
    from runner.train.augment import Augment

    run, data = ld.run, ld.data
    ctx = TrainContext(
        ld.device, run.threat.pixel_range, run.threat, data.num_classes, data.input_shape,
        None, run.poisoning,
    )  # fmt: skip
    ctx.augment = Augment(run.data.augment, run.threat.pixel_range, data.input_shape) or None
    recipe = RECIPES.load(run.recipe.kind)(run.recipe, ctx)
    if not recipe.adversarial:
        raise AdvrunError(
            f"recipe '{run.recipe.name}' ({run.recipe.kind}) trains on clean examples: it has no "
            "training-time adversarial examples to export"
        )
    x, y = recipe.training_data(*poisoning.training_set(run, data, ctx))
    trained = len(_epochs(ld.run_dir))
    if trained == 0:
        raise AdvrunError(f"{ld.run_dir}: no epoch in epochs.csv; train the run first")
    epoch = trained - 1  # 0-based, as the loop counts
    gen = generator(
        run.seed * 100003 + epoch, ld.device if ld.device.type != "mps" else torch.device("cpu")
    )
    perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
    batches = perm.split(int(run.recipe.batch_size))
    seed_everything(run.seed, run.deterministic)
    captured: list[tuple[Any, Any]] = []
    inner = recipe.perturb

    def record(model, xb, *args, **kwargs):
        out = inner(model, xb, *args, **kwargs)
        captured.append((xb, out))
        return out

    recipe.perturb = record  # type: ignore[method-assign]
    cleans, xs, ys, idxs = [], [], [], []
    for p in ld.model.parameters():
        p.requires_grad_(False)  # only input gradients: nothing is trained here
    for b, idx in enumerate(batches):
        captured.clear()
        xb, yb = x[idx].to(ld.device), y[idx].to(ld.device)
        # data.augment: the batch drawn as the loop draws it (same generator, same order)
        xb = ctx.augment(xb, gen) if ctx.augment else xb
        ld.model.train()  # as the loop calls batch_loss; the inner attack switches to eval
        recipe.batch_loss(ld.model, xb, yb, epoch + b / len(batches))
        if len(captured) != 1 or not torch.equal(captured[0][0], xb[: len(captured[0][0])]):
            raise AdvrunError(
                f"recipe kind {run.recipe.kind} does not attack its batch in one perturb call; "
                "its training-time examples cannot be regenerated"
            )
        m = len(captured[0][0])
        cleans.append(captured[0][0])
        xs.append(captured[0][1])
        ys.append(yb[:m])
        idxs.append(idx[:m])
    ld.model.eval()
    eps = float(recipe.eps_at(epoch + 1))
    return torch.cat(cleans), torch.cat(xs), torch.cat(ys), torch.cat(idxs), epoch + 1, eps


def _epochs(run_dir: Path) -> list[dict[str, str]]:
    import csv

    try:
        with open(run_dir / "epochs.csv", newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        return []


def export_train(ld: Loaded, out: Path) -> dict[str, Any]:
    """The training-time adversarial examples of the final epoch (see training_examples)."""
    import numpy as np

    lo, hi = ld.run.threat.pixel_range
    x, x_adv, y, index, epoch, eps = training_examples(ld)
    _check_inside(x, x_adv, eps, ld.run.threat.norm, lo, hi, f"recipe {ld.run.recipe.name}")
    meta = {
        "kind": "train",
        "what": "training-time adversarial examples of the final epoch, regenerated: the "
        "recipe's own attack on the final epoch's seeded batches (after data.augment, drawn as "
        "the training loop draws it) against the last checkpoint, random starts seeded with the "
        "run seed",
        "run_id": ld.run.id,
        "recipe": ld.run.recipe.model_dump(),
        "epoch": epoch,
        "eps": eps,
        "threat": ld.run.threat.to_json(),
        "checkpoint": ld.checkpoint.name,
        "checkpoint_sha256": sha256_file(ld.checkpoint),
        "data_sha256": ld.data.sha256,
        "split": "train",
        "n": len(x_adv),
    }
    digest = _write(
        out,
        {
            "x_adv": x_adv.detach().cpu().numpy().astype(np.float32),
            "y": y.cpu().numpy().astype(np.int64),
            "index": index.cpu().numpy().astype(np.int64),
            "meta": np.array(json.dumps(meta, sort_keys=True)),
        },
    )
    return _entry(ld, out, digest, meta, f"train:{ld.run.recipe.kind}", eps, ld.run.threat.norm)


def _entry(
    ld: Loaded, out: Path, digest: str, meta: dict, attack: str, eps: float, norm: str
) -> dict[str, Any]:
    from runner.provenance import versions

    return {
        "file": out,  # made relative by the caller
        "sha256": digest,
        "kind": meta["kind"],
        "attack": attack,
        "eps": eps,
        "norm": norm,
        "n": meta["n"],
        "split": meta["split"],
        "accuracy": meta.get("accuracy"),
        "checkpoint": meta["checkpoint"],
        "checkpoint_sha256": meta["checkpoint_sha256"],
        "data_sha256": meta["data_sha256"],
        "run_id": ld.run.id,
        "advrun_version": versions().get("advrun"),
    }


def write_manifest(folder: Path, entries: list[dict[str, Any]]) -> Path:
    """``folder/manifest.json``: the exports in it (kept entries for files still there)."""
    from runner.fsio import write_json

    path = folder / MANIFEST
    old = read_json(path) or {}
    by_file = {e["file"]: e for e in old.get("files", []) if (folder / e["file"]).is_file()}
    for e in entries:
        by_file[e["file"]] = e
    write_json(path, {"schema": SCHEMA, "files": [by_file[k] for k in sorted(by_file)]})
    return path


def _relative(path: Path, root: Path) -> str:
    resolved, r = path.resolve(), root.resolve()
    return str(resolved.relative_to(r)) if r in resolved.parents else str(resolved)


def run(args: argparse.Namespace) -> int:
    if not (args.attack or args.all or args.train):
        raise AdvrunError("say what to export: --attack NAME, --all (every attack) or --train")
    from runner.execute.store import now

    run_dir = Path(args.run_dir)
    cfg = read_json(run_dir / "run.json")
    if not cfg:
        raise AdvrunError(f"{run_dir}: no run.json; give a run directory such as OUT/runs/<run>")
    stored = _stored_run(run_dir, cfg)  # refuses audits: they have no training of their own
    attacks = [_attack(stored, args.attack)] if args.attack else []
    if args.all:
        attacks = list(stored.attacks)
        if not attacks:
            raise AdvrunError("this run's spec has no attacks; there is nothing to export")
    ld = _load(run_dir, args.device, args.allow_import, None)
    single = args.attack and not args.train
    folder = (
        (Path(args.output).parent if args.output else contained(run_dir, "exports"))
        if single
        else (Path(args.output) if args.output else contained(run_dir, "exports"))
    )
    entries = []
    for attack in attacks:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", attack.name)
        out = Path(args.output) if single and args.output else folder / f"adv-{safe}.npz"
        entries.append(export_attack(ld, attack, out))
    if args.train:
        last = _load(run_dir, args.device, args.allow_import, "last")
        entries.append(export_train(last, folder / f"train-{ld.run.recipe.kind}.npz"))
    for e in entries:
        path = e["file"]
        e["file"] = _relative(path, folder)
        record_export(
            run_dir,
            {
                **{k: v for k, v in e.items() if k != "file"},
                "file": _relative(path, run_dir),
                "created": now(),
                "attack_config": next(
                    (a.model_dump() for a in attacks if a.name == e["attack"]), None
                ),
            },
        )
        shown = f"accuracy {e['accuracy']:.4f}" if e["accuracy"] is not None else "training set"
        print(
            f"wrote {path}: {e['n']} adversarial examples ({e['attack']}, {shown}), sha256 {e['sha256']}"
        )
        if e["kind"] == "test":
            reported = next(
                (
                    r["accuracy"]
                    for r in (ld.metrics or {}).get("results", [])
                    if r["attack"] == e["attack"]
                ),
                None,
            )
            if reported is not None:
                print(f"  reported in metrics.json: {reported:.4f}")
    manifest = write_manifest(folder, entries)
    print(f"manifest: {manifest}; recorded in {run_dir / 'exports.json'}")
    return 0
