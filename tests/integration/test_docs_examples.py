"""The model and data set examples of docs/extending.md (docs/examples/my_model.py and
my_dataset.py), each registered at run time with the one line the page shows and run through
the real CLI on digits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from runner.catalog import DATASETS, MODELS
from runner.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

SPEC = """\
name: examples
seeds: [0]
data: {DATA}
threat: {norm: linf, eps: 0.1, pixel_range: [0, 1]}
models:
  - {MODEL}
recipes:
  - {name: std, kind: standard, epochs: 4, optimizer: {lr: 0.01}}
attacks:
  - {name: pgd, kind: pgd, engine: native, steps: 10}
eval: {bootstrap: 50, checklist: false}
"""
DIGITS = "{dataset: digits, val_fraction: 0.1, test_fraction: 0.2}"
MLP = "{name: mlp, arch: mlp, kwargs: {hidden: [64]}}"


def _spec(tmp_path: Path, data: str, model: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("{DATA}", data).replace("{MODEL}", model))
    return path


def _accuracy(out: Path) -> dict[str, float]:
    df = pd.read_csv(out / "results.csv")
    return dict(zip(df["attack"], df["accuracy"], strict=True))


@pytest.fixture
def registered(monkeypatch):
    """Register like the page's one line; unregistered after the test."""
    done = []

    def register(registry, name: str, target: str, summary: str) -> None:
        registry.register(name, target, summary)
        done.append((registry, name))

    monkeypatch.syspath_prepend(str(EXAMPLES))
    try:
        yield register
    finally:
        for registry, name in done:
            registry.unregister(name)


def test_the_model_example_trains_and_is_attacked(registered, tmp_path, capsys):
    registered(MODELS, "tiny_convnet", "my_model:TinyConvNet", "small convolutional network")
    model = "{name: tiny, arch: tiny_convnet, kwargs: {width: 8}}"
    out = tmp_path / "out"
    assert main(["run", str(_spec(tmp_path, DIGITS, model)), "-o", str(out), "-q"]) == 0
    acc = _accuracy(out)
    # chance is 0.1; 359 test digits give a standard error of at most 0.027, so 0.5 is far
    # below what 4 epochs reach and far above chance (measured 0.950, SE 0.012: 39 SE)
    assert acc["clean"] > 0.5, acc
    assert acc["pgd"] <= acc["clean"]  # attacked only where clean-correct (exact)
    # the kwargs are checked against the class's signature before anything is written
    bad = "{name: tiny, arch: tiny_convnet, kwargs: {depth: 3}}"
    assert main(["run", str(_spec(tmp_path, DIGITS, bad)), "-o", str(tmp_path / "bad")]) == 2
    assert "does not take 'depth'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_data_set_example_loads_a_csv(registered, tmp_path, capsys):
    from sklearn.datasets import load_digits

    registered(DATASETS, "csv_images", "my_dataset:CsvImages", "square grayscale images in a CSV")
    digits = load_digits()  # 8x8 pixels 0..16, written as Kaggle's MNIST CSV would hold them
    table = pd.DataFrame(digits.images.reshape(len(digits.images), -1) * 255 // 16)
    table.insert(0, "label", digits.target)
    csv = tmp_path / "train.csv"
    table.to_csv(csv, index=False)
    data = f"{{dataset: csv_images, path: {csv}, val_fraction: 0.1, test_fraction: 0.2}}"
    out = tmp_path / "out"
    assert main(["run", str(_spec(tmp_path, data, MLP)), "-o", str(out), "-q"]) == 0
    acc = _accuracy(out)
    # as above: chance 0.1, SE at most 0.027 at n = 359; measured 0.889, SE 0.017: 23 SE
    assert acc["clean"] > 0.5, acc
    # the class attributes at work in validation: `needs = "path"` and `flip = False`
    assert main(["validate", str(_spec(tmp_path, "{dataset: csv_images}", MLP))]) == 2
    assert "path" in capsys.readouterr().err
    flipped = f"{{dataset: csv_images, path: {csv}, augment: [horizontal_flip]}}"
    assert main(["validate", str(_spec(tmp_path, flipped, MLP))]) == 2
    assert "flip" in capsys.readouterr().err
