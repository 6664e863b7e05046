"""Where a study lives, and the lock that makes "exactly N trials" hold across workers.

- default: an Optuna journal file in ``<output>/tune/study.journal`` (many processes, one machine);
  a worker that died is noticed by its pid (same host) and its trial is failed and retried;
- ``postgresql://...`` (or ``sqlite:///...``): Optuna's RDB storage with a heartbeat; a trial whose
  worker stopped beating for the grace period is failed and retried by the others.

The gate is held while a worker counts the trials and asks for a new one, so concurrent workers
never overshoot the requested number of trials.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import re
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from runner.errors import AdvrunError

MAX_RETRY = 3  # a trial whose worker dies is retried at most this often
ORPHAN_S = 120  # a running trial that never named its worker is dead after this long
_SCHEMA_KEY = 0x61647672756E  # pg advisory lock key around Optuna's table creation
_RDB = re.compile(r"^(postgresql|postgres|sqlite)(\+\w+)?://")


def redact(url: str) -> str:
    """The URL without its password (for logs and summaries)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(
            max_retry=MAX_RETRY, inherit_intermediate_values=True
        )


@dataclass
class StorageInfo:
    url: str  # as given, or the journal path
    kind: str  # journal | rdb
    heartbeat: int  # seconds (rdb only)

    @property
    def shown(self) -> str:
        return redact(self.url)

    @property
    def engine_url(self) -> str:
        """The URL for SQLAlchemy: a bare postgresql:// uses the installed driver (psycopg2 is
        the ``postgres`` extra; SQLAlchemy 2.1 would otherwise ask for psycopg 3)."""
        url = re.sub(r"^postgres://", "postgresql://", self.url)
        if url.startswith("postgresql://"):
            import importlib.util

            if importlib.util.find_spec("psycopg") is None:
                if importlib.util.find_spec("psycopg2") is None:
                    raise AdvrunError(
                        "a postgresql:// storage needs a driver: pip install 'advrun[postgres]'"
                    )
                url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
        return url

    def open(self) -> optuna.storages.BaseStorage:
        if self.kind == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            # The open-lock works on any local file system (the symlink lock needs symlinks).
            backend = JournalFileBackend(self.url, lock_obj=JournalFileOpenLock(self.url))
            return optuna.storages.JournalStorage(backend)
        url = self.engine_url
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                with _schema_lock(url):
                    return optuna.storages.RDBStorage(
                        url,
                        engine_kwargs={"pool_pre_ping": True},
                        heartbeat_interval=self.heartbeat,
                        grace_period=3 * self.heartbeat,
                        heartbeat_stale_trial_callback=retry_callback(),
                    )
            except Exception as e:  # sqlalchemy's errors: bad host, credentials, database
                raise AdvrunError(
                    f"cannot open the study storage {self.shown}: {type(e).__name__}: "
                    f"{redact(str(e).splitlines()[0]) if str(e) else ''}; check the URL, that the server "
                    "runs and that the database exists"
                ) from None


@contextlib.contextmanager
def _schema_lock(url: str):
    """Workers starting together on a fresh database must not all create Optuna's tables."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:  # closing the connection releases the lock in any case
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _SCHEMA_KEY})
        yield
    engine.dispose()


def storage_info(storage: str | None, tune_dir: Path, heartbeat: int) -> StorageInfo:
    """``--storage`` as given (URL or journal file path), or the default journal file."""
    if storage is None:
        return StorageInfo(str(tune_dir / "study.journal"), "journal", heartbeat)
    if _RDB.match(storage):
        return StorageInfo(storage, "rdb", heartbeat)
    if "://" in storage:
        raise AdvrunError(
            f"--storage {redact(storage)}: use postgresql://user:password@host/db, "
            "sqlite:///path.db, or a journal file path"
        )
    return StorageInfo(str(Path(storage).resolve()), "journal", heartbeat)


class Gate:
    """A cross-process lock around "count the trials, then ask for one" (re-entrant release)."""

    def __init__(self, info: StorageInfo, study_name: str) -> None:
        self.info = info
        self._held = False
        key = hashlib.sha256(f"advrun-tune:{study_name}".encode()).digest()
        self._key = int.from_bytes(key[:8], "big", signed=True)  # a pg advisory lock key
        self._conn: Any = None
        self._file: Any = None
        if info.url.startswith(("postgresql", "postgres")):
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(
                info.engine_url, poolclass=sqlalchemy.pool.NullPool
            )
        else:
            path = info.url.split("///", 1)[1] if info.kind == "rdb" else info.url
            self._lock_path = f"{path}.advrun-gate"

    def acquire(self) -> None:
        if self._held:
            return
        if hasattr(self, "_engine"):
            import sqlalchemy

            self._conn = self._engine.connect()  # a session lock dies with its connection
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        else:
            self._file = open(self._lock_path, "a")  # noqa: SIM115 - held across calls
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        self._held = True

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        if self._conn is not None:
            import sqlalchemy

            with contextlib.suppress(Exception):
                self._conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key}
                )
            self._conn.close()
            self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def worker_tag() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (killed, not yet reaped by its parent) is dead for our purpose.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def reap_dead_workers(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Fail and retry RUNNING trials whose worker process on this host is gone (journal storage).

    Returns the numbers of the trials failed. Call with the gate held.
    """
    host = socket.gethostname()
    failed = []
    study_id = storage.get_study_id_from_name(study.study_name)
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.user_attrs.get("worker")
        if w is None:  # killed between Optuna's ask and the objective's first line
            started = t.datetime_start or now
            if (now - started).total_seconds() < ORPHAN_S:
                continue
        elif w.get("host") != host or _alive(int(w.get("pid", -1))):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(tid, "failure", "its worker process died")
            if storage.set_trial_state_values(tid, state=TrialState.FAIL):
                failed.append(t.number)
                retry_callback()(study, storage.get_trial(tid))
    return failed


def retry_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue an interrupted (Ctrl-C) trial again with the same parameters: no trial is lost."""
    retry_callback()(study, trial)
