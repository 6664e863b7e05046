"""MLflow tracking: each advrun run is one MLflow run, nested under its experiment (or study).

Everything is logged by *syncing* the files of the run store to MLflow: the hooks sync a run when it
starts, after each epoch and when it ends, and ``advrun track OUT`` (or the end of ``advrun run``,
``eval`` and ``tune``) syncs the whole output directory. A sync first reads what the MLflow run
already holds (params, tags, the steps of the per-epoch metrics) and logs only what is missing, so
it is idempotent: a done run whose files did not change costs one ``get_run`` and logs nothing.
The MLflow run id is kept in the run directory (``mlflow.json``, per tracking URI) and, should that
file be lost, found again by the ``advrun.key`` tag; no tracking state lives only in memory.

A tracking server that is down or slow never costs a run: requests have a bounded timeout and
retries (MLflow's ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``), the first failure is printed once, later calls in the same
process do not contact the server again, and the run's status records ``tracking.mlflow.state:
pending`` with the error until a later sync succeeds.

Which file field becomes which param, tag or metric is in :mod:`runner.track.fields`; this module
is the sync itself (identity of MLflow runs, what is missing, batching, failures).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.compile import Audit, Run
from runner.fsio import read_json, sha256_file, write_json
from runner.store import (
    EPOCHS_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    RunDir,
    RunMetrics,
    RunStatus,
    Store,
    StoreError,
    TrackingState,
)
from runner.track import fields, names
from runner.track.settings import DEFAULT_RETRIES, DEFAULT_TIMEOUT, redact

STATE_FILE = "mlflow.json"  # in a run directory, and in the output directory (parent, studies)
LOCK_FILE = ".mlflow.lock"
RUN_ARTIFACTS = (METRICS_FILE, EPOCHS_FILE, MODEL_CARD_FILE, "exports/manifest.json")
EXPERIMENT_ARTIFACTS = ("report.html", "results.csv", "results.json", "spec.yaml", "plan.json")
TERMINAL = {"done": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits


def configure(settings: dict[str, Any]) -> None:
    """MLflow's HTTP timeout and retries for this process: the spec's values, else what the
    environment already says, else advrun's bounded defaults (MLflow's own retry for minutes)."""
    wanted = (
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", settings.get("timeout"), DEFAULT_TIMEOUT),
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", settings.get("retries"), DEFAULT_RETRIES),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", None, 1),
    )
    for var, value, default in wanted:
        if value is not None:
            os.environ[var] = str(int(math.ceil(value)))
        elif var not in os.environ:
            os.environ[var] = str(int(math.ceil(default)))
    if settings["uri"].startswith("file:"):  # asked for by name: MLflow 3 keeps it behind a flag
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    for name in ("mlflow", "alembic"):  # schema-migration chatter on a new sqlite store
        logging.getLogger(name).setLevel(logging.WARNING)


def _now_ms() -> int:
    return int(time.time() * 1000)


# the first failure per tracking URI in this process: later calls skip the server, so a server
# that is down costs one bounded timeout per process (the record of what is missing is on disk)
_DOWN: dict[str, str] = {}


def describe(e: BaseException) -> str:
    """One short line for a tracking failure (MLflow's own messages run to a screenful)."""
    text = str(e).strip()
    cause = re.search(r"Caused by (\w+)", text)
    if cause or "Max retries exceeded" in text or "Connection" in type(e).__name__:
        why = cause.group(1) if cause else type(e).__name__
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        return f"the tracking server did not answer ({why}; {retries} retries, {timeout} s timeout)"
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first[:200]}"


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One process at a time creates the experiment's parent run (``--jobs``, tune workers)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class Tracker:
    """Syncs an output directory's files to one MLflow tracking URI and experiment."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.uri: str = settings["uri"]
        self.shown = redact(self.uri)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._verified: dict[str, str] = {}  # state file -> run id checked in this process

    # ---- plumbing ---------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            configure(self.settings)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    @property
    def down(self) -> str | None:
        return _DOWN.get(self.uri)

    def report(self, e: BaseException, where: str) -> None:
        """Print the first failure once; later calls in this process skip the server."""
        if self.down is None:
            _DOWN[self.uri] = describe(e)
            print(
                f"mlflow: logging to {self.shown} failed at {where}: {self.down}. The runs go "
                "on; what was not logged is recorded as pending in each run's status and "
                "`advrun track OUT` (or the same command again) logs it later",
                file=sys.stderr,
            )

    def record(self, run_dir: Path, state: str, error: str | None = None) -> None:
        """``tracking.mlflow`` in the run's status (written only when it changes)."""
        d = RunDir(run_dir)
        tracking = dict((d.read_status() or RunStatus()).tracking)
        entry = {"state": state, "uri": self.shown, "experiment": self.settings["experiment"]}
        if error:
            entry["error"] = error
        old = tracking.get("mlflow")
        if old is not None and old.model_dump(exclude_unset=True, exclude={"updated"}) == entry:
            return
        updated = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        tracking["mlflow"] = TrackingState(**entry, updated=updated)
        d.update_status(tracking=tracking)

    def guarded(self, run_dir: Path | None, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` unless the server already failed; a failure is reported and recorded."""
        if self.down is None:
            try:
                return fn()
            except Exception as e:  # any tracking problem: the run must go on
                self.report(e, what)
        if run_dir is not None and RunDir(run_dir).has_run():
            self.record(run_dir, "pending", self.down)
        return None

    def experiment_id(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        from mlflow.exceptions import MlflowException

        name = self.settings["experiment"]
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = self.settings.get("artifact_location")
            if location is None and self.uri.startswith("sqlite:///"):
                db = Path(self.uri[len("sqlite:///") :])
                location = (db.parent / "mlartifacts").as_uri()
            try:
                self._experiment_id = self.client.create_experiment(
                    name, artifact_location=location
                )
            except MlflowException:  # created meanwhile by another process
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise RuntimeError(
                    f"MLflow experiment '{name}' is deleted; restore it (mlflow experiments "
                    "restore) or set tracking.mlflow.experiment to another name"
                )
            self._experiment_id = exp.experiment_id
        assert self._experiment_id is not None
        return self._experiment_id

    def _run_id(
        self,
        state_path: Path,
        key: str,
        name: str,
        tags: dict[str, str],
        parent_id: str | None,
        slot: tuple[str, ...] = (),
    ) -> str:
        """The MLflow run recorded in ``state_path`` (under ``slot``), else the one tagged with
        ``key`` (a crash between creating it and recording it), else a new one."""
        from mlflow.exceptions import MlflowException

        cache = f"{state_path}|{'/'.join(slot)}"
        if cache in self._verified:
            return self._verified[cache]
        state = read_json(state_path) or {}
        entry = state.get(self.shown) or {}
        for part in slot:
            entry = entry.get(part) or {}
        known = entry.get("run_id")
        rid = None
        if known:
            try:
                found = self.client.get_run(known)
                rid = known if found.info.lifecycle_stage != "deleted" else None
            except MlflowException as e:
                if getattr(e, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
        if rid is None:
            eid = self.experiment_id()
            hits = self.client.search_runs(
                [eid], filter_string=f"tags.`advrun.key` = '{key}'", max_results=1
            )
            if hits:
                rid = hits[0].info.run_id
            else:
                all_tags = {**tags, "advrun.key": key, "mlflow.runName": names.value(name, 250)}
                if parent_id:
                    all_tags["mlflow.parentRunId"] = parent_id
                rid = self.client.create_run(
                    eid, run_name=all_tags["mlflow.runName"], tags=all_tags
                )
                rid = rid.info.run_id
            state = read_json(state_path) or {}  # re-read: another slot may have been written
            node = state.setdefault(self.shown, {})
            for part in slot:
                node = node.setdefault(part, {})
            node.update(run_id=rid, experiment_id=self.experiment_id())
            write_json(state_path, state)
        self._verified[cache] = rid
        return rid

    def _log(
        self,
        rid: str,
        metrics: list[tuple[str, float, int]] = (),  # type: ignore[assignment]
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = _now_ms()
        ms = [Metric(k, v, now, step) for k, v, step in metrics]
        ps = [Param(k, names.value(v, names.MAX_PARAM_VALUE)) for k, v in (params or {}).items()]
        ts = [RunTag(k, names.value(v, names.MAX_TAG_VALUE)) for k, v in (tags or {}).items()]
        for chunk in _chunks(ps, BATCH["params"]):
            self.client.log_batch(rid, params=chunk, synchronous=True)
        for chunk in _chunks(ms, BATCH["metrics"]):
            self.client.log_batch(rid, metrics=chunk, synchronous=True)
        for chunk in _chunks(ts, BATCH["tags"]):
            self.client.log_batch(rid, tags=chunk, synchronous=True)

    def _params_once(self, rid: str, have: dict[str, str], params: dict[str, Any]) -> dict:
        """Log params not yet on the run; a changed value (params are immutable in MLflow) is
        kept as an ``advrun.param_changed.KEY`` tag. Returns those tags."""
        new, changed = {}, {}
        for k, v in params.items():
            text = names.value(v, names.MAX_PARAM_VALUE)
            if k not in have:
                new[k] = text
            elif have[k] != text:
                changed[names.key(f"advrun.param_changed.{k}")] = text
        self._log(rid, params=new)
        return changed

    def _artifacts(
        self, rid: str, tags: dict[str, str], root: Path, files: tuple[str, ...]
    ) -> dict[str, str]:
        """Upload each file whose content changed since it was logged; the new hash tags."""
        out = {}
        for rel in files:
            path = root / rel
            if not path.is_file():
                continue
            digest = sha256_file(path)
            tag = names.key(f"advrun.sha256.{rel}")
            if tags.get(tag) != digest:
                parent = str(Path(rel).parent)
                self.client.log_artifact(rid, str(path), None if parent == "." else parent)
                out[tag] = digest
        return out

    def _terminate(self, rid: str, status: str, current: str) -> None:
        if current != status:
            self.client.set_terminated(rid, status=status)

    # ---- the experiment parent and studies ---------------------------------------------------

    def parent_id(self, out: Path) -> str:
        out = Path(out)
        with _locked(out):
            return self._run_id(
                out / STATE_FILE,
                _key(str(out.resolve()), "experiment"),
                self.settings["experiment"],
                {"advrun.kind": "experiment", "advrun.output": str(out.resolve())},
                None,
            )

    def study_id(self, out: Path, study: str) -> str:
        out = Path(out)
        parent = self.parent_id(out)
        with _locked(out):
            return self._run_id(
                out / STATE_FILE,
                _key(str(out.resolve()), "study", study),
                f"study {study}",
                {"advrun.kind": "study", "advrun.study": study},
                parent,
                slot=("studies", study),
            )

    # ---- one run ----------------------------------------------------------------------------

    def sync_run(
        self,
        run_dir: Path,
        parent_id: str | None,
        live: bool = False,
        trial: dict[str, Any] | None = None,
    ) -> str:
        """Log what the MLflow run of ``run_dir`` lacks: 'logged', 'unchanged' or 'skipped'.

        ``live``: called while the run trains (no artifacts, no terminal status yet);
        ``trial``: the Optuna trial row of summary.json that ran this run.
        """
        run_dir = Path(run_dir)
        d = RunDir(run_dir)
        cfg = _readable_run(d)
        if cfg is None:
            return "skipped"
        local = _Local(run_dir, cfg, d.read_metrics(), d.read_status() or RunStatus(),
                       d.read_epochs(), self._run_files(run_dir))  # fmt: skip
        key = local.key(live, trial)
        rid = self._run_id(
            run_dir / STATE_FILE,
            _key(str(local.out.resolve()), cfg.id),
            cfg.slug or cfg.id,
            {"advrun.kind": "audit" if isinstance(cfg, Audit) else "run", "advrun.run_id": cfg.id},
            parent_id,
        )
        run = self.client.get_run(rid)
        if dict(run.data.tags).get("advrun.synced") == key:
            if not live:
                self.record(run_dir, "synced")
            return "unchanged"
        if live and run.info.status != "RUNNING":  # a resumed run continues its MLflow run
            self.client.update_run(rid, status="RUNNING")
        self._log_changes(rid, run, local, key, live, trial)
        if not live and local.state in TERMINAL:
            self._terminate(rid, TERMINAL[local.state], run.info.status)
        if not live:
            self.record(run_dir, "synced")
        return "logged"

    def _run_files(self, run_dir: Path) -> tuple[str, ...]:
        """The run's files logged as artifacts (exports too if ``log_exports``)."""
        files = RUN_ARTIFACTS
        if self.settings.get("log_exports"):
            npz = sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("exports/*.npz"))
            files = (*files, *npz)
        return files

    def _log_changes(
        self, rid: str, run: Any, local: _Local, key: str, live: bool, trial: dict[str, Any] | None
    ) -> None:
        """Tags, params, epoch and final metrics, trial values and artifacts MLflow lacks."""
        have_tags = dict(run.data.tags)
        metrics = local.metrics
        tags = fields.run_tags(local.cfg, metrics, local.status, local.out)
        params = fields.run_params(local.cfg, metrics, local.out)
        tags.update(self._params_once(rid, dict(run.data.params), params))
        self._log_epochs(rid, local.epochs)
        if metrics and have_tags.get("advrun.eval_hash") != metrics.eval_hash:
            self._log(rid, metrics=fields.final_metrics(metrics))
            tags["advrun.eval_hash"] = metrics.eval_hash
        if trial:
            tags.update(self._trial(rid, dict(run.data.params), trial))
        if not live:
            tags.update(self._artifacts(rid, have_tags, local.dir, local.files))
        tags["advrun.synced"] = key
        self._log(rid, tags={k: v for k, v in tags.items() if have_tags.get(k) != str(v)})

    def _log_epochs(self, rid: str, epochs: list[dict[str, str]]) -> None:
        if epochs:
            logged = {int(m.step) for m in self.client.get_metric_history(rid, "epoch")}
            self._log(rid, metrics=fields.epoch_rows(epochs, logged))

    def _trial(self, rid: str, have: dict[str, str], trial: dict[str, Any]) -> dict[str, Any]:
        tags = self._params_once(rid, have, fields.trial_params(trial))
        self._log(rid, metrics=fields.trial_metrics(trial))
        return {**tags, **fields.trial_tags(trial)}

    # ---- whole output directories ------------------------------------------------------------

    def _sync_study(self, out: Path, sid: str, summary: dict[str, Any]) -> None:
        """The study run: params of the search, each trial's objective values with
        step=trial number, the best values, summary.json and trials.csv."""
        run = self.client.get_run(sid)
        have_tags = dict(run.data.tags)
        local = sha256_file(out / "tune" / "summary.json")
        if have_tags.get("advrun.synced") == local:
            return
        tags = self._params_once(sid, dict(run.data.params), fields.study_params(summary))
        keys = fields.study_objective_keys(summary)
        logged = (
            {int(m.step) for m in self.client.get_metric_history(sid, keys[0])} if keys else set()
        )
        self._log(sid, metrics=fields.study_metrics(summary, logged))
        tags.update(self._artifacts(sid, have_tags, out / "tune", ("summary.json", "trials.csv")))
        tags.update(fields.study_tags(summary))
        tags["advrun.synced"] = local
        self._log(sid, tags=tags)
        self._terminate(sid, "FINISHED", run.info.status)

    def sync_experiment(self, out: Path) -> dict[str, Any]:
        """Sync the whole output directory: the parent, any study, every run, trial and audit."""
        out = Path(out)
        counts: dict[str, int] = {}
        parent = self.guarded(None, "experiment", lambda: self.parent_id(out))
        summary = read_json(out / "tune" / "summary.json")
        trials: dict[str, dict[str, Any]] = {}  # run id -> the first trial that ran it
        sid = None
        if summary and parent is not None:
            labels = [str(x) for x in summary.get("objectives") or []]
            for row in sorted(summary.get("trials") or [], key=lambda r: r.get("number") or 0):
                if row.get("run_id") and str(row["run_id"]) not in trials:
                    trials[str(row["run_id"])] = {**row, "objectives": labels}
            study = str(summary.get("study_name"))
            sid = self.guarded(None, "study", lambda: self.study_id(out, study))
        keys = []
        for rd in (rd for rd in Store(out).run_dirs() if rd.has_run()):
            d = rd.path
            run = _readable_run(rd)
            trial = trials.get(run.id) if sid and run is not None else None
            up = sid if trial else parent
            res = self.guarded(
                d, d.name, lambda d=d, up=up, trial=trial: self.sync_run(d, up, trial=trial)
            )
            counts[res or "pending"] = counts.get(res or "pending", 0) + 1
            metrics = rd.read_metrics()
            state = (rd.read_status() or RunStatus()).state
            keys.append((d.name, state, metrics.eval_hash if metrics else None))
        if sid is not None and summary:
            self.guarded(None, "study", lambda: self._sync_study(out, sid, summary))
        if parent is not None:
            self.guarded(None, "experiment", lambda: self._sync_parent(out, parent, keys))
        return {
            "counts": counts,
            "pending": counts.get("pending", 0),
            "error": self.down,
            "parent_run_id": parent,
            "uri": self.shown,
            "experiment": self.settings["experiment"],
        }

    def _sync_parent(self, out: Path, rid: str, keys: list) -> None:
        run = self.client.get_run(rid)
        have_tags = dict(run.data.tags)
        files = {
            rel: sha256_file(out / rel) for rel in EXPERIMENT_ARTIFACTS if (out / rel).is_file()
        }
        files.pop("report.html", None)  # it holds the time it was rendered: judged by its inputs
        files.pop("results.json", None)
        local = _key(json.dumps({"runs": keys, "files": files}, sort_keys=True, default=str))
        if have_tags.get("advrun.synced") == local:
            return
        plan = read_json(out / "plan.json") or {}
        params = {"experiment": self.settings["experiment"], "output": str(out.resolve())}
        if plan.get("spec_sha256"):
            params["spec_sha256"] = plan["spec_sha256"]
        tags = self._params_once(rid, dict(run.data.params), params)
        # report.html and results.json carry their rendering time: upload them with the inputs
        stale = {f"advrun.sha256.{r}": None for r in ("report.html", "results.json")}
        tags.update(self._artifacts(rid, {**have_tags, **stale}, out, EXPERIMENT_ARTIFACTS))
        results = read_json(out / "results.json") or {}
        gate = ((results.get("experiments") or [{}])[0] or {}).get("gate") or {}
        if gate.get("configured") and "ok" in gate:
            tags["advrun.gate"] = "passed" if gate["ok"] else "failed"
        states = [k[1] for k in keys]
        tags.update({f"advrun.runs.{s}": states.count(s) for s in set(states) if s})
        tags["advrun.synced"] = local
        self._log(rid, tags=tags)
        self._terminate(rid, "FINISHED", run.info.status)


@dataclass(frozen=True)
class _Local:
    """What a run directory holds now, as far as MLflow is concerned."""

    dir: Path
    cfg: Run | Audit
    metrics: RunMetrics | None
    status: RunStatus
    epochs: list[dict[str, str]]
    files: tuple[str, ...]  # logged as artifacts

    @property
    def state(self) -> str:
        return str(self.status.state or "unknown")

    @property
    def out(self) -> Path:
        return self.dir.parent.parent

    def key(self, live: bool, trial: dict[str, Any] | None) -> str:
        """A digest of everything synced: MLflow's copy is up to date if its tag holds it."""
        digests = {
            rel: sha256_file(self.dir / rel) for rel in self.files if (self.dir / rel).is_file()
        }
        state = {
            "state": self.state,
            "eval": self.metrics.eval_hash if self.metrics else None,
            "epochs": len(self.epochs),
            "files": None if live else digests,
            "trial": trial,
            "live": live,
        }
        return _key(json.dumps(state, sort_keys=True, default=str))


def _readable_run(d: RunDir) -> Run | Audit | None:
    """The run of a directory; None when it has none this advrun can read (not synced)."""
    try:
        return d.read_run()
    except StoreError:
        return None


def sync_output(settings: dict[str, Any], out: Path) -> dict[str, Any]:
    """Sync an output directory (``advrun track``, and the end of run/eval/tune)."""
    return Tracker(settings).sync_experiment(Path(out))
