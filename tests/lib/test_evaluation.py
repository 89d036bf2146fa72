"""The backtest walk (N policies, one pass): baselines, the kill switch's halt, the warm-up
month, fills, the agent's network in the kernel."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.frames import random_walk_frame, synthetic_frame
from tests.lakes import synthetic_lake
from tradecore_lib.env import MarketData, load_env_config
from tradecore_lib.evaluation.backtest import (
    BacktestError,
    BuyAndHold,
    Target,
    baseline_policies,
    decision_rows,
    round_trip_pnls,
    run_policies,
    walk_config,
)
from tradecore_lib.train.data import load_frame

SETTINGS = {"preset": "default", "exclude_column": "warmup"}


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(n_features=2)


@pytest.fixture(scope="module")
def n_rows(frame):
    return len(decision_rows(frame, SETTINGS))


@pytest.fixture(scope="module")
def baselines(frame):
    return run_policies(frame, SETTINGS, baseline_policies(SETTINGS))


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


def test_flat_never_trades_and_earns_nothing(baselines) -> None:
    flat = baselines["flat"]
    assert flat.fills.num_rows == 0 and flat.trades == 0 and flat.fees == 0.0
    assert (flat.equity == flat.initial_equity).all() and (flat.position == 0).all()


def test_the_walk_plays_the_frame_once_in_order(frame, baselines) -> None:
    stops = baselines["always_long_stops"]
    ts = MarketData.from_frame(frame, load_env_config(SETTINGS)).ts_ms
    assert np.all(np.diff(stops.ts_ms) > 0) and np.isin(stops.ts_ms, ts).all()
    assert len(stops.ts_ms) > 0.95 * len(frame)  # all but warm-up rows and gap edges
    assert stops.position[-1] == 0.0  # the walk ends flat
    fills = stops.fills
    assert fills.schema.names == ["bar", "ts_ms", "kind", "qty", "price", "fee"]
    assert fills.schema.field("bar").type == pa.int32()
    kinds = fills["kind"].to_pylist()
    assert {"market", "stop", "take_profit", "end"} <= set(kinds)
    assert set(kinds) <= {"market", "stop", "take_profit", "end", "kill_switch"}
    assert np.isin(fills["ts_ms"].to_numpy(), stops.ts_ms).all()
    assert stops.fees == pytest.approx(sum(fills["fee"].to_pylist()))
    # a data gap ends a segment: its open position is closed, charged, at the close
    ends = [f for f in fills.to_pylist() if f["kind"] == "end"]
    assert ends and all(f["fee"] > 0 for f in ends)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 400),
       gap_every=st.sampled_from([0, 17, 90]), taker=st.sampled_from([0.0, 0.0005, 0.003]),
       slippage_bps=st.sampled_from([0.0, 1.0, 30.0]))
def test_buy_and_hold_returns_the_market_net_of_one_fee_and_slippage_each_way(
        seed, n, gap_every, taker, slippage_bps) -> None:
    frame = random_walk_frame(np.random.default_rng(seed), n, vol=0.01, gap_every=gap_every)
    cfg = {"window": 4, "norm_window": 20, "norm_min_periods": 1, "taker_fee": taker,
           "slippage_bps": slippage_bps, "max_drawdown": 0.05}
    decision_start = 5
    hold = run_policies(frame, cfg, {"hold": BuyAndHold()}, decision_start)["hold"]
    walked = decision_rows(frame, cfg, decision_start)
    ts = MarketData.from_frame(frame, walk_config(cfg)).ts_ms
    open0 = frame["open"].to_numpy()[ts == walked[0]][0]
    close1 = frame["close"].to_numpy()[ts == walked[-1]][0]  # the frame's last playable bar
    f, s = taker, slippage_bps / 10_000
    expected = close1 * (1 - f) * (1 - s) / (open0 * (1 + f) * (1 + s)) - 1
    assert hold.equity[-1] / hold.initial_equity - 1 == pytest.approx(expected, abs=1e-9)
    # one entry at the first open, one exit at the last close; held through every gap
    assert hold.fills["kind"].to_pylist() == ["market", "end"]
    assert hold.kill_switch_hits == 0 and (hold.position[:-1] > 0).all()


def test_the_kill_switch_closes_at_the_next_open_and_halts_the_rest_of_the_split() -> None:
    frame = random_walk_frame(np.random.default_rng(4), 3_000, vol=0.004)
    cfg = {"window": 8, "norm_window": 50, "norm_min_periods": 1, "max_drawdown": 0.08,
           "stop_loss_bps": 5000.0, "take_profit_bps": 0.0, "risk_pct": 1.0,
           "max_leverage": 2.0, "slippage_bps": 2.0}
    n_rows = len(decision_rows(frame, cfg))
    swings = np.where((np.arange(n_rows) // 40) % 2 == 0, 1.0, -1.0)
    run = run_policies(frame, cfg, {"swings": Target(swings)})["swings"]
    assert run.kill_switch_hits == 1
    fills = run.fills.to_pylist()
    kill = next(k for k, f in enumerate(fills) if f["kind"] == "kill_switch")
    assert kill == len(fills) - 1  # nothing traded after it: no re-arming, no fresh account
    exit_fill = fills[kill]
    k = int(np.flatnonzero(run.ts_ms == exit_fill["ts_ms"])[0])
    bar_open = frame["open"].iloc[exit_fill["bar"]]
    slip = 1 - 0.0002 if exit_fill["qty"] < 0 else 1 + 0.0002
    assert exit_fill["price"] == pytest.approx(bar_open * slip)  # the next open, slipped
    assert exit_fill["fee"] == pytest.approx(abs(exit_fill["qty"]) * exit_fill["price"] * 5e-4)
    assert (run.position[k:] == 0).all() and (run.equity[k:] == run.equity[k]).all()
    peak = np.maximum.accumulate(np.concatenate([[run.initial_equity], run.equity]))[1:]
    drawdown = 1 - run.equity / peak
    assert drawdown[k - 2] < 0.08 <= drawdown[k - 1]  # breached at the close before the exit
    # the reported maximum exceeds the limit only by the breach bar's and the exit's moves
    worst = min(run.equity[k - 1], run.equity[k]) / run.equity[k - 2]
    assert drawdown.max() <= 1 - (1 - 0.08) * worst + 1e-12


def test_a_hundred_target_paths_walk_in_one_pass(frame, n_rows) -> None:
    """Matched random policies come as (N, T) int8 targets: each account's walk is the walk it
    would have alone."""
    paths = np.random.default_rng(1).integers(-1, 2, size=(100, n_rows)).astype(np.int8)
    paths[:, 1:] = np.where(np.random.default_rng(2).random((100, n_rows - 1)) < 0.01,
                            paths[:, 1:], 0)
    runs = run_policies(frame, SETTINGS, {f"random_{k:03d}": Target(p)
                                          for k, p in enumerate(paths)})
    assert len(runs) == 100 and {r.trades > 0 for r in runs.values()} == {True}
    alone = run_policies(frame, SETTINGS, {"x": Target(paths[17])})["x"]
    np.testing.assert_array_equal(alone.equity, runs["random_017"].equity)
    assert alone.fills.equals(runs["random_017"].fills)


def test_the_first_decision_is_at_the_splits_first_bar(tmp_path) -> None:
    """An evaluation frame carries the month before the split: the causal normalization is
    warm and the walk's first decision bar is the split's first bar."""
    lake, market = synthetic_lake(str(tmp_path / "lake"), months=2)
    split = [market.first_month.next()]
    data = load_frame(lake, market, split, market.feature_preset, warmup=True)
    assert data.warmup_partition is not None and data.warmup_partition.month == str(
        market.first_month)
    assert [p.month for p in data.partitions] == [str(split[0])]
    settings = {"preset": "default", "exclude_column": "warmup_incomplete"}
    rows = decision_rows(data.frame, settings, data.decision_start)
    assert rows[0] == split[0].start_ms == data.first_ts.value // 1_000_000
    cold = load_frame(lake, market, split, market.feature_preset)
    assert cold.decision_start == 0
    assert decision_rows(cold.frame, settings)[0] > split[0].start_ms  # a cold start waits


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


@pytest.mark.parametrize(("preset", "extractor"), [
    ("default", "mlp"), ("nudge", "mlp"), ("continuous", "mlp"),
    ("default", "temporal"), ("nudge", "temporal"), ("continuous", "temporal")])
def test_the_agent_network_walked_in_the_kernel_is_the_sb3_policy(preset, extractor) -> None:
    """The walk decided by the kernel's forward pass of a PPO policy (with VecNormalize
    statistics) is the walk of SB3's own deterministic predictions, bar by bar; with the
    temporal extractor folded into the first layer as well."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from tradecore_lib.env import make_vec_env
    from tradecore_lib.evaluation.agent import mlp_policy
    from tradecore_lib.train.extractors import policy_kwargs

    frame = synthetic_frame(n_features=2, rows=4_000)
    settings = {"preset": preset, "exclude_column": "warmup"}
    venv = VecNormalize(make_vec_env(frame, 2, settings, seed=0))
    env_cfg = venv.get_attr("cfg", [0])[0]
    kwargs = policy_kwargs(extractor, window=env_cfg.window, account_size=env_cfg.account_size)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 16], **kwargs})
    with torch.no_grad():  # a trained policy's decisive outputs (SB3 starts the head at 0.01)
        model.policy.action_net.weight.mul_(100.0)
        if extractor == "temporal":  # filters that matter (the default init is small)
            model.policy.features_extractor.patch.weight.mul_(10.0)
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
    # SB3 computes in float32 and the ×100 head scales its rounding (~1e-7 relative) into the
    # 1e-5 range, differently on each CPU's vector unit; a wrong layer is off by far more.
    np.testing.assert_allclose(kernel.target, reference.target, atol=1e-4)
    np.testing.assert_allclose(kernel.equity, reference.equity, rtol=1e-6)
    if preset == "continuous":
        assert kernel.probs is None
    else:  # identical decisions: identical walks
        np.testing.assert_array_equal(kernel.equity, reference.equity)
        assert kernel.fills.equals(reference.fills)
        np.testing.assert_allclose(kernel.probs, reference.probs, atol=1e-5)
