"""`advrun export-adv`: the adversarial test set regenerated from a run, hashed and recorded."""

from __future__ import annotations

import hashlib
import json
import zipfile

import numpy as np
import pytest
from report_helpers import copy_experiment

from runner.cli import main


@pytest.fixture
def run_dir(tmp_path_factory, tmp_path):
    _, out = copy_experiment(tmp_path_factory, tmp_path)
    return sorted((out / "runs").glob("*@standard@s0-*"))[0]


def test_export_matches_the_run_and_is_recorded(run_dir, capsys):
    assert main(["export-adv", str(run_dir), "--attack", "fgsm", "--device", "cpu"]) == 0
    path = run_dir / "exports" / "adv-fgsm.npz"
    with np.load(path, allow_pickle=False) as z:
        x_adv, y, index = z["x_adv"], z["y"], z["index"]
        meta = json.loads(str(z["meta"]))
    cfg = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert x_adv.shape == (80, 1, 8, 8) and x_adv.dtype == np.float32
    assert y.dtype == np.int64 and list(index) == list(range(80))
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert meta["attack"]["eps"] == cfg["threat"]["eps"] == 0.1
    assert meta["data_sha256"] == metrics["data_sha256"]
    # FGSM is deterministic and first in the cascade: the same accuracy as the reported one.
    # No chance involved (no random start, same model and 80 examples): the one example of
    # slack is for float rounding in another batch layout; measured equal (1 and 2 threads)
    reported = next(r["accuracy"] for r in metrics["results"] if r["attack"] == "fgsm")
    assert meta["accuracy"] == pytest.approx(reported, abs=1.5 / 80)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as zf:  # no wall-clock time inside: exporting again gives this hash
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    record = json.loads((run_dir / "exports.json").read_text())["adversarial_exports"]
    assert [(e["file"], e["sha256"], e["attack"]) for e in record] == [
        ("exports/adv-fgsm.npz", digest, "fgsm")
    ]
    assert digest in capsys.readouterr().out

    # a second export (elsewhere, native PGD) adds an entry; the same file again replaces its own
    other = run_dir.parent.parent / "pgd.npz"
    assert main(["export-adv", str(run_dir), "--attack", "pgd", "-o", str(other)]) == 0
    assert main(["export-adv", str(run_dir), "--attack", "fgsm"]) == 0
    record = json.loads((run_dir / "exports.json").read_text())["adversarial_exports"]
    assert sorted(e["attack"] for e in record) == ["fgsm", "pgd"]
    assert next(e for e in record if e["attack"] == "fgsm")["sha256"] == digest  # reproducible
    with np.load(other, allow_pickle=False) as z:
        x = z["x_adv"]
    assert np.abs(x - x_adv).max() <= 0.2 + 1e-6  # both within eps of the same clean images


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attack", "pgd20"], "unknown attack 'pgd20' (did you mean 'pgd'?)"),
        (["--attack", "fgsm", "--device", "tpu"], "tpu"),
    ],
)
def test_export_errors_are_clear(run_dir, capsys, args, message):
    assert main(["export-adv", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_export_needs_a_run_directory(tmp_path, capsys):
    assert main(["export-adv", str(tmp_path), "--attack", "fgsm"]) == 2
    assert "no run.json" in capsys.readouterr().err


@pytest.fixture
def madry_dir(tmp_path_factory, tmp_path):
    _, out = copy_experiment(tmp_path_factory, tmp_path)
    return sorted((out / "runs").glob("*@madry@s0-*"))[0]


def test_all_and_train_exports_with_a_manifest_and_byte_identical_reexport(madry_dir, capsys):
    run_dir = madry_dir
    assert main(["export-adv", str(run_dir), "--all", "--train", "--device", "cpu"]) == 0
    exports = run_dir / "exports"
    manifest = json.loads((exports / "manifest.json").read_text())
    files = {e["file"]: e for e in manifest["files"]}
    assert set(files) == {"adv-fgsm.npz", "adv-pgd.npz", "train-pgd.npz"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg = json.loads((run_dir / "run.json").read_text())
    ck = run_dir / "checkpoints"
    for name, e in files.items():  # the manifest describes the files exactly
        path = exports / name
        assert e["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert e["data_sha256"] == metrics["data_sha256"]
        assert e["advrun_version"] == metrics["versions"]["advrun"]
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            assert len(z["x_adv"]) == len(z["y"]) == len(z["index"]) == e["n"]
        assert meta["checkpoint_sha256"] == e["checkpoint_sha256"]
        which = "last" if name.startswith("train") else metrics["checkpoint"]
        digest = hashlib.sha256((ck / f"{which}.pt").read_bytes()).hexdigest()
        assert e["checkpoint_sha256"] == digest
    assert files["adv-pgd.npz"]["attack"] == "pgd" and files["adv-pgd.npz"]["eps"] == 0.1
    train = files["train-pgd.npz"]
    assert train["kind"] == "train" and train["split"] == "train" and train["eps"] == 0.1
    with np.load(exports / "train-pgd.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        index, x_adv = z["index"], z["x_adv"]
    assert meta["epoch"] == cfg["recipe"]["epochs"] == 2 and "last checkpoint" in meta["what"]
    assert sorted(index.tolist()) == list(range(len(index)))  # every training example, once
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # exporting again gives the same bytes: files and manifest
    before = {p.name: p.read_bytes() for p in exports.iterdir()}
    assert main(["export-adv", str(run_dir), "--all", "--train", "--device", "cpu"]) == 0
    assert {p.name: p.read_bytes() for p in exports.iterdir()} == before
    recorded = json.loads((run_dir / "exports.json").read_text())["adversarial_exports"]
    assert sorted(e["file"] for e in recorded) == sorted(f"exports/{n}" for n in files)


def test_train_export_needs_an_adversarial_recipe(run_dir, capsys):
    assert main(["export-adv", str(run_dir), "--train"]) == 2
    assert "trains on clean examples" in capsys.readouterr().err
    assert main(["export-adv", str(run_dir)]) == 2
    assert "--attack NAME, --all" in capsys.readouterr().err
