"""Statistics of equity curves: what a quant reads next to a backtest.

* **Returns**: per-bar returns of an equity curve and daily returns on UTC calendar days.
* **Standard metrics** (total and annual return, volatility, Sharpe, Sortino, maximum drawdown,
  Calmar) come from `empyrical-reloaded <https://github.com/stefan-jansen/empyrical-reloaded>`_,
  the maintained fork of Quantopian's empyrical (:func:`performance`, :func:`sharpe`).
* **What no library has**, here: seeded stationary-bootstrap intervals of the Sharpe ratio and of
  a paired Sharpe *difference* (agent minus baseline on the same days), the probabilistic Sharpe
  ratio and the deflated Sharpe ratio (Bailey & López de Prado), and **matched random
  baselines**: random position sequences with the agent's number of trades, holding times and
  long/short mix, placed at random times, with the agent's percentile among them.

Conventions: returns are simple (``equity[t] / equity[t-1] - 1``); the risk-free rate is 0;
Sharpe is ``mean / std (ddof=1) * sqrt(periods_per_year)``. Crypto trades every day, so daily
figures annualize with :data:`DAYS_PER_YEAR` = 365 and per-bar figures with the bars per year the
timestamps imply (:func:`bars_per_year`, 525,600 for one-minute bars). Position sequences follow
:mod:`tradecore_lib.evaluation.controls`: ``(T,)`` int8 in {-1, 0, 1}, element ``t`` the position
held during row ``t``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import empyrical
import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

DAYS_PER_YEAR = 365
DAY_MS = 86_400_000
DEFAULT_BOOTSTRAP_SAMPLES = 2_000
DEFAULT_LEVEL = 0.95


# --- returns ---------------------------------------------------------------------------------


def bars_per_year(ts_ms: np.ndarray) -> float:
    """Bars per year implied by the median spacing of ``ts_ms`` (epoch ms): 525,600 for
    one-minute bars (365-day years, the market never closes)."""
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    if len(ts_ms) < 2:
        raise ValueError("bars_per_year needs at least two timestamps")
    spacing = float(np.median(np.diff(ts_ms)))
    if spacing <= 0:
        raise ValueError("timestamps must increase")
    return DAYS_PER_YEAR * DAY_MS / spacing


def bar_returns(equity: np.ndarray, initial_equity: float | None = None) -> np.ndarray:
    """Simple return of each bar of an equity curve marked at bar closes.

    Args:
        equity: (T,) equity after each bar, quote currency.
        initial_equity: the equity before the first bar; None drops the first bar's return.

    Returns:
        (T,) returns with ``initial_equity``, else (T - 1,).
    """
    equity = np.asarray(equity, dtype=np.float64)
    if initial_equity is not None:
        equity = np.concatenate([[float(initial_equity)], equity])
    return equity[1:] / equity[:-1] - 1.0


def daily_returns(ts_ms: np.ndarray, equity: np.ndarray,
                  initial_equity: float | None = None) -> pd.Series:
    """Daily simple returns of an equity curve, one per UTC calendar day.

    Args:
        ts_ms: (T,) increasing bar open times, epoch ms; a bar belongs to the day it opens in.
        equity: (T,) equity at each bar's close, quote currency.
        initial_equity: the equity before the first bar; None measures the first day from
            its first bar's close.

    Returns:
        float64 Series indexed by UTC midnights, every calendar day from the first bar's to the
        last bar's (a day without bars holds the previous day's equity: return 0), named
        ``daily_return``: the day's last equity over the previous day's (or the start) - 1.
    """
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    equity = np.asarray(equity, dtype=np.float64)
    if ts_ms.shape != equity.shape or ts_ms.ndim != 1:
        raise ValueError(f"ts_ms {ts_ms.shape} and equity {equity.shape} must be equal 1-d shapes")
    if len(ts_ms) == 0:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC", name="day"),
                         dtype=np.float64, name="daily_return")
    day = ts_ms // DAY_MS
    last_of_day = np.flatnonzero(np.append(np.diff(day) != 0, True))
    days = np.arange(day[0], day[-1] + 1)
    # Forward-fill the closing equity over calendar days without bars.
    closing = equity[last_of_day][np.searchsorted(day[last_of_day], days, side="right") - 1]
    start = equity[0] if initial_equity is None else float(initial_equity)
    returns = closing / np.concatenate([[start], closing[:-1]]) - 1.0
    index = pd.to_datetime(days * DAY_MS, unit="ms", utc=True).rename("day")
    return pd.Series(returns, index=index, name="daily_return")


# --- standard metrics (empyrical) ---------------------------------------------------------------


@dataclass(frozen=True)
class Performance:
    """Standard metrics of one return series (see the module docstring for conventions).

    Attributes:
        periods: number of returns.
        periods_per_year: the annualization used.
        total_return: compounded return over the series (fraction).
        annual_return: compound annual growth rate (fraction).
        annual_volatility: standard deviation annualized by ``sqrt(periods_per_year)``.
        sharpe: annualized Sharpe ratio (inf / -inf for a constant non-zero series, NaN when
            undefined).
        sortino: annualized Sortino ratio (downside deviation, target 0).
        max_drawdown: largest fall from a running peak of the compounded curve (fraction >= 0).
        calmar: annual return / maximum drawdown (NaN without a drawdown).
    """

    periods: int
    periods_per_year: float
    total_return: float
    annual_return: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    calmar: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def performance(returns: np.ndarray | pd.Series, periods_per_year: float) -> Performance:
    """:class:`Performance` of ``returns`` (simple returns, ``periods_per_year`` of them a year)."""
    values = np.asarray(returns, dtype=np.float64)
    ann = float(periods_per_year)
    return Performance(
        periods=len(values),
        periods_per_year=ann,
        total_return=float(empyrical.cum_returns_final(values)) if len(values) else 0.0,
        annual_return=float(empyrical.annual_return(values, annualization=ann)),
        annual_volatility=float(empyrical.annual_volatility(values, annualization=ann)),
        sharpe=float(empyrical.sharpe_ratio(values, annualization=ann)),
        sortino=float(empyrical.sortino_ratio(values, annualization=ann)),
        max_drawdown=float(-empyrical.max_drawdown(values)) if len(values) else 0.0,
        calmar=float(empyrical.calmar_ratio(values, annualization=ann)),
    )


def sharpe(returns: np.ndarray | pd.Series,
           periods_per_year: float = DAYS_PER_YEAR) -> float | np.ndarray:
    """Annualized Sharpe ratio of ``returns``: (T,) gives a float, (T, K) one per column (K,).

    A constant series has zero dispersion: +inf or -inf when its mean is non-zero, NaN at 0.
    """
    values = np.asarray(returns, dtype=np.float64)
    out = empyrical.sharpe_ratio(values, annualization=float(periods_per_year))
    return float(out) if values.ndim == 1 else np.asarray(out, dtype=np.float64)


# --- bootstrap -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval around a point estimate.

    Attributes:
        estimate: the statistic on the data as observed.
        low, high: the ``level`` percentile interval of the bootstrap replicates.
        level: coverage, e.g. 0.95.
        samples: bootstrap replicates drawn.
        mean_block: mean block length of the stationary bootstrap (periods).
    """

    estimate: float
    low: float
    high: float
    level: float
    samples: int
    mean_block: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def default_mean_block(n: int) -> float:
    """Mean block length for ``n`` periods: ``n ** (1/3)`` (at least 1), the rate-optimal order
    for the stationary bootstrap's variance estimates (about 3 days for a month of days)."""
    return max(1.0, float(n) ** (1.0 / 3.0))


