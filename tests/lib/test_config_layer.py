"""The configuration mistakes of issue 9, each refused when the configuration loads.

Every test writes a copy of ``configs/`` into a temporary folder, points
``TRADECORE_CONFIG_DIR`` at it, makes one mistake and calls :func:`load_markets` -- what the
code location calls first -- asserting the message names the file, the market or preset, the
field and, for a typo, what was meant. One test loads the code location itself in a child
process to show the mistake stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tradecore_lib.config import ConfigModel, validate
from tradecore_lib.errors import ConfigError, TradeCoreError
from tradecore_lib.markets import MarketConfigError, load_markets
from tradecore_lib.paths import REPO_ROOT

SYNTHETIC = "synthetic_btc_usd"
SPOT = "kraken_spot_btc_usd"


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's configs/ that TRADECORE_CONFIG_DIR points at."""
    folder = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", folder)
    monkeypatch.setenv("TRADECORE_CONFIG_DIR", str(folder))
    return folder


def _edit_market(configs: Path, market: str, **fields: object) -> Path:
    path = configs / "markets.yaml"
    document = yaml.safe_load(path.read_text())
    document["markets"][market].update(fields)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _edit_preset(configs: Path, kind: str, name: str, edit) -> Path:
    path = configs / kind / f"{name}.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    return path


def _load_error(configs: Path) -> str:
    with pytest.raises(MarketConfigError) as caught:
        load_markets()
    message = str(caught.value)
    assert message.startswith(str(configs / "markets.yaml")), message
    return message


def test_the_shipped_configuration_loads(configs: Path) -> None:
    markets = load_markets(include_disabled=True)
    assert {m.name for m in markets} >= {SYNTHETIC, SPOT, "kraken_futures_btc_usd"}


def test_a_misspelt_synthetic_source_option_says_what_was_meant(configs: Path) -> None:
    _edit_market(configs, SYNTHETIC, source={"seeed": 7})
    message = _load_error(configs)
    assert f"market '{SYNTHETIC}': source" in message
    assert "seeed" in message and "did you mean 'seed'?" in message


def test_a_misspelt_kraken_source_option_says_what_was_meant(configs: Path) -> None:
    _edit_market(configs, SPOT, source={"retry_atempts": 3})
    message = _load_error(configs)
    assert (f"market '{SPOT}': source.retry_atempts: unknown key; did you mean "
            "'retry_attempts'?") in message
    assert "Valid keys: boundary_overlap_s, checkpoint_every_pages" in message


def test_an_out_of_range_source_option_is_named(configs: Path) -> None:
    _edit_market(configs, SPOT, source={"trades_page_size": 5000})
    message = _load_error(configs)
    assert (f"market '{SPOT}': source.trades_page_size: Input should be less than or equal to "
            "1000 (got 5000)") in message


def test_a_gap_tolerance_that_is_not_a_number_fails_at_load(configs: Path) -> None:
    # Before: the candles were written, then the gaps check step crashed with a TypeError.
    _edit_market(configs, SYNTHETIC, gap_tolerance={"max_missing_fraction": "lots"})
    message = _load_error(configs)
    assert (f"market '{SYNTHETIC}': gap_tolerance.max_missing_fraction: Input should be a "
            "valid number, unable to parse string as a number (got 'lots')") in message


def test_a_negative_taker_fee_in_an_env_preset_fails_at_load(configs: Path) -> None:
    env_file = _edit_preset(configs, "env", "default", lambda raw: raw.update(taker_fee=-0.0005))
    message = _load_error(configs)
    assert ("markets 'synthetic_btc_usd', 'synthetic_eth_usd', 'synthetic_sol_usd': "
            "training preset 'cpu-smoke'") in message
    assert f"env preset 'default' ({env_file})" in message
    assert "taker_fee: Input should be greater than or equal to 0 (got -0.0005)" in message
    # a preset shared by several markets is reported once, naming them all
    shared = (f"markets '{SPOT}', 'kraken_spot_eth_usd', 'kraken_spot_sol_usd', "
              "'coinbase_spot_btc_usd', 'coinbase_spot_eth_usd', 'coinbase_spot_sol_usd', "
              "'kraken_futures_btc_usd': training preset 'cpu-default'")
    assert message.count(shared) == 1


def test_a_misspelt_env_preset_in_a_training_preset_says_what_was_meant(configs: Path) -> None:
    train_file = _edit_preset(configs, "train", "cpu-smoke",
                              lambda raw: raw.update(env_preset="defualt"))
    message = _load_error(configs)
    assert (f"markets 'synthetic_btc_usd', 'synthetic_eth_usd', 'synthetic_sol_usd': "
            f"training preset 'cpu-smoke' ({train_file})") in message
    assert "env_preset 'defualt' names no preset in" in message
    assert "did you mean 'default'?" in message
    assert "Available: continuous, control, default" in message


