"""MLflow tracking against real local stores (sqlite:/// and the file store), read back with
MlflowClient; an unreachable and a hanging server; ``advrun track`` catching up; the missing extra."""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from runner.cli import main
from runner.track import names

pytest.importorskip("mlflow", reason="needs the mlflow extra: pip install 'advrun[mlflow]'")
from mlflow.tracking import MlflowClient  # noqa: E402

AWKWARD = "pgd:5/ü"  # a colon, a slash and a non-ASCII letter: not a valid MLflow key as is
SPEC = f"""\
name: tracked
seeds: [0]
device: cpu
data: {{dataset: digits, limit: 300}}
threat: {{norm: linf, eps: 0.1}}
models:
  - {{name: mlp, arch: mlp, kwargs: {{hidden: [16]}}}}
recipes:
  - {{name: madry, kind: pgd, epochs: 2, batch_size: 64, steps: 3, step_size: eps/2,
     monitor: {{n: 32, steps: 3}}}}
attacks:
  - {{name: fgsm, kind: fgsm, engine: native}}
  - {{name: "{AWKWARD}", kind: pgd, steps: 5, engine: native}}
eval: {{n: 64, bootstrap: 100, checklist: false}}
"""


@pytest.fixture(autouse=True)
def _fresh_tracking_state(monkeypatch):
    """Each test starts with no server marked down and MLflow's variables as they were."""
    from runner.track import mlflow as tm

    monkeypatch.setattr(tm, "_DOWN", {})
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for k in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[k]
    os.environ.update(saved)


def snapshot(uri: str, experiment: str) -> dict:
    """Every run of the experiment: params, tags, full metric histories, artifacts."""
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    out = {}
    for r in c.search_runs([exp.experiment_id]):
        rid = r.info.run_id
        out[rid] = {
            "name": r.info.run_name,
            "status": r.info.status,
            "params": dict(r.data.params),
            "tags": dict(r.data.tags),
            "metrics": {
                k: sorted((m.step, m.value, m.timestamp) for m in c.get_metric_history(rid, k))
                for k in r.data.metrics
            },
            "artifacts": sorted(a.path for a in c.list_artifacts(rid)),
        }
    return out


def _only(snap: dict, kind: str) -> dict:
    found = [r for r in snap.values() if r["tags"].get("advrun.kind") == kind]
    assert len(found) == 1, [r["name"] for r in snap.values()]
    return found[0]


