"""The direction networks (shapes, masking, rebuild from stored keywords), their typed presets
(every preset loads, errors name the field, the run id ignores what trains nothing) and the
model keys and command line."""

from __future__ import annotations

import json

import pytest
import torch

from tradecore_lib.config import preset_names
from tradecore_lib.direction.config import (
    DirectionConfigError,
    load_direction_config,
)
from tradecore_lib.direction.launch import (
    DirectionRequest,
    model_kind,
    model_markets,
    parse_direction_request,
    plan_direction_folds,
    venue_markets,
)
from tradecore_lib.direction.models import (
    DirectionLSTM,
    DirectionTransformer,
    build_model,
    rebuild_model,
)
from tradecore_lib.direction.store import make_direction_run_id
from tradecore_lib.errors import ConfigError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.months import Month
from tradecore_lib.train.data import PartitionUsed


def test_lstm_maps_windows_to_one_logit_each() -> None:
    torch.manual_seed(0)
    model = DirectionLSTM(n_inputs=5)
    assert model.lstm.num_layers == 2 and model.lstm.bidirectional
    assert model.lstm.hidden_size == 64
    x = torch.randn(7, 60, 5)
    assert model(x).shape == (7,)
    model.eval()
    # both directions read the whole window: the oldest bar changes the output
    changed = x.clone()
    changed[:, 0] += 3.0
    assert not torch.allclose(model(x), model(changed))


def test_transformer_gives_one_logit_per_market_and_masks_minutes_missing_anywhere() -> None:
    torch.manual_seed(0)
    model = DirectionTransformer(n_inputs=4, n_markets=3, sequence_length=100).eval()
    assert len(model.encoder.layers) == 4
    assert model.encoder.layers[0].self_attn.num_heads == 8
    x = torch.randn(2, 100, 3, 4)
    present = torch.ones(2, 100, 3, dtype=torch.bool)
    present[0, 40:60, 1] = False  # market 1 missing 20 minutes
    present[1, -1, 2] = False  # market 2 has no bar at the decision minute
    out = model(x, present)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    noisy = x.clone()
    noisy[0, 40:60, 1] = 1e3  # absent cells: their inputs must not matter
    noisy[1, -1, 2] = -1e3
    torch.testing.assert_close(model(noisy, present), out)
    noisy[0, 50, 0] = 1e3  # a present cell of a minute missing in another market: masked
    torch.testing.assert_close(model(noisy, present), out)
    noisy[0, 10, 0] = 1e3  # a minute every market has does matter
    assert not torch.allclose(model(noisy, present)[0], out[0])
    noisy = x.clone()
    noisy[1, -1, 0] = 5.0  # the decision minute is read even when a market lacks it
    assert not torch.allclose(model(noisy, present)[1], out[1])
    alone = torch.zeros(1, 100, 3, dtype=torch.bool)
    alone[0, -1, 0] = True  # nothing common in the window: still finite
    assert torch.isfinite(model(x[:1], alone)).all()
    with pytest.raises(ValueError, match="expected windows"):
        model(x[:, :50], present[:, :50])


def test_networks_rebuild_from_their_stored_keywords() -> None:
    cfg = load_direction_config("cpu-smoke")
    for kind, shape, markets in (("lstm", (3, 60, 2), 1), ("transformer", (3, 30, 2, 2), 2)):
        torch.manual_seed(1)
        model = build_model(kind, cfg, n_inputs=2, n_markets=markets).eval()
        copy = rebuild_model(kind, json.loads(json.dumps(model.kwargs())))
        copy.load_state_dict(model.state_dict())
        copy.eval()
        x = torch.randn(*shape)
        args = (x,) if kind == "lstm" else (x, torch.ones(shape[:3], dtype=torch.bool))
        torch.testing.assert_close(copy(*args), model(*args))


# -- presets -----------------------------------------------------------------------------------
def test_every_preset_loads_with_the_plans_shapes() -> None:
    names = preset_names("direction")
    assert {"cpu-smoke", "cpu-default", "cpu-control", "gpu"} <= set(names)
    for name in names:
        cfg = load_direction_config(name)
        assert cfg.horizon_minutes == 15 and cfg.description
    default = load_direction_config("cpu-default")
    assert (default.lstm.sequence_length, default.lstm.hidden_size, default.lstm.num_layers,
            default.lstm.bidirectional) == (60, 64, 2, True)
    assert (default.transformer.sequence_length, default.transformer.num_layers,
            default.transformer.num_heads) == (100, 4, 8)
    assert not load_direction_config("cpu-smoke").eligible_for_promotion
    assert load_direction_config("gpu").gpu.search_batch_size


def test_bad_values_and_keys_are_named() -> None:
    with pytest.raises(DirectionConfigError, match=r"training\.epochs"):
        load_direction_config("cpu-smoke", {"training": {"epochs": 0}})
    with pytest.raises(DirectionConfigError, match="did you mean 'dead_zone'"):
        load_direction_config("cpu-smoke", {"dead_zon": 0.1})
    with pytest.raises(DirectionConfigError, match="must divide d_model"):
        load_direction_config("cpu-smoke", {"transformer": {"d_model": 30, "num_heads": 4}})
    with pytest.raises(DirectionConfigError, match="did you mean 'cpu-smoke'"):
        load_direction_config("cpu-smok")
    with pytest.raises(DirectionConfigError, match="economic.env_preset"):
        load_direction_config("cpu-smoke", {"economic": {"env_preset": "nope"}})


