"""``advrun export-adv RUN_DIR --attack NAME [-o FILE]``: the adversarial test set of a run.

Regenerates the attack from the run's checkpoint and resolved config, writes an npz (``x_adv``,
``y``, ``index`` into the test split, ``meta`` as JSON text) and records its SHA-256 in the run's
``exports.json``, so the exact adversarial data behind a reported number can be audited later.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from runner.compile import Run
from runner.errors import AdvrunError
from runner.fsio import contained, read_json, sha256_file
from runner.registry import unknown_name_message
from runner.spec.attacks import AttackBase


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory: <output>/runs/<run>")
    p.add_argument("--attack", required=True, metavar="NAME", help="an attack of the run's suite")
    p.add_argument("-o", "--output", help="the npz file (default: RUN_DIR/exports/adv-NAME.npz)")
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


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    cfg = read_json(run_dir / "run.json")
    if not cfg:
        raise AdvrunError(f"{run_dir}: no run.json; give a run directory such as OUT/runs/<run>")
    metrics = read_json(run_dir / "metrics.json")
    stored = _stored_run(run_dir, cfg)
    attack = _attack(stored, args.attack)

    import numpy as np

    from runner.attacks.runner import generate
    from runner.device import seed_everything, select_device, set_threads
    from runner.eval.evaluate import logits_of, perturbation_norm
    from runner.execute.prepare import prepare
    from runner.execute.store import now
    from runner.fsio import write_with
    from runner.models import build_for_spec
    from runner.train.loop import load_checkpoint

    if not re.match(r"^(auto|cpu|mps|cuda(:\d+)?)$", args.device):
        raise AdvrunError(f"--device '{args.device}' is not one of auto, cpu, mps, cuda, cuda:N")
    device = select_device(args.device)
    seed_everything(stored.seed, stored.deterministic)
    set_threads(stored.threads, stored.deterministic)
    threat = stored.threat
    lo, hi = threat.pixel_range
    data = prepare(stored.data, (lo, hi), device)
    recorded = (metrics or {}).get("data_sha256")
    if recorded and recorded != data.sha256:
        raise AdvrunError(
            f"the data changed since this run was evaluated (sha256 {data.sha256[:12]} != "
            f"{recorded[:12]}); an export would not match its reported accuracy"
        )
    model = build_for_spec(
        stored.model, data.input_shape, data.num_classes, (lo, hi), args.allow_import
    ).to(device)
    ck = _checkpoint(run_dir, metrics, stored)
    model.load_state_dict(load_checkpoint(ck, device))
    model.eval()
    n = stored.eval.n or len(data.x_test)
    x, y = data.x_test[:n], data.y_test[:n]
    x_adv = generate(model, x, y, attack, (lo, hi), data.num_classes)
    dist = perturbation_norm(x, x_adv, attack.norm)
    slack = 1e-5 * max(1.0, hi - lo)
    if (
        dist.max().item() > attack.eps + slack
        or x_adv.min() < lo - slack
        or x_adv.max() > hi + slack
    ):
        raise AdvrunError(f"attack '{args.attack}' left its threat model; nothing was exported")
    bs = stored.eval.batch_size
    accuracy = float((logits_of(model, x_adv, bs).argmax(1) == y).float().mean().item())
    reported = next(
        (r["accuracy"] for r in (metrics or {}).get("results", []) if r["attack"] == args.attack),
        None,
    )
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", args.attack)
    out = Path(args.output) if args.output else contained(run_dir, "exports", f"adv-{safe}.npz")
    meta = {
        "run_id": stored.id,
        "attack": attack.model_dump(),
        "threat": threat.to_json(),
        "checkpoint": ck.name,
        "checkpoint_sha256": sha256_file(ck),
        "data_sha256": data.sha256,
        "n": int(n),
        "accuracy": accuracy,
        "reported_accuracy": reported,
    }  # no timestamp inside the file: the same export gives the same bytes and hash

    arrays = {
        "x_adv": x_adv.detach().cpu().numpy().astype(np.float32),
        "y": y.cpu().numpy().astype(np.int64),
        "index": np.arange(int(n), dtype=np.int64),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            write_npz(fh, arrays)

    write_with(out, write)
    digest = sha256_file(out)
    resolved, rd = out.resolve(), run_dir.resolve()
    file = str(resolved.relative_to(rd)) if rd in resolved.parents else str(resolved)
    record_export(
        run_dir,
        {
            "created": now(),
            "file": file,
            "sha256": digest,
            **{k: v for k, v in meta.items() if k != "attack"},
            "attack": args.attack,
            "attack_config": attack.model_dump(),
        },
    )
    print(f"wrote {out}: {n} adversarial examples ({args.attack}), sha256 {digest}")
    shown = f"{accuracy:.4f}" + (
        f" (reported in metrics.json: {reported:.4f})" if reported is not None else ""
    )
    print(f"accuracy on the exported set: {shown}; recorded in {run_dir / 'exports.json'}")
    return 0
