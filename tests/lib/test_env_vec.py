"""TradeVecEnv equals N single TradingEnvs behind SB3's DummyVecEnv, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from tradecore_lib.env import INFO_KEYS, MarketData, TradeVecEnv, make_env, make_vec_env
from tradecore_lib.env.config import load_env_config
from tradecore_lib.env.testing import synthetic_frame

PRESETS = {
    "default": {"preset": "default", "episode_length": 120, "max_drawdown": 0.02},
    "continuous": {"preset": "continuous", "episode_length": 90, "max_drawdown": 0.008},
    "nudge": {"preset": "nudge", "episode_length": 100, "max_drawdown": 0.02,
              "stop_loss_bps": 30.0, "take_profit_bps": 60.0},
    "sequential": {"preset": "default", "episode_length": 150, "random_start": False,
                   "max_drawdown": 0.5, "max_gap_minutes": 2.0},
}


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(n_features=3, rows=12_000)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_batched_equals_single(frame, name):
    cfg = load_env_config(PRESETS[name])
    data = MarketData.from_frame(frame, cfg)
    n, seed, steps = 7, 11, 700
    vec = make_vec_env(data, n, cfg, seed=seed)
    ref = DummyVecEnv([lambda: make_env(data, cfg) for _ in range(n)])
    ref.seed(seed)
    obs_v, obs_r = vec.reset(), ref.reset()
    np.testing.assert_array_equal(obs_v, obs_r)
    rng = np.random.default_rng(0)
    vec.action_space.seed(3)
    n_done = n_trunc = n_term = 0
    actions = np.stack([vec.action_space.sample() for _ in range(n)])
    for _ in range(steps):
        fresh = np.stack([vec.action_space.sample() for _ in range(n)])
        change = rng.random(n) < 0.15  # actions persist for a few bars, as a policy's do
        actions = np.where(change.reshape((n,) + (1,) * (actions.ndim - 1)), fresh, actions)
        if cfg.action_mode == "continuous":
            actions = (actions + rng.normal(0, 0.05, actions.shape)).astype(np.float32)
        obs_v, rew_v, done_v, info_v = vec.step(actions)
        obs_r, rew_r, done_r, info_r = ref.step(actions)
        np.testing.assert_array_equal(obs_v, obs_r)
        np.testing.assert_array_equal(rew_v, rew_r)
        np.testing.assert_array_equal(done_v, done_r)
        for iv, ir in zip(info_v, info_r, strict=True):
            for key in INFO_KEYS:
                assert iv[key] == ir[key], key
            if "terminal_observation" in ir:
                np.testing.assert_array_equal(iv["terminal_observation"],
                                              ir["terminal_observation"])
                assert iv["TimeLimit.truncated"] == ir["TimeLimit.truncated"]
                n_trunc += ir["TimeLimit.truncated"]
                n_term += not ir["TimeLimit.truncated"]
            else:
                assert "terminal_observation" not in iv
        n_done += int(done_r.sum())
    # the comparison covered auto-resets of both kinds
    assert n_trunc > 0
    if name != "sequential":
        assert n_term > 0


def test_seed_reproducible_and_distinct(frame):
    a = make_vec_env(frame, 4, {"preset": "default", "episode_length": 50}, seed=5)
    b = make_vec_env(frame, 4, {"preset": "default", "episode_length": 50}, seed=5)
    c = make_vec_env(frame, 4, {"preset": "default", "episode_length": 50}, seed=6)
    oa, ob, oc = a.reset(), b.reset(), c.reset()
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc)
    assert len(set(a.bars.tolist())) == 4  # envs start at different bars


def test_infos_are_snapshots_and_arrays_exposed(frame):
    vec = make_vec_env(frame, 3, {"preset": "default", "episode_length": 5}, seed=1)
    vec.reset()
    _, _, _, infos1 = vec.step(np.array([2, 0, 1]))
    equity1 = [info["equity"] for info in infos1]
    bar1 = infos1[0]["bar"]
    for _ in range(6):
        vec.step(np.array([0, 2, 1]))
    assert [info["equity"] for info in infos1] == equity1
    assert infos1[0]["bar"] == bar1
    assert set(INFO_KEYS) <= set(infos1[1])
    assert vec.step_info["equity"].shape == (3,)
    infos1[0]["extra"] = 1  # consumers may add keys
    assert infos1[0]["extra"] == 1 and infos1[-1] is infos1[2]
    assert len(infos1[0:2]) == 2


def test_vec_monitor_records_episodes(frame):
    vec = VecMonitor(make_vec_env(frame, 4, {"preset": "default", "episode_length": 20},
                                  seed=2))
    vec.reset()
    episodes = []
    for _ in range(25):
        _, _, dones, infos = vec.step(np.ones(4, dtype=np.int64))
        episodes += [infos[i]["episode"] for i in np.flatnonzero(dones)]
    assert len(episodes) == 4
    assert all(ep["l"] == 20 for ep in episodes)


def test_rejects_bad_n_envs(frame):
    with pytest.raises(ValueError, match="n_envs"):
        TradeVecEnv(frame, 0)
