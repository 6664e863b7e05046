"""Tracking settings: which MLflow server, experiment and limits a command logs to (plain data,
``Options.tracking``); see :mod:`runner.track` for where the URI comes from."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

from runner.errors import AdvrunError

INSTALL_HINT = (
    "pip install 'advrun[mlflow]'  (mlflow-skinny; from a checkout: pip install -e '.[mlflow]')"
)
DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow 3's own default
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 2


def redact(uri: str) -> str:
    """The URI without a password (it is printed and stored in run directories)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", uri)


def resolve_uri(uri: str) -> str:
    """Relative sqlite and file-store paths made absolute (against the working directory, as
    MLflow reads them), so every process of an execution and a later ``advrun track`` agree."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rest = uri[len("sqlite:///") :]
        if rest and rest != ":memory:":
            return "sqlite:///" + str(Path(rest).resolve())
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        return "file://" + str(Path(path).resolve())
    if "://" not in uri and not uri.startswith("databricks"):  # a plain folder: the file store
        return "file://" + str(Path(uri).resolve())
    return uri


def mlflow_settings(
    spec: Any, cli_uri: str | None = None, disabled: bool = False
) -> dict[str, Any] | None:
    """The MLflow settings of a command (plain data), or None when tracking is off."""
    block = getattr(getattr(spec, "tracking", None), "mlflow", None)
    if disabled or (block is None and not cli_uri):
        return None
    uri = (
        cli_uri
        or (block.uri if block else None)
        or os.environ.get("MLFLOW_TRACKING_URI")
        or DEFAULT_URI
    )
    return {
        "uri": resolve_uri(uri),
        "experiment": (block.experiment if block else None) or spec.name,
        "artifact_location": block.artifact_location if block else None,
        "log_exports": bool(block.log_exports) if block else False,
        "timeout": block.timeout if block else None,
        "retries": block.retries if block else None,
    }


def require_mlflow() -> None:
    """Fail before any compute, saying what to install, when the extra is missing."""
    try:
        importlib.import_module("mlflow.tracking")
    except ImportError as e:
        raise AdvrunError(
            f"MLflow tracking needs the mlflow extra, which is not installed ({e}); install it "
            f"with: {INSTALL_HINT}, or run without --mlflow / the spec's tracking.mlflow block "
            "(--no-mlflow)"
        ) from None


def tracking_options(settings: dict[str, Any] | None, **extra: Any) -> dict[str, Any] | None:
    """``Options.tracking`` for the given MLflow settings (None: no tracking)."""
    if settings is None:
        return None
    require_mlflow()
    return {"mlflow": {**settings, **extra}}
