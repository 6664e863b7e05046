"""Export files: reproducible npz archives and ``manifest.json`` (each export is also recorded
in the run's store, :meth:`runner.store.RunDir.record_export`).

Neither the npz files nor the manifest hold a timestamp: the same exports give the same bytes, so
a folder of exports can be versioned with DVC (``dvc add RUN_DIR/exports``) or logged as an
artifact, and a recorded SHA-256 can be reproduced by exporting again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.fsio import read_json, sha256_file, write_json, write_with

MANIFEST = "manifest.json"
SCHEMA = "advrun.adversarial_exports/1"


def write_npz(fh, arrays: dict[str, Any]) -> None:
    """np.savez_compressed, but with fixed zip timestamps: the same arrays give the same bytes."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def write_export(out: Path, x_adv, y, index, meta: dict[str, Any]) -> str:
    """``out`` as an npz of ``x_adv``, ``y``, ``index`` (tensors) and ``meta`` (JSON text),
    written atomically; its SHA-256."""
    import numpy as np

    arrays = {
        "x_adv": x_adv.detach().cpu().numpy().astype(np.float32),
        "y": y.cpu().numpy().astype(np.int64),
        "index": index.cpu().numpy().astype(np.int64),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            write_npz(fh, arrays)

    write_with(out, write)
    return sha256_file(out)


def manifest_entry(
    run_id: str, out: Path, digest: str, meta: dict, attack: str, eps: float, norm: str
) -> dict[str, Any]:
    """The manifest's line for one export (``file`` is made relative by the caller)."""
    from runner.provenance import versions

    return {
        "file": out,
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
        "run_id": run_id,
        "advrun_version": versions().get("advrun"),
    }


def write_manifest(folder: Path, entries: list[dict[str, Any]]) -> Path:
    """``folder/manifest.json``: the exports in it (kept entries for files still there)."""
    path = folder / MANIFEST
    old = read_json(path) or {}
    by_file = {e["file"]: e for e in old.get("files", []) if (folder / e["file"]).is_file()}
    for e in entries:
        by_file[e["file"]] = e
    write_json(path, {"schema": SCHEMA, "files": [by_file[k] for k in sorted(by_file)]})
    return path


def relative(path: Path, root: Path) -> str:
    resolved, r = path.resolve(), root.resolve()
    return str(resolved.relative_to(r)) if r in resolved.parents else str(resolved)