def check_logged(snap: dict, out: Path) -> None:
    """The nested run holds exactly what the run directory holds."""
    parent, run = _only(snap, "experiment"), _only(snap, "run")
    [run_dir] = (out / "runs").iterdir()
    cfg = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    parent_id = next(k for k, v in snap.items() if v is parent)
    assert run["tags"]["mlflow.parentRunId"] == parent_id
    assert run["status"] == parent["status"] == "FINISHED"
    p = run["params"]
    assert p["run_id"] == cfg["id"] and p["seed"] == "0"
    assert p["spec_sha256"] == plan["spec_sha256"] == parent["params"]["spec_sha256"]
    assert p["data_sha256"] == metrics["data_sha256"]
    assert p["recipe.kind"] == "pgd" and float(p["recipe.eps"]) == 0.1
    assert float(p["recipe.step_size"]) == 0.05  # resolved from eps/2
    assert float(p["recipe.optimizer.lr"]) == cfg["recipe"]["optimizer"]["lr"]
    assert p["model.kwargs.hidden"] == "[16]" and p["threat.norm"] == "linf"
    assert float(p["threat.eps"]) == 0.1
    epochs = list(csv.DictReader((run_dir / "epochs.csv").open()))
    m = run["metrics"]
    for col, key in (("loss", "loss"), ("lr", "lr"), ("eps", "eps"), ("val_clean", "val_clean"),
                     ("val_robust", "val_robust")):  # fmt: skip
        assert [(s, pytest.approx(v)) for s, v, _ in m[key]] == [
            (int(e["epoch"]), float(e[col])) for e in epochs
        ], key
    for r in metrics["results"]:
        k = names.key(r["attack"])
        assert [v for _, v, _ in m[k]] == [pytest.approx(r["accuracy"])], k
        assert m[f"{k}.ci_low"][0][1] == pytest.approx(r["ci_low"])
        assert m[f"{k}.ci_high"][0][1] == pytest.approx(r["ci_high"])
    assert {"clean", "fgsm", "worst_case", names.key(AWKWARD)} <= set(m)
    assert names.key(AWKWARD) != AWKWARD
    assert m["cost.train_seconds"][0][1] == pytest.approx(metrics["train_seconds"])
    assert m["cost.train_forward_passes"][0][1] == metrics["train_passes"]["forward_passes"]
    t = run["tags"]
    assert t["advrun.checklist"] == "not run" and t["advrun.device"] == "cpu"
    assert t["advrun.version"] == metrics["versions"]["advrun"]
    assert t.get("advrun.git_commit") == metrics["git_commit"] or metrics["git_commit"] is None
    assert json.loads(t["advrun.attacks"]) == ["fgsm", AWKWARD]
    assert {"metrics.json", "epochs.csv", "model_card.json"} <= set(run["artifacts"])
    assert "report.html" in parent["artifacts"] and "results.csv" in parent["artifacts"]
    st = json.loads((run_dir / "status.json").read_text())
    assert st["tracking"]["mlflow"]["state"] == "synced"
    assert json.loads((run_dir / "mlflow.json").read_text())  # the MLflow run id, kept here


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny experiment trained once with live logging to a sqlite store."""
    root = tmp_path_factory.mktemp("mlflow")
    spec = root / "spec.yaml"
    spec.write_text(SPEC + f"tracking: {{mlflow: {{uri: 'sqlite:///{root}/ml.db'}}}}\n")
    assert main(["run", str(spec), "-o", str(root / "out"), "-q"]) == 0
    return spec, root / "out", f"sqlite:///{root}/ml.db"


def test_sqlite_store_holds_every_param_metric_and_artifact(tracked):
    spec, out, uri = tracked
    snap = snapshot(uri, "tracked")
    assert len(snap) == 2  # the experiment's parent run and its one nested run
    check_logged(snap, out)


def test_running_again_and_track_log_nothing_new(tracked, capsys):
    spec, out, uri = tracked
    before = snapshot(uri, "tracked")
    assert main(["run", str(spec), "-o", str(out)]) == 0
    assert "1 unchanged" in capsys.readouterr().out
    assert main(["track", str(out)]) == 0  # the URI it was last tracked to
    assert "1 unchanged" in capsys.readouterr().out
    assert snapshot(uri, "tracked") == before  # same runs, params, tags, histories, artifacts


def test_file_store_through_track_and_a_lost_run_id(tracked, tmp_path, capsys):
    """`advrun track` logs a whole output directory to another store (here MLflow's file store);
    a run whose mlflow.json was lost is found again by its advrun.key tag, not duplicated."""
    import shutil

    _, out, _ = tracked
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    uri = f"file://{tmp_path / 'mlruns'}"
    assert main(["track", str(copy), "--mlflow", uri]) == 0
    assert "1 logged" in capsys.readouterr().out
    snap = snapshot(uri, "tracked")
    assert len(snap) == 2
    check_logged(snap, copy)
    for f in copy.glob("runs/*/mlflow.json"):
        f.unlink()
    assert main(["track", str(copy), "--mlflow", uri]) == 0
    assert snapshot(uri, "tracked") == snap


def test_unreachable_server_never_fails_the_run_and_track_catches_up(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    # a closed loopback port: every request is refused
    assert main(["run", str(spec), "-o", str(out), "-q", "--mlflow", "http://127.0.0.1:9"]) == 0
    err = capsys.readouterr().err
    assert err.count("mlflow: logging to http://127.0.0.1:9 failed") == 1  # printed once
    assert "did not answer" in err and "advrun track" in err
    [run_dir] = (out / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "done"
    pending = json.loads((run_dir / "status.json").read_text())["tracking"]["mlflow"]
    assert pending["state"] == "pending" and "did not answer" in pending["error"]
    assert main(["track", str(out)]) == 1  # still down: says so with exit 1, logs nothing
    uri = f"sqlite:///{tmp_path / 'back.db'}"
    assert main(["track", str(out), "--mlflow", uri]) == 0  # the server is back
    check_logged(snapshot(uri, "tracked"), out)


class HangingServer:
    """Accepts connections on a loopback port and never answers (a stuck tracking server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for c in self.held:
            c.close()
        self.sock.close()


def test_a_hanging_server_costs_one_bounded_request(tmp_path, capsys):
    server = HangingServer()
    try:
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        uri = f"http://127.0.0.1:{server.port}"
        overrides = [f"tracking.mlflow={{uri: '{uri}', timeout: 1, retries: 0}}"]
        assert main(["run", str(spec), "-o", str(tmp_path / "out"), "-q", *overrides]) == 0
    finally:
        server.close()
    err = capsys.readouterr().err
    assert err.count("failed at") == 1 and "0 retries, 1 s timeout" in err
    # one request timed out; after it nothing in this process contacted the server again
    # (run start, two epochs, the end of the run and the final sync were all skipped)
    assert server.connections == 1
    [run_dir] = (tmp_path / "out" / "runs").iterdir()
    st = json.loads((run_dir / "status.json").read_text())
    assert st["state"] == "done" and st["tracking"]["mlflow"]["state"] == "pending"


def test_without_the_extra_the_option_says_what_to_install(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    for mod in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    out = tmp_path / "out"
    for cmd in (["run", str(spec)], ["eval", str(spec), "--checkpoint", str(spec)]):
        assert main([*cmd, "-o", str(out), "--mlflow", "sqlite:///x.db"]) == 2
        err = capsys.readouterr().err
        assert "pip install 'advrun[mlflow]'" in err and "Traceback" not in err
    (tmp_path / "runs").mkdir()
    assert main(["track", str(tmp_path), "--mlflow", "sqlite:///x.db"]) == 2
    assert "pip install 'advrun[mlflow]'" in capsys.readouterr().err
    assert not (out / "runs").exists()  # refused before any compute


def test_tuning_trials_nest_under_a_study_run_with_their_objectives(tmp_path, capsys):
    from tune_specs import LR_SPACE, summary, write

    tune = LR_SPACE + "  objective: {maximize: robust_accuracy, attack: pgd5}\n"
    tune += "  trials: 2\n  pruner: none\n  sampler: random\n  seed: 1\n"
    spec = write(tmp_path, "study", tune, epochs=1)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = tmp_path / "out"
    assert main(["tune", str(spec), "-o", str(out), "-q", "--mlflow", uri]) == 0
    s = summary(out)
    snap = snapshot(uri, "study")
    parent, study = _only(snap, "experiment"), _only(snap, "study")
    ids = {v["name"]: k for k, v in snap.items()}
    assert study["tags"]["mlflow.parentRunId"] == ids[parent["name"]]
    assert study["params"]["study_name"] == s["study_name"]
    assert {"summary.json", "trials.csv"} <= set(study["artifacts"])
    key = names.key("objective.robust_accuracy@pgd5")  # '@' is not allowed in a key
    history = study["metrics"][key]
    assert [(st, v) for st, v, _ in history] == [(t["number"], t["values"][0]) for t in s["trials"]]
    trials = [r for r in snap.values() if r["tags"].get("advrun.kind") == "run"]
    assert len(trials) == 2
    study_id = ids[study["name"]]
    for t in s["trials"]:
        r = next(r for r in trials if r["params"]["run_id"] == t["run_id"])
        assert r["tags"]["mlflow.parentRunId"] == study_id
        assert r["tags"]["optuna.trial_number"] == str(t["number"])
        assert float(r["params"]["trial.optimizer.lr"]) == pytest.approx(
            t["params"]["optimizer.lr"]
        )
        assert float(r["params"]["recipe.optimizer.lr"]) == pytest.approx(
            t["params"]["optimizer.lr"]
        )
        assert r["metrics"][key][0][1] == pytest.approx(t["values"][0])
        assert [st for st, _, _ in r["metrics"]["val_robust"]] == [1]
    capsys.readouterr()
    assert main(["tune", str(spec), "-o", str(out), "-q", "--mlflow", uri]) == 0
    assert snapshot(uri, "study") == snap  # a finished study logs nothing new


def test_a_resumed_run_continues_its_mlflow_run(tmp_path):
    from runner import track
    from runner.compile import compile_spec
    from runner.execute import Options, execute_run
    from runner.spec import load_spec
    from runner.store import Store

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("epochs: 2", "epochs: 3"))
    loaded = load_spec(spec)
    [run] = compile_spec(loaded.spec).runs
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    settings = track.mlflow_settings(loaded.spec, uri)
    opts = Options(device="cpu", verbose=False, tracking=track.tracking_options(settings))

    class Killed(Exception):
        pass

    def kill_after_2(row):
        if row["epoch"] == 2:
            raise Killed

    store = Store(tmp_path / "out")
    with pytest.raises(Killed):
        execute_run(run, store, opts, on_epoch=kill_after_2)
    first = json.loads((store.run_dir(run) / "mlflow.json").read_text())
    [live] = [r for r in snapshot(uri, "tracked").values() if r["tags"]["advrun.kind"] == "run"]
    assert live["status"] == "RUNNING" and [s for s, _, _ in live["metrics"]["epoch"]] == [1, 2]
    execute_run(run, store, opts)  # resumes at epoch 3, a new process would do the same
    assert json.loads((store.run_dir(run) / "mlflow.json").read_text()) == first
    [done] = [r for r in snapshot(uri, "tracked").values() if r["tags"]["advrun.kind"] == "run"]
    assert done["status"] == "FINISHED"
    assert [s for s, _, _ in done["metrics"]["val_robust"]] == [1, 2, 3]  # each epoch once
    assert "worst_case" in done["metrics"]


def test_exported_adversarial_data_is_logged_as_artifacts(tracked, capsys):
    spec, out, uri = tracked
    [run_dir] = (out / "runs").iterdir()
    assert main(["export-adv", str(run_dir), "--all", "--device", "cpu"]) == 0
    before = _only(snapshot(uri, "tracked"), "run")
    assert main(["run", str(spec), "-o", str(out), "-q", "tracking.mlflow.log_exports=true"]) == 0
    run = _only(snapshot(uri, "tracked"), "run")
    logged = set(run["artifacts"]) - set(before["artifacts"])
    assert logged == {"exports"}  # exports/adv-*.npz and exports/manifest.json
    c = MlflowClient(uri)
    rid = json.loads((run_dir / "mlflow.json").read_text())[uri]["run_id"]
    files = sorted(a.path for a in c.list_artifacts(rid, "exports"))
    assert files == ["exports/adv-fgsm.npz", "exports/adv-pgd_5__.npz", "exports/manifest.json"]
    # the override changed the spec's hash; params are immutable, so the new one is a tag
    plan = json.loads((out / "plan.json").read_text())
    assert run["params"]["spec_sha256"] != plan["spec_sha256"]
    assert run["tags"]["advrun.param_changed.spec_sha256"] == plan["spec_sha256"]


@pytest.mark.slow  # two spawned jobs: about a minute on 2 shared cores
def test_jobs_in_other_processes_log_to_one_parent(tmp_path, capsys):
    """--jobs 2: each spawned job rebuilds its hooks from plain options and logs its own run
    live; the parent run is created once (a file lock) and nothing is logged twice."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("seeds: [0]", "seeds: [0, 1]"))
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    out = tmp_path / "out"
    assert main(["run", str(spec), "-o", str(out), "-q", "--jobs", "2", "--mlflow", uri]) == 0
    snap = snapshot(uri, "tracked")
    parent = _only(snap, "experiment")
    runs = [r for r in snap.values() if r["tags"]["advrun.kind"] == "run"]
    assert len(snap) == 3 and sorted(r["params"]["seed"] for r in runs) == ["0", "1"]
    pid = next(k for k, v in snap.items() if v is parent)
    for r in runs:
        assert r["tags"]["mlflow.parentRunId"] == pid and r["status"] == "FINISHED"
        assert [s for s, _, _ in r["metrics"]["val_robust"]] == [1, 2]
        assert "model_card.json" in r["artifacts"]
