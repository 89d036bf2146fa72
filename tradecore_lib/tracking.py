"""MLflow tracking and model registry of training runs, evaluations and promotions.

Store: an explicit tracking URI, ``MLFLOW_TRACKING_URI`` when set, else a local SQLite store
``sqlite:///<data_dir>/mlflow/mlflow.db`` with artifacts under ``<data_dir>/mlflow/artifacts``
(MLflow's own default depends on the working directory; ours does not).

Who logs: the orchestrator, after the training process exited. A GPU pod cannot reach a local
SQLite store, so the training process only writes ``metrics.jsonl`` and the checkpoint to the
lake; :meth:`Tracker.log_run` then replays the finished run from its checkpoint folder: the
params (the resolved config), the metric history with its steps, the checkpoint files, the
run record's tags, and (for the run that can be promoted) a registered model version. It is
idempotent per TradeCore run id (tag ``tradecore.run_id``): logging a finished run again
reuses its MLflow run and model version and refreshes their tags.

Registry: one registered model per market, ``tradecore-ppo-<market>``; the alias ``champion``
mirrors the ``champion/<market>`` asset (it moves when that asset materializes; the asset's
record, not the alias, is what signals read). Versions are tagged with the run record
(``tradecore.run_id``, ``tradecore.checkpoint_uri``, digests...).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.paths import data_dir
from tradecore_lib.redaction import redact_url as redact
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, METRICS, MODEL, VECNORMALIZE, RunStore
from tradecore_lib.train.record import MlflowRef, RunRecord

if TYPE_CHECKING:
    from tradecore_lib.evaluation.summary import EvaluationSummary
    from tradecore_lib.lake import Lake

CHAMPION = "champion"
RUN_TAG = "tradecore.run_id"
MARKET_TAG = "market"
# The metric :meth:`Tracker.log_evaluation` records that the deflated Sharpe ratio's trial
# variance is computed from (the agent's annualized validation daily Sharpe).
TRIAL_SHARPE_METRIC = "validation/agent/daily_sharpe"
# Files of a finished run logged as artifacts (periodic checkpoints stay in the lake).
ARTIFACTS = (MODEL, VECNORMALIZE, CONFIG, LINEAGE, METRICS)


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
class Champion:
    """The model version the ``champion`` alias points at (read to adopt a champion set
    before the ``champion/<market>`` asset existed)."""

    model_name: str
    version: str
    run_id: str
    mlflow_run_id: str


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

    def log_run(self, store: RunStore, tags: dict[str, str], *, register: bool) -> MlflowRef:
        """Replay the finished run in ``store`` into MLflow; register it when ``register``.

        ``tags`` (the run record's, see ``RunRecord.mlflow_tags``) go on the MLflow run and the
        model version. Each numeric field of a ``metrics.jsonl`` row becomes a metric
        ``train/<field>`` at step ``row["step"]`` (env steps).
        """
        mlflow_run_id = self.find_run(store.run_id)
        if mlflow_run_id is None:
            mlflow_run_id = self._create_run(store, tags)
        else:
            self.client.log_batch(mlflow_run_id, tags=_tags(tags))
        if not register:
            return MlflowRef(run_id=mlflow_run_id)
        return self._register(store.market, mlflow_run_id, tags)

    def _create_run(self, store: RunStore, tags: dict[str, str]) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id(), run_name=store.run_id,
                                     tags={RUN_TAG: store.run_id, MARKET_TAG: store.market,
                                           **tags})
        mlflow_run_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in flatten(store.read_json(CONFIG)).items()]
        history = [
            Metric(f"train/{key}", float(value), 0, int(row["step"]))
            for row in store.read_metrics() for key, value in row.items()
            if key != "step" and isinstance(value, int | float)
        ]
        for start in range(0, len(params), 100):
            self.client.log_batch(mlflow_run_id, params=params[start:start + 100])
        for start in range(0, len(history), 1000):
            self.client.log_batch(mlflow_run_id, metrics=history[start:start + 1000])
        with tempfile.TemporaryDirectory() as tmp:
            for name in ARTIFACTS:
                if store.exists(name):
                    (Path(tmp) / name).write_bytes(store.read_bytes(name))
            self.client.log_artifacts(mlflow_run_id, tmp, "checkpoint")
        self.client.set_terminated(mlflow_run_id)
        return mlflow_run_id

    def _register(self, market: str, mlflow_run_id: str, tags: dict[str, str]) -> MlflowRef:
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
            version = str(existing[0].version)
            for key, value in tags.items():
                self.client.set_model_version_tag(name, version, key, value)
            return MlflowRef(run_id=mlflow_run_id, model_name=name, version=version)
        source = f"{self.client.get_run(mlflow_run_id).info.artifact_uri}/checkpoint"
        created = self.client.create_model_version(name, source=source, run_id=mlflow_run_id,
                                                   tags=tags)
        return MlflowRef(run_id=mlflow_run_id, model_name=name, version=str(created.version))

    def log_record(self, lake: Lake, record: RunRecord) -> RunRecord:
        """Log every fold's run of ``record`` (only the newest, the promotable one, registered
        as a model version); returns the record with its MLflow references."""
        newest = record.newest.fold
        for fold in record.folds:
            ref = self.log_run(RunStore(lake, record.market, fold.run_id),
                               record.mlflow_tags(fold), register=fold.fold == newest)
            record = record.with_mlflow(fold.fold, ref)
        return record

    def training_trials(self, market: str) -> Trials:
        """Every training run of ``market`` recorded in this store (the trials a deflated
        Sharpe ratio deflates for, whatever their preset), with the validation daily Sharpe
        (:data:`TRIAL_SHARPE_METRIC`) of those already evaluated."""
        count, sharpes, token = 0, [], None
        while True:
            page = self.client.search_runs([self.experiment_id()],
                                           f"tags.`{MARKET_TAG}` = '{market}'",
                                           max_results=1000, page_token=token)
            count += len(page)
            sharpes += [run.data.metrics[TRIAL_SHARPE_METRIC] for run in page
                        if TRIAL_SHARPE_METRIC in run.data.metrics]
            token = page.token
            if not token:
                return Trials(count=count, sharpes=tuple(sharpes))

    def log_evaluation(self, summary: EvaluationSummary, files: list[Path]) -> None:
        """Each fold's scores on its MLflow run (``<split>/<policy>/<metric>`` for the agent
        and the baselines, ``<split>/agent/<statistic>`` for the agent's statistics; undefined
        values are left out), the gate's verdict as tags, and ``files`` (summary, chart,
        tearsheet) on the newest fold's run."""
        from mlflow.entities import Metric, RunTag

        runs = {fold.fold: fold.mlflow.run_id for fold in summary.run.folds if fold.mlflow}
        for fold in summary.folds:
            if fold.fold not in runs:
                continue
            scores = [(f"{split}/{policy}", metrics.model_dump())
                      for split, result in fold.splits.items()
                      for policy, metrics in result.policies.items()]
            for split, result in fold.splits.items():
                scores += [(f"{split}/agent", result.agent.model_dump()),
                           (f"{split}/agent/sharpe_vs_buy_and_hold",
                            result.agent.sharpe_vs_buy_and_hold.model_dump())]
            metrics = [Metric(f"{prefix}/{key}", float(value), 0, 0)
                       for prefix, values in scores for key, value in values.items()
                       if isinstance(value, int | float) and not isinstance(value, bool)]
            self.client.log_batch(runs[fold.fold], metrics=metrics)
        newest = runs.get(summary.run.newest.fold)
        if newest is None:
            return
        verdict = summary.verdict
        self.client.log_batch(newest, tags=[
            RunTag("tradecore.gate.passed", str(verdict.passed).lower()),
            RunTag("tradecore.gate.verdict", verdict.explanation()[:5000]),
        ])
        for path in files:
            self.client.log_artifact(newest, str(path), "evaluation")

    def champion(self, market: str) -> Champion | None:
        """The version ``champion`` points at, or None when no version holds the alias.

        Versions registered before the run record existed carry a ``run_id`` tag instead of
        ``tradecore.run_id``; both are read.
        """
        from mlflow.exceptions import MlflowException

        name = model_name(market)
        try:
            version = self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        tags = version.tags
        return Champion(name, str(version.version), tags.get(RUN_TAG) or tags.get("run_id", ""),
                        version.run_id)

    def promote(self, market: str, version: str, record: dict[str, str]) -> None:
        """Point ``champion`` at ``version`` and tag it with ``record`` (who, when, why) as
        ``promotion.<key>`` tags."""
        name = model_name(market)
        for key, value in record.items():
            self.client.set_model_version_tag(name, version, f"promotion.{key}", value)
        self.client.set_registered_model_alias(name, CHAMPION, version)


def _tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, value) for key, value in tags.items()]
