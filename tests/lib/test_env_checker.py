"""Both env checkers accept every preset; make_env / make_vec_env honour their signatures."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import VecEnv

from tests.frames import synthetic_frame
from tradecore_lib.env import (
    INFO_KEYS,
    TradeVecEnv,
    available_env_presets,
    make_env,
    make_vec_env,
)


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(n_features=2, rows=4_000)


def test_presets_shipped():
    assert {"default", "continuous", "nudge", "extended"} <= set(available_env_presets())


@pytest.mark.parametrize("preset", ["default", "continuous", "nudge", "extended"])
def test_gymnasium_checker(frame, preset):
    env = make_env(frame, preset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings count as failures
        gym_check_env(env, skip_render_check=True)


@pytest.mark.parametrize("preset", ["default", "continuous", "nudge"])
def test_sb3_checker(frame, preset):
    env = make_env(frame, preset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env, warn=True, skip_render_check=True)


def test_spaces_and_shapes(frame):
    env = make_env(frame, "default", seed=0)
    n_cols = 5 + 2  # OHLCV + the two numpy features (the warmup bool column is not one)
    assert env.observation_space.shape == (64 * n_cols + 5,)
    assert env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Discrete(3)
    assert make_env(frame, "continuous").action_space.shape == (1,)
    assert make_env(frame, "nudge").action_space == gym.spaces.MultiDiscrete([3, 3, 3])
    assert make_env(frame, "nudge").observation_space.shape == (64 * n_cols + 7,)
    obs, _ = env.reset(seed=3)
    obs2, reward, terminated, truncated, info = env.step(2)
    assert obs2.shape == env.observation_space.shape and obs2.dtype == np.float32
    assert isinstance(reward, float) and not terminated and not truncated
    assert set(INFO_KEYS) <= set(info)
    assert info["target_position"] == 1.0
    assert info["stop_distance"] == pytest.approx(0.01)


def test_make_vec_env_is_an_sb3_vecenv(frame):
    venv = make_vec_env(frame, 8, "default", seed=4)
    assert isinstance(venv, VecEnv) and isinstance(venv, TradeVecEnv)
    obs = venv.reset()
    assert obs.shape == (8, venv.observation_space.shape[0]) and obs.dtype == np.float32
    obs, rewards, dones, infos = venv.step(np.zeros(8, dtype=np.int64))
    assert rewards.shape == (8,) and rewards.dtype == np.float32 and dones.dtype == bool
    assert len(infos) == 8
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 8
    assert venv.get_attr("render_mode") == [None] * 8


def test_make_env_seed_fixes_starts(frame):
    a, b = make_env(frame, "default", seed=9), make_env(frame, "default", seed=9)
    assert a.bar == b.bar
    starts_a = [a.reset()[1]["bar"] for _ in range(5)]
    starts_b = [b.reset()[1]["bar"] for _ in range(5)]
    assert starts_a == starts_b and len(set(starts_a)) > 1


def test_ppo_learns_a_few_steps(frame):
    from stable_baselines3 import PPO

    venv = make_vec_env(frame, 4, {"preset": "default", "episode_length": 64}, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256


def test_an_action_outside_the_space_is_refused(frame):
    env = make_env(frame, "default", seed=0)
    with pytest.raises(ValueError, match="not an index into the preset's positions"):
        env.step(3)
    nudge = make_env(frame, "nudge", seed=0)
    with pytest.raises(ValueError, match="nudge action"):
        nudge.step(np.array([1, 3, 1]))
