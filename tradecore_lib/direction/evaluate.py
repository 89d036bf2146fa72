"""Evaluate a direction model's predictions on validation and test, against its baselines.

Input: the model's ``DirectionPredictions`` (a frame with ``ts`` UTC, ``market``, ``p_up``,
``label``, ``forward_return``, ``split`` in {"validation", "test"}) and each baseline's
forecasts for the same samples (:mod:`tradecore_lib.direction.baselines`). Per split
(:func:`score_direction_split`):

1. **Scores** (:mod:`tradecore_lib.direction.metrics`) of the model and every baseline on the
   same labelled samples: accuracy, balanced accuracy, log-loss, Brier, expected calibration
   error with its reliability bins, the confusion table; the dead-zone samples (no label)
   counted apart with each forecast's mean confidence there.
2. **Accuracy against the best baseline**: the baseline with the highest accuracy on the
   split; the stationary bootstrap (:func:`tradecore_lib.evaluation.stats.
   stationary_bootstrap_indices`, Politis & Romano) of the mean per-sample difference of
   correctness (model right - baseline right, in time order) gives its 95 % percentile
   interval (the gate reads its lower end, the 2.5th percentile, like the RL gate's Sharpe
   interval). Mean block length: ``max(n ** (1/3), 4 * horizon)`` samples (one hour for the
   15-minute horizon): labels of samples less than a horizon apart share their future
   returns and the model's inputs overlap for a sequence, so blocks must span several
   horizons to keep that dependence; ``n ** (1/3)`` is the rate-optimal order the RL
   evaluation uses.
3. **Economic check**: the probabilities become target positions (:func:`position_targets`:
   +1 when ``p_up > p_long``, -1 when ``p_up < 1 - p_long``, 0 between) at the decision bar of
   each prediction (decided after bar ``t`` closed, from inputs up to ``t``; filled at the next
   open); a decision bar of the walk with no prediction is flat. The path is played as the
   policy ``agent`` by the RL evaluation's own :func:`~tradecore_lib.evaluation.evaluate.
   score_split` through the one engine with all costs (fees, slippage, stops, RiskGuard, kill
   switch, holding costs) beside the same baselines as the RL evaluation (true buy-and-hold,
   always long under the preset's rules, flat, random policies matched to the model's trades,
   on a planted-edge control the oracle, and the champion when scored); the classification
   baselines' own positions (same rule) are played too (policies ``majority``,
   ``persistence``, ``logistic``) for reference.

The gate (:func:`tradecore_lib.direction.gate.judge_direction`) then reads the validation
split only. The result is a :class:`DirectionEvaluationSummary` (JSON round-trip, rounded
tables for metadata) with the reliability diagram and the equity chart as PNG bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tradecore_lib.direction.baselines import BASELINES, MODEL, BaselineFit
from tradecore_lib.direction.config import DirectionPromotion, EconomicSettings
from tradecore_lib.direction.gate import judge_direction
from tradecore_lib.direction.labels import ts_millis
from tradecore_lib.direction.metrics import (
    classification_scores,
    correct,
    unlabelled_scores,
)

# The records live in .summary (no engine: the code location loads them); re-exported here.
from tradecore_lib.direction.summary import ROW_DESCRIPTIONS as ROW_DESCRIPTIONS
from tradecore_lib.direction.summary import (
    AccuracyDifference,
    ChampionNote,
    DirectionEvaluationSummary,
    DirectionSplit,
    ForecastScores,
)
from tradecore_lib.direction.summary import score_row as score_row
from tradecore_lib.env import MarketData
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation import stats
from tradecore_lib.evaluation.backtest import (
    PolicyRun,
    Target,
    plan_walk,
    run_policies,
    walk_config,
)
from tradecore_lib.evaluation.evaluate import FLAT, Rival, SplitInputs, score_split
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.evaluation.plots import equity_png, png, pyplot
from tradecore_lib.evaluation.promotion import AGENT, BUY_AND_HOLD, CHAMPION_POLICY
from tradecore_lib.evaluation.scoring import Track, compute_metrics
from tradecore_lib.evaluation.summary import SPLITS
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.months import iso_utc, utc_now_ms
from tradecore_lib.sources.synthetic_generator import SyntheticOptions

PREDICTION_COLUMNS = ("ts", "market", "p_up", "label", "forward_return", "split")
LEVEL = 0.95
MEAN_BLOCK_HORIZONS = 4
# Bootstrap replicates are drawn in chunks of at most this many indices (memory bound).
_CHUNK_ELEMENTS = 2_000_000
CHAMPION = "champion"
# The curves of the equity chart: the model's walk is the policy "agent".
CHARTED = (AGENT, BUY_AND_HOLD, FLAT)


class DirectionEvaluationError(TradeCoreError, ValueError):
    """Predictions, baselines or splits that cannot be evaluated together (the message says
    which and why)."""


@dataclass(frozen=True)
class DirectionChampion:
    """The current champion, to be scored on the same window: its identity, and its
    predictions on the evaluated samples (``DirectionPredictions``), or None with a ``note``
    saying why it is not scored (it is the run evaluated, or it trained on these months)."""

    model_name: str
    model_version: str
    run_id: str
    predictions: pd.DataFrame | None
    note: str = ""


@dataclass(frozen=True)
class DirectionEvaluation:
    """The summary, the reliability diagram's and the equity chart's PNG bytes."""

    summary: DirectionEvaluationSummary
    reliability_png: bytes
    equity_png: bytes


# -- inputs -------------------------------------------------------------------------------------
def _split_rows(predictions: pd.DataFrame, market: str, split: str, what: str) -> pd.DataFrame:
    """The rows of ``market`` and ``split``, in time order, checked."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise DirectionEvaluationError(f"{what}: columns {missing} missing; DirectionPredictions "
                                       f"have {list(PREDICTION_COLUMNS)}")
    unknown = sorted(set(predictions["split"].unique()) - set(SPLITS))
    if unknown:
        raise DirectionEvaluationError(f"{what}: unknown split(s) {unknown}; known: {SPLITS}")
    rows = predictions[(predictions["market"] == market) & (predictions["split"] == split)]
    rows = rows.sort_values("ts", kind="stable").reset_index(drop=True)
    ts = ts_millis(rows["ts"])
    if len(ts) > 1 and not (np.diff(ts) > 0).all():
        raise DirectionEvaluationError(f"{what}: {market} {split} has two predictions for one "
                                       "bar")
    return rows


