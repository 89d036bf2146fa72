"""The typed evaluation summary: the value of ``<market>/evaluation`` and ``eval_summary.json``.

An :class:`EvaluationSummary` holds the run record it judged, per fold and split the data read
(months, partition checksums, the month before that only warmed the normalization), every
policy's :class:`~tradecore_lib.evaluation.metrics.PolicyMetrics`, the matched random
population, the agent's statistics, the champion it was compared with, with several folds the
folds chained (``overall``), and the gate's
:class:`~tradecore_lib.evaluation.promotion.Verdict`. It is produced by
:func:`tradecore_lib.evaluation.evaluate.evaluate_record`; this module imports no engine, so
readers (the Dagster layer, notebooks) load it cheaply.

:meth:`EvaluationSummary.rows` is the comparison table users read (rounded, matched random
as its median and 95th-percentile rows), :meth:`EvaluationSummary.agent_rows` the agent's
statistics, :func:`summary_table` the same comparison as fixed-width text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tradecore_lib.evaluation.metrics import AgentStatistics, MatchedRandom, PolicyMetrics
from tradecore_lib.evaluation.promotion import Verdict
from tradecore_lib.train.config import PromotionGate
from tradecore_lib.train.record import RecordModel, RunRecord

SPLITS = ("validation", "test")
RANDOM_MEDIAN = "random (median)"
RANDOM_P95 = "random (p95)"
# Policies shown first in the comparison, in this order; others (champion, oracle) follow.
LEADING = ("agent", "buy_and_hold", "always_long_stops", "flat")
OVERALL = "all"


class PartitionRef(RecordModel):
    """One month read: sha256 of the candle and feature partitions, rows in the frame."""

    month: str
    candles_sha256: str
    features_sha256: str
    rows: int


class SplitResult(RecordModel):
    """One split of one fold: its data and every policy's metrics."""

    months: tuple[str, ...]
    first_ts: str = Field(description="open time of the first decision bar, UTC")
    last_ts: str = Field(description="open time of the last bar, UTC")
    warmup: PartitionRef | None = Field(
        default=None, description="The month before the split, read only to warm the causal "
        "normalization and the observation window (no decision on it); None: the split "
        "starts cold (no earlier month in the lake).")
    market_return: float = Field(description="last close / first open - 1 over the split")
    partitions: tuple[PartitionRef, ...]
    policies: dict[str, PolicyMetrics]
    matched_random: MatchedRandom
    agent: AgentStatistics


class FoldEvaluation(RecordModel):
    """The splits of one fold's run."""

    fold: int
    run_id: str
    splits: dict[str, SplitResult]


class OverallSplit(RecordModel):
    """One split over all folds, chained oldest first (equity carried from fold to fold)."""

    months: tuple[str, ...]
    policies: dict[str, PolicyMetrics]
    matched_random: MatchedRandom


class ChampionScored(RecordModel):
    """The champion at evaluation time and whether it could be scored on this window."""

    model_name: str
    model_version: str
    run_id: str
    scored: bool
    note: str = ""


class EvaluationSummary(RecordModel):
    """The value of ``<market>/evaluation`` and the content of ``eval_summary.json``."""

    schema_version: Literal[2] = 2
    market: str
    run: RunRecord = Field(description="The run record evaluated (from ppo_agent).")
    dagster_run_id: str | None = Field(description="The Dagster run of this evaluation.")
    feature_preset: str
    env: dict[str, Any] = Field(description="Env settings the agent was backtested with.")
    promotion: PromotionGate
    champion: ChampionScored | None = None
    folds: tuple[FoldEvaluation, ...]
    overall: dict[str, OverallSplit] = Field(
        default_factory=dict, description="With several folds: each split over all folds "
        "(splits whose folds overlap in time are left out). Empty with one fold.")
    verdict: Verdict
    generated_at: str

    @property
    def newest(self) -> FoldEvaluation:
        return self.folds[-1]

    def rows(self) -> list[dict[str, Any]]:
        """The comparison table: one rounded row per fold, split and policy (with several
        folds, then the ``all`` rows), matched random as its median and p95 rows."""
        many = len(self.folds) > 1
        sections = [(str(f.fold + 1), split, r.policies, r.matched_random)
                    for f in self.folds for split, r in f.splits.items()]
        sections += [(OVERALL, split, o.policies, o.matched_random)
                     for split, o in self.overall.items()]
        return [{**({"fold": fold} if many else {}), "split": split, **metric_row(name, m)}
                for fold, split, policies, random in sections
                for name, m in ordered_policies(policies, random)]

    def agent_rows(self) -> list[dict[str, Any]]:
        """The agent's statistics, one rounded row per fold and split."""
        many = len(self.folds) > 1
        return [{**({"fold": str(f.fold + 1)} if many else {}), "split": split,
                 **agent_row(r.agent)}
                for f in self.folds for split, r in f.splits.items()]


