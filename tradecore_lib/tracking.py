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

Families: PPO agents (``ppo``) and the supervised direction models (``direction``, issue 14)
share one registration, champion and promotion path, parameterized by the family
(:func:`model_name`): a direction model is registered as ``tradecore-direction-<model_key>``
(the market for an LSTM, ``<venue>_multi`` for a transformer) with its own ``champion`` alias
(:meth:`Tracker.log_direction_record`, :meth:`Tracker.log_direction_evaluation`,
:meth:`Tracker.direction_champion`). Direction runs are tagged ``tradecore.model_key`` and
``tradecore.family`` instead of ``market``, so they never count as PPO trials of a market (and
the reverse): their params are the resolved direction config, their history each numeric field
of ``metrics.jsonl`` as ``train/<field>`` at step ``epoch``, their artifacts ``final.pt``,
``config.json``, ``lineage.json``, ``metrics.jsonl`` (and ``batch_search.json`` when the
batch-size search ran) under ``checkpoint``.

Second trackers: ``TRADECORE_TRACKERS`` (comma-separated, default ``mlflow``) adds Weights &
Biases with ``mlflow,wandb``. MLflow stays the tracker of record (registry, champion alias,
the trials a deflated Sharpe counts); every second tracker is a *mirror* the MLflow
:class:`Tracker` hands the same content to: a finished run is read once from its checkpoint
folder into a :class:`FinishedRun` and both replay that one value (params, metric history,
checkpoint files, lineage, the record's tags), then evaluations and promotions likewise.
:class:`WandbTracker` maps it onto W&B:

* one W&B run per TradeCore run (id = the TradeCore run id, group = the market, job type
  ``train``) whose config holds the MLflow params under the same flat names (``ppo.ent_coef``)
  with their JSON types, plus the record's tags (``tradecore.*``);
* the metric history as ``train/<field>`` against the custom step metric ``train/step`` (env
  steps, MLflow's step), so rows keep their steps in any order;
* the checkpoint files as a ``model`` artifact ``tradecore-ppo-<market>`` (alias: the run id)
  whose metadata is ``lineage.json`` (also one of its files);
* evaluation scores in the run's summary under MLflow's metric names, the gate's verdict and
  promotions as ``tradecore.gate.*`` / ``promotion.*`` summary keys, evaluation files as an
  ``evaluation`` artifact;
* a direction run the same way: group = its model key, the metric history against
  ``train/step`` = the epoch, the model artifact ``tradecore-direction-<model_key>``, the
  evaluation artifact ``tradecore-direction-evaluation-<model_key>``.

Online, a run already in W&B is resumed and only its tags refreshed (logging is idempotent per
TradeCore run id, as in MLflow); offline (``WANDB_MODE=offline``: files under the tracker's
folder, ``wandb sync`` uploads them later) W&B cannot be asked, so each replay writes its own
offline folder with the same run id. The key reaches ``wandb`` only in its settings object:
never a file, a param, a tag or a message (errors are redacted). ``wandb`` is imported only when
a W&B tracker logs, never when the code location loads.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tradecore_lib.config import did_you_mean
from tradecore_lib.errors import ConfigError, TransientError
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.paths import data_dir
from tradecore_lib.redaction import redact as redact_text
from tradecore_lib.redaction import redact_url as redact
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, METRICS, MODEL, VECNORMALIZE, RunStore
from tradecore_lib.train.record import MlflowRef, RecordError, RunRecord

if TYPE_CHECKING:
    from tradecore_lib.direction.judge import DirectionJudgement
    from tradecore_lib.direction.record import DirectionRecord
    from tradecore_lib.evaluation.summary import EvaluationSummary
    from tradecore_lib.lake import Lake

CHAMPION = "champion"
RUN_TAG = "tradecore.run_id"
MARKET_TAG = "market"
MODEL_KEY_TAG = "tradecore.model_key"
FAMILY_TAG = "tradecore.family"
# Model families: one registry path, one registered-model name scheme (model_name).
PPO = "ppo"
DIRECTION = "direction"
FAMILIES = (PPO, DIRECTION)
_FAMILY_DESCRIPTIONS = {
    PPO: "PPO trading agents of {key} (TradeCore)",
    DIRECTION: "Direction models of {key} (TradeCore: the sign of the next minutes' return; "
               "an LSTM per market, a transformer per venue's <venue>_multi)",
}
_ARTIFACT_DESCRIPTIONS = {
    PPO: "PPO checkpoint of {key} (TradeCore run {run_id})",
    DIRECTION: "Direction model of {key} (TradeCore run {run_id})",
}
# The metric :meth:`Tracker.log_evaluation` records that the deflated Sharpe ratio's trial
# variance is computed from (the agent's annualized validation daily Sharpe).
TRIAL_SHARPE_METRIC = "validation/agent/daily_sharpe"
# Files of a finished run logged as artifacts (periodic checkpoints stay in the lake).
ARTIFACTS = (MODEL, VECNORMALIZE, CONFIG, LINEAGE, METRICS)
# ... of a finished direction run (model.pt, the resumable checkpoint, stays in the lake:
# final.pt is the model; batch_search.json only exists when the search ran).
DIRECTION_ARTIFACTS = ("final.pt", CONFIG, LINEAGE, METRICS, "batch_search.json")
# The metric the direction trials read, per market (see Tracker.direction_trials).
DIRECTION_TRIAL_SHARPE_SUFFIX = "/validation/economic/agent/daily_sharpe"
# Text artifacts are redacted before they are logged (a config could quote a secret).
_TEXT_ARTIFACTS = (".json", ".jsonl")
TRACKERS_VARIABLE = "TRADECORE_TRACKERS"
TRACKERS = ("mlflow", "wandb")
DEFAULT_TRACKERS = ("mlflow",)
WANDB_STEP_METRIC = "train/step"


class TrackerConfigError(ConfigError):
    """The trackers asked for cannot be used as configured (names, a missing key)."""


class TrackingError(TransientError):
    """A second tracker failed to record (W&B unreachable, refused...); MLflow already holds
    the record and logging is idempotent, so a retry of the step can succeed."""


def enabled_trackers(value: str | None = None) -> tuple[str, ...]:
    """The trackers ``TRADECORE_TRACKERS`` (or ``value``) names, in order, ``mlflow`` first.

    Raises:
        TrackerConfigError: an unknown name (with a did-you-mean), or a list without
            ``mlflow``, which holds the registry and the champion alias.
    """
    raw = os.environ.get(TRACKERS_VARIABLE, "") if value is None else value
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not names:
        return DEFAULT_TRACKERS
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise TrackerConfigError(
            f"{TRACKERS_VARIABLE}={raw!r}: unknown tracker {unknown[0]!r}"
            f"{did_you_mean(unknown[0], TRACKERS)}; valid: {', '.join(TRACKERS)}")
    if "mlflow" not in names:
        raise TrackerConfigError(
            f"{TRACKERS_VARIABLE}={raw!r}: mlflow is required (it holds the model registry and "
            "the champion alias); W&B is a second tracker: use mlflow,wandb")
    return ("mlflow", *dict.fromkeys(n for n in names if n != "mlflow"))


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


def model_name(market: str, family: str = PPO) -> str:
    """Registered model name of ``market``'s models of ``family``: ``tradecore-ppo-<market>``
    (PPO agents), ``tradecore-direction-<model_key>`` (direction models).

    Raises:
        ValueError: an unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; valid: {', '.join(FAMILIES)}")
    return f"tradecore-{family}-{market}"


def flatten_values(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"ppo.ent_coef": 0.01, ...}``, values as they are (an empty
    mapping stays a value)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_values(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"ppo.ent_coef": "0.01", ...}`` (MLflow params are strings)."""
    return {name: str(value) for name, value in flatten_values(document, prefix).items()}


def _safe(value: Any) -> Any:
    """``value`` with any secret masked (strings only; a config or tag never needs one)."""
    return redact_text(value) if isinstance(value, str) else value


def _safe_file(name: str, data: bytes) -> bytes:
    """A text artifact (JSON, JSON lines) with any secret masked; binary files as they are
    (a model file holds weights and names, never a config's free text)."""
    if not name.endswith(_TEXT_ARTIFACTS):
        return data
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return data
    safe = redact_text(text)
    return data if safe == text else safe.encode()


@dataclass(frozen=True)
class FinishedRun:
    """What every tracker records of one finished training run, read once from its folder.

    Attributes:
        run_id: the TradeCore run id.
        market: the market it trained on (a direction model: its model key).
        params: the resolved config flattened (``ppo.ent_coef`` -> its JSON value); MLflow
            stores each as ``str(value)``.
        history: ``(name, value, step)`` for each numeric field of each ``metrics.jsonl`` row:
            ``train/<field>`` at the row's env step (a direction run: its epoch).
        files: the checkpoint files present, by name, in :data:`ARTIFACTS` order (direction:
            :data:`DIRECTION_ARTIFACTS`); text files with any secret masked.
        lineage: ``lineage.json`` (partitions and their checksums, seed, code version).
        family: :data:`PPO` or :data:`DIRECTION` (the registered model's name, the run's tags).
    """

    run_id: str
    market: str
    params: dict[str, Any]
    history: tuple[tuple[str, float, int], ...]
    files: dict[str, bytes]
    lineage: dict[str, Any]
    family: str = PPO

    @classmethod
    def from_store(cls, store: RunStore, *, family: str = PPO) -> FinishedRun:
        """Read a finished run's folder: a PPO run (``models/<market>/<run_id>``, metric rows
        at ``step``) or, with ``family=DIRECTION``, a direction run
        (:class:`~tradecore_lib.direction.store.DirectionStore`, metric rows at ``epoch``)."""
        step, artifacts = ("step", ARTIFACTS) if family == PPO else ("epoch",
                                                                      DIRECTION_ARTIFACTS)
        history = tuple(
            (f"train/{key}", float(value), int(row[step]))
            for row in store.read_metrics() for key, value in row.items()
            if key != step and isinstance(value, int | float)
        )
        files = {name: _safe_file(name, store.read_bytes(name)) for name in artifacts
                 if store.exists(name)}
        lineage = store.read_json(LINEAGE) if LINEAGE in files else {}
        params = {k: _safe(v) for k, v in flatten_values(store.read_json(CONFIG)).items()}
        return cls(store.run_id, store.market, params, history, files, lineage, family)

    @property
    def identity_tags(self) -> dict[str, str]:
        """The tags that find this run again: the run id, and the market (PPO) or the model
        key and family (direction: no ``market`` tag, so it is no PPO trial)."""
        if self.family == PPO:
            return {RUN_TAG: self.run_id, MARKET_TAG: self.market}
        return {RUN_TAG: self.run_id, MODEL_KEY_TAG: self.market, FAMILY_TAG: self.family}


class RunMirror(Protocol):
    """A second tracker: receives what MLflow records, after MLflow recorded it."""

    @property
    def where(self) -> str:
        """Where it records, safe to log."""
        ...

    def log_run(self, run: FinishedRun, tags: dict[str, str], *, registered: bool) -> None:
        """Record a finished run (``registered``: MLflow made it a model version)."""
        ...

    def log_evaluation(self, market: str, scores: dict[str, dict[str, float]],
                       verdict: tuple[str, dict[str, str]] | None, files: list[Path], *,
                       family: str = PPO) -> None:
        """Evaluation ``scores`` by TradeCore run id; ``verdict``: (the newest run's id, the
        gate's tags), which also receives ``files``; ``market`` is a direction model's key
        when ``family`` is :data:`DIRECTION`."""
        ...

    def log_promotion(self, market: str, run_id: str, record: dict[str, str]) -> None:
        """Run ``run_id`` became ``market``'s champion (``record``: who, when, why)."""
        ...


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
                 artifact_root: str | None = None, mirrors: Sequence[RunMirror] = ()) -> None:
        """``mirrors``: second trackers (:class:`WandbTracker`) that receive every run,
        evaluation and promotion this tracker records, with the same content."""
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.experiment = experiment
        self.artifact_root = artifact_root or artifact_root_for(self.tracking_uri)
        self.mirrors = tuple(mirrors)
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
        ``train/<field>`` at step ``row["step"]`` (env steps). Every mirror then receives the
        same :class:`FinishedRun` and tags.
        """
        return self._log_finished(store, tags, register=register, family=PPO)

    def _log_finished(self, store: RunStore, tags: dict[str, str], *, register: bool,
                      family: str) -> MlflowRef:
        """:meth:`log_run` for either family (``store.market`` is a direction model's key)."""
        tags = {key: _safe(value) for key, value in tags.items()}
        mlflow_run_id = self.find_run(store.run_id)
        finished = (FinishedRun.from_store(store, family=family)
                    if mlflow_run_id is None or self.mirrors else None)
        if mlflow_run_id is None:
            assert finished is not None  # read above whenever the run is new
            mlflow_run_id = self._create_run(finished, tags)
        else:
            self.client.log_batch(mlflow_run_id, tags=_tags(tags))
        ref = (self._register(store.market, mlflow_run_id, tags, family=family) if register
               else MlflowRef(run_id=mlflow_run_id))
        for mirror in self.mirrors:
            assert finished is not None  # read above whenever there are mirrors
            mirror.log_run(finished, {**finished.identity_tags, **tags}, registered=register)
        return ref

    def _create_run(self, finished: FinishedRun, tags: dict[str, str]) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id(), run_name=finished.run_id,
                                     tags={**finished.identity_tags, **tags})
        mlflow_run_id = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in finished.params.items()]
        history = [Metric(name, value, 0, step) for name, value, step in finished.history]
        for start in range(0, len(params), 100):
            self.client.log_batch(mlflow_run_id, params=params[start:start + 100])
        for start in range(0, len(history), 1000):
            self.client.log_batch(mlflow_run_id, metrics=history[start:start + 1000])
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in finished.files.items():
                (Path(tmp) / name).write_bytes(data)
            self.client.log_artifacts(mlflow_run_id, tmp, "checkpoint")
        self.client.set_terminated(mlflow_run_id)
        return mlflow_run_id

    def _register(self, market: str, mlflow_run_id: str, tags: dict[str, str], *,
                  family: str = PPO) -> MlflowRef:
        from mlflow.exceptions import MlflowException

        name = model_name(market, family)
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, description=_FAMILY_DESCRIPTIONS[family].format(key=market))
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
        run_ids = {fold.fold: fold.run_id for fold in summary.run.folds}
        scored: dict[str, dict[str, float]] = {}
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
            values = {f"{prefix}/{key}": float(value)
                      for prefix, values in scores for key, value in values.items()
                      if isinstance(value, int | float) and not isinstance(value, bool)}
            scored[run_ids[fold.fold]] = values
            self.client.log_batch(runs[fold.fold], metrics=[
                Metric(name, value, 0, 0) for name, value in values.items()])
        newest = runs.get(summary.run.newest.fold)
        verdict = summary.verdict
        gate = {"tradecore.gate.passed": str(verdict.passed).lower(),
                "tradecore.gate.verdict": verdict.explanation()[:5000]}
        if newest is not None:
            self.client.log_batch(newest, tags=[RunTag(k, v) for k, v in gate.items()])
            for path in files:
                self.client.log_artifact(newest, str(path), "evaluation")
        for mirror in self.mirrors:
            mirror.log_evaluation(
                summary.market, scored,
                None if newest is None else (summary.run.newest.run_id, gate),
                files if newest is not None else [])

    def champion(self, market: str, family: str = PPO) -> Champion | None:
        """The version ``champion`` points at, or None when no version holds the alias
        (``market``: a direction model's key when ``family`` is :data:`DIRECTION`).

        Versions registered before the run record existed carry a ``run_id`` tag instead of
        ``tradecore.run_id``; both are read.
        """
        from mlflow.exceptions import MlflowException

        name = model_name(market, family)
        try:
            version = self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None
        tags = version.tags
        return Champion(name, str(version.version), tags.get(RUN_TAG) or tags.get("run_id", ""),
                        version.run_id)

    def promote(self, market: str, version: str, record: dict[str, str],
                family: str = PPO) -> None:
        """Point ``champion`` at ``version`` of ``model_name(market, family)`` and tag it with
        ``record`` (who, when, why) as ``promotion.<key>`` tags."""
        name = model_name(market, family)
        for key, value in record.items():
            self.client.set_model_version_tag(name, version, f"promotion.{key}", _safe(value))
        self.client.set_registered_model_alias(name, CHAMPION, version)
        if self.mirrors:
            run_id = self.client.get_model_version(name, version).tags.get(RUN_TAG, "")
            for mirror in self.mirrors:
                mirror.log_promotion(market, run_id, record)

    # -- direction models (issue 14): the same paths, family "direction" -----------------------
    def log_direction_record(self, lake: Lake, record: DirectionRecord) -> DirectionRecord:
        """Log the direction run of ``record`` (params: its resolved config flattened;
        history: each numeric field of ``metrics.jsonl`` as ``train/<field>`` at step
        ``epoch``; artifacts: :data:`DIRECTION_ARTIFACTS` under ``checkpoint``; tags: the
        record's :meth:`~DirectionRecord.mlflow_tags`), registered as a version of
        ``tradecore-direction-<model_key>``; every mirror receives the same. Idempotent per
        TradeCore run id. Returns the record with its MLflow reference."""
        from tradecore_lib.direction.store import DirectionStore

        store = DirectionStore(lake, record.model_key, record.run_id)
        ref = self._log_finished(store, record.mlflow_tags(), register=True, family=DIRECTION)
        return record.with_mlflow(ref)

    def log_direction_evaluation(self, judgement: DirectionJudgement, files: list[Path]) -> None:
        """The judgement's scores on the run's MLflow run (:func:`direction_metrics`: per
        market and split ``<market>/<split>/<forecaster>/<score>``, the accuracy difference,
        the economic check's ``<market>/<split>/economic/<policy>/<metric>``), the verdict as
        ``tradecore.gate.*`` tags (the model's, and each market's), ``files`` as artifacts
        under ``evaluation``; every mirror receives the same.

        Raises:
            RecordError: the judged run is not in this MLflow store (log its record first).
        """
        from mlflow.entities import Metric, RunTag

        ref = judgement.record.mlflow
        mlflow_run_id = (ref.run_id if ref is not None else None) or \
            self.find_run(judgement.run_id)
        if mlflow_run_id is None:
            raise RecordError(f"{judgement.model_key}: direction run {judgement.run_id} is not "
                              f"in MLflow ({self.where}); materialize its direction_model "
                              "(Tracker.log_direction_record) before logging its evaluation")
        values = direction_metrics(judgement)
        metrics = [Metric(name, value, 0, 0) for name, value in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(mlflow_run_id, metrics=metrics[start:start + 1000])
        gate = direction_gate_tags(judgement)
        self.client.log_batch(mlflow_run_id, tags=[RunTag(k, v) for k, v in gate.items()])
        for path in files:
            self.client.log_artifact(mlflow_run_id, str(path), "evaluation")
        for mirror in self.mirrors:
            mirror.log_evaluation(judgement.model_key, {judgement.run_id: values},
                                  (judgement.run_id, gate), list(files), family=DIRECTION)

    def direction_champion(self, model_key: str) -> Champion | None:
        """The version the ``champion`` alias of ``tradecore-direction-<model_key>`` points
        at, or None."""
        return self.champion(model_key, DIRECTION)

    def direction_trials(self, model_key: str, market: str | None = None) -> Trials:
        """Every direction run of ``model_key`` in this store (the deflated Sharpe's trials
        of its economic check), with the validation daily Sharpes of the model's positions
        already recorded: ``market``'s, or every market's when None (a transformer's runs
        then give one per market)."""
        count, sharpes, token = 0, [], None
        suffix = DIRECTION_TRIAL_SHARPE_SUFFIX
        while True:
            page = self.client.search_runs([self.experiment_id()],
                                           f"tags.`{MODEL_KEY_TAG}` = '{model_key}'",
                                           max_results=1000, page_token=token)
            count += len(page)
            sharpes += [value for run in page for name, value in run.data.metrics.items()
                        if (name == f"{market}{suffix}" if market is not None
                            else name.endswith(suffix))]
            token = page.token
            if not token:
                return Trials(count=count, sharpes=tuple(sharpes))


def _numbers(prefix: str, document: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric top-level fields of ``document`` as ``<prefix>/<key>`` (booleans,
    None, NaN and nested values left out)."""
    return {f"{prefix}/{key}": float(value) for key, value in document.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value)}


def direction_metrics(judgement: DirectionJudgement) -> dict[str, float]:
    """The MLflow metrics of a direction judgement, per market and split:

    * ``<market>/<split>/<forecaster>/<score>``: each forecaster's (``model``, ``majority``,
      ``persistence``, ``logistic``, ``champion`` when scored) classification scores
      (accuracy, balanced_accuracy, log_loss, brier, ece, samples, up_rate...) and its
      dead-zone counts;
    * ``<market>/<split>/accuracy_vs_best_baseline/<field>`` (estimate, low, high...);
    * ``<market>/<split>/economic/<policy>/<metric>``: the economic check's policies (``agent``
      is the model's positions) and ``<market>/<split>/economic/agent/<statistic>`` (PSR,
      DSR, matched random percentile...), ``.../agent/sharpe_vs_buy_and_hold/<field>``.
    """
    values: dict[str, float] = {}
    for market, summary in judgement.summaries.items():
        for split, result in summary.splits.items():
            base = f"{market}/{split}"
            for name, forecast in result.models.items():
                values.update(_numbers(f"{base}/{name}", forecast.scores.model_dump()))
                values.update(_numbers(f"{base}/{name}", forecast.unlabelled.model_dump()))
            values.update(_numbers(f"{base}/accuracy_vs_best_baseline",
                                   result.accuracy_vs_best_baseline.model_dump()))
            economic = result.economic
            for policy, metrics in economic.policies.items():
                values.update(_numbers(f"{base}/economic/{policy}", metrics.model_dump()))
            values.update(_numbers(f"{base}/economic/agent", economic.agent.model_dump()))
            values.update(_numbers(f"{base}/economic/agent/sharpe_vs_buy_and_hold",
                                   economic.agent.sharpe_vs_buy_and_hold.model_dump()))
    return values


def direction_gate_tags(judgement: DirectionJudgement) -> dict[str, str]:
    """The verdict as tags: the model's (``tradecore.gate.passed`` / ``.verdict``) and each
    market's (``tradecore.gate.<market>.passed``)."""
    verdict = judgement.verdict
    tags = {"tradecore.gate.passed": str(verdict.passed).lower(),
            "tradecore.gate.verdict": _safe(verdict.explanation())[:5000]}
    for market, summary in judgement.summaries.items():
        tags[f"tradecore.gate.{market}.passed"] = str(summary.verdict.passed).lower()
    return tags


