"""Evaluate a run record's checkpoints on their validation and test months.

Out of sample by construction: only each fold's validation and test months are loaded
(strictly after its train months), and each run's lineage is checked again so a month it
trained on is never scored. Observations are normalized with the statistics frozen at the end
of training. Next to the agent, every split scores the baselines and, when there is one, the
current champion on the same window (with its own env settings and features; not scored, with
a note, when it is the run evaluated or trained on one of the window's months).

The result is an :class:`~tradecore_lib.evaluation.summary.EvaluationSummary` carrying the
gate's verdict, written as ``eval_summary.json`` beside the newest fold's checkpoint, with the
equity chart ``equity.png``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import PolicyRun, baseline_policies, run_policies
from tradecore_lib.evaluation.metrics import compute_metrics
from tradecore_lib.evaluation.plots import equity_png
from tradecore_lib.evaluation.promotion import (
    CHAMPION_POLICY,
    DECIDING_SPLIT,
    ChampionRecord,
    judge,
)
from tradecore_lib.evaluation.summary import (
    SPLITS,
    ChampionScored,
    EvaluationSummary,
    FoldEvaluation,
    PartitionRef,
    SplitResult,
)
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, iso_utc, utc_now_ms
from tradecore_lib.train.checkpoints import EQUITY_PNG, EVAL_SUMMARY, RunStore
from tradecore_lib.train.data import MarketFrame, load_frame
from tradecore_lib.train.record import FoldRun, RunRecord


class LeakageError(TradeCoreError, ValueError):
    """An evaluation month is one the run trained on."""


@dataclass(frozen=True)
class Evaluation:
    """The summary and the equity chart's PNG bytes (the newest fold's splits)."""

    summary: EvaluationSummary
    chart_png: bytes


def evaluate_record(lake: Lake, market: Market, record: RunRecord, *,
                    champion: ChampionRecord | None, dagster_run_id: str | None) -> Evaluation:
    """Backtest every fold of ``record``, the baselines and ``champion`` (when set and not the
    same run), judge the gate, and write ``eval_summary.json`` and ``equity.png`` beside the
    newest fold's checkpoint."""
    folds: list[FoldEvaluation] = []
    curves: dict[str, dict[str, PolicyRun]] = {}
    rival, scored = _champion(lake, champion, record)
    agent = None
    for fold in record.folds:
        agent = Agent.load(RunStore(lake, market.name, fold.run_id))
        _check_out_of_sample(agent, fold)
        splits = {}
        for split in SPLITS:
            months = [Month.parse(m) for m in getattr(fold, f"{split}_months")]
            result, played = _score_split(lake, market, agent, months, rival)
            splits[split] = result
            if fold is record.newest:
                curves[split] = played
        folds.append(FoldEvaluation(fold=fold.fold, run_id=fold.run_id, splits=splits))
    assert agent is not None  # a record has at least one fold
    cfg = agent.config
    verdict = judge([f.splits[DECIDING_SPLIT].policies for f in folds], record.promotion,
                    eligible=record.eligible, eligibility=record.eligibility)
    summary = EvaluationSummary(
        market=market.name, run=record, dagster_run_id=dagster_run_id,
        feature_preset=agent.lineage["feature_preset"], env=cfg.env_settings(WARMUP_COLUMN),
        promotion=record.promotion,
        champion=scored, folds=tuple(folds), verdict=verdict,
        generated_at=iso_utc(utc_now_ms()),
    )
    chart = equity_png(curves, f"{market.name} run {record.run_id}: agent vs baselines")
    store = RunStore(lake, market.name, record.run_id)
    store.write_bytes(EVAL_SUMMARY, summary.to_json().encode())
    store.write_bytes(EQUITY_PNG, chart)
    return Evaluation(summary, chart)


def _check_out_of_sample(agent: Agent, fold: FoldRun) -> None:
    trained = set(agent.lineage["train_months"])
    for split in SPLITS:
        overlap = sorted(m for m in getattr(fold, f"{split}_months") if m in trained)
        if overlap:
            raise LeakageError(
                f"run {fold.run_id} trained on {overlap}, which its record also lists as "
                f"{split} months; refusing to score in-sample data"
            )


def _score_split(lake: Lake, market: Market, agent: Agent, months: list[Month],
                 rival: Agent | None) -> tuple[SplitResult, dict[str, PolicyRun]]:
    """Every policy's walk and metrics on ``months``: the agent and the baselines in one
    walk, the champion (with its own env settings and features) in another."""
    settings = agent.config.env_settings(WARMUP_COLUMN)
    data = _frame(lake, market, agent, months)
    played = run_policies(data.frame, settings,
                          {"agent": agent.policy, **baseline_policies(settings)})
    if rival is not None:
        played.update(run_policies(_frame(lake, market, rival, months).frame,
                                   rival.config.env_settings(WARMUP_COLUMN),
                                   {CHAMPION_POLICY: rival.policy}))
    close, open_ = data.frame["close"], data.frame["open"]
    result = SplitResult(
        months=tuple(str(m) for m in months),
        first_ts=iso_utc(data.first_ts), last_ts=iso_utc(data.last_ts),
        market_return=float(close.iloc[-1] / open_.iloc[0] - 1.0),
        partitions=tuple(PartitionRef(month=p.month, candles_sha256=p.candles_sha256,
                                      features_sha256=p.features_sha256, rows=p.rows)
                         for p in data.partitions),
        policies={name: compute_metrics(run) for name, run in played.items()},
    )
    return result, played


def _frame(lake: Lake, market: Market, agent: Agent, months: list[Month]) -> MarketFrame:
    return load_frame(lake, market, months, agent.lineage["feature_preset"])


def _champion(lake: Lake, champion: ChampionRecord | None, record: RunRecord
              ) -> tuple[Agent | None, ChampionScored | None]:
    """The champion's policy to score beside the agent, and what the summary says about it.

    None when there is no champion, when it is the run being evaluated, or when it trained on
    one of the window's months (its score would be in-sample).
    """
    if champion is None:
        return None, None
    scored = ChampionScored(model_name=champion.model_name, model_version=champion.model_version,
                            run_id=champion.run_id, scored=False)
    if champion.run_id in {f.run_id for f in record.folds}:
        return None, scored.model_copy(update={"note": "the champion is the run evaluated"})
    rival = Agent.load(RunStore(lake, champion.market, champion.run_id))
    window = {m for f in record.folds for s in SPLITS for m in getattr(f, f"{s}_months")}
    overlap = sorted(window & set(rival.lineage["train_months"]))
    if overlap:
        return None, scored.model_copy(update={
            "note": f"not scored: the champion trained on {overlap} of this window"})
    return rival, scored.model_copy(update={
        "scored": True, "note": f"scored on the same window as policy {CHAMPION_POLICY!r}"})


