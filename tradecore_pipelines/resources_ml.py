"""Dagster resource for experiment tracking: MLflow (the registry and the champion alias) and,
optionally, Weights & Biases as a second tracker receiving the same records."""

import os

import dagster as dg
from pydantic import Field

from tradecore_lib.tracking import (
    Tracker,
    default_tracking_uri,
    enabled_trackers,
    second_trackers,
)


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking store and model registry (one URI serves both), and the second trackers
    (``TRADECORE_TRACKERS=mlflow,wandb``) that mirror every run, evaluation and promotion.

    The clients are created per use through :meth:`get_tracker`; mlflow and wandb are imported
    only then, so loading the code location stays fast.
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
    trackers: str = Field(default="mlflow", description="Experiment trackers, comma-separated: "
                          "mlflow (required), wandb (TRADECORE_TRACKERS).")
    wandb_api_key: str | None = Field(default=None, description="W&B API key (EnvVar "
                                      "WANDB_API_KEY); none needed in offline mode.")
    wandb_project: str = Field(default="tradecore", description="W&B project (WANDB_PROJECT).")
    wandb_entity: str | None = Field(default=None, description="W&B entity (WANDB_ENTITY); null: "
                                     "the key's default.")
    wandb_mode: str | None = Field(default=None, description="online | offline | disabled "
                                   "(WANDB_MODE); null: online.")

    def get_tracker(self) -> Tracker:
        mirrors = second_trackers(wandb_api_key=self.wandb_api_key,
                                  wandb_project=self.wandb_project,
                                  wandb_entity=self.wandb_entity, wandb_mode=self.wandb_mode,
                                  trackers=self.trackers)
        return Tracker(self.tracking_uri, self.experiment, self.artifact_root, mirrors=mirrors)


def default_mlflow_resource() -> MlflowResource:
    """``MLFLOW_TRACKING_URI`` (read through EnvVar: it may hold credentials, so the UI never
    shows it) or the local SQLite store under ``data/mlflow``; the trackers of
    ``TRADECORE_TRACKERS`` (a typo fails the code location's load) with W&B's key through
    EnvVar."""
    extra: dict = {"trackers": ",".join(enabled_trackers())}
    if os.environ.get("WANDB_API_KEY"):
        extra["wandb_api_key"] = dg.EnvVar("WANDB_API_KEY")
    for variable, field in (("WANDB_PROJECT", "wandb_project"), ("WANDB_ENTITY", "wandb_entity"),
                            ("WANDB_MODE", "wandb_mode")):
        if os.environ.get(variable):
            extra[field] = os.environ[variable]
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return MlflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"), **extra)
    return MlflowResource(tracking_uri=default_tracking_uri(), **extra)
