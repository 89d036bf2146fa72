"""Statistics of equity curves: exact identities where they exist, bootstrap behaviour, and
matched random baselines that match the agent's trades exactly."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradecore_lib.evaluation.stats import (
    DAY_MS,
    bar_returns,
    bars_per_year,
    bootstrap_sharpe,
    bootstrap_sharpe_difference,
    daily_returns,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    matched_random_positions,
    p_value,
    percentile_of,
    performance,
    probabilistic_sharpe_ratio,
    sharpe,
    stationary_bootstrap_indices,
    trades_of,
)

MINUTE_MS = 60_000
START_MS = 1_706_745_600_000  # 2024-02-01 00:00 UTC


def daily_sample(seed: int, n: int = 60, mean: float = 0.002, vol: float = 0.02) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, vol, n)


# --- returns -------------------------------------------------------------------------------------


def test_bars_per_year_of_one_minute_bars():
    ts = START_MS + MINUTE_MS * np.arange(100)
    assert bars_per_year(ts) == 525_600.0


def test_bar_returns_with_and_without_the_initial_equity():
    equity = np.array([110.0, 121.0, 108.9])
    np.testing.assert_allclose(bar_returns(equity, 100.0), [0.1, 0.1, -0.1])
    np.testing.assert_allclose(bar_returns(equity), [0.1, -0.1])


def test_daily_returns_compound_to_the_curve_and_fill_calendar_days():
    rng = np.random.default_rng(1)
    minutes = np.arange(3 * 1440)
    keep = (minutes < 1000) | (minutes >= 2 * 1440 + 5)  # 2024-02-02 has no bars at all
    ts = START_MS + MINUTE_MS * minutes[keep]
    equity = 1000.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, keep.sum())))
    days = daily_returns(ts, equity, initial_equity=1000.0)
    assert list(days.index) == list(pd.date_range("2024-02-01", periods=3, freq="D", tz="UTC"))
    assert days.iloc[1] == 0.0  # no bars: the equity did not move
    assert np.prod(1.0 + days.to_numpy()) == pytest.approx(equity[-1] / 1000.0, rel=1e-12)
    # The first day ends at its last bar (00:00 + 999 minutes), a bar opening at 23:59 counts
    # for the day it opened in.
    assert days.iloc[0] == pytest.approx(equity[999] / 1000.0 - 1.0, rel=1e-12)
    late = daily_returns(np.array([START_MS + DAY_MS - MINUTE_MS]), np.array([1010.0]), 1000.0)
    assert len(late) == 1 and late.index[0] == pd.Timestamp("2024-02-01", tz="UTC")


def test_daily_returns_without_initial_equity_start_at_the_first_mark():
    ts = START_MS + DAY_MS * np.arange(3)
    days = daily_returns(ts, np.array([100.0, 110.0, 99.0]))
    np.testing.assert_allclose(days.to_numpy(), [0.0, 0.1, -0.1])
    assert daily_returns(np.array([], dtype=np.int64), np.array([])).empty


# --- standard metrics ------------------------------------------------------------------------


def test_sharpe_of_a_constant_series_and_of_columns():
    assert sharpe(np.full(30, 0.001)) == np.inf
    assert sharpe(np.full(30, -0.001)) == -np.inf
    assert np.isnan(sharpe(np.zeros(30)))
    values = daily_sample(0)
    expected = values.mean() / values.std(ddof=1) * np.sqrt(365)
    assert sharpe(values) == pytest.approx(expected, rel=1e-12)
    columns = np.column_stack([values, 2.0 * values, -values])
    np.testing.assert_allclose(sharpe(columns), [expected, expected, -expected], rtol=1e-12)


def test_performance_reads_as_its_definitions():
    returns = np.array([0.1, -0.5, 0.2, 0.0])
    perf = performance(returns, periods_per_year=365)
    assert perf.total_return == pytest.approx(1.1 * 0.5 * 1.2 - 1.0)
    assert perf.max_drawdown == pytest.approx(0.5)
    assert perf.sharpe == pytest.approx(sharpe(returns))
    assert perf.annual_return == pytest.approx((1.1 * 0.5 * 1.2) ** (365 / 4) - 1.0)
    assert set(perf.as_dict()) >= {"sharpe", "sortino", "calmar", "annual_volatility"}


# --- bootstrap -------------------------------------------------------------------------------


def test_stationary_bootstrap_indices_are_blocks_that_wrap():
    idx = stationary_bootstrap_indices(50, 400, 5.0, np.random.default_rng(0))
    assert idx.shape == (400, 50) and idx.min() >= 0 and idx.max() < 50
    steps = (np.diff(idx, axis=1) % 50) == 1
    # A step continues the block with probability 1 - 1/5 (plus chance restarts at the next row).
    assert 0.78 < steps.mean() < 0.84
    assert np.array_equal(idx, stationary_bootstrap_indices(50, 400, 5.0,
                                                            np.random.default_rng(0)))
    with pytest.raises(ValueError, match="mean_block"):
        stationary_bootstrap_indices(50, 10, 0.5, np.random.default_rng(0))


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    for seed in range(20):
        values = daily_sample(seed, n=31)
        interval = bootstrap_sharpe(values, samples=500, seed=seed)
        assert interval.low < interval.estimate < interval.high
        assert interval.estimate == pytest.approx(sharpe(values))
    values = daily_sample(0, n=31)
    assert bootstrap_sharpe(values, samples=300, seed=4) == bootstrap_sharpe(values, samples=300,
                                                                              seed=4)
    narrow = bootstrap_sharpe(daily_sample(0, n=365), samples=500)
    wide = bootstrap_sharpe(daily_sample(0, n=30), samples=500)
    assert narrow.high - narrow.low < wide.high - wide.low


def test_paired_difference_cancels_the_shared_market():
    market = daily_sample(3, n=60, mean=0.0, vol=0.03)
    skill = np.random.default_rng(9).normal(0.004, 0.004, 60)
    agent = market + skill
    difference = bootstrap_sharpe_difference(agent, market, samples=1000, seed=1)
    assert difference.estimate == pytest.approx(sharpe(agent) - sharpe(market))
    assert difference.low < difference.estimate < difference.high
    # Against itself the difference is exactly 0 in every replicate.
    same = bootstrap_sharpe_difference(agent, agent, samples=200)
    assert same.low == same.high == same.estimate == 0.0
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        bootstrap_sharpe_difference(agent, market[:-1])
    a = pd.Series(agent, index=pd.date_range("2024-01-01", periods=60, tz="UTC"))
    with pytest.raises(ValueError, match="same periods"):
        bootstrap_sharpe_difference(a, a.shift(1, freq="D"))


# --- PSR / DSR -------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(10, 400))
def test_psr_at_the_estimate_is_one_half(seed, n):
    values = daily_sample(seed, n=n)
    assert probabilistic_sharpe_ratio(values, sharpe(values)) == pytest.approx(0.5, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 4.0))
def test_dsr_with_one_trial_is_psr_at_zero(seed, variance):
    values = daily_sample(seed)
    assert deflated_sharpe_ratio(values, 1, variance) == probabilistic_sharpe_ratio(values, 0.0)


def test_psr_matches_its_formula_and_falls_with_the_benchmark():
    values = daily_sample(5, n=90)
    sr = values.mean() / values.std(ddof=1)
    centred = values - values.mean()
    skew = (centred**3).mean() / (centred**2).mean() ** 1.5
    kurt = (centred**4).mean() / (centred**2).mean() ** 2
    from scipy.stats import norm

    expected = norm.cdf((sr - 1.0 / np.sqrt(365)) * np.sqrt(89)
                        / np.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert probabilistic_sharpe_ratio(values, 1.0) == pytest.approx(expected, rel=1e-12)
    benchmarks = np.linspace(-2, 6, 9)
    psr = [probabilistic_sharpe_ratio(values, b) for b in benchmarks]
    assert all(a > b for a, b in zip(psr, psr[1:], strict=False))
    assert np.isnan(probabilistic_sharpe_ratio(np.zeros(30)))
    assert np.isnan(probabilistic_sharpe_ratio(values[:2]))


def test_more_trials_deflate_more():
    assert expected_max_sharpe(1, 2.0) == 0.0
    maxima = [expected_max_sharpe(n, 1.0) for n in (2, 10, 100, 1000)]
    assert all(a < b for a, b in zip(maxima, maxima[1:], strict=False))
    # Known value: 100 standard-normal trials have an expected maximum of about 2.5.
    assert maxima[2] == pytest.approx(2.5, abs=0.05)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * maxima[2])
    values = daily_sample(8, n=120, mean=0.004)
    dsr = [deflated_sharpe_ratio(values, n, 1.0) for n in (1, 10, 100)]
    assert dsr[0] > dsr[1] > dsr[2]
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 1.0)


# --- matched random --------------------------------------------------------------------------


def agent_path(seed: int, length: int = 3000) -> np.ndarray:
    """A position path with flips, re-entries on the same side and a trade open at the end."""
    rng = np.random.default_rng(seed)
    out = np.zeros(length, dtype=np.int8)
    t = int(rng.integers(0, 20))
    while t < length:
        hold = int(rng.geometric(1 / 40))
        out[t : t + hold] = rng.choice([-1, 1], p=[0.3, 0.7])
        t += hold + int(rng.choice([0, 0, 1, 5, 60]))
    return out


def test_trades_of_a_path_with_flips():
    path = np.array([0, 1, 1, -1, -1, -1, 0, 1, 0, 0, -1])
    trades = trades_of(path)
    np.testing.assert_array_equal(trades.start, [1, 3, 7, 10])
    np.testing.assert_array_equal(trades.length, [2, 3, 1, 1])
    np.testing.assert_array_equal(trades.side, [1, -1, 1, -1])
    sized = trades_of(path * 0.37)  # quantities: only the sign counts
    np.testing.assert_array_equal(sized.length, trades.length)
    assert len(trades_of(np.zeros(10))) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matched_random_match_count_holding_times_and_sides(seed):
    agent = agent_path(seed)
    reference = trades_of(agent)
    random = matched_random_positions(agent, n=100, seed=seed)
    assert random.shape == (100, len(agent)) and random.dtype == np.int8
    for row in random:
        trades = trades_of(row)
        assert len(trades) == len(reference)
        np.testing.assert_array_equal(np.sort(trades.length), np.sort(reference.length))
        assert (trades.side == 1).sum() == (reference.side == 1).sum()
        assert (trades.side == -1).sum() == (reference.side == -1).sum()
    # Placed at random: rows differ from each other and from the agent.
    assert len({row.tobytes() for row in random}) == 100
    assert not any(np.array_equal(row, agent) for row in random)
    # Seeded per row: the same seed gives the same rows, a prefix of a larger draw.
    np.testing.assert_array_equal(matched_random_positions(agent, n=10, seed=seed), random[:10])


def test_matched_random_of_an_always_invested_agent_and_a_flat_one():
    # No flat bar at all: every trade flips, the random ones must alternate sides too.
    agent = np.repeat(np.array([1, -1, 1, -1, 1, -1], dtype=np.int8), [5, 7, 3, 9, 2, 4])
    for row in matched_random_positions(agent, n=20):
        assert (row != 0).all()
        np.testing.assert_array_equal(np.sort(trades_of(row).length), [2, 3, 4, 5, 7, 9])
    assert not matched_random_positions(np.zeros(50), n=5).any()


def test_percentile_and_p_value():
    population = np.arange(1.0, 101.0)
    assert percentile_of(population.max(), population) == 100.0
    assert percentile_of(0.0, population) == 0.0
    assert percentile_of(95.0, population) == 95.0
    assert p_value(1_000.0, population) == pytest.approx(1 / 101)
    assert p_value(-1.0, population) == 1.0
    assert p_value(95.0, population) == pytest.approx(7 / 101)
