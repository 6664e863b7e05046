"""The run store's typed records: real files of the previous release (no ``schema_version``,
``store_v0/``: a trained run of the quickstart with an export, and an ``advrun eval`` audit) are
read and migrated; writing them back keeps every key and number; a newer file is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runner.compile import Audit, Run
from runner.store import (
    CertifiedSummary,
    ExportEntry,
    ResultRow,
    RunDir,
    RunMetrics,
    RunStatus,
    Store,
    StoreError,
)
from runner.store.files import EXPORTS, METRICS, MODEL_CARD, RUN, STATUS, VERSION_KEY

V0 = Path(__file__).parent / "store_v0"
FILES = ("run.json", "status.json", "metrics.json", "model_card.json", "exports.json")
KINDS = {k.name: k for k in (RUN, STATUS, METRICS, MODEL_CARD, EXPORTS)}


@pytest.fixture
def v0(tmp_path: Path) -> Path:
    """A copy of the previous release's files: a store with a run and an audit."""
    runs = tmp_path / "out" / "runs"
    shutil.copytree(V0 / "run", runs / "cnn@madry@s0-f285bfa9ca")
    shutil.copytree(V0 / "audit", runs / "cnn@audit[best]-1ca7c32596")
    return tmp_path / "out"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _audit_metrics(v0: Path, version: int, **keys):
    """The audit's run dir and metrics.json, rewritten as a version-``version`` file (plus
    ``keys``), as an older release wrote it."""
    (d,) = [d for d in Store(v0).run_dirs() if "audit" in d.path.name]
    path = d.path / "metrics.json"
    path.write_text(json.dumps({**_json(path), **keys, VERSION_KEY: version}))
    return d, path


def test_previous_release_files_are_read_as_typed_records(v0):
    stored = Store(v0).read("cnn@madry@s0-f285bfa9ca")
    assert stored.found and stored.problem is None and stored.state == "done"
    assert isinstance(stored.run, Run) and stored.run.recipe.kind == "pgd"
    m = stored.metrics
    assert isinstance(m, RunMetrics) and m.kind == "pgd" and m.seed == 0
    assert [r.attack for r in m.results] == ["clean", "fgsm", "pgd20", "worst_case"]
    assert [r.scope for r in m.results] == ["clean", "cascade", "cascade", "worst_case"]
    fgsm = m.row("fgsm")
    assert fgsm.engine == "art" and fgsm.attacked == 349 and fgsm.broken == 49
    assert m.accuracy("worst_case") == pytest.approx(0.8022284122562674)
    assert m.train_passes.forward_passes == 183360 and m.execution.train.world_size == 1
    assert [c.check for c in m.checklist][:2] == ["iterative_vs_single_step", "large_eps"]
    assert m.checklist_verdict == "pass" and len(m.curves) == 5
    assert m.group == "cnn@madry"
    assert stored.status.best_epoch == 15 and stored.status.execution.threads == 1
    assert [e.attack for e in stored.exports] == ["fgsm"]
    card = RunDir(stored.dir).read_model_card()
    assert card.card_schema == "advrun.model_card/1" and card.robust_acc == m.accuracy("worst_case")


def test_an_audit_of_the_previous_release_is_read(v0):
    (stored,) = [d.read() for d in Store(v0).run_dirs() if "audit" in d.path.name]
    assert isinstance(stored.run, Audit) and stored.is_audit
    assert stored.run.checkpoint_sha256 == stored.metrics.checkpoint_sha256
    assert stored.id == stored.run.id == stored.metrics.run_id
    assert [m.run_id for m in Store(v0).audits(stored.metrics.eval_hash)] == [stored.id]


@pytest.mark.parametrize("which", ["run", "audit"])
def test_writing_back_keeps_every_key_and_number(v0, which):
    (d,) = [d for d in Store(v0).run_dirs() if ("audit" in d.path.name) == (which == "audit")]
    before = {f: _json(d.path / f) for f in FILES if (d.path / f).exists()}
    stored = d.read()
    d.write_run(stored.run)
    d.write_status(d.read_status())
    d.write_metrics(stored.metrics)
    if "model_card.json" in before:
        d.write_model_card(d.read_model_card())
    for e in stored.exports:
        d.record_export(e)
    for name, old in before.items():
        new = _json(d.path / name)
        assert new.pop(VERSION_KEY) == KINDS[name].version, name
        assert new == old, name


def test_a_status_update_keeps_the_other_keys_and_validates(v0):
    d = RunDir(v0 / "runs" / "cnn@madry@s0-f285bfa9ca")
    st = d.set_status("failed", diagnosis="NaN loss", resumable=True)
    assert st.state == "failed" and st.best_epoch == 15 and st.resumable is True
    data = _json(d.path / "status.json")
    assert data["diagnosis"] == "NaN loss" and data["world_size"] == 1 and data[VERSION_KEY] == 1
    with pytest.raises(StoreError, match=r"status\.json.*nonsense"):
        d.set_status("done", nonsense=1)
    assert _json(d.path / "status.json") == data  # nothing written


