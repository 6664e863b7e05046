"""epochs.csv keeps every column any epoch logged (a run resumed by a newer advrun)."""

from __future__ import annotations

import csv
import io

from runner.train.loop import _csv


def test_a_column_that_later_epochs_add_is_kept_with_empty_cells_before():
    history = [
        {"epoch": 1, "loss": 0.5, "val_robust": 0.25},
        {"epoch": 2, "loss": 0.25, "val_robust": 0.5, "val_fgsm": 0.75},
    ]
    rows = list(csv.DictReader(io.StringIO(_csv(history))))
    assert list(rows[0]) == ["epoch", "loss", "val_robust", "val_fgsm"]
    assert rows[0]["val_fgsm"] == "" and rows[1]["val_fgsm"] == "0.75"
    assert [r["loss"] for r in rows] == ["0.5", "0.25"]
