"""The backtest walk (N policies, one pass), its fills, baselines and metrics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.frames import synthetic_frame
from tradecore_lib.env import MarketData, load_env_config
from tradecore_lib.evaluation.backtest import (
    BacktestError,
    PolicyRun,
    Target,
    baseline_policies,
    decision_rows,
    round_trip_pnls,
    run_policies,
)
from tradecore_lib.evaluation.metrics import compute_metrics

SETTINGS = {"preset": "default", "exclude_column": "warmup"}


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(n_features=2)


@pytest.fixture(scope="module")
def n_rows(frame):
    return len(decision_rows(frame, SETTINGS))


@pytest.fixture(scope="module")
def baselines(frame, n_rows):
    return run_policies(frame, SETTINGS, baseline_policies(SETTINGS, n_rows, seed=3))


def momentum(obs: np.ndarray) -> tuple[np.ndarray, None]:
    """Long after an up-close, short after a down-close (column 3 of the window's last bar is
    the close's log move; 7 columns per bar, 64 bars, then 5 account values)."""
    last_close_move = obs[:, 63 * 7 + 3]
    return np.where(last_close_move > 0, 2, np.where(last_close_move < 0, 0, 1)), None


def test_round_trips_split_flips() -> None:
    fills = pa.table({
        "qty": [2.0, -3.0, 1.0, 1.0, -1.0],
        "price": [100.0, 110.0, 120.0, 100.0, 105.0],
        "fee": [0.2, 0.3, 0.12, 0.1, 0.105],
    })  # open long 2, flip to short 1, stop the short, open long 1, close it
    pnls = round_trip_pnls(fills)
    assert pnls == pytest.approx([20.0 - 0.2 - 0.2, -10.0 - 0.1 - 0.12, 5.0 - 0.1 - 0.105])


def test_metrics_of_a_known_equity_path() -> None:
    fills = pa.table({"bar": pa.array([1, 3], pa.int32()), "ts_ms": [60_000, 180_000],
                      "kind": ["market", "end"], "qty": [1.0, -1.0], "price": [100.0, 121.0],
                      "fee": [0.5, 0.5]})
    run = PolicyRun(
        name="x", ts_ms=np.arange(1, 5) * 60_000, equity=np.array([110.0, 99.0, 99.0, 121.0]),
        position=np.array([1.0, 1.0, 0.0, 1.0]), target=np.ones(4), probs=None, fills=fills,
        initial_equity=100.0, fees=1.0, borrow_cost=0.0, funding_cost=0.0,
        kill_switch_hits=0, guardrail_breaches=0, trades=1,
    )
    m = compute_metrics(run)
    assert m.total_return == pytest.approx(0.21)
    assert m.max_drawdown == pytest.approx(0.1)
    assert m.fees == pytest.approx(1.0) and m.trades == 1 and m.win_rate == 1.0
    assert m.exposure == 0.75
    assert m.turnover == pytest.approx((100.0 + 121.0) / np.mean([100.0, 110, 99, 99, 121]))
    returns = np.array([0.1, -0.1, 0.0, 121 / 99 - 1])
    assert m.sharpe == pytest.approx(returns.mean() / returns.std() * np.sqrt(525960))


def test_flat_never_trades_and_earns_nothing(baselines) -> None:
    flat = baselines["flat"]
    assert flat.fills.num_rows == 0 and flat.trades == 0 and flat.fees == 0.0
    assert (flat.equity == flat.initial_equity).all() and (flat.position == 0).all()


def test_the_walk_plays_the_frame_once_in_order(frame, baselines) -> None:
    hold = baselines["buy_and_hold"]
    ts = MarketData.from_frame(frame, load_env_config(SETTINGS)).ts_ms
    assert np.all(np.diff(hold.ts_ms) > 0) and np.isin(hold.ts_ms, ts).all()
    assert len(hold.ts_ms) > 0.95 * len(frame)  # all but warm-up rows and gap edges
    assert hold.position[-1] == 0.0  # the walk ends flat
    fills = hold.fills
    assert fills.schema.names == ["bar", "ts_ms", "kind", "qty", "price", "fee"]
    assert fills.schema.field("bar").type == pa.int32()
    assert set(fills["kind"].to_pylist()) <= {"market", "stop", "take_profit", "end",
                                              "kill_switch"}
    assert np.isin(fills["ts_ms"].to_numpy(), hold.ts_ms).all()
    assert hold.fees == pytest.approx(sum(fills["fee"].to_pylist()))


def test_random_is_seeded(frame, n_rows, baselines) -> None:
    again = run_policies(frame, SETTINGS, baseline_policies(SETTINGS, n_rows, seed=3))
    np.testing.assert_array_equal(again["random"].equity, baselines["random"].equity)
    other = run_policies(frame, SETTINGS, baseline_policies(SETTINGS, n_rows, seed=4))
    assert not np.array_equal(other["random"].equity, baselines["random"].equity)


def test_accounts_are_independent_of_each_other(frame, n_rows, baselines) -> None:
    alone = run_policies(frame, SETTINGS, {"random": baseline_policies(SETTINGS, n_rows, 3)[
        "random"]})["random"]
    np.testing.assert_array_equal(alone.equity, baselines["random"].equity)
    assert alone.fills.equals(baselines["random"].fills)


def test_a_predictor_equals_the_target_path_of_its_decisions(frame) -> None:
    """The bar-by-bar walk of a policy that observes its account and the one-pass walk of
    the same decisions, precomputed, are the same walk."""
    played = run_policies(frame, SETTINGS, {"momentum": momentum})["momentum"]
    assert played.trades > 50
    replay = run_policies(frame, SETTINGS, {"path": Target(played.target)})["path"]
    np.testing.assert_array_equal(replay.equity, played.equity)
    assert replay.fills.equals(played.fills)


def test_bad_target_paths_are_refused(frame, n_rows) -> None:
    with pytest.raises(BacktestError, match="'short': 3 targets"):
        run_policies(frame, SETTINGS, {"short": Target(np.zeros(3))})
    with pytest.raises(BacktestError, match="in \\[-1, 1\\]"):
        run_policies(frame, SETTINGS, {"big": Target(np.full(n_rows, 2.0))})


@pytest.mark.parametrize("preset", ["default", "nudge", "continuous"])
def test_the_agent_network_walked_in_the_kernel_is_the_sb3_policy(preset) -> None:
    """The walk decided by the kernel's forward pass of a PPO policy (with VecNormalize
    statistics) is the walk of SB3's own deterministic predictions, bar by bar."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from tradecore_lib.env import make_vec_env
    from tradecore_lib.evaluation.agent import mlp_policy

    frame = synthetic_frame(n_features=2, rows=4_000)
    settings = {"preset": preset, "exclude_column": "warmup"}
    venv = VecNormalize(make_vec_env(frame, 2, settings, seed=0))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 16]})
    with torch.no_grad():  # a trained policy's decisive outputs (SB3 starts the head at 0.01)
        model.policy.action_net.weight.mul_(100.0)
    venv.reset()
    venv.action_space.seed(0)
    for _ in range(300):  # statistics that are not the identity
        venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    venv.training = False

    def sb3(obs: np.ndarray):
        with torch.no_grad():
            tensor = torch.as_tensor(venv.normalize_obs(obs), dtype=torch.float32)
            distribution = model.policy.get_distribution(tensor)
            actions = distribution.get_actions(deterministic=True).numpy()
        if preset == "continuous":
            return actions, None
        inner = distribution.distribution
        head = inner[0] if isinstance(inner, list) else inner
        return actions, head.probs.numpy().astype(np.float64)

    runs = run_policies(frame, settings, {"kernel": mlp_policy(model, venv), "sb3": sb3})
    kernel, reference = runs["kernel"], runs["sb3"]
    assert reference.trades > 10
    np.testing.assert_allclose(kernel.target, reference.target, atol=1e-5)
    np.testing.assert_allclose(kernel.equity, reference.equity, rtol=1e-6)
    if preset == "continuous":
        assert kernel.probs is None
    else:  # identical decisions: identical walks
        np.testing.assert_array_equal(kernel.equity, reference.equity)
        assert kernel.fills.equals(reference.fills)
        np.testing.assert_allclose(kernel.probs, reference.probs, atol=1e-5)
