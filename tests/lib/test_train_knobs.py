"""Each named knob reaches stable-baselines3 and changes what one PPO update does."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from tests.lakes import synthetic_lake
from tradecore_lib.train.config import deep_merge, load_train_config
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.ppo_train import make_training_env, new_model

TINY = {"n_envs": 2, "ppo": {"n_steps": 64, "batch_size": 64, "n_epochs": 2},
        "total_timesteps": 128, "checkpoint_every_steps": 128}


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    lake, market = synthetic_lake(str(tmp_path_factory.mktemp("lake")), months=1)
    return load_frame(lake, market, [market.first_month], market.feature_preset).frame


def _train_one_update(frame, overrides: dict):
    import torch

    torch.set_num_threads(1)
    cfg = load_train_config("cpu-smoke", deep_merge(TINY, overrides))
    venv, vec_normalize = make_training_env(cfg, frame)
    model = new_model(cfg, venv, "cpu")
    model.learn(cfg.total_timesteps)
    params = torch.nn.utils.parameters_to_vector(model.policy.parameters()).detach().numpy()
    return model, vec_normalize, params


@pytest.fixture(scope="module")
def baseline(frame):
    return _train_one_update(frame, {})


def test_training_is_deterministic(frame, baseline) -> None:
    _, _, again = _train_one_update(frame, {})
    np.testing.assert_array_equal(baseline[2], again)


@pytest.mark.parametrize(("overrides", "reaches_sb3"), [
    ({"ppo": {"clip_range_vf": 0.001}},  # Safety Scissors
     lambda m: m.clip_range_vf is not None and m.clip_range_vf(1.0) == 0.001),
    ({"ppo": {"normalize_advantage": False}},  # Mood Stabilizer
     lambda m: m.normalize_advantage is False),
    ({"ppo": {"ent_coef": 0.5}},  # Explorer Boost
     lambda m: m.ent_coef == 0.5),
    ({"ppo": {"vf_coef": 5.0}},  # Piggy Bank Weight
     lambda m: m.vf_coef == 5.0),
], ids=["safety_scissors", "mood_stabilizer", "explorer_boost", "piggy_bank_weight"])
def test_ppo_knob_reaches_sb3_and_changes_the_update(frame, baseline, overrides,
                                                     reaches_sb3) -> None:
    base_model = baseline[0]
    assert not reaches_sb3(base_model)
    model, _, params = _train_one_update(frame, overrides)
    assert reaches_sb3(model)
    assert not np.allclose(params, baseline[2])


def test_vec_normalize_statistics_exist_only_when_on(frame, baseline) -> None:
    _, vec_normalize, _ = baseline
    assert vec_normalize is not None and vec_normalize.obs_rms.count > 128
    assert np.any(vec_normalize.obs_rms.var != 1.0)
    off_model, off_stats, off_params = _train_one_update(
        frame, {"vec_normalize": {"normalize_obs": False, "normalize_reward": False}})
    assert off_stats is None and off_model.get_vec_normalize_env() is None
    assert not np.allclose(off_params, baseline[2])
    obs_only_model, obs_only, _ = _train_one_update(
        frame, {"vec_normalize": {"normalize_obs": True, "normalize_reward": False}})
    assert obs_only.norm_obs and not obs_only.norm_reward


def test_nudge_actions_add_stop_and_take_profit_actions(frame, baseline) -> None:
    assert isinstance(baseline[0].action_space, spaces.Discrete)
    model, _, _ = _train_one_update(
        frame, {"nudge_actions": {"enabled": True, "step_bps": 20.0,
                                  "stop_loss_bounds_bps": [50.0, 200.0]}})
    assert isinstance(model.action_space, spaces.MultiDiscrete)
    assert list(model.action_space.nvec) == [3, 3, 3]
    inner = model.get_env().venv if hasattr(model.get_env(), "venv") else model.get_env()
    cfg = inner.get_attr("cfg")[0]
    assert cfg.nudge and cfg.nudge_step_bps == 20.0 and cfg.stop_loss_bounds_bps == (50.0, 200.0)