def test_a_typo_in_a_required_training_field_names_the_key_and_the_missing_field(
    configs: Path,
) -> None:
    def typo(raw: dict) -> None:
        raw["total_timestep"] = raw.pop("total_timesteps")

    train_file = _edit_preset(configs, "train", "cpu-smoke", typo)
    message = _load_error(configs)
    assert f"training preset 'cpu-smoke' ({train_file})" in message
    assert "total_timestep: unknown key; did you mean 'total_timesteps'?" in message
    assert ("total_timesteps: Field required (the unknown key 'total_timestep' looks like a "
            "typo of 'total_timesteps')") in message


def test_a_typo_in_a_required_market_field_names_the_key_and_the_missing_field(
    configs: Path,
) -> None:
    path = configs / "markets.yaml"
    path.write_text(path.read_text().replace("    feature_preset: default\n",
                                             "    featur_preset: default\n", 1))
    message = _load_error(configs)
    assert (f"market '{SYNTHETIC}': featur_preset: unknown key; did you mean "
            "'feature_preset'?") in message
    assert (f"market '{SYNTHETIC}': feature_preset: Field required (the unknown key "
            "'featur_preset' looks like a typo of 'feature_preset')") in message


@pytest.mark.parametrize(("field", "value", "kind", "meant"), [
    ("train_preset", "cpu-smok", "train", "cpu-smoke"),
    ("feature_preset", "extnded", "tools", "extended"),
])
def test_misspelt_preset_references_of_a_market_say_what_was_meant(
    configs: Path, field: str, value: str, kind: str, meant: str
) -> None:
    _edit_market(configs, SYNTHETIC, **{field: value})
    message = _load_error(configs)
    assert (f"market '{SYNTHETIC}': {field} {value!r} names no preset in {configs / kind}; "
            f"did you mean {meant!r}?") in message


def test_a_broken_feature_preset_fails_at_load(configs: Path) -> None:
    _edit_preset(configs, "tools", "default",
                 lambda raw: raw["indicators"].append({"name": "rsi", "params": {"windw": 9}}))
    message = _load_error(configs)
    assert "markets 'synthetic_btc_usd', 'synthetic_eth_usd', 'synthetic_sol_usd'" in message
    assert "unknown parameter 'windw' (did you mean 'window'?)" in message


def test_an_unknown_venue_and_every_problem_of_the_file_at_once(configs: Path) -> None:
    _edit_market(configs, SYNTHETIC, venue="synthetik", freshness_fail_hours=-1)
    message = _load_error(configs)
    assert "venue: unknown venue 'synthetik'; did you mean 'synthetic'?" in message
    assert "freshness_fail_hours: Input should be greater than 0 (got -1)" in message


def test_deprecated_keys_in_a_preset_file_are_read_with_a_warning(configs: Path) -> None:
    def old_names(raw: dict) -> None:
        raw["brain_shampoo"] = raw.pop("vec_normalize")
        raw["nudge_bars"] = raw.pop("nudge_actions")

    _edit_preset(configs, "train", "cpu-smoke", old_names)
    with pytest.warns(DeprecationWarning) as warned:
        markets = load_markets()
    messages = " | ".join(str(w.message) for w in warned)
    assert "'brain_shampoo' is deprecated, read as 'vec_normalize'" in messages
    assert "'nudge_bars' is deprecated, read as 'nudge_actions'" in messages
    assert SYNTHETIC in {m.name for m in markets}


def test_every_config_error_is_a_trade_core_error() -> None:
    class Knob(ConfigModel):
        size: int = 1

    with pytest.raises(ConfigError) as caught:
        validate(Knob, {"sise": 2}, "somewhere")
    assert isinstance(caught.value, TradeCoreError) and not caught.value.retryable
    assert "somewhere: invalid configuration:\n  - sise: unknown key; did you mean 'size'?" \
        in str(caught.value)
    assert issubclass(MarketConfigError, ConfigError)


def test_the_code_location_does_not_load_with_a_mistake(configs: Path) -> None:
    _edit_market(configs, SYNTHETIC, gap_tolerance={"max_missing_fraction": "lots"})
    env = {**os.environ, "TRADECORE_CONFIG_DIR": str(configs)}
    loaded = subprocess.run([sys.executable, "-c", "import tradecore_pipelines.definitions"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert loaded.returncode != 0
    assert "MarketConfigError" in loaded.stderr
    assert "gap_tolerance.max_missing_fraction" in loaded.stderr
