"""MLflow tracking and model registry of training runs, evaluations and promotions.

Store: an explicit tracking URI, ``MLFLOW_TRACKING_URI`` when set, else a local SQLite store
``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under ``<data_dir>/mlflow/artifacts``
(MLflow's own default depends on the working directory; ours does not).

Who logs: the orchestrator, after the training process exited. A GPU pod cannot reach a local
SQLite store, so the training process only writes ``metrics.jsonl`` and the checkpoint to the
lake; :meth:`Tracker.log_training` then replays the metric history (with its steps), logs the
params and the checkpoint files, and registers the model. It is idempotent per TradeCore run
id (tag ``tradecore.run_id``): re-materializing a finished run reuses its MLflow run and model
version instead of duplicating them.

Registry: one registered model per market, ``tradecore-ppo-<market>``; the alias ``champion``
points at the promoted version (MLflow stages are deprecated). Versions carry the lake
location of their checkpoint (tag ``checkpoint_uri``, ``run_id``), which is what signals load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradecore_lib.paths import data_dir
from tradecore_lib.redaction import redact_url as redact

CHAMPION = "champion"
RUN_TAG = "tradecore.run_id"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or the local SQLite store under ``data/mlflow``."""
    local = data_dir() / "mlflow" / "mlflow.db"
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local}"


def artifact_root_for(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store go to ``artifacts/`` beside the database file (so
    ``data/mlflow/artifacts`` by default); a tracking server decides its own (None)."""
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts")
    return None


def model_name(market: str) -> str:
    """Registered model name of ``market``'s agents."""
    return f"tradecore-ppo-{market}"


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"ppo.ent_coef": "0.01", ...}`` (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


@dataclass(frozen=True)
class Registered:
    """Where a training run landed in MLflow."""

    mlflow_run_id: str
    model_name: str
    version: str


@dataclass(frozen=True)
class Champion:
    """The model version the ``champion`` alias points at."""

    model_name: str
    version: str
    run_id: str
    checkpoint_uri: str


class Tracker:
    """MLflow through an explicit ``MlflowClient`` (no global mlflow state)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "tradecore",
                 artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.experiment = experiment
        self.artifact_root = artifact_root or artifact_root_for(self.tracking_uri)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri,
                                   registry_uri=self.tracking_uri)

    @property
    def where(self) -> str:
        """The store, safe to log."""
        return redact(self.tracking_uri)

    def experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(self.experiment,
                                             artifact_location=self.artifact_root)

    def find_run(self, run_id: str) -> str | None:
        """The MLflow run id of TradeCore run ``run_id``, if logged."""
        runs = self.client.search_runs([self.experiment_id()],
                                       f"tags.`{RUN_TAG}` = '{run_id}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def log_training(self, market: str, run_id: str, config: dict[str, Any],
                     metrics: list[dict[str, Any]], artifact_dir: Path,
                     tags: dict[str, str]) -> Registered:
        """Log a finished training run and register its model (idempotent per ``run_id``).

        ``metrics`` are ``metrics.jsonl`` rows; each numeric field becomes an MLflow metric
        at step ``row["step"]`` (env steps). ``artifact_dir`` holds the checkpoint files.
        """
        from mlflow.entities import Metric, Param

        mlflow_run_id = self.find_run(run_id)
        if mlflow_run_id is None:
            run = self.client.create_run(self.experiment_id(), run_name=run_id,
                                         tags={RUN_TAG: run_id, "market": market, **tags})
            mlflow_run_id = run.info.run_id
            params = [Param(k, v[:6000]) for k, v in flatten(config).items()]
            history = [
                Metric(f"train/{key}", float(value), 0, int(row["step"]))
                for row in metrics for key, value in row.items()
                if key != "step" and isinstance(value, int | float)
            ]
            for start in range(0, len(params), 100):
                self.client.log_batch(mlflow_run_id, params=params[start:start + 100])
            for start in range(0, len(history), 1000):
                self.client.log_batch(mlflow_run_id, metrics=history[start:start + 1000])
            self.client.log_artifacts(mlflow_run_id, str(artifact_dir), "checkpoint")
            self.client.set_terminated(mlflow_run_id)
        return self._register(market, run_id, mlflow_run_id, tags.get("checkpoint_uri", ""))

    def _register(self, market: str, run_id: str, mlflow_run_id: str,
                  checkpoint_uri: str) -> Registered:
        from mlflow.exceptions import MlflowException

        name = model_name(market)
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description=f"PPO trading agents of {market} (TradeCore)")
        existing = self.client.search_model_versions(f"name = '{name}' and run_id = "
                                                     f"'{mlflow_run_id}'")
        if existing:
            return Registered(mlflow_run_id, name, str(existing[0].version))
        source = f"{self.client.get_run(mlflow_run_id).info.artifact_uri}/checkpoint"
        version = self.client.create_model_version(
            name, source=source, run_id=mlflow_run_id,
            tags={"run_id": run_id, "checkpoint_uri": checkpoint_uri},
        )
        return Registered(mlflow_run_id, name, str(version.version))

    def log_evaluation(self, mlflow_run_id: str, rows: list[dict[str, Any]],
                       files: list[Path]) -> None:
        """Evaluation metrics (``<split>/<policy>/<metric>``) and files on the training run."""
        from mlflow.entities import Metric

        metrics = [
            Metric(f"{row['split']}/{row['policy']}/{key}", float(value), 0, 0)
            for row in rows for key, value in row.items()
            if key not in ("split", "policy") and isinstance(value, int | float)
        ]
        self.client.log_batch(mlflow_run_id, metrics=metrics)
        for path in files:
            self.client.log_artifact(mlflow_run_id, str(path), "evaluation")

    def champion(self, market: str) -> Champion | None:
        """The current champion of ``market``, or None when no version holds the alias."""
        from mlflow.exceptions import MlflowException

        name = model_name(market)
        try:
            version = self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        return Champion(name, str(version.version), version.tags.get("run_id", ""),
                        version.tags.get("checkpoint_uri", ""))

    def promote(self, market: str, version: str, record: dict[str, str]) -> Champion | None:
        """Point ``champion`` at ``version`` and tag it with ``record`` (who, when, why).

        Returns the previous champion (None if there was none).
        """
        previous = self.champion(market)
        name = model_name(market)
        for key, value in record.items():
            self.client.set_model_version_tag(name, version, f"promotion.{key}", value)
        self.client.set_registered_model_alias(name, CHAMPION, version)
        return previous

    def tag_version(self, market: str, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(model_name(market), version, key, value)
