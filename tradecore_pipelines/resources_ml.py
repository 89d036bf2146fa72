"""Dagster resource for MLflow: the tracking store and experiment TradeCore logs to."""

import os

import dagster as dg
from pydantic import Field

from tradecore_lib.tracking import Tracker, default_tracking_uri


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking store and model registry (one URI serves both).

    The client is created per use through :meth:`get_tracker`; mlflow itself is imported only
    then, so loading the code location stays fast.
    """

    tracking_uri: str = Field(
        description="MLflow tracking URI: a server (http://...) or a local sqlite:/// store."
    )
    experiment: str = Field(default="tradecore", description="Experiment of training runs.")
    artifact_root: str | None = Field(
        default=None,
        description="Artifact location of a new experiment; null puts a SQLite store's "
        "artifacts beside its database and lets a server choose its own.",
    )

    def get_tracker(self) -> Tracker:
        return Tracker(self.tracking_uri, self.experiment, self.artifact_root)


def default_mlflow_resource() -> MlflowResource:
    """``MLFLOW_TRACKING_URI`` (read through EnvVar: it may hold credentials, so the UI never
    shows it) or the local SQLite store under ``data/mlflow``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return MlflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"))
    return MlflowResource(tracking_uri=default_tracking_uri())