def position_targets(p_up: np.ndarray, p_long: float) -> np.ndarray:
    """(n,) float64 target positions: +1 where ``p_up > p_long``, -1 where ``p_up < 1 -
    p_long``, 0 between (``p_long`` in (0.5, 1))."""
    if not 0.5 < p_long < 1.0:
        raise DirectionEvaluationError(f"p_long must lie in (0.5, 1), got {p_long}")
    p = np.asarray(p_up, dtype=np.float64)
    return np.where(p > p_long, 1.0, np.where(p < 1.0 - p_long, -1.0, 0.0))


def walk_targets(prediction_ts_ms: np.ndarray, targets: np.ndarray,
                 walk_ts_ms: np.ndarray) -> tuple[np.ndarray, int]:
    """The (T,) target path of a walk: each decision bar's prediction's target, 0 where the
    bar has none; and how many predictions fell on a decision bar."""
    order = np.asarray(prediction_ts_ms, dtype=np.int64)
    at = np.searchsorted(order, walk_ts_ms)
    hit = (at < len(order)) & (order[np.minimum(at, max(len(order) - 1, 0))] == walk_ts_ms) \
        if len(order) else np.zeros(len(walk_ts_ms), dtype=bool)
    path = np.zeros(len(walk_ts_ms))
    path[hit] = np.asarray(targets, dtype=np.float64)[at[hit]]
    return path, int(hit.sum())


