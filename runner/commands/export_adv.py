"""``advrun export-adv RUN_DIR (--attack NAME | --all) [--train] [-o PATH]``: adversarial data.

Regenerates an attack from the run's checkpoint and resolved config, writes an npz (``x_adv``,
``y``, ``index`` into the test split, ``meta`` as JSON text) and records its SHA-256 in the run's
``exports.json``, so the exact adversarial data behind a reported number can be audited later.
``--all`` exports every attack of the suite; ``--train`` the training-time adversarial examples
of the final epoch (see :func:`runner.exports.train.training_examples`). Every export is listed in
``exports/manifest.json`` (file, sha256, attack, eps, checkpoint hash, data hash, advrun
version), which holds no timestamp: the same exports give the same manifest, byte for byte, so
the folder can be versioned with DVC (``dvc add RUN_DIR/exports``) or logged as an artifact.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from runner.errors import AdvrunError
from runner.exports.attack import export_attack, reported_accuracy
from runner.exports.files import relative, write_manifest
from runner.exports.source import last_checkpoint, load, stored_run
from runner.exports.train import export_train
from runner.fsio import contained
from runner.registry import unknown_name_message
from runner.store import METRICS_FILE, ExportEntry, RunDir


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


def run(args: argparse.Namespace) -> int:
    if not (args.attack or args.all or args.train):
        raise AdvrunError("say what to export: --attack NAME, --all (every attack) or --train")
    from runner.store import now

    run_dir = Path(args.run_dir)
    stored = stored_run(run_dir)  # refuses audits: they have no training of their own
    by_name = {a.name: a for a in stored.attacks}
    if (args.attack or args.all) and not by_name:
        raise AdvrunError("this run's spec has no attacks; there is nothing to export")
    if args.attack and args.attack not in by_name:
        raise AdvrunError(unknown_name_message("attack", args.attack, list(by_name)))
    attacks = list(stored.attacks) if args.all else [by_name[args.attack]] if args.attack else []
    ld = load(run_dir, stored, args.device, args.allow_import)
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
        last = ld.with_checkpoint(last_checkpoint(run_dir))
        entries.append(export_train(last, folder / f"train-{ld.run.recipe.kind}.npz"))
    for e in entries:
        path = e["file"]
        e["file"] = relative(path, folder)
        attack = by_name.get(e["attack"]) if e["kind"] == "test" else None
        entry = {
            **{k: v for k, v in e.items() if k != "file"},
            "file": relative(path, run_dir),
            "created": now(),
            "attack_config": attack.model_dump() if attack else None,
        }
        RunDir(run_dir).record_export(ExportEntry.model_validate(entry))
        shown = f"accuracy {e['accuracy']:.4f}" if e["accuracy"] is not None else "training set"
        print(
            f"wrote {path}: {e['n']} adversarial examples ({e['attack']}, {shown}), sha256 {e['sha256']}"
        )
        reported = reported_accuracy(ld.metrics, e["attack"]) if attack else None
        if reported is not None:
            print(f"  reported in {METRICS_FILE}: {reported:.4f}")
    manifest = write_manifest(folder, entries)
    print(f"manifest: {manifest}; recorded in {RunDir(run_dir).exports_path}")
    return 0
