"""The reference specs (specs/cifar10-*.yaml): they validate and plan as committed, and each runs
end to end through the real CLI for one epoch on a tiny synthetic CIFAR-10 in the python format,
with the data, the epochs, the evaluation size and the model width overridden on the command
line (the full-size models train for hours to days on a GPU; nothing full-size runs here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from formats import write_cifar10_python

from runner.cli import main
from runner.compile import compile_spec
from runner.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
# what each smoke run shrinks, beyond data/epochs/eval: the architecture's width and depth
REDUCED = {
    "cifar10-pgd.yaml": ["models.0.kwargs.width=4"],  # PreAct ResNet-18 at 1/16 width
    "cifar10-fast.yaml": ["models.0.kwargs.width=4"],
    "cifar10-trades.yaml": ["models.0.kwargs.depth=10", "models.0.kwargs.widen_factor=1"],
}


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_reference_spec_validates_and_plans(name: str, capsys) -> None:
    spec = load_spec(SPECS / name).spec
    (run,) = compile_spec(spec).runs
    assert spec.data.dataset == "cifar10" and [s.name for s in spec.data.augment] == [
        "random_crop",
        "horizontal_flip",
    ]
    assert {a.kind for a in spec.attacks} >= {"autoattack"}
    assert main(["validate", str(SPECS / name)]) == 0
    assert main(["plan", str(SPECS / name), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert row["id"] == run.id and row["status"] == "new"


def test_reference_specs_say_what_the_papers_published() -> None:
    pgd, trades, fast = (
        (SPECS / f"cifar10-{n}.yaml").read_text() for n in ("pgd", "trades", "fast")
    )
    assert "Rice2020Overfitting" in pgd and "53.42%" in pgd
    assert "84.92%" in trades and "53.08%" in trades and "56.61%" in trades
    assert "46.06%" in fast and "43.21%" in fast and "RTX 2080 Ti" in fast
    for text in (pgd, trades, fast):
        assert "not run here" in text


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_python(root / "cifar-10-batches-py", per_batch=20, test=20, signal=True)
    return root


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_reference_spec_smoke_run(name: str, tiny_cifar: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    overrides = [
        f"data.root={tiny_cifar}",
        "data.val_fraction=0.1",  # 10 of the 100 images: one per class
        "recipes.0.epochs=1",
        "recipes.0.monitor.n=10",
        "eval.n=8",
        "eval.bootstrap=20",
        "eval.checklist=false",
        *REDUCED[name],
    ]
    t0 = time.perf_counter()
    code = main(["run", str(SPECS / name), *overrides, "-o", str(out), "-q", "--no-report"])
    seconds = time.perf_counter() - t0
    assert code == 0, capsys.readouterr().err
    (run_dir,) = (out / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    attacks = [r["attack"] for r in metrics["results"]]
    assert attacks[0] == "clean" and "autoattack" in attacks and "worst_case" in attacks
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert list(epochs["epoch"]) == [1] and epochs["val_robust"].notna().all()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["data"]["augment"][0]["random_crop"]["padding"] == 4
    print(f"{name}: {seconds:.1f} s")  # shown with -s; timings never go into assertions


def test_the_smoothing_reference_spec_validates_plans_and_quotes_the_paper(capsys) -> None:
    path = SPECS / "cifar10-smoothing.yaml"
    spec = load_spec(path).spec
    runs = compile_spec(spec).runs
    assert sorted(r.recipe.sigma for r in runs) == [0.12, 0.25, 0.5, 1.0]
    c = spec.certify
    assert (c.sigma, c.n0, c.n, c.alpha, c.n_examples, c.skip) == (
        ["train"],
        100,
        100_000,
        0.001,
        500,
        20,
    )
    assert main(["validate", str(path)]) == 0 and main(["plan", str(path)]) == 0
    assert "4 run(s): 4 new" in capsys.readouterr().out
    text = path.read_text()
    assert "github.com/locuslab/smoothing" in text and "not run here" in text
    for row in ("0.25    75%    60%     43%    27%", "1.00    47%    39%     34%    28%"):
        assert row in text


def test_the_smoothing_reference_spec_smoke_run(tiny_cifar: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    overrides = [
        f"data.root={tiny_cifar}", "data.val_fraction=0.1", "recipes.0.epochs=1",
        "recipes.0.sigma=0.25", "recipes.0.batch_size=32", "recipes.0.monitor.n=10",
        "models.0.kwargs.depth=10", "eval.n=8", "eval.bootstrap=20", "eval.checklist=false",
        "certify.n0=10", "certify.n=50", "certify.skip=2", "certify.n_examples=6",
    ]  # fmt: skip
    code = main(["run", str(SPECS / "cifar10-smoothing.yaml"), *overrides, "-o", str(out), "-q",
                 "--no-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "certified.csv")
    assert set(table["sigma"]) == {0.25} and set(table["n"]) == {6} and len(table) == 7
    assert table["linf_radius"].tolist() == pytest.approx((table["radius"] / 3072**0.5).tolist())