def economic_settings(economic: EconomicSettings,
                      exclude_column: str | None = WARMUP_COLUMN,
                      market_costs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The env settings the positions trade under: the preset, the market's trading fees and
    holding costs (:meth:`~tradecore_lib.markets.Market.env_overrides`), the preset's own
    overrides (which win, as a training request's do) and the feature table's warm-up
    marker."""
    settings: dict[str, Any] = {"preset": economic.env_preset, **(market_costs or {}),
                                **economic.env_overrides}
    if exclude_column is not None:
        settings["exclude_column"] = exclude_column
    return settings


# -- statistics ---------------------------------------------------------------------------------
def mean_block_length(n: int, horizon_minutes: int) -> float:
    """The bootstrap's mean block (samples): ``max(n ** (1/3), 4 * horizon)`` (see the module
    docstring)."""
    return max(stats.default_mean_block(n), float(MEAN_BLOCK_HORIZONS * horizon_minutes))


def bootstrap_mean(values: np.ndarray, *, samples: int, mean_block: float, seed: int,
                   level: float = LEVEL) -> stats.Interval:
    """Stationary-bootstrap percentile interval of the mean of ``values`` (n,) in time order
    (seeded; replicates drawn in chunks so memory stays bounded for months of minutes)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    replicates = np.concatenate([
        values[stats.stationary_bootstrap_indices(n, min(chunk, samples - start), mean_block,
                                                  rng)].mean(axis=1)
        for start in range(0, samples, chunk)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return stats.Interval(estimate=float(values.mean()), low=float(low), high=float(high),
                          level=level, samples=samples, mean_block=mean_block)


def accuracy_difference(model: pd.DataFrame, baselines: Mapping[str, pd.DataFrame], *,
                        horizon_minutes: int, samples: int, seed: int) -> AccuracyDifference:
    """Model minus the most accurate baseline on the labelled samples (aligned frames)."""
    labelled = ~np.isnan(model["label"].to_numpy(dtype=np.float64))
    label = model["label"].to_numpy(dtype=np.float64)[labelled]

    def right(frame: pd.DataFrame) -> np.ndarray:
        return correct(frame["p_up"].to_numpy(dtype=np.float64)[labelled], label)

    hits = {name: right(frame) for name, frame in baselines.items()}
    best = max(hits, key=lambda name: hits[name].mean())  # ties: the first in order
    mine = right(model)
    block = mean_block_length(len(label), horizon_minutes)
    low = high = None
    if len(label) >= 2:
        interval = bootstrap_mean(mine - hits[best], samples=samples, mean_block=block,
                                  seed=seed)
        low, high = interval.low, interval.high
    return AccuracyDifference(
        baseline=best, model_accuracy=float(mine.mean()), baseline_accuracy=float(
            hits[best].mean()), estimate=float(mine.mean() - hits[best].mean()), low=low,
        high=high, level=LEVEL, samples=samples, mean_block=block, seed=seed)


# -- one split ----------------------------------------------------------------------------------
def _forecast(frame: pd.DataFrame, bins: int) -> ForecastScores:
    p = frame["p_up"].to_numpy(dtype=np.float64)
    label = frame["label"].to_numpy(dtype=np.float64)
    return ForecastScores(scores=classification_scores(p, label, bins),
                          unlabelled=unlabelled_scores(
                              p, label, frame["forward_return"].to_numpy(dtype=np.float64)))


def _aligned(model: pd.DataFrame, other: pd.DataFrame, name: str) -> None:
    same_ts = len(model) == len(other) and (ts_millis(model["ts"]) == ts_millis(other["ts"])).all()
    if not same_ts or not np.array_equal(model["label"].to_numpy(dtype=np.float64),
                                         other["label"].to_numpy(dtype=np.float64),
                                         equal_nan=True):
        raise DirectionEvaluationError(
            f"baseline {name!r}: its samples are not the model's ({len(other)} rows for "
            f"{len(model)}; same ts and labels needed): predict it on the model's samples "
            "(Baselines.predict)")


@dataclass(frozen=True)
class ScoredDirectionSplit:
    """A split's :class:`DirectionSplit` and the walks the equity chart draws."""

    result: DirectionSplit
    runs: dict[str, PolicyRun]


def score_direction_split(model: pd.DataFrame, baselines: Mapping[str, pd.DataFrame],
                          inputs: SplitInputs, *, settings: Mapping[str, Any], p_long: float,
                          promotion: DirectionPromotion, horizon_minutes: int, seed: int,
                          trials: Trials, champion: pd.DataFrame | None = None,
                          control: SyntheticOptions | None = None) -> ScoredDirectionSplit:
    """Score one split (see the module docstring).

    Args:
        model: the model's predictions on this split, in time order.
        baselines: name -> their forecasts on the same samples, in the same order.
        inputs: the split's candles + features (with the month before as warm-up).
        settings: the env settings the positions trade under (:func:`economic_settings`).
        p_long: the position rule's threshold.
        promotion: bootstrap samples, ECE bins and the economic gate's settings.
        horizon_minutes: the labels' horizon (the bootstrap's block length).
        seed: the bootstrap's and the matched random policies' seed.
        trials: what the deflated Sharpe ratio deflates for.
        champion: the champion's predictions on this split, or None.
        control: a planted-edge synthetic market's options (adds the oracle), or None.
    """
    if len(model) == 0:
        raise DirectionEvaluationError("no prediction on this split")
    for name, frame in baselines.items():
        _aligned(model, frame, name)
    bins = promotion.ece_bins
    models = {MODEL: _forecast(model, bins)}
    models.update({name: _forecast(frame, bins) for name, frame in baselines.items()})
    if champion is not None:
        shared = champion[champion["ts"].isin(model["ts"])]
        if len(shared) and (~np.isnan(shared["label"].to_numpy(dtype=np.float64))).any():
            models[CHAMPION] = _forecast(shared, bins)
    difference = accuracy_difference(model, baselines, horizon_minutes=horizon_minutes,
                                     samples=promotion.bootstrap_samples, seed=seed)

    cfg = walk_config(settings)
    data = MarketData.from_frame(inputs.frame, cfg)
    start = int(np.searchsorted(data.ts_ms, inputs.start_ms))
    walk_ts = plan_walk(data, cfg, start).ts_ms
    model_ts = ts_millis(model["ts"])

    def path(frame: pd.DataFrame) -> tuple[np.ndarray, int]:
        return walk_targets(ts_millis(frame["ts"]),
                            position_targets(frame["p_up"].to_numpy(dtype=np.float64), p_long),
                            walk_ts)

    agent_path, traded = path(model)
    rival = None
    if champion is not None:
        rival = Rival(inputs, settings, Target(path(champion)[0]))
    scored = score_split(inputs, settings, Target(agent_path), gate=promotion.economic,
                         seed=seed, trials=trials, rival=rival, control=control)
    # the classification baselines' own positions, for reference (one kernel pass)
    played = run_policies(data, cfg, {name: Target(path(frame)[0])
                                      for name, frame in baselines.items()}, start)
    policies = dict(scored.result.policies)
    policies.update({name: compute_metrics(Track.of(run),
                                           bootstrap_samples=promotion.economic.bootstrap_samples,
                                           seed=seed)
                     for name, run in played.items()})
    economic = scored.result.model_copy(update={"policies": policies})
    result = DirectionSplit(
        samples=len(model), first_ts=iso_utc(int(model_ts[0])), last_ts=iso_utc(int(model_ts[-1])),
        models=models, accuracy_vs_best_baseline=difference, traded_predictions=traded,
        untraded_predictions=len(model) - traded, economic=economic)
    return ScoredDirectionSplit(result, scored.runs)


# -- the evaluation -----------------------------------------------------------------------------
def evaluate_direction(predictions: pd.DataFrame, baselines: Mapping[str, pd.DataFrame], *,
                       market: str, splits: Mapping[str, SplitInputs],
                       economic: EconomicSettings, promotion: DirectionPromotion,
                       horizon_minutes: int, seed: int = 0, eligible: bool = True,
                       eligibility: str = "", model_key: str | None = None,
                       run_id: str | None = None, dagster_run_id: str | None = None,
                       baseline_fit: BaselineFit | None = None,
                       champion: DirectionChampion | None = None, trials: Trials | None = None,
                       control: SyntheticOptions | None = None,
                       exclude_column: str | None = WARMUP_COLUMN,
                       market_costs: Mapping[str, float] | None = None) -> DirectionEvaluation:
    """Score every split of ``predictions`` for ``market`` against ``baselines`` and judge the
    gate on validation (see the module docstring).

    Args:
        predictions: the model's ``DirectionPredictions`` (other markets' rows are ignored).
        baselines: name -> the baselines' forecasts for the same samples
            (:meth:`tradecore_lib.direction.baselines.Baselines.predict`).
        market: the market evaluated.
        splits: split name -> its candles + features
            (:func:`tradecore_lib.evaluation.evaluate.load_split`): the economic walk's bars.
            Must hold "validation"; "test" is scored when the predictions have it.
        economic: the position rule (``p_long``) and the env preset it trades under.
        promotion: the gate's limits, bootstrap samples and ECE bins.
        horizon_minutes: the labels' horizon.
        seed: seed of the bootstraps and the matched random policies.
        eligible, eligibility: whether the preset may be promoted, and why not.
        model_key, run_id, dagster_run_id, baseline_fit: recorded as they are.
        champion: the current champion (scored on the same samples and walk), or None.
        trials: the deflated Sharpe's trials (None: this model alone).
        control: the options of a planted-edge synthetic market (adds the oracle), or None.
        exclude_column: the frame's warm-up marker (rows the walk never decides on).
        market_costs: the market's env overrides (its trading fees and holding costs,
            :meth:`~tradecore_lib.markets.Market.env_overrides`); the walk pays them.

    Raises:
        DirectionEvaluationError: no validation predictions, a split without its frame,
            baselines not on the model's samples.
    """
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown or not baselines:
        raise DirectionEvaluationError(f"baselines {sorted(baselines)}: give some of "
                                       f"{list(BASELINES)}")
    settings = economic_settings(economic, exclude_column, market_costs)
    trials = trials or Trials(count=1)
    scored: dict[str, ScoredDirectionSplit] = {}
    champion_note = None
    if champion is not None:
        champion_note = ChampionNote(model_name=champion.model_name,
                                     model_version=champion.model_version,
                                     run_id=champion.run_id,
                                     scored=champion.predictions is not None,
                                     note=champion.note or (
                                         f"scored on the same samples and walk as "
                                         f"{CHAMPION!r} / {CHAMPION_POLICY!r}"
                                         if champion.predictions is not None else ""))
    for split in SPLITS:
        model = _split_rows(predictions, market, split, "predictions")
        if len(model) == 0:
            if split == SPLITS[0]:
                raise DirectionEvaluationError(f"{market}: no {split} prediction to judge")
            continue
        if split not in splits:
            raise DirectionEvaluationError(f"{market}: {split} predictions but no {split} "
                                           "frame for the economic check")
        theirs = {name: _split_rows(frame, market, split, f"baseline {name!r}")
                  for name, frame in baselines.items()}
        rival = None
        if champion is not None and champion.predictions is not None:
            rival = _split_rows(champion.predictions, market, split, "champion predictions")
        scored[split] = score_direction_split(
            model, theirs, splits[split], settings=settings, p_long=economic.p_long,
            promotion=promotion, horizon_minutes=horizon_minutes, seed=seed, trials=trials,
            champion=rival, control=control)
    results = {split: s.result for split, s in scored.items()}
    verdict = judge_direction(results, promotion, eligible=eligible, eligibility=eligibility,
                              run_id=run_id or "")
    summary = DirectionEvaluationSummary(
        market=market, model_key=model_key, run_id=run_id, dagster_run_id=dagster_run_id,
        horizon_minutes=horizon_minutes, p_long=economic.p_long, env=settings,
        promotion=promotion, baseline_fit=baseline_fit, champion=champion_note,
        splits=results, verdict=verdict, generated_at=iso_utc(utc_now_ms()))
    title = f"{market}{f' run {run_id}' if run_id else ''}"
    curves = {split: {name: s.runs[name] for name in CHARTED} for split, s in scored.items()}
    return DirectionEvaluation(
        summary=summary, reliability_png=reliability_png(summary, f"{title}: reliability"),
        equity_png=equity_png(curves, f"{title}: direction model's positions vs baselines"))


# -- charts -------------------------------------------------------------------------------------
_COLORS = {MODEL: "#d62728", "majority": "#7f7f7f", "persistence": "#2ca02c",
           "logistic": "#1f77b4", CHAMPION: "#9467bd"}


def reliability_png(summary: DirectionEvaluationSummary, title: str,
                    forecasters: Sequence[str] | None = None) -> bytes:
    """PNG bytes: one column per split; top the reliability diagram (observed frequency of up
    against the mean p_up of each non-empty bin, the diagonal is perfect calibration) of the
    model and its baselines, bottom the model's samples per bin."""
    plt = pyplot()
    splits = summary.splits
    fig, axes = plt.subplots(2, len(splits), figsize=(5.0 * len(splits), 5.5), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]})
    for col, (split, s) in enumerate(splits.items()):
        top, bottom = axes[0][col], axes[1][col]
        top.plot([0, 1], [0, 1], color="black", linewidth=0.6, linestyle="--")
        for name in forecasters or list(s.models):
            if name not in s.models:
                continue
            scores = s.models[name].scores
            bins = [b for b in scores.reliability if b.count]
            top.plot([b.mean_p for b in bins], [b.observed for b in bins], marker="o",
                     markersize=3, label=f"{name} (ECE {scores.ece:.3f})",
                     color=_COLORS.get(name), linewidth=1.6 if name == MODEL else 0.9)
        model = s.models[MODEL].scores.reliability
        bottom.bar([(b.low + b.high) / 2 for b in model], [b.count for b in model],
                   width=0.9 / len(model), color=_COLORS[MODEL])
        top.set_title(split, fontsize=10)
        top.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean p_up", ylabel="observed up frequency")
        top.grid(alpha=0.3)
        top.legend(fontsize=7, loc="upper left")
        bottom.set(xlim=(0, 1), xlabel="p_up bin", ylabel="samples")
        bottom.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return png(fig)
