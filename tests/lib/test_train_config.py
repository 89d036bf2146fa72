"""Training presets and run config: every preset loads, bad values are rejected clearly."""

from __future__ import annotations

import pytest

from tradecore_lib.config import preset_names
from tradecore_lib.months import Month, months_between
from tradecore_lib.train.config import (
    TrainConfigError,
    deep_merge,
    load_train_config,
)

YEAR = months_between(Month(2024, 1), Month(2025, 6))


def test_the_presets_load_and_their_folds_are_strictly_ordered() -> None:
    assert {"cpu-smoke", "cpu-control", "cpu-default", "gpu"} <= set(preset_names("train"))
    for name in preset_names("train"):
        cfg = load_train_config(name)
        for fold in cfg.folds(YEAR):
            assert max(fold.train) < min(fold.validation) and max(fold.validation) < min(
                fold.test)
        assert cfg.total_timesteps % cfg.rollout_size == 0
        if name.startswith("cpu-"):
            assert len(cfg.folds(YEAR)) == 1, name
    gpu = load_train_config("gpu")
    assert gpu.device == "cuda" and gpu.n_envs >= 128 and gpu.ppo.batch_size >= 4096


def test_only_real_presets_are_eligible_for_promotion() -> None:
    assert not load_train_config("cpu-smoke").eligible_for_promotion
    for name in ("cpu-control", "cpu-default", "gpu"):
        assert load_train_config(name).eligible_for_promotion, name
    control = load_train_config("cpu-control")
    assert control.total_timesteps <= 400_000 and control.promotion.matched_random_policies >= 100


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
    ({"ppo": {"learning_rte": 0.1}}, "ppo.learning_rte: unknown key"),
    ({"env_overrides": {"nudge": True}}, "env_overrides sets ['nudge']: configure them in "
     "nudge_actions"),
    ({"nudge_actions": {"stop_loss_bounds_bps": [1.0]}}, "nudge_actions.stop_loss_bounds_bps"),
    ({"ppo": {"learning_rte": 0.1}}, "did you mean 'learning_rate'?"),
    ({"promotion": {"matched_random_policies": 10}},
     "promotion.matched_random_policies: Input should be greater than or equal to 100"),
    ({"promotion": {"random_percentile": 101}}, "promotion.random_percentile"),
    ({"data": {"purge_days": 31}}, "purge_days 31 removes all of train month 2024-01"),
    ({"windows": {"train_months": 1}}, "windows and data's month lists"),
    ({"env_overrides": {"taker_fee": -0.001}}, "taker_fee: Input should be greater than or "
     "equal to 0 (got -0.001)"),
    ({"env_preset": "defualt"}, "env_preset 'defualt' names no preset in"),
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


def test_nudge_actions_and_warmup_marker_reach_the_env_settings() -> None:
    off = load_train_config("cpu-smoke").env_settings("warmup_incomplete")
    assert off["nudge"] is False and off["exclude_column"] == "warmup_incomplete"
    on = load_train_config("cpu-smoke", {"nudge_actions": {"enabled": True, "step_bps": 5.0}})
    settings = on.env_settings(None)
    assert settings["nudge"] is True and settings["nudge_step_bps"] == 5.0
    assert "exclude_column" not in settings


def test_run_identity_ignores_promotion_evaluation_and_eligibility_only() -> None:
    base = load_train_config("cpu-smoke")
    stricter = load_train_config("cpu-smoke", {"promotion": {"random_percentile": 99},
                                               "evaluation": {"signal_bars": 10},
                                               "eligible_for_promotion": True})
    reseeded = load_train_config("cpu-smoke", {"seed": 1})
    assert base.identity() == stricter.identity()
    assert base.identity() != reseeded.identity()


# -- walk-forward windows ------------------------------------------------------------------------
def _windows(**spec) -> dict:
    return {"windows": {"train_months": 3, **spec}, "data": {"train_months": None,
            "validation_months": None, "test_months": None}}


def test_windows_resolve_to_disjoint_folds_rolling_back_one_validation_length() -> None:
    cfg = load_train_config("cpu-smoke", _windows(validation_months=2, test_months=1, folds=3))
    folds = cfg.folds(YEAR)
    assert [f.index for f in folds] == [0, 1, 2]  # oldest first; the last one is promoted
    newest = folds[-1]
    assert newest.test == [YEAR[-1]]  # anchor "latest": the newest month with data
    assert newest.validation == [Month(2025, 4), Month(2025, 5)]
    assert newest.train == [Month(2025, 1), Month(2025, 2), Month(2025, 3)]
    for older, newer in zip(folds, folds[1:], strict=False):
        assert [str(m) for m in newer.test] == [str(m.next().next()) for m in older.test]
    for fold in folds:
        splits = [set(fold.train), set(fold.validation), set(fold.test)]
        assert not (splits[0] & splits[1] or splits[1] & splits[2] or splits[0] & splits[2])
        assert fold.months == sorted(fold.months)
        assert fold.train_end_ms == fold.validation[0].start_ms  # no purge


def test_a_fixed_anchor_and_the_purge_gap() -> None:
    cfg = load_train_config("cpu-smoke", _windows(anchor="2024-12", purge_days=45))
    (fold,) = cfg.folds(YEAR)
    assert fold.test == [Month(2024, 12)] and fold.validation == [Month(2024, 11)]
    day = 86_400_000
    assert fold.validation[0].start_ms - fold.train_end_ms == 45 * day
    # 45 days before November 1st is September 17th: training ends inside September
    assert fold.train == [Month(2024, 7), Month(2024, 8), Month(2024, 9)]
    assert fold.train[-1].start_ms < fold.train_end_ms < fold.train[-1].end_ms
    resolved = cfg.for_fold(fold)
    assert resolved.windows is None and resolved.data.purge_days == 45
    assert resolved.data.train_end_ms == fold.train_end_ms
    assert resolved.data.months("train") == fold.train
    # what a launcher hands the training process resolves to the same config
    relaunched = load_train_config("cpu-smoke", deep_merge(_windows(anchor="2024-12",
                                                                    purge_days=45),
                                                           cfg.fold_overrides(fold)))
    assert relaunched == resolved


