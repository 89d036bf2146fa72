"""Backtest, metrics, baselines and the promotion gate (no trained agent needed)."""

from __future__ import annotations

import numpy as np
import pytest

from tradecore_lib.env import Fill
from tradecore_lib.evaluation.backtest import (
    Trajectory,
    backtest,
    baseline_policies,
    round_trip_pnls,
)
from tradecore_lib.evaluation.metrics import compute_metrics
from tradecore_lib.evaluation.promotion import judge
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.testing import synthetic_lake

SETTINGS = load_train_config("cpu-smoke").env_settings("warmup_incomplete")


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    lake, market = synthetic_lake(str(tmp_path_factory.mktemp("lake")), months=1)
    return load_frame(lake, market, [market.first_month], market.feature_preset).frame


@pytest.fixture(scope="module")
def baselines(frame):
    return {name: backtest(frame, SETTINGS, policy)
            for name, policy in baseline_policies(SETTINGS, seed=3).items()}


def test_round_trips_split_flips_and_mark_open_positions() -> None:
    fills = [
        Fill(1, "market", 2.0, 100.0, 0.2, 0.001),    # open long 2 @ 100
        Fill(2, "market", -3.0, 110.0, 0.3, 0.001),   # close 2 @ 110, open short 1 @ 110
        Fill(3, "stop", 1.0, 120.0, 0.12, 0.001),     # stop the short @ 120
        Fill(4, "market", 1.0, 100.0, 0.1, 0.001),    # open long 1, still open
    ]
    pnls = round_trip_pnls(fills, mark_price=105.0)
    assert pnls == pytest.approx([20.0 - 0.2 - 0.2, -10.0 - 0.1 - 0.12, 5.0 - 0.1])


def test_metrics_of_a_known_equity_path() -> None:
    equity = np.array([110.0, 99.0, 99.0, 121.0])
    traj = Trajectory(
        decision_ts_ms=np.arange(4) * 60_000, ts_ms=np.arange(1, 5) * 60_000, equity=equity,
        position_qty=np.array([1.0, 1.0, 0.0, 1.0]), fees=np.array([0.5, 0.0, 0.5, 0.5]),
        target=np.ones(4), probs=None, actions=[2] * 4, initial_equity=100.0,
        trade_pnls=[-1.0, 22.0], traded_notional=300.0, kill_switch_hits=0,
    )
    m = compute_metrics(traj)
    assert m["total_return"] == pytest.approx(0.21)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["fees"] == pytest.approx(1.5) and m["trades"] == 2 and m["win_rate"] == 0.5
    assert m["exposure"] == 0.75
    assert m["turnover"] == pytest.approx(300.0 / np.mean([100.0, *equity]))
    returns = np.array([0.1, -0.1, 0.0, 121 / 99 - 1])
    assert m["sharpe"] == pytest.approx(returns.mean() / returns.std() * np.sqrt(525960))


def test_flat_baseline_never_trades_and_earns_nothing(baselines) -> None:
    flat = compute_metrics(baselines["flat"])
    assert flat["total_return"] == 0.0 and flat["trades"] == 0 and flat["fees"] == 0.0
    assert flat["sharpe"] == 0.0 and flat["exposure"] == 0.0


def test_backtest_walks_the_month_once_in_order(frame, baselines) -> None:
    hold = baselines["buy_and_hold"]
    assert np.all(np.diff(hold.ts_ms) > 0)
    assert np.all(hold.decision_ts_ms < hold.ts_ms)
    month_end = frame["ts"].iloc[-1].value // 1_000_000
    assert hold.ts_ms[-1] <= month_end
    # Every bar but warm-up and gap edges is played once.
    assert len(hold.ts_ms) > 0.95 * len(frame)
    assert compute_metrics(hold)["exposure"] > 0.9


def test_baselines_are_deterministic_and_random_depends_on_its_seed(frame, baselines) -> None:
    again = backtest(frame, SETTINGS, baseline_policies(SETTINGS, seed=3)["random"])
    np.testing.assert_array_equal(again.equity, baselines["random"].equity)
    other = backtest(frame, SETTINGS, baseline_policies(SETTINGS, seed=4)["random"])
    assert not np.array_equal(other.equity, baselines["random"].equity)


def _summary(agent: dict, hold: dict, promotion: dict) -> dict:
    return {"promotion": promotion,
            "splits": {"test": {"policies": {"agent": agent, "buy_and_hold": hold}}}}


def test_gate_passes_and_fails_with_the_shortfall() -> None:
    gate = {"min_sharpe_margin_vs_buy_and_hold": 0.0, "max_drawdown": 0.2, "min_trades": 10,
            "min_total_return": None}
    good = {"sharpe": 1.5, "max_drawdown": 0.1, "trades": 12, "total_return": 0.05}
    hold = {"sharpe": 1.0}
    assert all(rule.passed for rule in judge(_summary(good, hold, gate)))
    bad = {"sharpe": 0.7, "max_drawdown": 0.25, "trades": 4, "total_return": -0.01}
    rules = {rule.name: rule for rule in judge(_summary(bad, hold, gate))}
    assert not any(rule.passed for rule in rules.values())
    assert rules["sharpe_vs_buy_and_hold"].margin == pytest.approx(-0.3)
    assert "short by 0.3" in rules["sharpe_vs_buy_and_hold"].explanation
    assert "over by 5.00 points" in rules["max_drawdown"].explanation
    assert "test trades 4 misses >= 10 (short by 6)" == rules["min_trades"].explanation
    off = {key: None for key in gate}
    assert judge(_summary(bad, hold, off)) == []