def test_windows_resolve_into_folds_like_the_ppo_presets() -> None:
    cfg = load_direction_config("cpu-control")
    available = [Month(2024, m) for m in range(1, 6)]
    (fold,) = cfg.folds(available)
    assert [str(m) for m in (*fold.train, *fold.validation, *fold.test)] == \
        ["2024-03", "2024-04", "2024-05"]
    fixed = cfg.for_fold(fold)
    assert fixed.windows is None and fixed.data.test_months == ["2024-05"]
    with pytest.raises(DirectionConfigError, match="direction preset 'cpu-control'"):
        cfg.folds(available[:2])


def _parts(sha: str) -> dict[str, list[PartitionUsed]]:
    return {"m": [PartitionUsed("2024-01", "c", sha, "f", sha, 10)]}


def test_run_id_names_what_is_trained_and_nothing_else() -> None:
    base = load_direction_config("cpu-smoke")
    run_id = make_direction_run_id("m", "lstm", base, _parts("a"))
    same = [
        {"promotion": {"max_ece": 0.2}},
        {"economic": {"p_long": 0.6}},
        {"transformer": {"d_model": 32}},  # the LSTM does not read it
        {"training": {"predict_batch_size": 64}},
        {"gpu": {"max_temperature_c": 80.0}},
        {"description": "another"},
    ]
    for overrides in same:
        cfg = load_direction_config("cpu-smoke", overrides)
        assert make_direction_run_id("m", "lstm", cfg, _parts("a")) == run_id, overrides
    assert make_direction_run_id("m", "lstm", base, _parts("b")) != run_id  # other data
    for overrides in ({"seed": 1}, {"lstm": {"hidden_size": 8}}, {"dead_zone": 0.0}):
        cfg = load_direction_config("cpu-smoke", overrides)
        assert make_direction_run_id("m", "lstm", cfg, _parts("a")) != run_id, overrides
    assert make_direction_run_id("m", "transformer", base, _parts("a")) != run_id
    assert run_id.startswith("cpu-smoke-")


# -- model keys and the command line -----------------------------------------------------------
def test_model_keys_name_a_market_or_a_venue() -> None:
    assert model_kind("synthetic_btc_usd") == "lstm"
    assert model_kind("synthetic_multi") == "transformer"
    with pytest.raises(ConfigError, match="unknown market"):
        model_kind("nowhere_multi")
    names = [m.name for m in venue_markets("synthetic")]
    assert names == ["synthetic_btc_usd", "synthetic_eth_usd", "synthetic_sol_usd"]
    cfg = load_direction_config("cpu-smoke", {"multi_markets": ["synthetic_eth_usd",
                                                                "synthetic_btc_usd"]})
    assert [m.name for m in model_markets("synthetic_multi", cfg)] == \
        ["synthetic_eth_usd", "synthetic_btc_usd"]
    foreign = load_direction_config("cpu-smoke", {"multi_markets": ["kraken_spot_btc_usd"]})
    with pytest.raises(ConfigError, match="not on venue 'synthetic'"):
        model_markets("synthetic_multi", foreign)


def test_request_and_command_line_are_inverse() -> None:
    request = DirectionRequest(model_key="synthetic_multi", preset="cpu-smoke",
                               overrides={"seed": 3}, lake_root="/tmp/lake")
    argv = request.argv("python")
    assert argv[:3] == ["python", "-m", "tradecore_lib.direction.train"]
    assert parse_direction_request(argv[3:]) == request
    with pytest.raises(ConfigError, match="JSON object"):
        parse_direction_request(["--model-key", "x", "--overrides", "[1]"])


def test_folds_are_planned_on_the_months_every_market_has(tmp_path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    markets = venue_markets("synthetic")
    for market in markets:
        last = 3 if market.name == "synthetic_eth_usd" else 4  # ETH lacks 2024-04
        for month in (Month(2024, m) for m in range(1, last + 1)):
            # only presence matters to the planner
            lake.write_bytes(candle_key(market, month), b"x")
            lake.write_bytes(feature_key(market.feature_preset, market, month), b"x")
    now = Month(2024, 6).start_ms
    lstm = DirectionRequest(model_key="synthetic_btc_usd", preset="cpu-control")
    cfg, ((fold, request),) = plan_direction_folds(lake, lstm, now)
    assert [str(m) for m in fold.months] == ["2024-02", "2024-03", "2024-04"]
    assert request.config().data.test_months == ["2024-04"]
    multi = DirectionRequest(model_key="synthetic_multi", preset="cpu-control")
    _, ((fold, request),) = plan_direction_folds(lake, multi, now)
    assert [str(m) for m in fold.months] == ["2024-01", "2024-02", "2024-03"]
    with pytest.raises(DirectionConfigError, match="need 3 months"):
        plan_direction_folds(lake, multi, Month(2024, 3).start_ms)