def test_not_enough_months_names_how_many_are_needed_and_available() -> None:
    cfg = load_train_config("cpu-smoke", _windows(train_months=9, folds=2))
    with pytest.raises(TrainConfigError) as caught:
        cfg.folds(YEAR[-8:])
    message = str(caught.value)
    assert "training preset 'cpu-smoke': windows: 2 fold(s) of 9 train + 1 validation + 1 test"\
        " months need 12 months with features, 2024-07 .. 2025-06" in message
    assert "8 of them are available" in message and "missing: 2024-07, 2024-08" in message
    with pytest.raises(TrainConfigError, match="need 12 months with features; none are"):
        cfg.folds([])


def test_fixed_months_are_one_fold_and_must_have_data() -> None:
    cfg = load_train_config("cpu-smoke")
    (fold,) = cfg.folds(YEAR)
    assert (fold.train, fold.validation, fold.test) == ([Month(2024, 1)], [Month(2024, 2)],
                                                        [Month(2024, 3)])
    assert cfg.for_fold(fold) is cfg
    with pytest.raises(TrainConfigError, match=r"months \['2024-01'\] of its data window have "
                       "no features"):
        cfg.folds(YEAR[1:])
    with pytest.raises(TrainConfigError, match="resolve them with TrainConfig.folds"):
        load_train_config("cpu-control").data.months("train")


# -- the rename of brain_shampoo / nudge_bars: old keys read, run ids kept -----------------------
# config.json of a cpu-smoke run as the release before the rename wrote it (resolved, old keys,
# old promotion thresholds).
OLD_STORED_CONFIG = {
    "name": "cpu-smoke", "description": "Seconds on a laptop CPU (old text).",
    "data": {"train_months": ["2024-01"], "validation_months": ["2024-02"],
             "test_months": ["2024-03"], "feature_preset": None},
    "env_preset": "default", "env_overrides": {"episode_length": 512},
    "ppo": {"learning_rate": 0.0003, "n_steps": 128, "batch_size": 256, "n_epochs": 2,
            "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "clip_range_vf": None,
            "normalize_advantage": True, "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5,
            "target_kl": None, "net_arch": [64, 64], "activation": "tanh"},
    "brain_shampoo": {"normalize_obs": True, "normalize_reward": True, "clip_obs": 10.0,
                      "clip_reward": 10.0},
    "nudge_bars": {"enabled": False, "step_bps": 10.0, "stop_loss_bounds_bps": [25.0, 300.0],
                   "take_profit_bounds_bps": [50.0, 800.0]},
    "total_timesteps": 4096, "n_envs": 4, "device": "cpu", "seed": 0, "torch_threads": 1,
    "checkpoint_every_steps": 1024, "warm_start": False,
    "evaluation": {"random_baseline_seed": 0, "signal_bars": 1440},
    "promotion": {"min_sharpe_margin_vs_buy_and_hold": None, "max_drawdown": None,
                  "min_trades": 1, "min_total_return": None},
}
# The run id the release before the rename gave cpu-smoke on these partitions (computed with
# that release's code, commit 01cac53).
OLD_RUN_ID = "cpu-smoke-bac088116981"


def _partitions():
    from tradecore_lib.train.data import PartitionUsed

    return [PartitionUsed("2024-01", "candles/key", "a" * 64, "features/key", "b" * 64, 10)]


def test_a_stored_config_with_old_keys_stays_readable_and_keeps_its_run_id(caplog) -> None:
    from tradecore_lib.train.checkpoints import make_run_id
    from tradecore_lib.train.config import parse_train_config

    with pytest.warns(DeprecationWarning) as warned:
        stored = parse_train_config(OLD_STORED_CONFIG, "models/x/config.json")
    messages = [str(w.message) for w in warned]
    assert any("'brain_shampoo' is deprecated, read as 'vec_normalize'" in m for m in messages)
    assert any("'nudge_bars' is deprecated, read as 'nudge_actions'" in m for m in messages)
    assert any("['max_drawdown', 'min_trades'] are no longer gate rules" in m for m in messages)
    assert "'brain_shampoo' is deprecated" in caplog.text  # the log line, too
    assert stored.vec_normalize.normalize_obs and not stored.nudge_actions.enabled
    assert make_run_id("synthetic_btc_usd", stored, _partitions(), None) == OLD_RUN_ID
    # the migrated preset trains the same thing: same run id, so the finished run is found
    current = load_train_config("cpu-smoke")
    assert make_run_id("synthetic_btc_usd", current, _partitions(), None) == OLD_RUN_ID
    assert "brain_shampoo" in current.identity() and "vec_normalize" not in current.identity()


def test_old_keys_in_overrides_are_read_with_a_deprecation_and_both_are_refused() -> None:
    with pytest.warns(DeprecationWarning, match="'brain_shampoo' is deprecated"):
        old = load_train_config("cpu-smoke", {"brain_shampoo": {"normalize_reward": False}})
    assert old == load_train_config("cpu-smoke", {"vec_normalize": {"normalize_reward": False}})
    with pytest.raises(TrainConfigError, match="both 'nudge_bars' \\(deprecated\\) and "
                       "'nudge_actions' are set"):
        load_train_config("cpu-smoke", {"nudge_bars": {}, "nudge_actions": {}})
