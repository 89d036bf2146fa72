"""Env presets load, and bad ones are rejected with the key named."""

from __future__ import annotations

import json

import pytest

from tests.frames import synthetic_frame
from tradecore_lib.env import EnvConfig, FrameError, load_env_config, make_env
from tradecore_lib.errors import ConfigError


@pytest.mark.parametrize("name", ["default", "continuous", "nudge", "extended", "prop_firm",
                                  "perpetual"])
def test_shipped_presets_load(name):
    cfg = load_env_config(name)
    assert cfg.name == name and cfg.window == 64
    assert json.loads(json.dumps(cfg.to_dict()))["taker_fee"] == 0.0005


def test_overrides_on_a_base_preset():
    cfg = load_env_config({"preset": "nudge", "window": 32})
    assert cfg.nudge and cfg.window == 32
    assert load_env_config({"window": 8}).window == 8
    assert load_env_config(cfg) is cfg


@pytest.mark.parametrize("raw, key", [
    ({"windw": 64}, "windw"),
    ({"window": 0}, "window"),
    ({"taker_fee": -0.1}, "taker_fee"),
    ({"action_mode": "market"}, "action_mode"),
    ({"positions": [0.0, 2.0]}, "positions"),
    ({"max_drawdown": 1.5}, "max_drawdown"),
    ({"stop_loss_bps": 0}, "stop_loss_bps"),
    ({"episode_length": 0}, "episode_length"),
    ({"stop_loss_bounds_bps": [10]}, "stop_loss_bounds_bps"),
    ({"risk_pct": True}, "risk_pct"),
    ({"daily_loss_limit": 0.0}, "daily_loss_limit"),
    ({"max_total_loss": 1.5}, "max_total_loss"),
    ({"borrow_rate_annual": -0.1}, "borrow_rate_annual"),
    ({"funding_rate_8h": 0.5}, "funding_rate_8h"),
    ({"reward": "sharpe"}, "reward"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key):
        load_env_config(raw)


def test_a_bad_value_in_a_preset_file_names_the_preset_and_the_field(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "cheap.json").write_text(json.dumps({"taker_fee": -0.0005}))
    monkeypatch.setenv("TRADECORE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"env preset 'cheap' \(.*cheap.json\)(.|\n)*"
                                          r"taker_fee: Input should be greater than or equal"):
        load_env_config("cheap")
    (tmp_path / "env" / "typo.json").write_text(json.dumps({"taker_fe": 0.0005}))
    with pytest.raises(ConfigError, match="did you mean 'taker_fee'"):
        load_env_config("typo")


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="Available: .*default, extended, nudge"):
        load_env_config("no-such-preset")


def test_preset_file_from_config_dir(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "mine.json").write_text(json.dumps({"window": 16, "nudge": True}))
    (tmp_path / "env" / "broken.json").write_text("{")
    monkeypatch.setenv("TRADECORE_CONFIG_DIR", str(tmp_path))
    assert load_env_config("mine") == EnvConfig(name="mine", window=16, nudge=True)
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_env_config("broken")


def test_frame_errors_are_clear():
    frame = synthetic_frame(n_features=1, rows=3_000)
    with pytest.raises(FrameError, match="volume"):
        make_env(frame.drop(columns=["volume"]))
    with pytest.raises(FrameError, match="nope"):
        make_env(frame, {"features": ["nope"]})
    with pytest.raises(FrameError, match="no episode fits"):
        make_env(frame.iloc[:500], "default")
    shuffled = frame.iloc[::-1].reset_index(drop=True)
    with pytest.raises(FrameError, match="increasing"):
        make_env(shuffled)


def test_bool_and_nonnumeric_columns_are_not_features():
    frame = synthetic_frame(n_features=2, rows=3_000)
    frame["label"] = "x"
    env = make_env(frame, "default")
    assert env.data.columns == ("open", "high", "low", "close", "volume", "feat_0_5", "feat_1_10")
    # a boolean marker column can exclude rows explicitly: no window or episode touches them
    frame.loc[1000:1099, "warmup"] = True
    excl = make_env(frame, {"exclude_column": "warmup", "episode_length": 100})
    starts = excl.data.starts
    assert len(starts) > 0
    ends = excl.data.episode_end[starts]
    assert not ((starts - 63 <= 1099) & (ends >= 1000)).any()
    plain = make_env(frame, {"episode_length": 100}).data
    assert ((plain.starts - 63 <= 1099) & (plain.episode_end[plain.starts] >= 1000)).any()
