"""From backtest walks to metric records (:mod:`tradecore_lib.evaluation.metrics`).

A :class:`Track` is what the metrics need of one policy's walk over one split: per-bar and
daily returns and the walk's totals (no positions or fills), so the 100+ matched random walks
of a split can be kept for the overall rows without their arrays of fills. Consecutive tracks
(the folds of a walk-forward, oldest first) chain into one record with
:func:`compute_metrics`. The standard ratios come from empyrical through
:mod:`tradecore_lib.evaluation.stats`; what is computed here is only what they are computed on.
Undefined ratios are None (see :mod:`tradecore_lib.evaluation.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradecore_lib.evaluation import stats
from tradecore_lib.evaluation.backtest import PolicyRun
from tradecore_lib.evaluation.controls import decision_targets
from tradecore_lib.evaluation.metrics import (
    AgentStatistics,
    MatchedRandom,
    PolicyMetrics,
    SharpeDifference,
    Trials,
    comparable_sharpe,
)

LEVEL = 0.95
# PolicyMetrics fields counted in whole units (rounded after a quantile).
_COUNTS = frozenset(name for name, field in PolicyMetrics.model_fields.items()
                    if field.annotation is int)


def finite(value: float) -> float | None:
    """``value`` as a float, None when NaN or infinite (what a record can hold)."""
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Track:
    """One policy's walk over one split, reduced to what its metrics need.

    Attributes:
        ts_ms: (T,) int64 bar open times, epoch ms.
        returns: (T,) float64 simple return of each bar (the first against the initial
            equity).
        daily: UTC daily returns (:func:`~tradecore_lib.evaluation.stats.daily_returns`).
        exposed_bars: bars ending with an open position.
        trade_pnls: (K,) float64 net PnL of each round trip, quote currency.
        turnover: traded notional / mean equity.
        fees, borrow_cost, funding_cost: totals, quote currency.
        kill_switch_hits, guardrail_breaches: counts.
    """

    ts_ms: np.ndarray
    returns: np.ndarray
    daily: pd.Series
    exposed_bars: int
    trade_pnls: np.ndarray
    turnover: float
    fees: float
    borrow_cost: float
    funding_cost: float
    kill_switch_hits: int
    guardrail_breaches: int

    @classmethod
    def of(cls, run: PolicyRun) -> Track:
        """The track of a backtest walk."""
        equity = np.asarray(run.equity, dtype=np.float64)
        mean_equity = float(np.mean(np.concatenate([[run.initial_equity], equity])))
        return cls(
            ts_ms=np.asarray(run.ts_ms, dtype=np.int64),
            returns=stats.bar_returns(equity, run.initial_equity),
            daily=stats.daily_returns(run.ts_ms, equity, run.initial_equity),
            exposed_bars=int(np.count_nonzero(run.position)),
            trade_pnls=np.asarray(run.trade_pnls, dtype=np.float64),
            turnover=run.traded_notional / mean_equity,
            fees=float(run.fees), borrow_cost=float(run.borrow_cost),
            funding_cost=float(run.funding_cost), kill_switch_hits=int(run.kill_switch_hits),
            guardrail_breaches=int(run.guardrail_breaches),
        )


def chained_daily(tracks: Sequence[Track]) -> pd.Series:
    """The daily returns of consecutive tracks, one after the other (their days must not
    overlap: each fold's split covers its own months)."""
    return pd.concat([t.daily for t in tracks]) if len(tracks) > 1 else tracks[0].daily


def compute_metrics(tracks: Track | Sequence[Track], *, bootstrap_samples: int = 0,
                    seed: int = 0) -> PolicyMetrics:
    """The :class:`PolicyMetrics` of one track, or of consecutive tracks chained (equity
    carried from one to the next).

    Args:
        tracks: one :class:`Track` or several, oldest first, on disjoint days.
        bootstrap_samples: replicates of the daily Sharpe's stationary-bootstrap 95 %
            interval; 0 computes none (the matched random policies).
        seed: the bootstrap's seed.
    """
    tracks = [tracks] if isinstance(tracks, Track) else list(tracks)
    returns = np.concatenate([t.returns for t in tracks])
    daily = chained_daily(tracks)
    per_bar = stats.performance(returns, stats.bars_per_year(tracks[0].ts_ms)) \
        if len(returns) > 1 else None
    per_day = stats.performance(daily, stats.DAYS_PER_YEAR)
    low = high = None
    if bootstrap_samples and len(daily) > 1:
        interval = stats.bootstrap_sharpe(daily, samples=bootstrap_samples, level=LEVEL,
                                          seed=seed)
        low, high = finite(interval.low), finite(interval.high)
    pnls = np.concatenate([t.trade_pnls for t in tracks])
    return PolicyMetrics(
        total_return=float(np.prod(1.0 + returns) - 1.0),
        daily_sharpe=finite(per_day.sharpe),
        daily_sharpe_low=low,
        daily_sharpe_high=high,
        bar_sharpe=None if per_bar is None else finite(per_bar.sharpe),
        sortino=finite(per_day.sortino),
        max_drawdown=0.0 if per_bar is None else max(0.0, per_bar.max_drawdown),
        exposure=sum(t.exposed_bars for t in tracks) / max(len(returns), 1),
        trades=len(pnls),
        win_rate=float(np.mean(pnls > 0.0)) if len(pnls) else None,
        turnover=sum(t.turnover for t in tracks),
        fees=sum(t.fees for t in tracks),
        borrow_cost=sum(t.borrow_cost for t in tracks),
        funding_cost=sum(t.funding_cost for t in tracks),
        kill_switch_hits=sum(t.kill_switch_hits for t in tracks),
        guardrail_breaches=sum(t.guardrail_breaches for t in tracks),
        bars=len(returns),
        days=len(daily),
    )


def quantile_metrics(population: Sequence[PolicyMetrics], q: float) -> PolicyMetrics:
    """The ``q`` quantile (0..1, linear interpolation) of each metric over ``population``,
    taken field by field (undefined values left out; None where all are); counts rounded to
    whole units."""
    fields = {}
    for name in PolicyMetrics.model_fields:
        values = np.array([v for m in population if (v := getattr(m, name)) is not None],
                          dtype=np.float64)
        value = float(np.quantile(values, q)) if values.size else None
        fields[name] = round(value) if name in _COUNTS and value is not None else value
    return PolicyMetrics(**fields)


def matched_random_targets(agent: PolicyRun, n: int, seed: int) -> tuple[np.ndarray, float]:
    """(n, T) targets of ``n`` random policies matched to ``agent``'s walk, and the target
    fraction they trade.

    The agent's position sequence is the sign of the position it held after each bar (the
    convention of :mod:`tradecore_lib.evaluation.controls`); the random sequences have its
    number of trades, its holding times and its long/short mix
    (:func:`~tradecore_lib.evaluation.stats.matched_random_positions`), and trade the median
    magnitude of the agent's non-zero targets (1 for short/flat/long presets) so that
    RiskGuard sizes them as it sized the agent.
    """
    positions = np.sign(agent.position).astype(np.int8)
    sequences = stats.matched_random_positions(positions, n=n, seed=seed)
    decided = np.abs(agent.target[agent.target != 0.0])
    magnitude = float(np.median(decided)) if decided.size else 1.0
    return decision_targets(sequences) * magnitude, magnitude


def matched_random_summary(tracks: Sequence[Sequence[Track]], *, seed: int, agent_trades: int,
                           target: float) -> MatchedRandom:
    """The :class:`MatchedRandom` record of a population: ``tracks[i]`` is policy i's track
    (or consecutive tracks, chained like :func:`compute_metrics`)."""
    population = [compute_metrics(policy) for policy in tracks]
    return MatchedRandom(
        policies=len(population), seed=seed, agent_trades=agent_trades, target=target,
        daily_sharpes=tuple(m.daily_sharpe for m in population),
        median=quantile_metrics(population, 0.5), p95=quantile_metrics(population, 0.95),
    )


def agent_statistics(agent: Track, buy_and_hold: Track, random_sharpes: Sequence[float | None],
                     *, trials: Trials, bootstrap_samples: int, seed: int) -> AgentStatistics:
    """The agent's :class:`AgentStatistics` on one split (recovery is set by the caller).

    The DSR's trial variance is the variance of the MLflow trials' recorded validation
    Sharpes when at least two are known; otherwise the variance of the matched random
    policies' daily Sharpes on this split: no-skill trials that trade as the agent does, so
    their spread is what luck alone produces at its turnover.
    """
    daily = agent.daily
    known = [s for s in trials.sharpes if math.isfinite(s)]
    population = np.array([comparable_sharpe(s) for s in random_sharpes], dtype=np.float64)
    if len(known) >= 2:
        variance, source = float(np.var(known, ddof=1)), \
            f"MLflow: validation daily Sharpes of {len(known)} recorded runs"
    elif len(population) >= 2:
        variance, source = float(np.var(population, ddof=1)), \
            f"{len(population)} matched random policies on this split (fewer than 2 " \
            "runs with a recorded validation Sharpe in MLflow)"
    else:
        variance, source = None, "none: no recorded runs and no matched random policies"
    difference = stats.bootstrap_sharpe_difference(
        daily, buy_and_hold.daily, samples=bootstrap_samples, level=LEVEL, seed=seed)
    sharpe = comparable_sharpe(finite(stats.sharpe(daily)))
    dsr = None if variance is None else finite(stats.deflated_sharpe_ratio(
        daily, trials.count, variance))
    return AgentStatistics(
        psr=finite(stats.probabilistic_sharpe_ratio(daily)),
        dsr=dsr,
        n_trials=trials.count,
        trial_sharpe_variance=variance,
        trial_variance_source=source,
        sharpe_vs_buy_and_hold=SharpeDifference(
            estimate=finite(difference.estimate), low=finite(difference.low),
            high=finite(difference.high), level=difference.level, samples=difference.samples,
            mean_block=difference.mean_block),
        random_percentile=stats.percentile_of(sharpe, population) if len(population) else 0.0,
        random_p_value=stats.p_value(sharpe, population) if len(population) else 1.0,
    )
