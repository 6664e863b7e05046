"""data.augment, models[].normalize and the new data/schedule options at validation (no torch)."""

from __future__ import annotations

import pytest

from runner.compile import compile_spec
from runner.spec import load_spec

SPEC = """\
name: t
data:
  dataset: DATASET
  root: /data
  augment: AUGMENT
threat: {norm: linf, eps: 8/255}
models:
  - {name: m, arch: preact_resnet18, normalize: NORMALIZE}
recipes:
  - {name: r, kind: pgd, epochs: 1, eps: 8/255, step_size: 2/255, steps: 10}
"""


def spec_text(dataset="cifar10", augment="none", normalize="null") -> str:
    return (
        SPEC.replace("DATASET", dataset).replace("AUGMENT", augment).replace("NORMALIZE", normalize)
    )


def test_augment_and_normalize_forms(write_spec) -> None:
    aug = "[{random_crop: {padding: 4, mode: reflect}}, horizontal_flip]"
    spec = load_spec(write_spec(spec_text(augment=aug, normalize="cifar10"))).spec
    assert [s.name for s in spec.data.augment] == ["random_crop", "horizontal_flip"]
    assert spec.data.augment[0].random_crop.mode == "reflect"
    assert spec.data.augment[1].horizontal_flip.p == 0.5
    norm = spec.models[0].normalize
    assert norm.preset == "cifar10" and norm.mean == [0.4914, 0.4822, 0.4465] and len(norm.std) == 3
    run = compile_spec(spec).runs[0]  # what run.json stores: only the named transform
    assert run.to_json()["data"]["augment"] == [
        {"random_crop": {"padding": 4, "mode": "reflect"}},
        {"horizontal_flip": {"p": 0.5}},
    ]
    assert run.model.normalize.std == [0.2471, 0.2435, 0.2616]
    explicit = "{mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}"
    spec = load_spec(write_spec(spec_text(augment="[none]", normalize=explicit))).spec
    assert spec.data.augment == [] and spec.models[0].normalize.preset is None
    spec = load_spec(write_spec(spec_text(normalize="{mean: imagenet}"))).spec
    assert spec.models[0].normalize.std == [0.229, 0.224, 0.225]


def test_augment_changes_the_run_id(write_spec) -> None:
    plain = compile_spec(load_spec(write_spec(spec_text())).spec).runs[0]
    crop = compile_spec(load_spec(write_spec(spec_text(augment="[random_crop]"))).spec).runs[0]
    assert plain.id != crop.id  # augmentation changes training: a new run
    without = compile_spec(load_spec(write_spec(spec_text().replace("  augment: none\n", ""))).spec)
    assert without.runs[0].id == plain.id  # the new options, left at their defaults, keep ids


@pytest.mark.parametrize(
    ("dataset", "augment", "normalize", "line", "path", "message"),
    [
        ("cifar10", "[{random_crop: {padding: 32}}]", "null", 5,
         "data.augment.0.random_crop.padding", "crop padding 32 is not smaller than the 32x32"),
        ("digits", "[{random_crop: {padding: 8}}]", "null", 5,
         "data.augment.0.random_crop.padding", "use at most 7"),
        ("mnist", "[horizontal_flip]", "null", 5, "data.augment.0", "marked flip: false"),
        ("svhn", "[random_crop, horizontal_flip]", "null", 5, "data.augment.1", "flip: false"),
        ("cifar10", "[rotate]", "null", 5, "data.augment.0", "unknown transform 'rotate'"),
        ("cifar10", "[random_crop, none]", "null", 5, "data.augment.1", "'none' means no"),
        ("cifar10", "[{random_crop: {}, horizontal_flip: {}}]", "null", 5, "data.augment.0",
         "exactly one transform"),
        ("cifar10", "[{random_crop: {mode: wrap}}]", "null", 5,
         "data.augment.0.random_crop.mode", "'zero' or 'reflect'"),
        ("cifar10", "[{horizontal_flip: {p: 2}}]", "null", 5, "data.augment.0.horizontal_flip.p",
         "less than or equal to 1"),
        ("cifar10", "none", "cifar01", 8, "models.0.normalize", "did you mean 'cifar10'"),
        ("mnist", "none", "cifar10", 8, "models.0.normalize",
         "'cifar10' normalisation has 3 channel(s) but the images of 'mnist' have 1"),
        ("cifar10", "none", "{mean: [0.5, 0.5, 0.5]}", 8, "models.0.normalize", "needs std"),
        ("cifar10", "none", "{mean: [125.3, 123.0, 113.9], std: [63.0, 62.1, 66.7]}", 8,
         "models.0.normalize.mean", "divide 0-255 values by 255"),
        ("cifar10", "none", "{mean: [0.5, 0.5], std: [0.2, 0.2, 0.2]}", 8,
         "models.0.normalize", "mean has 2 values but std has 3"),
        ("cifar10", "none", "{mean: [0.5], std: [0]}", 8, "models.0.normalize.std", "positive"),
    ],
)  # fmt: skip
def test_transforms_that_do_not_fit(errors_of, dataset, augment, normalize, line, path, message):
    problems = errors_of(spec_text(dataset, augment, normalize))
    assert len(problems) == 1, [str(p) for p in problems]
    p = problems[0]
    assert (p.line, p.path) == (line, path) and message in p.message, str(p)


def test_augment_with_the_art_engine_is_refused(errors_of) -> None:
    text = spec_text(augment="[random_crop]").replace("steps: 10}", "steps: 10, engine: art}")
    (p,) = errors_of(text)
    assert (p.line, p.path) == (
        10,
        "recipes.0.engine",
    ) and "ART's trainers draw their own" in p.message


@pytest.mark.parametrize(
    ("dataset", "extra", "path"),
    [("cifar10", "labels: coarse", "data.labels"), ("svhn", "image_size: 32", "data.image_size"),
     ("cifar100", "channels: 1", "data.channels")],
)  # fmt: skip
def test_data_options_of_another_data_set(errors_of, dataset, extra, path) -> None:
    (p,) = errors_of(spec_text(dataset).replace("  root: /data\n", f"  root: /data\n  {extra}\n"))
    assert p.path == path and "applies to dataset" in p.message


def test_image_folder_options(write_spec, errors_of) -> None:
    text = spec_text("image_folder", "[{random_crop: {padding: 4}}]").replace(
        "  root: /data\n", "  root: /data\n  image_size: 3\n  channels: 3\n"
    )
    (p,) = errors_of(text)  # the shape is known from image_size and channels
    assert p.path == "data.augment.0.random_crop.padding" and "3x3 images" in p.message
    spec = load_spec(write_spec(text.replace("image_size: 3", "image_size: [24, 32]"))).spec
    assert spec.data.image_size == (24, 32)


def test_schedule_milestone_epochs(write_spec, errors_of) -> None:
    sched = "steps: 10, schedule: {name: step, milestone_epochs: [100, 150]}}"
    spec = load_spec(write_spec(spec_text().replace("steps: 10}", sched))).spec
    assert spec.recipes[0].schedule.milestone_epochs == [100.0, 150.0]
    (p,) = errors_of(
        spec_text().replace("steps: 10}", "steps: 10, schedule: {milestone_epochs: [5]}}")
    )
    assert p.path == "recipes.0.schedule.milestone_epochs" and "name: step" in p.message
