"""Claims: which process owns a run (or the experiment's shared files) right now.

A claim is a file created with an exclusive create (``O_CREAT | O_EXCL``), holding the owner's
host, pid, start time and a heartbeat that a background thread refreshes every ``interval``
seconds. Exclusive create and rename are atomic on local file systems and on NFS (v3 and later),
which is what a run store shared by several machines is; OS file locks (``flock``/``fcntl``) are
not used because whether they work across machines depends on the NFS server's lock manager, and a
wrong answer there means two machines training the same run.

A claim is *stale*, and may be taken over, when its owner is a dead process on this host (checked
with the pid and the process's start time, so a reused pid is not mistaken for the owner), or when
its heartbeat has not moved for ``stale_after`` heartbeats as seen by the waiting process's own
clock (so the hosts' clocks need not agree). The owner checks, before each write to the store, that
the claim is still its own; a process that was paused for longer than that and lost its claim stops
instead of writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError

CLAIM = "claim.json"


def heartbeat_interval() -> float:
    """Seconds between heartbeats (``ADVRUN_HEARTBEAT_S``, default 5)."""
    try:
        return max(0.05, float(os.environ.get("ADVRUN_HEARTBEAT_S", "5")))
    except ValueError:
        raise AdvrunError("ADVRUN_HEARTBEAT_S must be a number of seconds, e.g. 5") from None


STALE_AFTER = 6  # missed heartbeats after which a claim of another host is taken over


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


HOST = f"{socket.gethostname()}/{_boot_id()[:8]}"  # containers may share a hostname


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the (comm) field


def pid_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` on this host is still the process that wrote the claim."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    now = _proc_start(pid)
    if now is not None and start is not None and now != start:
        return False  # the pid was reused
    try:  # a zombie (killed, not yet reaped by its parent) is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Holder:
    """What a claim file says about its owner."""

    host: str
    pid: int
    started: str
    token: str
    beat: int
    what: str = ""
    pid_start: str | None = None
    interval: float = 0.0

    @classmethod
    def read(cls, path: Path) -> Holder | None:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                str(d["host"]),
                int(d["pid"]),
                str(d["started"]),
                str(d["token"]),
                int(d["beat"]),
                str(d.get("what", "")),
                d.get("pid_start"),
                float(d.get("interval") or 0.0),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # being created (empty) or torn by a crash mid-create: unknown owner; its file's
            # content then counts as its heartbeat (it is stale if it never changes)
            try:
                return cls("?", -1, "", "", hash(path.read_bytes()), "")
            except OSError:
                return None

    def __str__(self) -> str:
        return f"{self.host.split('/')[0]} pid {self.pid}"


class ClaimLost(AdvrunError):
    """Another process took this claim over (this one was paused or partitioned too long)."""

    exit_code = 1


class Claim:
    """An exclusive claim on ``directory`` (its ``claim.json``), with a heartbeat thread."""

    def __init__(self, directory: Path, what: str = "") -> None:
        self.dir = Path(directory)
        self.path = self.dir / CLAIM
        self.what = what
        self.token = uuid.uuid4().hex
        self.interval = heartbeat_interval()
        self._beat = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.took_over: Holder | None = None
        self._pid_start = _proc_start(os.getpid())

    # -- the file --------------------------------------------------------------------------
    def _content(self) -> bytes:
        d: dict[str, Any] = {
            "host": HOST,
            "pid": os.getpid(),
            "pid_start": self._pid_start,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "token": self.token,
            "beat": self._beat,
            "beat_time": time.time(),
            "interval": self.interval,
            "what": self.what,
        }
        return (json.dumps(d) + "\n").encode()

    def _create(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._content())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _rewrite(self) -> None:
        tmp = self.dir / f".{CLAIM}.{self.token}.tmp"
        tmp.write_bytes(self._content())
        os.replace(tmp, self.path)

    # -- acquire / release ---------------------------------------------------------------
    def try_acquire(self, observed: dict[str, tuple[int, float]] | None = None) -> Holder | None:
        """Take the claim if it is free or stale; return None on success, else its live holder.

        ``observed`` (token -> (beat, local time first seen)) lets a caller that polls notice
        a heartbeat of another host that stopped moving.
        """
        while True:
            if self._create():
                self._start()
                return None
            holder = Holder.read(self.path)
            if holder is None:  # released between our create and our read: try again
                continue
            if not self._stale(holder, observed):
                return holder
            if self._take_over(holder):
                self.took_over = holder
                self._start()
                return None

    def _stale(self, h: Holder, observed: dict[str, tuple[int, float]] | None) -> bool:
        """Dead owner on this host; or (any host) a heartbeat that stopped moving."""
        if h.host == HOST and h.pid > 0 and not pid_alive(h.pid, h.pid_start):
            return True
        if observed is None:
            return False
        key = f"{h.token}:{h.pid}:{h.host}"
        seen = observed.get(key)
        now = time.monotonic()
        if seen is None or seen[0] != h.beat:
            observed[key] = (h.beat, now)
            return False
        return now - seen[1] > STALE_AFTER * (h.interval or self.interval)

    def _take_over(self, stale: Holder) -> bool:
        """Move the stale claim aside (atomic rename), check it is the one judged, retake."""
        aside = self.dir / f".{CLAIM}.{self.token}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # someone else moved it first
        moved = Holder.read(aside)
        if moved is not None and moved.token != stale.token:
            # a fresh claim appeared between our judgement and the rename: put it back
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return self._create()

    def _start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="advrun-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.owned():
                self.lost = True
                return
            self._beat += 1
            with contextlib.suppress(OSError):  # a full disk must not kill the trainer
                self._rewrite()

    def owned(self) -> bool:
        h = Holder.read(self.path)
        if h is None:  # moved aside by a racing takeover that will put it back, or deleted
            time.sleep(min(0.05, self.interval))
            h = Holder.read(self.path)
        return h is not None and h.token == self.token

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless this process still owns the claim."""
        if self.lost or not self.owned():
            self.lost = True
            raise ClaimLost(
                f"{self.dir.name}: another process took this run over (this one was paused or "
                "cut off for longer than the stale interval); stopping without writing"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.owned():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def wait_for(claim: Claim, poll: float | None = None, timeout: float | None = None) -> None:
    """Block until ``claim`` is acquired (taking over a stale one)."""
    observed: dict[str, tuple[int, float]] = {}
    t0 = time.monotonic()
    step = poll or min(0.5, claim.interval / 2)
    while claim.try_acquire(observed) is not None:
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise AdvrunError(f"{claim.path}: still held after {timeout:.0f}s")
        time.sleep(step)


@contextlib.contextmanager
def locked(directory: Path, what: str = "experiment files", timeout: float = 600.0):
    """Hold the claim on ``directory`` while rebuilding shared files (a short critical section)."""
    claim = Claim(directory, what)
    wait_for(claim, poll=0.05, timeout=timeout)
    try:
        yield claim
    finally:
        claim.release()


def holder_of(directory: Path) -> Holder | None:
    """Who holds the claim on ``directory``, if anyone does and is not known to be dead."""
    h = Holder.read(Path(directory) / CLAIM)
    if h is None or (h.host == HOST and h.pid > 0 and not pid_alive(h.pid, h.pid_start)):
        return None
    return h


def live_holder(directory: Path, observed: dict[str, tuple[int, float]]) -> Holder | None:
    """The live holder of ``directory``'s claim, None when it is free or stale; ``observed``
    carries the heartbeats seen so far between calls (stale = not moving for long enough)."""
    h = Holder.read(Path(directory) / CLAIM)
    if h is None:
        return None
    return None if Claim(directory)._stale(h, observed) else h