def ordered_policies(policies: dict[str, PolicyMetrics], random: MatchedRandom
             ) -> list[tuple[str, PolicyMetrics]]:
    leading = [(name, policies[name]) for name in LEADING if name in policies]
    rest = [(name, m) for name, m in policies.items() if name not in LEADING]
    return [*leading, (RANDOM_MEDIAN, random.median), (RANDOM_P95, random.p95), *rest]


def _round(value: float | None, digits: int, scale: float = 1.0) -> float | None:
    return None if value is None else round(scale * value, digits)


def metric_row(policy: str, m: PolicyMetrics) -> dict[str, Any]:
    """One policy's metrics as a rounded table row (percentages in percent)."""
    return {
        "policy": policy,
        "return_pct": _round(m.total_return, 2, 100.0),
        "daily_sharpe": _round(m.daily_sharpe, 2),
        "sharpe_95_low": _round(m.daily_sharpe_low, 2),
        "sharpe_95_high": _round(m.daily_sharpe_high, 2),
        "bar_sharpe": _round(m.bar_sharpe, 2),
        "sortino": _round(m.sortino, 2),
        "max_dd_pct": _round(m.max_drawdown, 2, 100.0),
        "exposure_pct": _round(m.exposure, 1, 100.0),
        "trades": m.trades,
        "win_pct": _round(m.win_rate, 1, 100.0),
        "turnover": _round(m.turnover, 1),
        "fees": _round(m.fees, 2),
        "borrow": _round(m.borrow_cost, 2),
        "funding": _round(m.funding_cost, 2),
        "kill_switch": m.kill_switch_hits,
        "guardrail": m.guardrail_breaches,
    }


# Descriptions of the comparison table's columns (shown on the UI's column headers).
ROW_DESCRIPTIONS = {
    "fold": "walk-forward fold (1 = oldest; all = the folds chained)",
    "split": "validation (judged) or test (recorded, never judged)",
    "policy": "agent, baselines, matched random (median / 95th percentile of each column), "
              "champion, oracle (control markets)",
    "return_pct": "net total return after fees, slippage and holding costs, %",
    "daily_sharpe": "annualized Sharpe of UTC daily returns (sqrt 365)",
    "sharpe_95_low": "stationary-bootstrap 95 % interval of the daily Sharpe, low end",
    "sharpe_95_high": "stationary-bootstrap 95 % interval of the daily Sharpe, high end",
    "bar_sharpe": "annualized Sharpe of per-bar returns",
    "sortino": "annualized Sortino of daily returns",
    "max_dd_pct": "maximum drawdown of equity, %",
    "exposure_pct": "share of bars with an open position, %",
    "trades": "round trips",
    "win_pct": "round trips with a positive net PnL, %",
    "turnover": "traded notional / mean equity",
    "fees": "fees paid, quote currency",
    "borrow": "borrow paid on spot shorts, quote currency",
    "funding": "funding paid on perpetual futures, quote currency",
    "kill_switch": "kill-switch hits",
    "guardrail": "daily / total loss guardrail breaches",
}


def agent_row(a: AgentStatistics) -> dict[str, Any]:
    """The agent's statistics on one split as a rounded table row."""
    diff = a.sharpe_vs_buy_and_hold
    return {
        "psr": _round(a.psr, 3),
        "dsr": _round(a.dsr, 3),
        "n_trials": a.n_trials,
        "random_percentile": _round(a.random_percentile, 1),
        "random_p_value": _round(a.random_p_value, 3),
        "sharpe_minus_buy_and_hold": _round(diff.estimate, 2),
        "difference_95_low": _round(diff.low, 2),
        "recovery": _round(a.recovery, 3),
    }


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The comparison rows (:meth:`EvaluationSummary.rows`) as a fixed-width text table."""
    fold = "fold" in (rows[0] if rows else {})
    columns = [("split", 10, "s"), ("policy", 18, "s"), ("return_pct", 8, ".2f"),
               ("daily_sharpe", 7, ".2f"), ("sharpe_95_low", 7, ".2f"),
               ("sharpe_95_high", 7, ".2f"), ("max_dd_pct", 7, ".2f"), ("exposure_pct", 6, ".1f"),
               ("trades", 7, "d"), ("fees", 9, ".2f"), ("kill_switch", 5, "d")]
    titles = {"return_pct": "ret %", "daily_sharpe": "sharpe", "sharpe_95_low": "ci_lo",
              "sharpe_95_high": "ci_hi", "max_dd_pct": "mdd %", "exposure_pct": "expo%",
              "kill_switch": "kill"}
    if fold:
        columns.insert(0, ("fold", 4, "s"))

    def cell(value: Any, width: int, spec: str) -> str:
        text = "n/a" if value is None else format(value, spec)
        return f"{text:{width}}" if spec == "s" else f"{text:>{width}}"

    header = " ".join(cell(titles.get(name, name), w, "s") if spec == "s" else
                      f"{titles.get(name, name):>{w}}" for name, w, spec in columns)
    lines = [header, "-" * len(header)]
    lines += [" ".join(cell(r[name], w, spec) for name, w, spec in columns) for r in rows]
    return "\n".join(lines)
