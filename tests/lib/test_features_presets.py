"""Preset loading and validation: every problem named with where it is and the valid choices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tradecore_lib.config import preset_names
from tradecore_lib.errors import ConfigError
from tradecore_lib.features import (
    MAX_LOOKBACK,
    REGISTRY,
    CandleArrays,
    PresetError,
    inline_preset,
    load_feature_preset,
    parse_preset,
)
from tradecore_lib.features.registry import ParamError, ParamSpec


def test_shipped_presets_are_valid_and_nested() -> None:
    assert {"default", "extended", "full"} <= set(preset_names("tools"))
    default, extended, full = (load_feature_preset(n) for n in ("default", "extended", "full"))
    assert [c.name for c in default.indicators] == ["vwap", "zscore"]
    assert [c.name for c in extended.indicators] == ["vwap", "zscore", "atr", "rsi", "bbands"]
    assert set(default.columns) < set(extended.columns) < set(full.columns)
    assert {c.name for c in full.indicators} == set(REGISTRY)  # "full" is everything


def test_catalog_cards_are_complete_and_outputs_match_compute() -> None:
    rng = np.random.default_rng(0)
    n = 500
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    series = CandleArrays(
        ts_ms=1_704_067_200_000 + 60_000 * np.arange(n, dtype=np.int64),
        open=close, high=close * 1.001, low=close * 0.999, close=close,
        volume=rng.gamma(2.0, 2.0, n),
    )
    for name, card in REGISTRY.items():
        assert card.label and card.description, name
        params = card.defaults()
        for spec in card.params:
            assert spec.coerce(spec.default) == spec.default, (name, spec.name)
        out = card.compute(series, params)
        assert list(out) == card.outputs(params), name
        assert all(v.shape == (n,) and v.dtype == np.float64 for v in out.values()), name
        assert 0 <= card.lookback(params) <= MAX_LOOKBACK, name


def test_param_spec_rejects_wrong_types_and_bounds() -> None:
    window = ParamSpec("window", "int", 14, 2, 100, "bars")
    assert window.coerce(20) == 20
    for bad, message in [(1, "out of bounds"), (101, "out of bounds"), (True, "integer"),
                         ("14", "integer"), (14.0, "integer")]:
        with pytest.raises(ParamError, match=message):
            window.coerce(bad)
    nbdev = ParamSpec("nbdev", "float", 2.0, 0.5, 5.0, "sd")
    assert nbdev.coerce(3) == 3.0
    with pytest.raises(ParamError, match="out of bounds"):
        nbdev.coerce(float("nan"))
    windows = ParamSpec("windows", "int_list", (20,), 2, 100, "bars", max_items=3)
    assert windows.coerce([5, 10]) == (5, 10)
    for bad, message in [([], "non-empty"), ([5, 5], "duplicate"), ([1, 2, 3, 4], "at most"),
                         ([5, 1000], "out of bounds"), (5, "non-empty list")]:
        with pytest.raises(ParamError, match=message):
            windows.coerce(bad)


def problems_of(raw: object) -> str:
    with pytest.raises(PresetError) as info:
        parse_preset(raw, name="bad", source="bad.json")
    assert str(info.value).startswith("bad.json: invalid indicator preset")
    return str(info.value)


def test_unknown_indicator_names_it_and_lists_choices() -> None:
    message = problems_of({"indicators": [{"name": "rsii"}]})
    assert "indicators[0]: unknown indicator 'rsii' (did you mean 'rsi'?)" in message
    assert "valid choices: " + ", ".join(sorted(REGISTRY)) in message


def test_unknown_parameter_names_it_and_lists_valid_parameters() -> None:
    message = problems_of({"indicators": [{"name": "bbands", "params": {"period": 20}}]})
    expected = "indicators[0] (bbands): unknown parameter 'period'; valid parameters: nbdev, window"
    assert expected in message
    message = problems_of({"indicators": [{"name": "session", "params": {"tz": "UTC"}}]})
    assert "takes no parameters" in message


def test_out_of_bounds_value_names_bounds() -> None:
    message = problems_of(
        {"indicators": [{"name": "vwap"}, {"name": "rsi", "params": {"window": 1}}]}
    )
    assert "indicators[1] (rsi): parameter 'window' = 1 is out of bounds [2, 1000]" in message
    assert "valid: window (int, default 14, 2..1000)" in message


def test_all_problems_reported_at_once() -> None:
    message = problems_of({
        "indicators": [
            {"name": "macd", "params": {"fast": 30, "slow": 26}},
            {"name": "sma", "params": {"windows": [20, 20]}},
            {"name": "zscore", "extra": 1},
            "rsi",
        ],
        "colour": "red",
    })
    assert "top level: unknown key 'colour'; valid keys: description, indicators" in message
    assert "indicators[0] (macd): fast (30) must be smaller than slow (26)" in message
    assert "indicators[1] (sma): parameter 'windows' has duplicate items" in message
    assert "indicators[2]: unknown key 'extra'; valid keys: name, params" in message
    assert "indicators[3] must be an object" in message


def test_misspelt_keys_get_a_did_you_mean_and_errors_are_config_errors() -> None:
    message = problems_of({"indicator": [{"name": "rsi"}], "indicators": [{"nmae": "rsi"}]})
    assert "unknown key 'indicator' (did you mean 'indicators'?)" in message
    assert "indicators[0]: unknown key 'nmae' (did you mean 'name'?)" in message
    assert issubclass(PresetError, ConfigError) and issubclass(ParamError, ConfigError)


def test_duplicate_columns_and_excess_lookback_rejected() -> None:
    message = problems_of({"indicators": [{"name": "rsi"}, {"name": "rsi"}]})
    twice = "column 'rsi_14' is produced twice, by indicators[0] (rsi) and indicators[1] (rsi)"
    assert twice in message
    message = problems_of(
        {"indicators": [{"name": "macd", "params": {"slow": 4000, "signal": 4000}}]}
    )
    assert f"at most {MAX_LOOKBACK}" in message


def test_empty_or_non_object_documents() -> None:
    assert "non-empty list" in problems_of({"indicators": []})
    assert "expected a JSON object" in problems_of([1, 2])


def test_load_by_name_by_path_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"indicators": [{"name": "rsi", "params": {"window": 21}}]}))
    preset = load_feature_preset(str(path))
    assert preset.name == "mine" and preset.columns == ["rsi_21"]
    with pytest.raises(PresetError, match="unknown preset 'ful' \\(did you mean 'full'\\?\\)"):
        load_feature_preset("ful")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(PresetError, match="(?s)broken.json: .*not valid JSON"):
        load_feature_preset(str(broken))


def test_inline_presets_named_by_content() -> None:
    a = inline_preset([{"name": "rsi", "params": {"window": 14}}])
    b = inline_preset([{"name": "rsi"}])  # the same after defaults are filled
    c = inline_preset([{"name": "rsi", "params": {"window": 21}}])
    assert a.name == b.name != c.name
    assert a.name.startswith("custom-")
    with pytest.raises(PresetError, match="inline run config"):
        inline_preset([{"name": "nope"}])
