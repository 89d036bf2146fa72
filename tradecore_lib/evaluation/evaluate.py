"""Evaluate a run record's checkpoints on their validation and test months.

Out of sample by construction: each fold's validation and test months are scored (strictly
after its train months), and each run's lineage is checked again so a month it trained on is
never scored. Each split is read with the month before it, which only warms the env's causal
normalization and observation window: the first decision is at the split's first bar, as in
training (:class:`SplitInputs`). Observations are normalized with the statistics frozen at the
end of training.

Per split (:func:`score_split`), with the one engine of :mod:`tradecore_lib.evaluation.backtest`:

1. the agent walks the split (its network inside the kernel);
2. one kernel pass plays every constant or precomputed policy: true ``buy_and_hold``,
   ``always_long_stops``, ``flat``, the ``matched_random_policies`` random policies matched to
   the agent's trades on this split (:func:`.scoring.matched_random_targets`) and, on a
   synthetic control market with a planted edge, the ``oracle``
   (:mod:`tradecore_lib.evaluation.controls`), whose result gives the agent's recovery;
3. the current champion, when there is one, walks the same split with its own env settings
   and features (not scored, with a note, when it is the run evaluated or trained on one of
   the window's months).

The gate (:func:`~tradecore_lib.evaluation.promotion.judge`) then reads the validation splits
only. The result is an :class:`~tradecore_lib.evaluation.summary.EvaluationSummary`, written as
``eval_summary.json`` beside the newest fold's checkpoint with the equity chart ``equity.png``
and the tearsheet ``tearsheet.html`` (:mod:`tradecore_lib.evaluation.tearsheet`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradecore_lib.env import EnvConfig, MarketData
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import (
    PolicyRun,
    PolicySpec,
    Target,
    baseline_policies,
    plan_walk,
    run_policies,
    walk_config,
)
from tradecore_lib.evaluation.controls import (
    ControlError,
    decision_targets,
    oracle_positions,
    recovery,
)
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.evaluation.plots import equity_png
from tradecore_lib.evaluation.promotion import (
    AGENT,
    BUY_AND_HOLD,
    CHAMPION_POLICY,
    ChampionRecord,
    judge,
)
from tradecore_lib.evaluation.scoring import (
    Track,
    agent_statistics,
    compute_metrics,
    matched_random_summary,
    matched_random_targets,
)
from tradecore_lib.evaluation.summary import (
    SPLITS,
    ChampionScored,
    EvaluationSummary,
    FoldEvaluation,
    OverallSplit,
    PartitionRef,
    SplitResult,
)
from tradecore_lib.evaluation.tearsheet import TEARSHEET, tearsheet_html
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, iso_utc, utc_now_ms
from tradecore_lib.sources import source_options
from tradecore_lib.sources.synthetic_generator import PLANTED_PROCESSES, SyntheticOptions
from tradecore_lib.train.checkpoints import EQUITY_PNG, EVAL_SUMMARY, RunStore
from tradecore_lib.train.config import PromotionGate
from tradecore_lib.train.data import PartitionUsed, load_frame
from tradecore_lib.train.record import FoldRun, RunRecord

ORACLE = "oracle"
FLAT = "flat"
# The curves drawn in the equity chart and the tearsheet.
CHARTED = (AGENT, BUY_AND_HOLD, FLAT)


class LeakageError(TradeCoreError, ValueError):
    """An evaluation month is one the run trained on."""


@dataclass(frozen=True)
class SplitInputs:
    """One split's frame (candles + features), preceded by the month before it when the lake
    has it.

    Attributes:
        frame: the rows, oldest first (see :class:`~tradecore_lib.train.data.MarketFrame`).
        start_ms: open time (epoch ms) of the split's first minute: decisions start at the
            first bar at or after it; the rows before only warm up.
        months: the split's months.
        partitions: the split's partitions read (the warm-up month's apart).
        warmup: the warm-up month's partition, None when the split starts cold.
    """

    frame: pd.DataFrame
    start_ms: int
    months: tuple[str, ...]
    partitions: tuple[PartitionRef, ...] = ()
    warmup: PartitionRef | None = None


def load_split(lake: Lake, market: Market, feature_preset: str,
               months: Sequence[Month]) -> SplitInputs:
    """The :class:`SplitInputs` of ``months``: their partitions and, when the lake holds its
    candles and features, the month before as warm-up
    (:func:`~tradecore_lib.train.data.load_frame` with ``warmup``).

    Raises:
        MissingDataError: a month of the split is not in the lake.
    """
    months = sorted(months)
    data = load_frame(lake, market, months, feature_preset, warmup=True)

    def ref(used: PartitionUsed) -> PartitionRef:
        return PartitionRef(month=used.month, candles_sha256=used.candles_sha256,
                            features_sha256=used.features_sha256, rows=used.rows)

    warm = data.warmup_partition
    return SplitInputs(frame=data.frame, start_ms=months[0].start_ms,
                       months=tuple(str(m) for m in months),
                       partitions=tuple(ref(p) for p in data.partitions),
                       warmup=None if warm is None else ref(warm))


@dataclass(frozen=True)
class Rival:
    """The champion on one split: its inputs (its own feature preset), env settings and
    policy."""

    inputs: SplitInputs
    settings: Mapping[str, Any]
    policy: PolicySpec


@dataclass(frozen=True)
class ScoredSplit:
    """A split's :class:`SplitResult` and what the overall rows, the chart and the tearsheet
    need: the named policies' walks and tracks, and the matched random policies' tracks."""

    result: SplitResult
    runs: dict[str, PolicyRun]
    tracks: dict[str, Track]
    random_tracks: list[Track]


def _walk_data(inputs: SplitInputs, settings: Mapping[str, Any]
               ) -> tuple[EnvConfig, MarketData, int]:
    """The walk config, the prepared market data and the first decision row of ``inputs``."""
    cfg = walk_config(settings)
    data = MarketData.from_frame(inputs.frame, cfg)
    return cfg, data, int(np.searchsorted(data.ts_ms, inputs.start_ms))


def score_split(inputs: SplitInputs, settings: Mapping[str, Any], agent: PolicySpec, *,
                gate: PromotionGate, seed: int, trials: Trials, rival: Rival | None = None,
                control: SyntheticOptions | None = None) -> ScoredSplit:
    """Play and score one split (see the module docstring).

    Args:
        inputs: the split's rows.
        settings: the agent's env settings (``TrainConfig.env_settings``).
        agent: the agent's policy (an :class:`~tradecore_lib.evaluation.backtest.MlpPolicy`,
            or any :data:`~tradecore_lib.evaluation.backtest.PolicySpec`).
        gate: the bootstrap samples and the number of matched random policies.
        seed: seed of the matched random policies (policy i: ``(seed, i)``) and of the
            bootstrap.
        trials: what the deflated Sharpe ratio deflates for.
        rival: the champion on the same split, or None.
        control: the options of a planted-edge synthetic market (adds the oracle), or None.
    """
    cfg, data, start = _walk_data(inputs, settings)
    runs = run_policies(data, cfg, {AGENT: agent}, start)
    targets, magnitude = matched_random_targets(runs[AGENT], gate.matched_random_policies,
                                                seed)
    random_names = [f"random_{i:03d}" for i in range(len(targets))]
    static: dict[str, PolicySpec] = dict(baseline_policies(cfg))
    if control is not None:
        rows = plan_walk(data, cfg, start).rows
        static[ORACLE] = Target(decision_targets(oracle_positions(data, control), rows))
    static.update({name: Target(path) for name, path in zip(random_names, targets,
                                                             strict=True)})
    played = run_policies(data, cfg, static, start)
    runs.update({name: run for name, run in played.items() if name not in random_names})
    random_tracks = [Track.of(played[name]) for name in random_names]
    if rival is not None:
        rival_cfg, rival_data, rival_start = _walk_data(rival.inputs, rival.settings)
        runs.update(run_policies(rival_data, rival_cfg, {CHAMPION_POLICY: rival.policy},
                                 rival_start))
    tracks = {name: Track.of(run) for name, run in runs.items()}
    policies = {name: compute_metrics(track, bootstrap_samples=gate.bootstrap_samples,
                                      seed=seed)
                for name, track in tracks.items()}
    matched = matched_random_summary([[t] for t in random_tracks], seed=seed,
                                     agent_trades=policies[AGENT].trades, target=magnitude)
    statistics = agent_statistics(tracks[AGENT], tracks[BUY_AND_HOLD], matched.daily_sharpes,
                                  trials=trials, bootstrap_samples=gate.bootstrap_samples,
                                  seed=seed)
    if control is not None:
        statistics = statistics.model_copy(update=_recovery(runs[AGENT], runs[ORACLE]))
    walked = runs[AGENT]
    result = SplitResult(
        months=inputs.months, first_ts=iso_utc(int(walked.ts_ms[0])),
        last_ts=iso_utc(int(walked.ts_ms[-1])), warmup=inputs.warmup,
        market_return=float(data.close[-1] / data.open[start] - 1.0),
        partitions=inputs.partitions, policies=policies, matched_random=matched,
        agent=statistics,
    )
    return ScoredSplit(result, runs, tracks, random_tracks)


def _recovery(agent: PolicyRun, oracle: PolicyRun) -> dict[str, Any]:
    try:
        return {"recovery": recovery(agent.equity, oracle.equity, agent.initial_equity)}
    except ControlError as exc:
        return {"recovery": None, "recovery_note": str(exc)}


def control_options(market: Market) -> SyntheticOptions | None:
    """The source options of a synthetic market with a planted edge (it has an oracle), else
    None."""
    if market.venue != "synthetic":
        return None
    options = source_options(market)
    assert isinstance(options, SyntheticOptions)
    return options if options.process in PLANTED_PROCESSES else None


def overall(scored: Sequence[ScoredSplit], *, gate: PromotionGate, seed: int
            ) -> OverallSplit | None:
    """One split over consecutive folds, chained oldest first; None when their months
    overlap (a chained curve would count those days twice) or there is one fold."""
    months = [m for s in scored for m in s.result.months]
    if len(scored) < 2 or len(set(months)) != len(months):
        return None
    names = [name for name in scored[0].tracks if all(name in s.tracks for s in scored)]
    policies = {name: compute_metrics([s.tracks[name] for s in scored],
                                      bootstrap_samples=gate.bootstrap_samples, seed=seed)
                for name in names}
    random = [[s.random_tracks[i] for s in scored]
              for i in range(min(len(s.random_tracks) for s in scored))]
    matched = matched_random_summary(
        random, seed=seed, agent_trades=policies[AGENT].trades,
        target=scored[-1].result.matched_random.target)
    return OverallSplit(months=tuple(sorted(months)), policies=policies, matched_random=matched)


@dataclass(frozen=True)
class Evaluation:
    """The summary, the equity chart's PNG bytes and the tearsheet's HTML (newest fold)."""

    summary: EvaluationSummary
    chart_png: bytes
    tearsheet: str


def evaluate_record(lake: Lake, market: Market, record: RunRecord, *,
                    champion: ChampionRecord | None, dagster_run_id: str | None,
                    trials: Trials | None = None) -> Evaluation:
    """Backtest every fold of ``record`` with the baselines, the matched random policies and
    ``champion`` (when set and not the same run), judge the gate on validation, and write
    ``eval_summary.json``, ``equity.png`` and ``tearsheet.html`` beside the newest fold's
    checkpoint.

    ``trials``: the market's training runs recorded in MLflow (the deflated Sharpe's trials);
    None (or fewer) counts this record's runs.
    """
    trials = trials or Trials(count=0)
    trials = Trials(count=max(trials.count, len(record.folds)), sharpes=trials.sharpes)
    rival_agent, scored_champion = _champion(lake, champion, record)
    gate = record.promotion
    folds: list[FoldEvaluation] = []
    scored: dict[str, list[ScoredSplit]] = {split: [] for split in SPLITS}
    control = control_options(market)
    agent = None
    for fold in record.folds:
        agent = Agent.load(RunStore(lake, market.name, fold.run_id))
        _check_out_of_sample(agent, fold)
        settings = agent.config.env_settings(WARMUP_COLUMN)
        seed = agent.config.evaluation.random_baseline_seed
        splits = {}
        for split in SPLITS:
            months = [Month.parse(m) for m in getattr(fold, f"{split}_months")]
            preset = agent.lineage["feature_preset"]
            inputs = load_split(lake, market, preset, months)
            versus = None
            if rival_agent is not None:
                theirs = rival_agent.lineage["feature_preset"]
                versus = Rival(inputs if theirs == preset else
                               load_split(lake, market, theirs, months),
                               rival_agent.config.env_settings(WARMUP_COLUMN),
                               rival_agent.policy)
            result = score_split(inputs, settings, agent.policy, gate=gate, seed=seed,
                                 trials=trials, rival=versus, control=control)
            splits[split] = result.result
            scored[split].append(result)
        folds.append(FoldEvaluation(fold=fold.fold, run_id=fold.run_id, splits=splits))
    assert agent is not None  # a record has at least one fold
    cfg = agent.config
    seed = cfg.evaluation.random_baseline_seed
    chained = {split: o for split in SPLITS
               if (o := overall(scored[split], gate=gate, seed=seed)) is not None}
    verdict = judge(folds, gate, eligible=record.eligible, eligibility=record.eligibility)
    summary = EvaluationSummary(
        market=market.name, run=record, dagster_run_id=dagster_run_id,
        feature_preset=agent.lineage["feature_preset"], env=cfg.env_settings(WARMUP_COLUMN),
        promotion=gate, champion=scored_champion, folds=tuple(folds), overall=chained,
        verdict=verdict, generated_at=iso_utc(utc_now_ms()),
    )
    newest = {split: scored[split][-1] for split in SPLITS}
    curves = {split: {name: s.runs[name] for name in CHARTED} for split, s in newest.items()}
    chart = equity_png(curves, f"{market.name} run {record.run_id}: agent vs baselines")
    sheet = tearsheet_html(summary, {split: s.tracks for split, s in newest.items()}, chart)
    store = RunStore(lake, market.name, record.run_id)
    store.write_bytes(EVAL_SUMMARY, summary.to_json().encode())
    store.write_bytes(EQUITY_PNG, chart)
    store.write_bytes(TEARSHEET, sheet.encode())
    return Evaluation(summary, chart, sheet)


def _check_out_of_sample(agent: Agent, fold: FoldRun) -> None:
    trained = set(agent.lineage["train_months"])
    for split in SPLITS:
        overlap = sorted(m for m in getattr(fold, f"{split}_months") if m in trained)
        if overlap:
            raise LeakageError(
                f"run {fold.run_id} trained on {overlap}, which its record also lists as "
                f"{split} months; refusing to score in-sample data"
            )


def _champion(lake: Lake, champion: ChampionRecord | None, record: RunRecord
              ) -> tuple[Agent | None, ChampionScored | None]:
    """The champion's agent to score beside the agent, and what the summary says about it.

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