_WANDB_ID = re.compile(r"[^A-Za-z0-9_-]")
_OFFLINE_MODES = ("offline", "disabled")


def wandb_run_id(run_id: str) -> str:
    """The W&B run id of TradeCore run ``run_id`` (``<preset>-<digest>`` already fits W&B's
    id alphabet; anything else is replaced by ``-``, at most 64 characters)."""
    return _WANDB_ID.sub("-", run_id)[:64]


class WandbTracker:
    """Weights & Biases as a second tracker (a :class:`RunMirror` of the MLflow
    :class:`Tracker`); the module docstring says what goes where.

    Args:
        project: W&B project (``WANDB_PROJECT``'s role; TradeCore's MLflow experiment name).
        entity: W&B entity (team or user); None: the key's default entity.
        api_key: the W&B API key (from ``WANDB_API_KEY`` through the Dagster ``EnvVar``);
            None in offline mode. It is handed to ``wandb`` in its settings object only.
        mode: ``online``, ``offline`` or ``disabled``; None: ``WANDB_MODE`` or ``online``.
        directory: where W&B writes its run folders (offline runs stay there until
            ``wandb sync``); default ``WANDB_DIR`` or ``data/wandb``.

    Raises:
        TrackerConfigError: online without a key (W&B would otherwise prompt for one).
    """

    def __init__(self, project: str = "tradecore", entity: str | None = None,
                 api_key: str | None = None, mode: str | None = None,
                 directory: str | Path | None = None) -> None:
        self.project = project
        self.entity = entity
        self.mode = mode or os.environ.get("WANDB_MODE") or "online"
        if self.mode not in ("online", "offline", "disabled"):
            raise TrackerConfigError(f"W&B mode {self.mode!r}: valid modes are online, offline, "
                                     "disabled")
        self._api_key = api_key or None
        if self.mode not in _OFFLINE_MODES and self._api_key is None:
            raise TrackerConfigError(
                f"{TRACKERS_VARIABLE} asks for wandb but no W&B API key is set: set "
                "WANDB_API_KEY (https://wandb.ai/authorize), or WANDB_MODE=offline to keep the "
                "runs on disk for a later `wandb sync`")
        self.directory = Path(directory or os.environ.get("WANDB_DIR") or data_dir() / "wandb")

    def __repr__(self) -> str:  # never the key
        return f"WandbTracker(project={self.project!r}, entity={self.entity!r}, mode={self.mode!r})"

    @property
    def where(self) -> str:
        """``W&B <entity>/<project> (<mode>)``, safe to log."""
        where = f"{self.entity}/{self.project}" if self.entity else self.project
        return f"W&B {where} ({self.mode}, {self.directory})"

    @contextlib.contextmanager
    def _run(self, run_id: str, market: str, what: str) -> Iterator[Any]:
        """The W&B run of TradeCore run ``run_id``, created or resumed, finished on exit;
        any W&B failure is a :class:`TrackingError` with a redacted message."""
        import wandb

        self.directory.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            api_key=self._api_key, mode=self.mode, silent=True, console="off",
            save_code=False, disable_code=True, disable_git=True,
            # No system metrics and no host metadata (command line, environment details):
            # a replay in the orchestrator has nothing to say about the training machine.
            x_disable_stats=True, x_disable_meta=True,
        )
        try:
            run = wandb.init(project=self.project, entity=self.entity, id=wandb_run_id(run_id),
                             name=run_id, group=market, job_type="train", resume="allow",
                             dir=str(self.directory), reinit="create_new", settings=settings)
        except Exception as exc:
            raise self._failure(f"{what}: starting W&B run {run_id}", exc) from None
        failed = False
        try:
            yield run
        except Exception as exc:
            failed = True
            raise self._failure(f"{what}: W&B run {run_id}", exc) from None
        finally:
            try:
                run.finish(exit_code=1 if failed else 0)
            except Exception as exc:
                if not failed:
                    raise self._failure(f"{what}: finishing W&B run {run_id}", exc) from None

    def _failure(self, what: str, exc: BaseException) -> TrackingError:
        extra = [self._api_key] if self._api_key else []
        # Redacted before it is cut (a cut secret would no longer be recognized), and the whole
        # message again: the folder or project could quote a secret too.
        cause = redact_text(" ".join(f"{type(exc).__name__}: {exc}".split()), extra)[:500]
        return TrackingError(redact_text(f"{what} failed ({self.where}): {cause}", extra))

    def _log_artifact(self, wb: Any, artifact: Any, aliases: list[str]) -> None:
        """Log ``artifact``; online, wait for the upload while its temporary files exist
        (offline, W&B copies them into its staging folder at once and uploads on sync)."""
        logged = wb.log_artifact(artifact, aliases=aliases)
        if self.mode == "online":
            logged.wait()

    def log_run(self, run: FinishedRun, tags: dict[str, str], *, registered: bool) -> None:
        """Replay ``run``: config (params and tags), metric history, checkpoint artifact."""
        import wandb

        with self._run(run.run_id, run.market, f"{run.market}: logging run") as wb:
            wb.config.update({**run.params, **tags}, allow_val_change=True)
            if wb.resumed:  # already replayed (online): the tags were refreshed above
                return
            wb.define_metric(WANDB_STEP_METRIC)
            wb.define_metric("train/*", step_metric=WANDB_STEP_METRIC)
            rows: dict[int, dict[str, float]] = {}
            for name, value, step in run.history:
                rows.setdefault(step, {})[name] = value
            for step, values in rows.items():
                wb.log({WANDB_STEP_METRIC: step, **values})
            artifact = wandb.Artifact(model_name(run.market, run.family), type="model",
                                      description=_ARTIFACT_DESCRIPTIONS[run.family].format(
                                          key=run.market, run_id=run.run_id),
                                      metadata=run.lineage)
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in run.files.items():
                    (Path(tmp) / name).write_bytes(data)
                    artifact.add_file(str(Path(tmp) / name), name=name)
                aliases = [wandb_run_id(run.run_id), *(["registered"] if registered else [])]
                self._log_artifact(wb, artifact, aliases)

    def log_evaluation(self, market: str, scores: dict[str, dict[str, float]],
                       verdict: tuple[str, dict[str, str]] | None, files: list[Path], *,
                       family: str = PPO) -> None:
        """Each run's evaluation scores into its summary; the verdict and files on the
        newest run (an ``evaluation`` artifact ``tradecore-evaluation-<market>``, a direction
        model's ``tradecore-direction-evaluation-<model_key>``)."""
        import wandb

        artifact_name = (f"tradecore-evaluation-{market}" if family == PPO
                         else f"tradecore-{family}-evaluation-{market}")

        for run_id, values in scores.items():
            with self._run(run_id, market, f"{market}: logging evaluation") as wb:
                wb.summary.update(values)
                if verdict is not None and verdict[0] == run_id:
                    wb.summary.update(verdict[1])
                    if files:
                        artifact = wandb.Artifact(artifact_name, type="evaluation")
                        for path in files:
                            artifact.add_file(str(path), name=Path(path).name)
                        self._log_artifact(wb, artifact, [wandb_run_id(run_id)])

    def log_promotion(self, market: str, run_id: str, record: dict[str, str]) -> None:
        """``promotion.<key>`` summary keys and ``tradecore.champion`` on the promoted run."""
        if not run_id:
            return  # a version registered before run ids were tagged: nothing to mirror
        with self._run(run_id, market, f"{market}: logging promotion") as wb:
            wb.summary.update({"tradecore.champion": "true",
                               **{f"promotion.{k}": _safe(v) for k, v in record.items()}})


def second_trackers(*, wandb_api_key: str | None = None, wandb_project: str = "tradecore",
                    wandb_entity: str | None = None, wandb_mode: str | None = None,
                    wandb_dir: str | None = None,
                    trackers: str | None = None) -> tuple[RunMirror, ...]:
    """The mirrors ``TRADECORE_TRACKERS`` (or ``trackers``) asks for beside MLflow, built from
    the given settings (the Dagster layer passes the key from ``EnvVar("WANDB_API_KEY")``).

    Raises:
        TrackerConfigError: see :func:`enabled_trackers` and :class:`WandbTracker`.
    """
    mirrors: list[RunMirror] = []
    if "wandb" in enabled_trackers(trackers):
        mirrors.append(WandbTracker(wandb_project, wandb_entity, wandb_api_key, wandb_mode,
                                    wandb_dir))
    return tuple(mirrors)


def _tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, value) for key, value in tags.items()]
