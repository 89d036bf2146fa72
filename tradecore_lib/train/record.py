"""The typed record of a training run: what ``ppo_agent/<market>`` hands to every later stage.

A :class:`RunRecord` names exactly which checkpoint(s) an asset materialization produced: the
market, the preset and whether it may be promoted, and one :class:`FoldRun` per walk-forward
fold (one with fixed month lists) holding the TradeCore run id, the checkpoint folder, digests
of the resolved config and of the lineage, the fold's months and, once logged, its MLflow run
and model version. The newest fold's run (the last one) is the one evaluation scores last and
promotion promotes. The same record is what MLflow is tagged with (:meth:`RunRecord.mlflow_tags`).

Records are plain pydantic models (no Dagster import) serialized as JSON; the Dagster layer
stores one file per Dagster run and never overwrites it (``tradecore_pipelines.io_managers``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tradecore_lib.config import describe_errors
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, RunStore
from tradecore_lib.train.config import PromotionGate, TrainConfig


class RecordError(TradeCoreError):
    """A stored record is missing, unreadable or not what the reader expects."""


class RecordModel(BaseModel):
    """Base of the hand-off records: immutable, unknown keys refused, JSON round-trip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        """The record as indented JSON (what the record store writes)."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "record") -> Self:
        """Parse a stored record; :class:`RecordError` naming ``where`` when it does not fit."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(describe_errors(cls, exc))
            raise RecordError(f"{where}: not a valid {cls.__name__}: {problems}") from None


def digest(document: Any) -> str:
    """sha256 (hex) of ``document`` as canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class MlflowRef(RecordModel):
    """Where a training run landed in MLflow; model fields are empty for an unregistered run
    (walk-forward folds other than the newest are logged, not registered)."""

    run_id: str = Field(description="MLflow run id.")
    model_name: str | None = Field(default=None, description="Registered model name.")
    version: str | None = Field(default=None, description="Registered model version.")


class FoldRun(RecordModel):
    """One trained checkpoint: a walk-forward fold's run (or the only run)."""

    fold: int = Field(ge=0, description="Fold index, oldest window first.")
    run_id: str = Field(description="TradeCore run id (names the checkpoint folder).")
    checkpoint_uri: str = Field(description="Lake URI of models/<market>/<run_id>/.")
    config_digest: str = Field(description="sha256 of the resolved config.json.")
    lineage_digest: str = Field(description="sha256 of lineage.json (partitions, code, seed).")
    train_months: tuple[str, ...]
    validation_months: tuple[str, ...]
    test_months: tuple[str, ...]
    mlflow: MlflowRef | None = Field(default=None, description="Set once logged to MLflow.")

    @classmethod
    def from_store(cls, store: RunStore, fold: int) -> FoldRun:
        """The record of a finished run from its checkpoint folder (config and lineage)."""
        if not store.is_complete():
            raise RecordError(f"run {store.run_id} has not finished: no final model under "
                              f"{store.uri()}")
        config = store.read_json(CONFIG)
        window = config["data"]
        return cls(
            fold=fold,
            run_id=store.run_id,
            checkpoint_uri=store.uri(),
            config_digest=digest(config),
            lineage_digest=digest(store.read_json(LINEAGE)),
            train_months=tuple(window["train_months"]),
            validation_months=tuple(window["validation_months"]),
            test_months=tuple(window["test_months"]),
        )


class RunRecord(RecordModel):
    """The value of ``ppo_agent/<market>``: the run(s) one materialization trained."""

    schema_version: Literal[1] = 1
    market: str
    preset: str = Field(description="Training preset the run(s) resolved from.")
    eligible: bool = Field(description="Whether this preset may be promoted at all.")
    eligibility: str = Field(
        default="", description="Why not, when not eligible ('smoke preset: ...'; the gate's "
        "verdict then reads 'not eligible (smoke preset: ...)')."
    )
    promotion: PromotionGate = Field(
        description="The gate's limits this record is judged by (from the same request, so "
        "changing them re-judges a finished run without retraining it)."
    )
    dagster_run_id: str | None = Field(
        description="The Dagster run that materialized ppo_agent (None: a run trained "
        "outside Dagster, e.g. an adopted legacy champion)."
    )
    folds: tuple[FoldRun, ...] = Field(min_length=1, description="Oldest fold first.")

    @classmethod
    def of(cls, market: str, cfg: TrainConfig, dagster_run_id: str | None,
           folds: list[FoldRun]) -> RunRecord:
        """The record of ``folds`` trained from ``cfg`` (eligibility and gate limits from it)."""
        why = "" if cfg.eligible_for_promotion else (
            f"smoke preset: {cfg.name!r} sets eligible_for_promotion to false, its agents "
            "are never promoted")
        return cls(market=market, preset=cfg.name, eligible=cfg.eligible_for_promotion,
                   eligibility=why, promotion=cfg.promotion, dagster_run_id=dagster_run_id,
                   folds=tuple(folds))

    @property
    def newest(self) -> FoldRun:
        """The newest fold's run: the one promoted when the gate passes."""
        return self.folds[-1]

    @property
    def run_id(self) -> str:
        return self.newest.run_id

    @property
    def checkpoint_uri(self) -> str:
        return self.newest.checkpoint_uri

    def with_mlflow(self, fold: int, ref: MlflowRef) -> RunRecord:
        """This record with fold ``fold``'s MLflow reference set."""
        folds = tuple(f.model_copy(update={"mlflow": ref}) if f.fold == fold else f
                      for f in self.folds)
        return self.model_copy(update={"folds": folds})

    def mlflow_tags(self, fold: FoldRun) -> dict[str, str]:
        """Tags of ``fold``'s MLflow run and model version: the record, flattened."""
        return {
            "tradecore.run_id": fold.run_id,
            "tradecore.market": self.market,
            "tradecore.preset": self.preset,
            "tradecore.eligible": str(self.eligible).lower(),
            "tradecore.fold": f"{fold.fold + 1}/{len(self.folds)}",
            "tradecore.checkpoint_uri": fold.checkpoint_uri,
            "tradecore.config_digest": fold.config_digest,
            "tradecore.lineage_digest": fold.lineage_digest,
            "tradecore.dagster_run_id": self.dagster_run_id or "",
        }
