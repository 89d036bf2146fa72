"""The policy's features extractors (mlp, temporal) and the copy-free rollout path.

Extractors: shapes and the window layout they read, determinism, save/load, their stated
parameters and FLOPs, the exact affine map the evaluation folds into the first layer, and how
a preset selects them without changing old run ids. Rollout path: TradeVecNormalize and
TradeRolloutBuffer give SB3's numbers bit for bit, and a whole PPO run with them is SB3's.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from tests.lakes import synthetic_lake
from tradecore_lib.env import make_vec_env
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.train.config import TrainConfigError, deep_merge, load_train_config
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.extractors import (
    FlattenWindow,
    TemporalPatches,
    affine_map,
    describe,
    policy_kwargs,
)
from tradecore_lib.train.ppo_train import make_training_env, new_model
from tradecore_lib.train.rollout import TradeRolloutBuffer, TradeVecNormalize, _normalize

TINY = {"n_envs": 4, "ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 2},
        "total_timesteps": 256, "checkpoint_every_steps": 256,
        "env_overrides": {"episode_length": 40}}
TEMPORAL = {"ppo": {"policy": {"extractor": "temporal", "patch_bars": 16, "channels": 4}}}


def _box(dim: int) -> spaces.Box:
    return spaces.Box(-10.0, 10.0, (dim,), np.float32)


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """A month of synthetic_btc_usd's features, warm-up marker included (what training
    reads)."""
    lake, market = synthetic_lake(str(tmp_path_factory.mktemp("lake")), months=1)
    return load_frame(lake, market, [market.first_month], market.feature_preset).frame


def _model(frame, overrides: dict) -> tuple[PPO, VecNormalize | None]:
    torch.set_num_threads(1)
    cfg = load_train_config("cpu-smoke", deep_merge(TINY, overrides))
    venv, vec_normalize = make_training_env(cfg, frame)
    return new_model(cfg, venv, "cpu"), vec_normalize


def _params(model: PPO) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(model.policy.parameters()).detach().numpy()


# -- shapes and layout -----------------------------------------------------------------------
def test_flatten_window_passes_the_observation_through() -> None:
    extractor = FlattenWindow(_box(453))
    obs = torch.randn(7, 453)
    assert extractor.features_dim == 453
    assert torch.equal(extractor(obs), obs)
    assert sum(p.numel() for p in extractor.parameters()) == 0


def test_temporal_patches_is_a_strided_conv1d_over_the_time_major_window() -> None:
    window, columns, account = 12, 3, 5
    extractor = TemporalPatches(_box(window * columns + account), window, account,
                                patch_bars=4, channels=2)
    assert extractor.features_dim == (12 // 4) * 2 + 5
    obs = torch.randn(6, window * columns + account)
    out = extractor(obs)
    assert out.shape == (6, 11)
    # the same map as Conv1d(columns, channels, kernel 4, stride 4) over (B, columns, bars):
    # element k * C + c of the flat window is column c at bar k (oldest first)
    bars = obs[:, :window * columns].reshape(6, window, columns).transpose(1, 2)
    kernel = extractor.patch.weight.detach().reshape(2, 4, columns).transpose(1, 2)
    conv = torch.nn.functional.conv1d(bars, kernel, extractor.patch.bias.detach(), stride=4)
    expected = conv.transpose(1, 2).reshape(6, -1)  # patch-major: patch j gives j*H..j*H+H-1
    torch.testing.assert_close(out[:, :6], expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, 6:], obs[:, window * columns:])  # account vector untouched


@pytest.mark.parametrize(("window", "account", "patch", "message"), [
    (12, 5, 5, r"patch_bars 5 must divide the env's window of 12 bars; values that do: "
               r"\[1, 2, 3, 4, 6, 12\]"),
    (10, 5, 2, "an observation of 41 values is not a window of 10 bars"),
])
def test_temporal_patches_refuses_a_layout_that_does_not_fit(window, account, patch,
                                                             message) -> None:
    with pytest.raises(ValueError, match=message):
        TemporalPatches(_box(12 * 3 + 5), window, account, patch_bars=patch, channels=2)


def test_a_preset_whose_patch_does_not_divide_the_window_fails_naming_it(frame) -> None:
    with pytest.raises(TrainConfigError, match="training preset 'cpu-smoke' with env preset "
                       "'default': ppo.policy.patch_bars 7 must divide the env's window of 64"):
        _model(frame, {"ppo": {"policy": {"extractor": "temporal", "patch_bars": 7}}})


# -- parameters, FLOPs and the affine map ------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, TEMPORAL], ids=["mlp", "temporal"])
def test_stated_parameters_match_the_built_policy(frame, overrides) -> None:
    model, _ = _model(frame, overrides)
    policy = model.policy
    settings = load_train_config("cpu-smoke", deep_merge(TINY, overrides)).ppo
    dim = int(model.observation_space.shape[0])
    cost = describe(settings.policy.extractor, dim, 64, 5, settings.net_arch, 3,
                    patch_bars=settings.policy.patch_bars or 4,
                    channels=settings.policy.channels or 16)
    extractor_params = sum(p.numel() for p in policy.features_extractor.parameters())
    assert cost.extractor_params == extractor_params
    assert cost.features_dim == policy.features_extractor.features_dim
    assert cost.network_params == sum(p.numel() for p in policy.parameters()) - extractor_params


def test_stated_flops_of_the_default_observation() -> None:
    # 64 bars x 7 columns + 5 = 453 values, net_arch 64-64, 3 actions (module docstring)
    mlp = describe("mlp", 453, 64, 5, [64, 64], 3)
    assert (mlp.extractor_flops, mlp.features_dim) == (0, 453)
    assert mlp.network_flops == 2 * (453 * 64 + 64 * 64) + 64 * 3 + 64
    temporal = describe("temporal", 453, 64, 5, [64, 64], 3, patch_bars=8, channels=16)
    assert temporal.extractor_flops == 64 * 7 * 16  # each bar's 7 values x 16 filters once
    assert temporal.extractor_params == 8 * 7 * 16 + 16
    assert temporal.features_dim == 8 * 16 + 5
    assert temporal.total_flops < mlp.total_flops / 2


def test_the_affine_map_reproduces_the_temporal_extractor_and_folds_into_layer_one() -> None:
    torch.manual_seed(0)
    extractor = TemporalPatches(_box(64 * 7 + 5), 64, 5, patch_bars=8, channels=16)
    layer = torch.nn.Linear(extractor.features_dim, 32)
    obs = torch.randn(20, 64 * 7 + 5)
    matrix, bias = affine_map(extractor)
    assert matrix.shape == (453, 133) and bias.shape == (133,)
    x = obs.double().numpy()
    np.testing.assert_allclose(x @ matrix + bias, extractor(obs).detach().numpy(), atol=1e-5)
    # what an evaluation playing a plain MLP over the raw observation computes
    w1 = layer.weight.detach().double().numpy().T
    folded = x @ (matrix @ w1) + (bias @ w1 + layer.bias.detach().double().numpy())
    np.testing.assert_allclose(folded, layer(extractor(obs)).detach().numpy(), atol=1e-4)
    assert affine_map(FlattenWindow(_box(453))) is None
    with pytest.raises(TypeError, match="Linear is not affine"):
        affine_map(torch.nn.Linear(3, 3))


# -- determinism and save/load ---------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, TEMPORAL], ids=["mlp", "temporal"])
def test_training_is_deterministic_and_a_saved_model_loads_the_same(frame, overrides) -> None:
    model, _ = _model(frame, overrides)
    model.learn(256)
    again, _ = _model(frame, overrides)
    again.learn(256)
    np.testing.assert_array_equal(_params(model), _params(again))
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = PPO.load(buffer, device="cpu")
    kind = TemporalPatches if overrides else FlattenWindow
    assert type(loaded.policy.features_extractor) is kind
    np.testing.assert_array_equal(_params(loaded), _params(model))
    obs = np.random.default_rng(0).standard_normal((16, *model.observation_space.shape))
    obs = obs.astype(np.float32)
    with torch.no_grad():
        for a, b in zip(model.policy.evaluate_actions(torch.as_tensor(obs), torch.zeros(16)),
                        loaded.policy.evaluate_actions(torch.as_tensor(obs), torch.zeros(16)),
                        strict=True):
            assert torch.equal(a, b)


def test_the_temporal_extractor_changes_what_is_trained(frame) -> None:
    mlp, _ = _model(frame, {})
    temporal, _ = _model(frame, TEMPORAL)
    assert temporal.policy.features_extractor.features_dim == 4 * 4 + 5
    assert mlp.policy.mlp_extractor.policy_net[0].in_features == 64 * 7 + 5
    assert temporal.policy.mlp_extractor.policy_net[0].in_features == 21


def test_fused_adam_reaches_torch_with_sb3s_epsilon(frame) -> None:
    plain, _ = _model(frame, {})
    fused, _ = _model(frame, {"ppo": {"fused_adam": True}})
    assert not plain.policy.optimizer.defaults.get("fused")
    assert fused.policy.optimizer.defaults["fused"] is True
    assert fused.policy.optimizer.defaults["eps"] == plain.policy.optimizer.defaults["eps"] == 1e-5


# -- the preset section and run ids ----------------------------------------------------------
def test_mlp_is_canonical_and_keeps_old_run_ids_temporal_is_filled_in_and_new() -> None:
    base = load_train_config("cpu-smoke")
    assert base.ppo.policy.extractor == "mlp" and base.ppo.policy.patch_bars is None
    assert "policy" not in base.identity()["ppo"] and "fused_adam" not in base.identity()["ppo"]
    noisy = load_train_config("cpu-smoke", {"ppo": {"policy": {"extractor": "mlp",
                                                               "patch_bars": 4}}})
    assert noisy.ppo.policy.patch_bars is None and noisy.identity() == base.identity()
    temporal = load_train_config("cpu-smoke", {"ppo": {"policy": {"extractor": "temporal"}}})
    assert (temporal.ppo.policy.patch_bars, temporal.ppo.policy.channels) == (4, 16)
    assert temporal.identity()["ppo"]["policy"] == {"extractor": "temporal", "patch_bars": 4,
                                                    "channels": 16}
    fused = load_train_config("cpu-smoke", {"ppo": {"fused_adam": True}})
    assert fused.identity() != base.identity() != temporal.identity()


# -- the rollout path: SB3's numbers, fewer copies ---------------------------------------------
def test_trade_vec_normalize_is_sb3s_vec_normalize_bit_for_bit(frame) -> None:
    settings = {"preset": "default", "episode_length": 30, "exclude_column": WARMUP_COLUMN}

    def stack(cls):
        return cls(VecMonitor(make_vec_env(frame, 6, settings, seed=3)), gamma=0.99)

    ours, sb3 = stack(TradeVecNormalize), stack(VecNormalize)
    np.testing.assert_array_equal(ours.reset(), sb3.reset())
    rng = np.random.default_rng(1)
    finished = 0
    for _ in range(200):
        actions = rng.integers(0, 3, 6)
        (o_obs, o_rew, o_done, o_infos), (s_obs, s_rew, s_done, s_infos) = (
            ours.step(actions), sb3.step(actions))
        assert o_obs.dtype == np.float32
        np.testing.assert_array_equal(o_obs, s_obs)
        np.testing.assert_array_equal(o_rew, s_rew)
        np.testing.assert_array_equal(o_done, s_done)
        for i in np.flatnonzero(s_done):
            finished += 1
            np.testing.assert_array_equal(o_infos[i]["terminal_observation"],
                                          s_infos[i]["terminal_observation"])
    assert finished > 0
    np.testing.assert_array_equal(ours.obs_rms.mean, sb3.obs_rms.mean)
    np.testing.assert_array_equal(ours.obs_rms.var, sb3.obs_rms.var)
    np.testing.assert_array_equal(ours.get_original_obs(), sb3.get_original_obs())


def test_the_fast_normalization_rounds_like_the_division_at_float32_halfway_points() -> None:
    rng = np.random.default_rng(0)
    f = rng.standard_normal(50_000).astype(np.float32)
    # true quotients exactly halfway between two float32 values: a multiplication by the
    # reciprocal rounds thousands of them the other way
    halfway = (f.astype(np.float64) + np.nextafter(f, np.float32(np.inf))) / 2
    std = rng.random(50_000) + 0.5
    obs = np.zeros((1, 50_000), np.float32)
    mean = -(halfway * std)
    expected = np.clip((obs - mean) / std, -1e30, 1e30).astype(np.float32)
    naive = np.clip((obs - mean) * (1 / std), -1e30, 1e30).astype(np.float32)
    assert (naive.view(np.int32) != expected.view(np.int32)).sum() > 1000
    out = np.empty_like(obs)
    _normalize(obs, mean, std, 1e30, out)
    np.testing.assert_array_equal(out.view(np.int32), expected.view(np.int32))


def test_trade_rollout_buffer_yields_sb3s_minibatches() -> None:
    space = _box(9)
    buffers = [cls(8, space, spaces.Discrete(3), device="cpu", n_envs=3)
               for cls in (TradeRolloutBuffer, RolloutBuffer)]
    rng = np.random.default_rng(2)
    for _rollout in range(2):  # the second reuses the first's storage
        for buffer in buffers:
            buffer.reset()
        for _ in range(8):
            step = (rng.standard_normal((3, 9)).astype(np.float32), rng.integers(0, 3, 3),
                    rng.standard_normal(3).astype(np.float32), rng.random(3) < 0.2,
                    torch.randn(3, 1), torch.randn(3))
            for buffer in buffers:
                buffer.add(*step)
        last_values = torch.randn(3, 1)
        for buffer in buffers:
            buffer.compute_returns_and_advantage(last_values, np.zeros(3, dtype=bool))
        batches = []
        for buffer in buffers:
            np.random.seed(5)
            batches.append([b for _ in range(2) for b in buffer.get(6)])
        assert len(batches[0]) == len(batches[1]) == 8
        for ours, sb3 in zip(*batches, strict=True):
            for a, b in zip(ours, sb3, strict=True):
                assert torch.equal(a, b)


def test_ppo_on_the_tradecore_rollout_path_is_ppo_on_sb3s(frame) -> None:
    """The whole path, as make_training_env and new_model build it, against SB3's own
    VecNormalize and RolloutBuffer: the same weights and statistics after a run."""
    torch.set_num_threads(1)
    cfg = load_train_config("cpu-smoke", TINY)
    ours, vec_normalize = make_training_env(cfg, frame)
    assert isinstance(vec_normalize, TradeVecNormalize)
    model = new_model(cfg, ours, "cpu")
    assert isinstance(model.rollout_buffer, TradeRolloutBuffer)
    model.learn(256)
    sb3_env = VecNormalize(VecMonitor(make_vec_env(frame, cfg.n_envs,
                                                   cfg.env_settings(WARMUP_COLUMN),
                                                   seed=cfg.seed)), gamma=cfg.ppo.gamma)
    p = cfg.ppo
    sb3 = PPO("MlpPolicy", sb3_env, learning_rate=p.learning_rate, n_steps=p.n_steps,
              batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma,
              gae_lambda=p.gae_lambda, clip_range=p.clip_range, ent_coef=p.ent_coef,
              vf_coef=p.vf_coef, normalize_advantage=p.normalize_advantage,
              max_grad_norm=p.max_grad_norm, seed=cfg.seed, device="cpu",
              policy_kwargs={"net_arch": list(p.net_arch), "activation_fn": torch.nn.Tanh,
                             **policy_kwargs("mlp")})
    sb3.learn(256)
    np.testing.assert_array_equal(_params(model), _params(sb3))
    np.testing.assert_array_equal(vec_normalize.obs_rms.mean, sb3_env.obs_rms.mean)
