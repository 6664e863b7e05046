"""The ``tracking:`` block: where runs are logged besides the run store (pure; imports no mlflow).

The engines are optional extras, imported only when a command logs (``runner.track``).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from runner.spec.base import StrictModel

# tracking URI schemes MLflow itself understands (plus plugins: anything with "+", e.g. "databricks")
_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")


class MlflowSpec(StrictModel):
    """Log every run to MLflow (needs ``pip install 'advrun[mlflow]'``)."""

    uri: str | None = Field(
        None,
        description="tracking URI: http(s)://host:port (a tracking server), sqlite:///path.db, "
        "file:///path (MLflow's file store), postgresql://...; default: MLFLOW_TRACKING_URI, "
        "else MLflow's default (sqlite:///mlflow.db in the working directory). --mlflow URI "
        "overrides both",
    )
    experiment: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="MLflow experiment name (default: the spec's name); created when missing",
    )
    artifact_location: str | None = Field(
        None,
        description="artifact root of a newly created experiment (default: MLflow's; for a "
        "sqlite:/// store, an mlartifacts folder beside the database file)",
    )
    log_exports: bool = Field(
        False,
        description="also upload each run's exported adversarial data (exports/*.npz of advrun "
        "export-adv) as artifacts; exports/manifest.json is always logged",
    )
    timeout: int | None = Field(
        None,
        ge=1,
        le=600,
        description="seconds before one HTTP request to the tracking server gives up (default: "
        "MLFLOW_HTTP_REQUEST_TIMEOUT, else 10)",
    )
    retries: int | None = Field(
        None,
        ge=0,
        le=10,
        description="retries of a failed HTTP request (default: MLFLOW_HTTP_REQUEST_MAX_RETRIES, "
        "else 2). A server that stays down costs about (retries + 1) x timeout once per process; "
        "the runs go on and `advrun track OUT` logs them later",
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not v:
            raise ValueError("an empty tracking URI; give e.g. http://127.0.0.1:5000")
        scheme = v.split(":", 1)[0].lower() if "://" in v or v.startswith("databricks") else ""
        if scheme and scheme not in _SCHEMES and "+" not in scheme:
            raise ValueError(
                f"unknown tracking URI scheme '{scheme}'; use one of: "
                + ", ".join(f"{s}://" for s in _SCHEMES if s != "databricks")
                + " (or databricks, or a plain folder for the file store)"
            )
        return v


class TrackingSpec(StrictModel):
    """Experiment trackers that receive every run (params, per-epoch and final metrics, artifacts)."""

    mlflow: MlflowSpec | None = Field(
        None, description="MLflow: one MLflow run per advrun run, nested under the experiment"
    )