def stationary_bootstrap_indices(n: int, samples: int, mean_block: float,
                                 rng: np.random.Generator) -> np.ndarray:
    """(samples, n) int64 row indices of Politis & Romano's (1994) stationary bootstrap.

    Each replicate is a sequence of blocks of geometric length (mean ``mean_block``) starting at
    uniform positions and wrapping around the end, so the replicates keep the series'
    short-range dependence (volatility clustering, autocorrelation) and are stationary.
    """
    if n < 1 or samples < 1:
        raise ValueError(f"need n >= 1 and samples >= 1, got n={n}, samples={samples}")
    if mean_block < 1.0:
        raise ValueError(f"mean_block must be >= 1, got {mean_block}")
    starts = rng.integers(0, n, size=(samples, n))
    new_block = rng.random((samples, n)) < 1.0 / mean_block
    new_block[:, 0] = True
    position = np.arange(n)
    block_start = np.maximum.accumulate(np.where(new_block, position, 0), axis=1)
    offset = position - block_start
    return (np.take_along_axis(starts, block_start, axis=1) + offset) % n


def _interval(estimate: float, replicates: np.ndarray, level: float, mean_block: float) -> Interval:
    tail = (1.0 - level) / 2.0
    finite = replicates[~np.isnan(replicates)]
    if finite.size == 0:
        low = high = float("nan")
    else:
        low, high = (float(q) for q in np.quantile(finite, [tail, 1.0 - tail]))
    return Interval(estimate=float(estimate), low=low, high=high, level=level,
                    samples=len(replicates), mean_block=mean_block)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_sharpe(returns: np.ndarray | pd.Series, *,
                     periods_per_year: float = DAYS_PER_YEAR,
                     samples: int = DEFAULT_BOOTSTRAP_SAMPLES, level: float = DEFAULT_LEVEL,
                     mean_block: float | None = None, seed: int = 0) -> Interval:
    """Stationary-bootstrap percentile interval of the annualized Sharpe ratio of ``returns``
    (seeded: the same inputs give the same interval)."""
    _check_level(level)
    values = np.asarray(returns, dtype=np.float64)
    block = default_mean_block(len(values)) if mean_block is None else float(mean_block)
    idx = stationary_bootstrap_indices(len(values), samples, block, np.random.default_rng(seed))
    replicates = sharpe(values[idx].T, periods_per_year)
    return _interval(sharpe(values, periods_per_year), replicates, level, block)


