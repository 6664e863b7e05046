"""metrics.json version 4: the poisoning block's defense, filter and before/after effects, and
rows of scope ``poisoning``; a version 3 file (a backdoor run of the previous release, its asr row
without a scope) still reads; the filter record of poisoning/filter.json round-trips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.store import (
    BackdoorEffect,
    ClassFilter,
    FilterMetrics,
    Interval,
    PoisonFilter,
    PoisoningResult,
    RunDir,
)
from runner.store.files import METRICS, MODEL_CARD, POISON_FILTER, VERSION_KEY

V0 = Path(__file__).parent / "store_v0" / "run"
ASR_V3 = {"asr": 0.97, "n": 323, "ci_low": 0.95, "ci_high": 0.99, "target": 0,
          "trigger": "pattern", "fraction": 0.1}  # fmt: skip


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDir:
    shutil.copytree(V0, tmp_path / "run")
    return RunDir(tmp_path / "run")


def _share(v: float, n: int = 100) -> Interval:
    return Interval(value=v, n=n, ci_low=v - 0.05, ci_high=min(1.0, v + 0.05))


def test_a_version_3_backdoor_run_reads(run_dir):
    path = run_dir.path / "metrics.json"
    data = json.loads(path.read_text())
    row = {"attack": "asr", "kind": "backdoor", "norm": "pattern", "eps": 0.0,
           "accuracy": 0.97, "n": 323, "ci_low": 0.95, "ci_high": 0.99}  # fmt: skip
    data.update({VERSION_KEY: 3, "poisoning": ASR_V3, "results": [*data["results"], row]})
    path.write_text(json.dumps(data))
    m = run_dir.read_metrics()
    assert m.poisoning.asr == 0.97 and m.poisoning.defense is None and m.poisoning.filter is None
    asr = m.row("asr")
    assert asr.scope is None and asr.is_asr and asr.is_poisoning
    assert not m.row("worst_case").is_poisoning
    assert METRICS.version == MODEL_CARD.version >= 4  # 4 added the defense records


def test_a_defended_run_round_trips(run_dir):
    m = run_dir.read_metrics()
    effect = BackdoorEffect(clean=_share(0.93, 359), source=_share(0.97, 36), asr=_share(0.0, 36))
    metrics = FilterMetrics(
        defense="activation_clustering", examples=1258, removed=151, tp=38, fp=113, tn=1107, fn=0,
        precision=_share(0.25, 151), recall=_share(1.0, 38), f1=0.4,
        per_class=[ClassFilter(label=0, examples=162, poisons=38, removed=38, removed_poisons=38)],
    )  # fmt: skip
    assert m.poisoning is None  # the quickstart run has none: add one
    p = PoisoningResult(**ASR_V3, scenario="backdoor", defense="activation_clustering",
                        poisons=38, after=effect, before=effect, filter=metrics)  # fmt: skip
    run_dir.write_metrics(m.model_copy(update={"poisoning": p}))
    data = json.loads((run_dir.path / "metrics.json").read_text())
    assert data[VERSION_KEY] == METRICS.version and data["poisoning"]["filter"]["tp"] == 38
    assert run_dir.read_metrics().poisoning == p
    kept = PoisonFilter(train_hash="abc", removed=[1, 5, 9], metrics=metrics, before=effect)
    assert run_dir.read_poison_filter() is None
    run_dir.write_poison_filter(kept)
    assert (run_dir.path / POISON_FILTER.name).is_file()
    assert run_dir.read_poison_filter() == kept
    with pytest.raises(ValueError):  # a typo is refused, not kept as a free dict
        ClassFilter.model_validate({**kept.metrics.per_class[0].model_dump(), "remvoed": 1})
