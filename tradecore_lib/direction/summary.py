"""The typed records of a direction evaluation (the value inside
``<model_key>/direction_evaluation``), apart from the engine that computes them.

:class:`DirectionEvaluationSummary` is one market's evaluation of one direction run:
per split (validation, judged; test, recorded) each forecaster's
:class:`ForecastScores` (the model, the baselines, the champion when scored), the
:class:`AccuracyDifference` to the best baseline and the economic check's
:class:`~tradecore_lib.evaluation.summary.SplitResult`, plus the gate's verdict.
:mod:`tradecore_lib.direction.evaluate` computes it (and re-exports these names); this module
imports no engine, no torch and no scikit-learn, so the Dagster code location and the record
IO manager load it cheaply (:class:`~tradecore_lib.direction.record.DirectionJudgement` holds
one summary per market).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tradecore_lib.direction.baselines import MODEL, BaselineFit
from tradecore_lib.direction.config import DirectionPromotion
from tradecore_lib.direction.metrics import ClassificationScores, UnlabelledScores
from tradecore_lib.evaluation.promotion import Verdict
from tradecore_lib.evaluation.summary import SplitResult, metric_row, ordered_policies
from tradecore_lib.train.record import RecordModel

__all__ = ["ROW_DESCRIPTIONS", "AccuracyDifference", "ChampionNote", "DirectionEvaluationSummary",
           "DirectionSplit", "ForecastScores", "score_row"]


class ForecastScores(RecordModel):
    """One forecaster (the model, a baseline or the champion) on one split."""

    scores: ClassificationScores
    unlabelled: UnlabelledScores


class AccuracyDifference(RecordModel):
    """Stationary-bootstrap interval of (model accuracy - best baseline accuracy) on the same
    labelled samples."""

    baseline: str = Field(description="the baseline with the highest accuracy on this split")
    model_accuracy: float
    baseline_accuracy: float
    estimate: float = Field(description="model accuracy - baseline accuracy")
    low: float | None = Field(description="lower end of the interval (the gate's evidence); "
                              "None when it cannot be resampled")
    high: float | None
    level: float = Field(description="coverage, e.g. 0.95 (percentile interval)")
    samples: int = Field(description="bootstrap replicates")
    mean_block: float = Field(description="mean block length, samples")
    seed: int


class DirectionSplit(RecordModel):
    """One split: the forecasts' scores, the accuracy difference and the economic check."""

    samples: int = Field(description="predictions of the model on this split")
    first_ts: str
    last_ts: str
    models: dict[str, ForecastScores] = Field(
        description="'model', the baselines (majority, persistence, logistic) and, when "
        "scored, 'champion' (on the samples it shares with the model)")
    accuracy_vs_best_baseline: AccuracyDifference
    traded_predictions: int = Field(description="predictions at a decision bar of the walk")
    untraded_predictions: int = Field(description="predictions at bars the walk does not "
                                      "decide on (the env's warm-up, or unusable rows)")
    economic: SplitResult = Field(description="the RL evaluation's record of the walk: the "
                                  "model's positions are the policy 'agent'")


class ChampionNote(RecordModel):
    """The champion at evaluation time and whether it was scored on this window."""

    model_name: str
    model_version: str
    run_id: str
    scored: bool
    note: str = ""


class DirectionEvaluationSummary(RecordModel):
    """The value of ``direction_evaluation/<market>``."""

    schema_version: Literal[1] = 1
    market: str
    model_key: str | None = Field(default=None, description="market (LSTM) or <venue>_multi")
    run_id: str | None = None
    dagster_run_id: str | None = None
    horizon_minutes: int
    p_long: float = Field(description="long above p_long, short below 1 - p_long, else flat")
    env: dict[str, Any] = Field(description="env settings the positions were traded under")
    promotion: DirectionPromotion
    baseline_fit: BaselineFit | None = None
    champion: ChampionNote | None = None
    splits: dict[str, DirectionSplit]
    verdict: Verdict
    generated_at: str

    def rows(self) -> list[dict[str, Any]]:
        """The scores table: one rounded row per split and forecaster."""
        return [{"split": split, "forecaster": name, **score_row(f)}
                for split, s in self.splits.items() for name, f in s.models.items()]

    def economic_rows(self) -> list[dict[str, Any]]:
        """The economic check's comparison table (the RL evaluation's rows; 'agent' is the
        model's positions)."""
        return [{"split": split, **metric_row(name, m)}
                for split, s in self.splits.items()
                for name, m in ordered_policies(s.economic.policies, s.economic.matched_random)]

    def difference_rows(self) -> list[dict[str, Any]]:
        """Model accuracy minus the best baseline's, one rounded row per split."""
        return [{"split": split, "baseline": d.baseline,
                 "model_accuracy": round(d.model_accuracy, 4),
                 "baseline_accuracy": round(d.baseline_accuracy, 4),
                 "difference": round(d.estimate, 4),
                 "difference_95_low": _round(d.low, 4), "difference_95_high": _round(d.high, 4),
                 "mean_block": round(d.mean_block, 1)}
                for split, s in self.splits.items()
                for d in (s.accuracy_vs_best_baseline,)]

    def confusion_rows(self, forecaster: str = MODEL) -> list[dict[str, Any]]:
        """A forecaster's confusion table per split (rows: label down / up)."""
        return [{"split": split, **row}
                for split, s in self.splits.items()
                for row in s.models[forecaster].scores.confusion.rows()]

    def reliability_rows(self, forecaster: str = MODEL) -> list[dict[str, Any]]:
        """A forecaster's reliability diagram per split: one rounded row per bin."""
        return [{"split": split, "bin": f"[{b.low:.2f}, {b.high:.2f})", "count": b.count,
                 "mean_p": _round(b.mean_p, 4), "observed": _round(b.observed, 4)}
                for split, s in self.splits.items()
                for b in s.models[forecaster].scores.reliability]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def score_row(f: ForecastScores) -> dict[str, Any]:
    """One forecaster's scores as a rounded table row."""
    s, u = f.scores, f.unlabelled
    return {"samples": s.samples, "accuracy": round(s.accuracy, 4),
            "balanced_accuracy": round(s.balanced_accuracy, 4), "log_loss": round(s.log_loss, 4),
            "brier": round(s.brier, 4), "ece": round(s.ece, 4), "up_pct": round(100 * s.up_rate, 1),
            "predicted_up_pct": round(100 * s.predicted_up_rate, 1), "dead_zone": u.dead_zone,
            "dead_zone_confidence": _round(u.dead_zone_mean_confidence, 4)}


# Descriptions of the scores table's columns (the UI's column headers).
ROW_DESCRIPTIONS = {
    "split": "validation (judged) or test (recorded, never judged)",
    "forecaster": "model, majority, persistence, logistic (fitted on train), champion",
    "samples": "labelled samples scored (the same for the model and every baseline)",
    "accuracy": "share predicted right (up when p_up > 0.5)",
    "balanced_accuracy": "mean of the up and down recalls (0.5 for a constant forecast)",
    "log_loss": "mean negative log-likelihood, nats (ln 2 = 0.6931 for p = 0.5)",
    "brier": "mean squared error of p_up",
    "ece": "expected calibration error, equal-width bins, count-weighted",
    "up_pct": "labels up, %",
    "predicted_up_pct": "predicted up, %",
    "dead_zone": "samples inside the dead zone (no label), scored apart",
    "dead_zone_confidence": "mean |p_up - 0.5| on the dead-zone samples",
}