def bootstrap_sharpe_difference(returns: np.ndarray | pd.Series,
                                baseline: np.ndarray | pd.Series, *,
                                periods_per_year: float = DAYS_PER_YEAR,
                                samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
                                level: float = DEFAULT_LEVEL, mean_block: float | None = None,
                                seed: int = 0) -> Interval:
    """Paired bootstrap interval of ``sharpe(returns) - sharpe(baseline)``.

    Both series must cover the same periods (days) in the same order; each replicate resamples
    the same periods from both, so what they share (the market's moves) cancels and the
    interval measures the difference only. ``low > 0`` at ``level = 0.95`` is the gate's
    "beats the baseline" evidence.
    """
    _check_level(level)
    if isinstance(returns, pd.Series) and isinstance(baseline, pd.Series) and not \
            returns.index.equals(baseline.index):
        raise ValueError("returns and baseline must cover the same periods (equal indexes)")
    a = np.asarray(returns, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"returns {a.shape} and baseline {b.shape} must be equal 1-d shapes")
    block = default_mean_block(len(a)) if mean_block is None else float(mean_block)
    idx = stationary_bootstrap_indices(len(a), samples, block, np.random.default_rng(seed))
    with np.errstate(invalid="ignore"):  # inf - inf in a degenerate replicate is NaN: dropped
        replicates = sharpe(a[idx].T, periods_per_year) - sharpe(b[idx].T, periods_per_year)
        estimate = sharpe(a, periods_per_year) - sharpe(b, periods_per_year)
    return _interval(estimate, replicates, level, block)


# --- probabilistic and deflated Sharpe --------------------------------------------------------


def probabilistic_sharpe_ratio(returns: np.ndarray | pd.Series, benchmark_sharpe: float = 0.0,
                               periods_per_year: float = DAYS_PER_YEAR) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (Bailey & López de
    Prado, 2012, "The Sharpe ratio efficient frontier"), accounting for the sample length and the
    returns' skewness and kurtosis:

        PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2))

    with ``SR``, ``SR*`` per period (``benchmark_sharpe`` is annualized like :func:`sharpe` and
    converted with ``periods_per_year``). 0.5 when the benchmark equals the estimate. NaN with
    fewer than 3 returns or zero dispersion.
    """
    values = np.asarray(returns, dtype=np.float64)
    n = len(values)
    if n < 3:
        return float("nan")
    per_period = sharpe(values, 1.0)
    if not np.isfinite(per_period):
        return float("nan")
    skew = float(scipy_stats.skew(values))
    kurtosis = float(scipy_stats.kurtosis(values, fisher=False))
    # With the (biased) sample moments kurtosis >= skew^2 + 1, so the variance term is >= 0.
    variance = 1.0 - skew * per_period + (kurtosis - 1.0) / 4.0 * per_period**2
    if variance <= 0.0:
        return float("nan")
    benchmark = float(benchmark_sharpe) / np.sqrt(float(periods_per_year))
    return float(scipy_stats.norm.cdf((per_period - benchmark) * np.sqrt(n - 1.0)
                                      / np.sqrt(variance)))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio among ``n_trials`` independent trials whose true Sharpe is 0
    and whose estimates vary with ``trial_sharpe_variance`` (Bailey & López de Prado, 2014):

        sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

    (gamma: the Euler-Mascheroni constant), in the units of the trials' Sharpes. 0 for one trial:
    nothing was selected.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if trial_sharpe_variance < 0:
        raise ValueError(f"trial_sharpe_variance must be >= 0, got {trial_sharpe_variance}")
    if n_trials == 1:
        return 0.0
    gamma = np.euler_gamma
    quantiles = ((1.0 - gamma) * scipy_stats.norm.ppf(1.0 - 1.0 / n_trials)
                 + gamma * scipy_stats.norm.ppf(1.0 - 1.0 / (n_trials * np.e)))
    return float(np.sqrt(trial_sharpe_variance) * quantiles)


def deflated_sharpe_ratio(returns: np.ndarray | pd.Series, n_trials: int,
                          trial_sharpe_variance: float,
                          periods_per_year: float = DAYS_PER_YEAR) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado, 2014): the
    :func:`probabilistic_sharpe_ratio` against the Sharpe the best of ``n_trials`` would show by
    luck (:func:`expected_max_sharpe`).

    Args:
        returns: the selected strategy's returns.
        n_trials: every configuration tried on this market (e.g. its training runs recorded in
            MLflow), the selected one included.
        trial_sharpe_variance: variance of the trials' annualized Sharpe ratios (in
            ``periods_per_year`` units, like :func:`sharpe`).

    Equals ``probabilistic_sharpe_ratio(returns, 0)`` for one trial.
    """
    return probabilistic_sharpe_ratio(
        returns, expected_max_sharpe(n_trials, trial_sharpe_variance), periods_per_year)


