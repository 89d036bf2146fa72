"""Oracles of the control markets: causal timing, the documented profit net of costs, no profit
on the null, and recovery's identities."""

import numpy as np
import pytest

from tradecore_lib.evaluation.controls import (
    CandleBars,
    ControlError,
    decision_targets,
    next_bar_edge,
    oracle_positions,
    recovery,
)
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources.synthetic_generator import DAY_MS, SyntheticOptions, generate_month

MARKET = "synthetic_edge_usd"
# The default env preset's cost of trading one unit of equity: 5 bp taker fee + 1 bp slippage.
COST_PER_UNIT = 6e-4
LINEAR = SyntheticOptions(process="planted_linear", seed=5)
TEMPORAL = SyntheticOptions(process="planted_temporal", seed=5, edge_bps=1.5)
NULL = SyntheticOptions(process="null", seed=5)
FEB = Month(2024, 2)


def bars_of(options: SyntheticOptions) -> CandleBars:
    return CandleBars.from_table(generate_month(options, MARKET, FEB))


def net_log_return(positions: np.ndarray, bars: CandleBars) -> tuple[float, float]:
    """(gross, net) log return of holding ``positions[t]`` over row ``t`` at unit leverage,
    paying ``COST_PER_UNIT`` per unit traded: a frictional reference, not the engine. On the
    synthetic venue a row opens at the previous close, so row t's return is close-to-close."""
    returns = np.concatenate([[0.0], np.diff(np.log(bars.close))])
    gross = float((positions * returns).sum())
    traded = np.abs(np.diff(np.concatenate([[0.0], positions.astype(np.float64)]))).sum()
    return gross, gross - COST_PER_UNIT * float(traded)


@pytest.fixture(scope="module")
def months():
    return {name: bars_of(opts) for name, opts in
            (("linear", LINEAR), ("temporal", TEMPORAL), ("null", NULL))}


@pytest.mark.parametrize("form", ["linear", "temporal"])
def test_oracle_decides_from_rows_before_the_one_it_holds(months, form):
    opts = LINEAR if form == "linear" else TEMPORAL
    bars = months[form]
    positions = oracle_positions(bars, opts)
    assert positions.dtype == np.int8 and positions[0] == 0
    assert set(np.unique(positions)) <= {-1, 0, 1}
    rng = np.random.default_rng(0)
    for cut in rng.integers(100, len(bars.close) - 100, 20):
        # Scramble row `cut` and everything after it: positions up to row `cut` (decided after
        # rows <= cut - 1) cannot change.
        future = slice(int(cut), None)
        changed = CandleBars(
            bars.ts_ms,
            *(np.concatenate([a[:cut], rng.permutation(a[future])]) for a in (
                bars.high, bars.low, bars.close)),
        )
        np.testing.assert_array_equal(oracle_positions(changed, opts)[: cut + 1],
                                      positions[: cut + 1])


@pytest.mark.parametrize(("form", "least_net"), [("linear", 2.0), ("temporal", 3.0)])
def test_oracle_profits_clearly_after_costs(months, form, least_net):
    """Documented: about +2.9 (linear, 1 bp) and +5.0 (temporal, 1.5 bp) log return a month
    net of 6 bp per unit traded."""
    opts = LINEAR if form == "linear" else TEMPORAL
    positions = oracle_positions(months[form], opts)
    gross, net = net_log_return(positions, months[form])
    assert net > least_net
    assert net > 0.5 * gross  # fees take a minority of the edge


def test_the_oracles_rules_lose_their_fees_on_the_null(months):
    """Reading the null's candles as if an edge were planted: no gross profit, so a loss."""
    for planted in (LINEAR.model_copy(update={"seed": NULL.seed}),
                    TEMPORAL.model_copy(update={"seed": NULL.seed})):
        positions = oracle_positions(months["null"], planted)
        gross, net = net_log_return(positions, months["null"])
        trades = np.abs(np.diff(positions.astype(np.float64))).sum()
        # Gross is noise: within 4 standard deviations of zero for a 5 bp per bar random walk.
        assert abs(gross) < 4 * NULL.noise_bps * 1e-4 * np.sqrt(len(positions))
        assert net < 0 and net == pytest.approx(gross - COST_PER_UNIT * trades)


