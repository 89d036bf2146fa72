"""The typed records a direction model hands from stage to stage.

* :class:`DirectionRecord`, the value of ``<model_key>/direction_model``: exactly which
  finished run one materialization produced (model key, kind, markets, run id, checkpoint
  folder, digests of its config and lineage, its months), the preset's eligibility and the
  gate's limits *from the same request* (so changing a limit re-judges a finished model
  without training it again) and, once logged, its MLflow run and model version.
* :class:`DirectionJudgement`, the value of ``<model_key>/direction_evaluation``: every
  market's :class:`~tradecore_lib.direction.summary.DirectionEvaluationSummary` of the run
  and the model's one verdict (computed by :func:`tradecore_lib.direction.judge.
  judge_direction_run`);
* :class:`DirectionChampionRecord`, the value of ``<model_key>/direction_champion``: the
  promoted record with its registered model version (``tradecore-direction-<model_key>``),
  why and when.

The direction family's :class:`~tradecore_lib.train.record.RunRecord` and
:class:`~tradecore_lib.evaluation.promotion.ChampionRecord`. Plain pydantic models serialized
as JSON (:class:`~tradecore_lib.train.record.RecordModel`); this module imports neither torch,
scikit-learn, the evaluation engine nor Dagster (the code location loads it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tradecore_lib.direction.config import (
    DirectionConfig,
    DirectionPromotion,
    EconomicSettings,
    SignalSettings,
)
from tradecore_lib.direction.summary import ChampionNote, DirectionEvaluationSummary
from tradecore_lib.evaluation.promotion import Verdict
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE
from tradecore_lib.train.record import MlflowRef, RecordError, RecordModel, digest

if TYPE_CHECKING:
    from tradecore_lib.direction.store import DirectionStore

DIRECTION_MODEL_PREFIX = "tradecore-direction-"


class DirectionRecord(RecordModel):
    """The value of ``<model_key>/direction_model``: the finished run one materialization
    trained (or found already trained)."""

    schema_version: Literal[1] = 1
    model_key: str = Field(description="The market (LSTM) or <venue>_multi (transformer).")
    kind: Literal["lstm", "transformer"]
    markets: tuple[str, ...] = Field(min_length=1, description="The markets the model "
                                     "predicts, in its table order.")
    preset: str = Field(description="Direction preset (configs/direction/) of the request.")
    eligible: bool = Field(description="Whether this preset may be promoted at all.")
    eligibility: str = Field(
        default="", description="Why not, when not eligible ('smoke preset: ...'; the gate's "
        "verdict then reads 'not eligible (smoke preset: ...)').")
    promotion: DirectionPromotion = Field(
        description="The gate's limits this record is judged by (from the same request).")
    economic: EconomicSettings = Field(
        default_factory=EconomicSettings,
        description="The economic check's position rule and env (from the same request: like "
        "the limits, they re-judge without retraining).")
    signals: SignalSettings = Field(
        default_factory=SignalSettings,
        description="The confidence tiers of the model's dry-run signals (from the request).")
    dagster_run_id: str | None = Field(
        description="The Dagster run that materialized direction_model (None: outside "
        "Dagster).")
    run_id: str = Field(description="TradeCore run id (names the run folder).")
    checkpoint_uri: str = Field(description="Lake URI of direction_models/<key>/<run_id>/.")
    config_digest: str = Field(description="sha256 of the run's config.json.")
    lineage_digest: str = Field(description="sha256 of lineage.json (partitions, code, seed).")
    train_months: tuple[str, ...]
    validation_months: tuple[str, ...]
    test_months: tuple[str, ...]
    mlflow: MlflowRef | None = Field(default=None, description="Set once logged to MLflow.")

    @classmethod
    def of(cls, store: DirectionStore, cfg: DirectionConfig,
           dagster_run_id: str | None) -> DirectionRecord:
        """The record of the finished run in ``store``, requested as ``cfg`` (the preset,
        eligibility, gate limits, position rule and tiers come from ``cfg``; the months,
        markets and kind from the run's own ``config.json`` and ``lineage.json``).

        Raises:
            RecordError: the run has not finished (no ``final.pt``), or its lineage names
                another model key.
        """
        if not store.is_complete():
            raise RecordError(f"direction run {store.run_id} of {store.model_key} has not "
                              f"finished: no final.pt under {store.uri()}; train it first")
        config = store.read_json(CONFIG)
        lineage = store.read_json(LINEAGE)
        if lineage.get("model_key") != store.model_key:
            raise RecordError(f"{store.uri(LINEAGE)} names model key "
                              f"{lineage.get('model_key')!r}, not {store.model_key!r}")
        why = "" if cfg.eligible_for_promotion else (
            f"smoke preset: {cfg.name!r} sets eligible_for_promotion to false, its models "
            "are never promoted")
        window = config["data"]
        return cls(
            model_key=store.model_key, kind=lineage["kind"], markets=tuple(lineage["markets"]),
            preset=cfg.name, eligible=cfg.eligible_for_promotion, eligibility=why,
            promotion=cfg.promotion, economic=cfg.economic, signals=cfg.signals,
            dagster_run_id=dagster_run_id, run_id=store.run_id, checkpoint_uri=store.uri(),
            config_digest=digest(config), lineage_digest=digest(lineage),
            train_months=tuple(window["train_months"]),
            validation_months=tuple(window["validation_months"]),
            test_months=tuple(window["test_months"]),
        )

    def with_mlflow(self, ref: MlflowRef) -> DirectionRecord:
        """This record with its MLflow reference set."""
        return self.model_copy(update={"mlflow": ref})

    def mlflow_tags(self) -> dict[str, str]:
        """Tags of the MLflow run and model version: the record, flattened."""
        return {
            "tradecore.run_id": self.run_id,
            "tradecore.model_key": self.model_key,
            "tradecore.family": "direction",
            "tradecore.kind": self.kind,
            "tradecore.markets": ",".join(self.markets),
            "tradecore.preset": self.preset,
            "tradecore.eligible": str(self.eligible).lower(),
            "tradecore.checkpoint_uri": self.checkpoint_uri,
            "tradecore.config_digest": self.config_digest,
            "tradecore.lineage_digest": self.lineage_digest,
            "tradecore.train_months": ",".join(self.train_months),
            "tradecore.validation_months": ",".join(self.validation_months),
            "tradecore.test_months": ",".join(self.test_months),
            "tradecore.dagster_run_id": self.dagster_run_id or "",
        }

    @property
    def label(self) -> str:
        """``tradecore-direction-<key> v<version>`` once registered, else the run id."""
        ref = self.mlflow
        if ref is not None and ref.model_name and ref.version:
            return f"{ref.model_name} v{ref.version}"
        return self.run_id


class DirectionChampionRecord(RecordModel):
    """The value of ``<model_key>/direction_champion``: the promoted direction model."""

    schema_version: Literal[1] = 1
    model_key: str
    run_id: str
    model_name: str = Field(description="Registered model: tradecore-direction-<model_key>.")
    model_version: str
    record: DirectionRecord = Field(description="The promoted run's record.")
    reason: str = Field(description="The verdict's explanation.")
    promoted_at: str = Field(description="UTC, ISO 8601 (months.iso_utc).")
    dagster_run_id: str | None = Field(
        default=None, description="The Dagster run that materialized direction_champion.")
    evaluation_dagster_run_id: str | None = Field(
        default=None, description="The Dagster run whose direction_evaluation promoted it.")

    @property
    def label(self) -> str:
        """``tradecore-direction-<key> v3`` (what the signals record as their model)."""
        return f"{self.model_name} v{self.model_version}"


class DirectionJudgement(RecordModel):
    """The value of ``<model_key>/direction_evaluation``: every market's evaluation of one
    direction run and the model's one verdict."""

    schema_version: Literal[1] = 1
    record: DirectionRecord = Field(description="The run judged.")
    model_key: str
    run_id: str
    summaries: dict[str, DirectionEvaluationSummary] = Field(
        description="market -> its evaluation (its own verdict included), one per market "
        "the model predicts, in the model's order")
    verdict: Verdict = Field(description="The model's verdict: every market's rules, named "
                             "'<market>: <rule>'; passes only when every market's passes")
    dagster_run_id: str | None = Field(description="The Dagster run that judged it.")
    champion: ChampionNote | None = Field(
        default=None, description="The champion at evaluation time and whether it was scored "
        "(on every market it predicts)")
    generated_at: str = Field(default="", description="UTC, ISO 8601.")

    @property
    def markets(self) -> list[str]:
        return list(self.summaries)

    def rows(self) -> list[dict[str, Any]]:
        """The scores table of every market: one rounded row per market, split and
        forecaster."""
        return [{"market": market, **row} for market, s in self.summaries.items()
                for row in s.rows()]

    def economic_rows(self) -> list[dict[str, Any]]:
        """The economic check's comparison of every market ('agent' is the model's
        positions)."""
        return [{"market": market, **row} for market, s in self.summaries.items()
                for row in s.economic_rows()]

    def difference_rows(self) -> list[dict[str, Any]]:
        """Model accuracy minus the best baseline's, per market and split."""
        return [{"market": market, **row} for market, s in self.summaries.items()
                for row in s.difference_rows()]