# --- matched random baselines ---------------------------------------------------------------


@dataclass(frozen=True)
class Trades:
    """The trades of a position sequence: maximal runs of one non-zero side.

    Attributes:
        start: (K,) int64 first row of each trade.
        length: (K,) int64 rows held (the holding time in bars).
        side: (K,) int8, +1 long, -1 short.
    """

    start: np.ndarray
    length: np.ndarray
    side: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def trades_of(positions: np.ndarray) -> Trades:
    """The :class:`Trades` of ``positions`` (T,): only the sign counts, so a sized position path
    (quantities) works too; a flip from long to short ends one trade and starts another."""
    side = np.sign(np.asarray(positions, dtype=np.float64)).astype(np.int8)
    change = np.flatnonzero(np.diff(side, prepend=np.int8(0)) != 0)
    bounds = np.append(change, len(side))
    run_side = side[change]
    held = run_side != 0
    return Trades(start=change[held].astype(np.int64),
                  length=np.diff(bounds)[held].astype(np.int64),
                  side=run_side[held])


def _random_placement(trades: Trades, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """One (n_rows,) int8 sequence: the trades' lengths and sides each permuted, at random gaps."""
    k = len(trades)
    lengths = rng.permutation(trades.length)
    free = n_rows - int(lengths.sum())
    # Two trades of the same side need a flat bar between them, or they would merge into one.
    sides = trades.side
    for _ in range(100):
        candidate = rng.permutation(trades.side)
        if int((candidate[1:] == candidate[:-1]).sum()) <= free:
            sides = candidate
            break
    separators = np.concatenate([[0], (sides[1:] == sides[:-1]).astype(np.int64), [0]])
    extra = free - int(separators.sum())
    # Uniform composition of the remaining flat bars into k + 1 gaps (stars and bars).
    cuts = np.sort(rng.choice(extra + k, size=k, replace=False))
    gaps = np.diff(np.concatenate([[-1], cuts, [extra + k]])) - 1 + separators
    values = np.zeros(2 * k + 1, dtype=np.int8)
    values[1::2] = sides
    counts = np.empty(2 * k + 1, dtype=np.int64)
    counts[0::2] = gaps
    counts[1::2] = lengths
    return np.repeat(values, counts)


def matched_random_positions(positions: np.ndarray, n: int = 100, seed: int = 0) -> np.ndarray:
    """(n, T) int8 random position sequences matched to ``positions`` (T,).

    Each has exactly the agent's number of trades, the same multiset of holding times (a random
    permutation of the agent's) and the same number of long and short trades (a permutation of
    its sides), placed at uniformly random non-overlapping times with at least one flat bar
    between two trades of the same side. They trade as often and hold as long as the agent, so
    they pay the same fees: what separates the agent from them is when it trades.
    Row ``i`` depends only on ``(seed, i)``.
    """
    trades = trades_of(positions)
    n_rows = len(positions)
    out = np.zeros((n, n_rows), dtype=np.int8)
    if len(trades) == 0:
        return out
    for i in range(n):
        out[i] = _random_placement(trades, n_rows, np.random.default_rng([seed, i]))
    return out


def percentile_of(value: float, population: np.ndarray) -> float:
    """Percent of ``population`` at or below ``value`` (0..100; 100 for its maximum)."""
    population = np.asarray(population, dtype=np.float64)
    if population.size == 0:
        raise ValueError("percentile_of needs a non-empty population")
    return float(scipy_stats.percentileofscore(population, value, kind="weak"))


def p_value(value: float, population: np.ndarray) -> float:
    """Monte Carlo p-value of ``value`` being this high by chance: ``(1 + #(population >=
    value)) / (1 + n)`` (never 0; 1 / (n + 1) when ``value`` beats every member)."""
    population = np.asarray(population, dtype=np.float64)
    if population.size == 0:
        raise ValueError("p_value needs a non-empty population")
    return float((1 + int((population >= value).sum())) / (1 + population.size))
