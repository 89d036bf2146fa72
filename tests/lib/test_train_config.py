"""Training presets and run config: every preset loads, bad values are rejected clearly."""

from __future__ import annotations

import pytest

from tradecore_lib.train.config import (
    TrainConfigError,
    available_presets,
    deep_merge,
    load_train_config,
)


def test_the_three_presets_load_and_are_strictly_ordered() -> None:
    assert {"cpu-smoke", "cpu-default", "gpu"} <= set(available_presets())
    for name in ("cpu-smoke", "cpu-default", "gpu"):
        cfg = load_train_config(name)
        train, val, test = (cfg.data.months(s) for s in ("train", "validation", "test"))
        assert max(train) < min(val) and max(val) < min(test)
        assert cfg.total_timesteps % cfg.rollout_size == 0
    gpu = load_train_config("gpu")
    assert gpu.device == "cuda" and gpu.n_envs >= 128 and gpu.ppo.batch_size >= 4096


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"ppo": {"ent_coef": -0.1}}, "ppo.ent_coef: Input should be greater than or equal to 0 "
     "(got -0.1)"),
    ({"ppo": {"clip_range_vf": 0}}, "ppo.clip_range_vf: Input should be greater than 0"),
    ({"device": "tpu"}, "device: Input should be 'cpu', 'cuda' or 'auto' (got 'tpu')"),
    ({"data": {"validation_months": ["2024-01"]}},
     "validation month 2024-01 is not after the last train month 2024-01"),
    ({"data": {"test_months": ["2024-02"]}},
     "test month 2024-02 is not after the last validation month 2024-02"),
    ({"data": {"train_months": ["2024-02", "2024-01"]}}, "train_months must be sorted"),
    ({"data": {"train_months": ["2024-13"]}}, "train_months: month must be 1..12"),
    ({"total_timesteps": 5000}, "total_timesteps 5000 must be a multiple of the rollout size "
     "n_steps * n_envs = 512; e.g. 4608 or 5120"),
    ({"ppo": {"batch_size": 300}}, "ppo.batch_size 300 must divide the rollout size"),
    ({"ppo": {"learning_rte": 0.1}}, "ppo.learning_rte: Extra inputs are not permitted"),
    ({"env_overrides": {"nudge": True}}, "env_overrides sets ['nudge']: configure them in "
     "nudge_bars"),
    ({"nudge_bars": {"stop_loss_bounds_bps": [1.0]}}, "nudge_bars.stop_loss_bounds_bps"),
])
def test_bad_values_are_rejected_naming_field_and_value(overrides, expected) -> None:
    with pytest.raises(TrainConfigError) as caught:
        load_train_config("cpu-smoke", overrides)
    message = str(caught.value)
    assert "training preset 'cpu-smoke'" in message
    assert expected in message


def test_unknown_preset_lists_the_available_ones() -> None:
    with pytest.raises(TrainConfigError, match=r"'cpu-smok' not found .*cpu-smoke"):
        load_train_config("cpu-smok")


def test_overrides_merge_deeply_and_env_keys_merge_one_by_one() -> None:
    cfg = load_train_config("cpu-smoke", {"ppo": {"ent_coef": 0.05},
                                          "env_overrides": {"taker_fee": 0.001}})
    assert cfg.ppo.ent_coef == 0.05 and cfg.ppo.n_steps == 128
    assert cfg.env_overrides == {"episode_length": 512, "taker_fee": 0.001}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def test_nudge_bars_and_warmup_marker_reach_the_env_settings() -> None:
    off = load_train_config("cpu-smoke").env_settings("warmup_incomplete")
    assert off["nudge"] is False and off["exclude_column"] == "warmup_incomplete"
    on = load_train_config("cpu-smoke", {"nudge_bars": {"enabled": True, "step_bps": 5.0}})
    settings = on.env_settings(None)
    assert settings["nudge"] is True and settings["nudge_step_bps"] == 5.0
    assert "exclude_column" not in settings


def test_run_identity_ignores_promotion_and_evaluation_only() -> None:
    base = load_train_config("cpu-smoke")
    stricter = load_train_config("cpu-smoke", {"promotion": {"min_trades": 99},
                                               "evaluation": {"signal_bars": 10}})
    reseeded = load_train_config("cpu-smoke", {"seed": 1})
    assert base.identity() == stricter.identity()
    assert base.identity() != reseeded.identity()
