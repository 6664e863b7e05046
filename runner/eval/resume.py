"""What an interrupted evaluation keeps: each finished attack, curve and the checklist.

A run killed during its attack suite loses at most the attack in progress: after every attack the
cascade's per-example state is written to ``RUN/eval/`` (a Parquet table of the frames so far, then
a JSON file saying how many attacks it holds, written last so that a kill between the two is
harmless). Every file carries a key (the evaluation settings and the checkpoint evaluated); a key
that differs means the state is stale and is ignored. The directory is removed once metrics.json
is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from runner.fsio import read_json, write_json, write_with

STATE = "__state__"  # the frame holding the worst-case state after the last saved attack


class EvalCheckpoint:
    def __init__(self, directory: Path, key: str) -> None:
        self.dir = Path(directory)
        self.key = key

    # -- the attack suite ------------------------------------------------------------------
    def load_suite(self) -> tuple[int, list[pd.DataFrame], pd.DataFrame, dict[str, Any]] | None:
        """(attacks done, their frames incl. clean, the state frame, info) or None."""
        meta = read_json(self.dir / "suite.json")
        table = self.dir / "suite.parquet"
        if not meta or meta.get("key") != self.key or not table.exists():
            return None
        df = pd.read_parquet(table)
        names = meta["frames"]
        if STATE not in set(df["attack"]) or not set(names) <= set(df["attack"]):
            return None
        frames = [df[df["attack"] == n].reset_index(drop=True) for n in names]
        state = df[df["attack"] == STATE].reset_index(drop=True)
        return int(meta["done"]), frames, state, meta["info"]

    def save_suite(
        self, done: int, frames: list[pd.DataFrame], state: pd.DataFrame, info: dict[str, Any]
    ) -> None:
        df = pd.concat([*frames, state.assign(attack=STATE)], ignore_index=True)
        write_with(self.dir / "suite.parquet", lambda p: df.to_parquet(p, index=False))
        names = [str(f["attack"].iloc[0]) for f in frames]
        write_json(self.dir / "suite.json", {"key": self.key, "done": done, "frames": names,
                                             "info": info})  # fmt: skip

    # -- curves and checklist (JSON rows) --------------------------------------------------
    def load(self, name: str) -> Any:
        d = read_json(self.dir / f"{name}.json")
        return d["value"] if d and d.get("key") == self.key else None

    def save(self, name: str, value: Any) -> None:
        write_json(self.dir / f"{name}.json", {"key": self.key, "value": value})

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