def test_a_newer_file_is_refused_naming_it_and_what_to_do(v0):
    d = RunDir(v0 / "runs" / "cnn@madry@s0-f285bfa9ca")

    def newer(kind) -> None:
        path = d.path / kind.name
        path.write_text(json.dumps({**_json(path), VERSION_KEY: kind.version + 1}))

    newer(RUN)  # run.json: read() still reads the other files and says why the run is missing
    stored = d.read()
    assert stored.run is None and stored.metrics is not None
    assert f"run.json: schema_version {RUN.version + 1} is newer than this advrun reads" in (
        stored.problem
    )
    for kind in (METRICS, STATUS):
        newer(kind)
    with pytest.raises(StoreError) as e:
        d.read_metrics()
    msg = str(e.value)
    assert str(d.path / "metrics.json") in msg and "newer than this advrun reads" in msg
    assert "upgrade advrun" in msg
    with pytest.raises(StoreError, match=f"status.json: schema_version {STATUS.version + 1} is"):
        d.read_status()


def test_a_file_that_is_not_a_record_gets_a_one_line_error(v0):
    path = v0 / "runs" / "cnn@madry@s0-f285bfa9ca" / "metrics.json"
    data = _json(path)
    data["results"][0]["accuracy"] = "high"
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match=r"results\.0\.accuracy.*delete it to re-evaluate"):
        RunDir(path.parent).read_metrics()


def test_records_are_frozen_and_strict():
    st = RunStatus(state="done")
    with pytest.raises(ValueError):
        st.state = "failed"  # type: ignore[misc]
    with pytest.raises(ValueError):
        RunStatus(state="exploded")
    with pytest.raises(ValueError):
        ExportEntry.model_validate({"file": "x"})


def test_metrics_of_version_1_are_read_and_certified_results_round_trip(v0):
    """metrics.json 3 adds randomized smoothing (``certified``, rows of scope certified): a
    version-1 or -2 file (none of it) migrates unchanged; a version-3 file keeps every certified key."""
    d = RunDir(v0 / "runs" / "cnn@madry@s0-f285bfa9ca")
    path = d.path / "metrics.json"
    path.write_text(json.dumps({**_json(path), VERSION_KEY: 1}))
    m = d.read_metrics()
    assert m.certified == [] and not any(r.is_certified for r in m.results)
    point = {"radius": 0.5, "linf_radius": 0.0625, "accuracy": 0.4, "ci_low": 0.3,
             "ci_high": 0.5, "certified": 40}  # fmt: skip
    summary = {"sigma": 0.25, "n0": 100, "n": 1000, "alpha": 0.001, "predict_n": 1000,
               "n_examples": 100, "dim": 64, "abstained": 7, "abstain_rate": 0.07, "acr": 0.3,
               "acr_linf": 0.0375, "curve": [point], "smoothed_accuracy": 0.8}  # fmt: skip
    row = {"attack": "certified[sigma=0.25]@0.5", "kind": "certify", "norm": "l2", "eps": 0.5,
           "accuracy": 0.4, "n": 100, "ci_low": 0.3, "ci_high": 0.5, "scope": "certified",
           "sigma": 0.25, "radius": 0.5, "linf_radius": 0.0625, "abstained": 7}  # fmt: skip
    new = m.model_copy(update={"certified": [CertifiedSummary.model_validate(summary)],
                               "results": [*m.results, ResultRow.model_validate(row)]})  # fmt: skip
    d.write_metrics(new)
    data = _json(path)
    assert data[VERSION_KEY] == METRICS.version >= 3
    assert data["certified"][0]["curve"][0] == point and data["results"][-1]["abstained"] == 7
    back = d.read_metrics()
    assert back.certified[0].at(0.5).accuracy == 0.4 and back.row(row["attack"]).is_certified


def test_an_audits_checkpoint_provenance_is_stored_and_older_files_migrate(v0):
    """metrics.json version 2 may carry the audited file's record; a version 1 file (no record)
    still reads, and the record survives a write and a read."""
    from runner.store.records import CheckpointProvenance

    d, path = _audit_metrics(v0, 1)
    m = d.read_metrics()
    assert m.checkpoint_provenance is None and m.is_audit
    prov = CheckpointProvenance(
        path="w.pth", sha256=m.checkpoint_sha256, size_bytes=1234, format="torch-legacy",
        format_name="torch legacy serialization", found="a dict with keys 'model', 'ema'",
        unwrapped=["took EMA weights under 'ema'"], weights="ema", ignored=["model"],
        saved_on=["cuda:0"], loaded_on="cpu", tensors=10, parameters=1000,
    )  # fmt: skip
    d.write_metrics(m.model_copy(update={"checkpoint_provenance": prov}))
    data = _json(path)
    assert data[VERSION_KEY] == METRICS.version >= 3
    assert data["checkpoint_provenance"]["saved_on"] == ["cuda:0"]
    assert d.read_metrics().checkpoint_provenance == prov
    with pytest.raises(ValueError):  # a typo in the record is refused, not kept as a free dict
        CheckpointProvenance.model_validate({**prov.model_dump(), "fromat": "x"})


