"""The tracking: block, URI precedence and MLflow name limits (no torch, no mlflow import)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from spec_base import BASE

from runner import track
from runner.spec import load_spec
from runner.track import names

TRACKED = BASE + "tracking: {mlflow: {uri: 'sqlite:///t.db', experiment: exp, timeout: 3}}\n"


def test_tracking_block_is_validated_at_its_line(errors_of):
    problems = errors_of(BASE + "tracking: {mlflow: {uri: 'ftp://x', retries: -1}}\n")
    by_path = {p.path: p for p in problems}
    assert by_path["tracking.mlflow.uri"].line == 13
    assert "unknown tracking URI scheme 'ftp'" in by_path["tracking.mlflow.uri"].message
    assert "tracking.mlflow.retries" in by_path
    typo = errors_of(BASE + "tracking: {mlflow: {experimnt: x}}\n")
    assert typo[0].path == "tracking.mlflow.experimnt" and "experiment" in typo[0].message


def test_uri_precedence_cli_then_spec_then_environment(write_spec, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    spec = load_spec(write_spec(TRACKED)).spec
    s = track.mlflow_settings(spec)
    assert s["uri"] == f"sqlite:///{tmp_path / 't.db'}"  # made absolute for other processes
    assert s["experiment"] == "exp" and s["timeout"] == 3 and s["retries"] is None
    assert track.mlflow_settings(spec, "http://h:1")["uri"] == "http://h:1"
    assert track.mlflow_settings(spec, "http://h:1", disabled=True) is None
    bare = load_spec(write_spec(BASE + "tracking: {mlflow: {}}\n")).spec
    assert track.mlflow_settings(bare)["uri"] == "http://127.0.0.1:5999"  # the environment
    assert track.mlflow_settings(bare)["experiment"] == "t"  # the spec's name
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert track.mlflow_settings(bare)["uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    untracked = load_spec(write_spec(BASE)).spec
    assert track.mlflow_settings(untracked) is None  # the variable alone does not turn it on
    assert track.mlflow_settings(untracked, "mlruns")["uri"] == f"file://{tmp_path / 'mlruns'}"


def test_passwords_are_not_shown():
    assert track.redact("https://me:s3cret@host:5000/x") == "https://me:***@host:5000/x"
    assert track.redact("sqlite:////a/b.db") == "sqlite:////a/b.db"


@pytest.mark.parametrize(
    "name",
    [
        "pgd20",
        "pgd 20",
        "a//b",
        "../x",
        "/x",
        "x/",
        ".",
        "pgd:5",
        "pgd@5",
        "ü",
        "<script>",
        "a" * 300,
    ],
)
def test_every_name_becomes_a_valid_mlflow_key(name):
    k = names.key(name)
    assert len(k) <= names.MAX_KEY
    assert all(c.isascii() and (c.isalnum() or c in "_-. /") for c in k)
    parts = k.split("/")
    assert all(p not in ("", ".", "..") for p in parts) and not k.startswith("/")
    if name in ("pgd20", "pgd 20"):
        assert k == name  # valid names stay as written


def test_changed_names_never_collide():
    awkward = ["pgd@5", "pgd_5", "pgd#5", "pgd/5", "pgd//5", "a" * 300, "a" * 299 + "b"]
    assert len({names.key(n) for n in awkward}) == len(awkward)


def test_values_are_cut_to_mlflow_limits_with_a_hash():
    long = "x" * 10_000
    v = names.value(long)
    assert len(v) == names.MAX_PARAM_VALUE and "sha256" in v
    assert names.value(long, names.MAX_TAG_VALUE) != v
    assert names.value([0.0, 1.0]) == "[0.0, 1.0]" and names.value(None) == "null"
    assert names.number("nan") is None and names.number("") is None and names.number("0.5") == 0.5
    assert names.flatten("recipe", {"optimizer": {"lr": 0.1}, "eps": 0.1}) == {
        "recipe.optimizer.lr": 0.1,
        "recipe.eps": 0.1,
    }


def test_validate_with_a_tracking_block_imports_no_mlflow(write_spec):
    path = write_spec(TRACKED)
    code = (
        "import sys; from runner.cli import main; rc = main(['validate', "
        f"{str(path)!r}]); print('HEAVY', [m for m in ('mlflow', 'torch') if m in sys.modules]);"
        " sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
