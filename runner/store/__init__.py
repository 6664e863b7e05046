"""The run store: one directory per run under ``<output>/runs/``."""

from runner.store.store import Store, default_output_dir, now, read_epochs

__all__ = ["Store", "default_output_dir", "now", "read_epochs"]