def test_an_escalation_is_stored_and_version_4_metrics_migrate(v0):
    """metrics.json version 5 may record the suite's escalation; a version 4 file (none) still
    reads, and the record survives a write and a read."""
    from runner.store import EscalationRecord, EscalationRung

    d, path = _audit_metrics(v0, 4)
    m = d.read_metrics()
    assert m.escalation is None
    rung = EscalationRung(attack="square_5000", kind="square", ladder="square",
                          budget="5000 queries", reasons=["checklist gradients: fail"],
                          attacked=330, broken=5, seconds=77.3, forward_passes=1650000)  # fmt: skip
    rec = EscalationRecord(signals=["checklist gradients: fail"], rungs=[rung], settled=False,
                           broken=5)  # fmt: skip
    d.write_metrics(m.model_copy(update={"escalation": rec}))
    data = _json(path)
    assert data[VERSION_KEY] == METRICS.version >= 6
    assert data["escalation"]["rungs"][0]["budget"] == "5000 queries"
    assert d.read_metrics().escalation == rec
    assert "did not settle" in rec.words and "square_5000 (5000 queries: broke 5)" in rec.words
    with pytest.raises(ValueError):  # a typo is refused, not kept as a free dict
        EscalationRung.model_validate({**rung.model_dump(), "brokne": 1})


def test_version_5_escalation_rungs_read_without_eot_and_eot_rungs_round_trip(v0):
    """metrics.json version 6 records a rung's ``eot_iter`` (EoT rungs on a random model); a
    version 5 file's rungs have none and read as 1 (they ran without EoT)."""
    from runner.store import EscalationRecord, EscalationRung

    plain = {"attack": "apgd_ce_5r", "kind": "apgd", "ladder": "white_box",
             "budget": "100 steps x 5 restarts", "attacked": 10, "broken": 1, "seconds": 1.0}  # fmt: skip
    old = {"signals": ["checklist deterministic: fail"], "rungs": [plain], "settled": True}
    d, path = _audit_metrics(v0, 5, escalation=old)
    m = d.read_metrics()
    assert m.escalation is not None and m.escalation.rungs[0].eot_iter == 1
    eot = EscalationRung(**{**plain, "attack": "apgd_ce_eot20", "budget": "100 steps, EoT 20",
                            "eot_iter": 20})  # fmt: skip
    rec = EscalationRecord(signals=old["signals"], rungs=[eot], settled=True, broken=1)
    d.write_metrics(m.model_copy(update={"escalation": rec}))
    data = _json(path)
    assert data[VERSION_KEY] >= 6 and data["escalation"]["rungs"][0]["eot_iter"] == 20
    assert d.read_metrics().escalation == rec


def test_version_6_rungs_read_unconfirmed_and_confirmed_breaks_round_trip(v0):
    """metrics.json version 7 records how many of a Square rung's breaks on a random model most of
    20 draws confirmed (``confirmed``); a version-6 rung has none (None: not judged so). The words
    say it, and a ladder that stopped on unconfirmed breaks says why it settled."""
    from runner.store import EscalationRecord, EscalationRung

    plain = {"attack": "square_1000", "kind": "square", "ladder": "square",
             "budget": "1000 queries", "attacked": 300, "broken": 1, "seconds": 20.0}  # fmt: skip
    old = {"signals": ["checklist deterministic: fail"], "rungs": [plain], "settled": False}
    d, path = _audit_metrics(v0, 6, escalation=old)
    m = d.read_metrics()
    assert m.escalation is not None and m.escalation.rungs[0].confirmed is None
    assert "square_1000 (1000 queries: broke 1)" in m.escalation.words
    rung = EscalationRung(**{**plain, "confirmed": 0})
    rec = EscalationRecord(signals=old["signals"], rungs=[rung], settled=True, broken=1)
    d.write_metrics(m.model_copy(update={"escalation": rec}))
    data = _json(path)
    assert data[VERSION_KEY] == METRICS.version == 7
    assert data["escalation"]["rungs"][0]["confirmed"] == 0
    assert d.read_metrics().escalation == rec
    assert "square_1000 (1000 queries: broke 1, 0 confirmed by most of 20 draws)" in rec.words
    assert "it settled (the last rung broke nothing that most of 20 draws" in rec.words