def test_next_bar_edge_is_zero_where_none_is_planted(months):
    for opts, bars in ((LINEAR, months["linear"]), (TEMPORAL, months["temporal"])):
        edge = next_bar_edge(bars, opts)
        minute_of_next = ((bars.ts_ms + MINUTE_MS) % DAY_MS) // MINUTE_MS
        quiet = minute_of_next == 0 if opts is LINEAR else minute_of_next <= opts.lag_far
        assert (edge[quiet] == 0).all() and (edge[~quiet] != 0).mean() > 0.99
    np.testing.assert_array_equal(next_bar_edge(months["null"], NULL), 0.0)
    temporal_values = np.unique(next_bar_edge(months["temporal"], TEMPORAL))
    np.testing.assert_allclose(temporal_values, np.array([-1.5, 0.0, 1.5]) * 1e-4)


def test_oracle_is_refused_without_a_planted_edge(months):
    with pytest.raises(ControlError, match="no planted edge"):
        oracle_positions(months["null"], NULL)
    with pytest.raises(ControlError, match="not a control process"):
        next_bar_edge(months["null"], SyntheticOptions())
    with pytest.raises(ControlError, match="band must be positive"):
        oracle_positions(months["linear"], LINEAR, band=0.0)


def test_recovery_identities():
    oracle = np.array([100.0, 110.0, 121.0])
    assert recovery(oracle, oracle) == pytest.approx(1.0)
    assert recovery(np.array([100.0, 100.0]), oracle) == 0.0
    half = np.array([100.0, 105.0, 110.0])  # ln 1.1 of ln 1.21: exactly a half
    assert recovery(half, oracle) == pytest.approx(0.5)
    assert recovery(np.array([90.0]), oracle, initial_equity=100.0) == pytest.approx(
        np.log(0.9) / np.log(1.21))
    assert recovery(np.array([99.0]), np.array([121.0]), initial_equity=100.0) < 0


@pytest.mark.parametrize(("agent", "oracle", "message"), [
    (np.array([100.0, 101.0]), np.array([100.0, 99.0]), "did not profit"),
    (np.array([]), np.array([100.0, 110.0]), "non-empty"),
    (np.array([100.0, -1.0]), np.array([100.0, 110.0]), "positive"),
])
def test_recovery_refuses_what_has_no_meaning(agent, oracle, message):
    with pytest.raises(ControlError, match=message):
        recovery(agent, oracle)


def test_decision_targets_shift_by_one_row():
    positions = np.array([[0, 1, 1, -1], [0, 0, -1, -1]], dtype=np.int8)
    np.testing.assert_array_equal(decision_targets(positions),
                                  [[1, 1, -1, 0], [0, -1, -1, 0]])
    np.testing.assert_array_equal(decision_targets(positions[0], np.array([0, 2])), [1, -1])


@pytest.mark.parametrize(("form", "least_log_return"), [("linear", 2.0), ("temporal", 3.0)])
def test_the_engine_holds_the_oracles_positions_and_profits(months, form, least_log_return):
    """Through the evaluation backtest (the training env's engine, default preset: fees,
    slippage, 1 % stop, 2 % take-profit): the account holds what the oracle decided, one row
    later, and makes the documented profit; flat makes nothing."""
    from tradecore_lib.env import MarketData
    from tradecore_lib.evaluation.backtest import Target, plan_walk, run_policies, walk_config

    opts = LINEAR if form == "linear" else TEMPORAL
    cfg = walk_config("default")
    data = MarketData.from_frame(generate_month(opts, MARKET, FEB).to_pandas(), cfg)
    walk = plan_walk(data, cfg)
    positions = oracle_positions(data, opts)
    runs = run_policies(data, cfg, {"oracle": Target(decision_targets(positions, walk.rows)),
                                    "flat": Target(0.0)})
    oracle, flat = runs["oracle"], runs["flat"]
    held = np.sign(oracle.position)
    # Identical but for the bars after a stop or take-profit until the oracle's next decision.
    assert (held == positions[walk.rows]).mean() > 0.98
    assert np.log(oracle.equity[-1] / oracle.initial_equity) > least_log_return
    assert recovery(flat.equity, oracle.equity, flat.initial_equity) == 0.0
    assert recovery(oracle.equity, oracle.equity, oracle.initial_equity) == 1.0
