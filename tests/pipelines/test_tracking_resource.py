"""The tracking resource: TRADECORE_TRACKERS picks the second trackers, W&B's key stays in the
environment (EnvVar), and a typo fails when the code location loads."""

from __future__ import annotations

import dagster as dg
import pytest

from tradecore_lib.tracking import TrackerConfigError, WandbTracker
from tradecore_pipelines.resources_ml import default_mlflow_resource


def test_wandb_joins_mlflow_with_its_key_read_through_envvar(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADECORE_TRACKERS", "mlflow,wandb")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-never-shown-0123456789")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    resource = default_mlflow_resource()
    assert isinstance(resource.wandb_api_key, dg.EnvVar)
    assert resource.trackers == "mlflow,wandb" and resource.wandb_mode == "offline"
    with dg.build_resources({"mlflow": resource}) as built:
        (mirror,) = built.mlflow.get_tracker().mirrors
    assert isinstance(mirror, WandbTracker)


def test_mlflow_alone_by_default_and_a_typo_fails_the_load(monkeypatch):
    monkeypatch.delenv("TRADECORE_TRACKERS", raising=False)
    assert default_mlflow_resource().trackers == "mlflow"
    monkeypatch.setenv("TRADECORE_TRACKERS", "mlflow,wandbb")
    with pytest.raises(TrackerConfigError, match="did you mean 'wandb'"):
        default_mlflow_resource()
