"""The typed evaluation summary: the value of ``evaluation/<market>`` and ``eval_summary.json``.

An :class:`EvaluationSummary` holds the run record it judged, per fold and split the data read
(months, partition checksums) and every policy's :class:`PolicyMetrics`, the champion it was
compared with, and the gate's :class:`~tradecore_lib.evaluation.promotion.Verdict`. It is
produced by :func:`tradecore_lib.evaluation.evaluate.evaluate_record`; this module imports no
engine, so readers (the Dagster layer, notebooks) load it cheaply.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tradecore_lib.evaluation.metrics import PolicyMetrics
from tradecore_lib.evaluation.promotion import Verdict
from tradecore_lib.train.config import PromotionGate
from tradecore_lib.train.record import RecordModel, RunRecord

SPLITS = ("validation", "test")


class PartitionRef(RecordModel):
    """One month scored: sha256 of the candle and feature partitions read, rows played."""

    month: str
    candles_sha256: str
    features_sha256: str
    rows: int


class SplitResult(RecordModel):
    """One split of one fold: its data and every policy's metrics."""

    months: tuple[str, ...]
    first_ts: str
    last_ts: str
    market_return: float = Field(description="last close / first open - 1 over the split")
    partitions: tuple[PartitionRef, ...]
    policies: dict[str, PolicyMetrics]


class FoldEvaluation(RecordModel):
    """The splits of one fold's run."""

    fold: int
    run_id: str
    splits: dict[str, SplitResult]


class ChampionScored(RecordModel):
    """The champion at evaluation time and whether it could be scored on this window."""

    model_name: str
    model_version: str
    run_id: str
    scored: bool
    note: str = ""


class EvaluationSummary(RecordModel):
    """The value of ``evaluation/<market>`` and the content of ``eval_summary.json``."""

    schema_version: Literal[1] = 1
    market: str
    run: RunRecord = Field(description="The run record evaluated (from ppo_agent).")
    dagster_run_id: str | None = Field(description="The Dagster run of this evaluation.")
    feature_preset: str
    env: dict[str, Any] = Field(description="Env settings the agent was backtested with.")
    promotion: PromotionGate
    champion: ChampionScored | None = None
    folds: tuple[FoldEvaluation, ...]
    verdict: Verdict
    generated_at: str

    @property
    def newest(self) -> FoldEvaluation:
        return self.folds[-1]

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per fold, split and policy: the comparison table."""
        many = len(self.folds) > 1
        return [
            {**({"fold": f.fold + 1} if many else {}), "split": split, "policy": policy,
             **metrics.model_dump()}
            for f in self.folds
            for split, result in f.splits.items()
            for policy, metrics in result.policies.items()
        ]


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table (for logs and the demo)."""
    fold = "fold" in (rows[0] if rows else {})
    header = ((f"{'fold':>4} " if fold else "")
              + f"{'split':10} {'policy':18} {'return':>8} {'sharpe':>8} {'sortino':>8} "
              f"{'max_dd':>7} {'turnover':>9} {'fees':>9} {'trades':>7} {'win':>6} {'expo':>6}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            (f"{r['fold']:>4} " if fold else "")
            + f"{r['split']:10} {r['policy']:18} {100 * r['total_return']:7.2f}% "
            f"{r['sharpe']:8.2f} {_num(r['sortino']):>8} {100 * r['max_drawdown']:6.2f}% "
            f"{r['turnover']:9.1f} {r['fees']:9.2f} {r['trades']:7d} "
            f"{_pct(r['win_rate']):>6} {100 * r['exposure']:5.1f}%"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
