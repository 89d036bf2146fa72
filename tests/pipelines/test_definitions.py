"""The code location loads, validates and stays light."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg

from tradecore_pipelines.definitions import defs

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "stable_baselines3", "mlflow")


def test_definitions_are_loadable():
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"synthetic_btc_usd/candles", "synthetic_btc_usd/manifest"} <= keys


def test_keys_are_market_then_layer_and_groups_are_markets():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        market, layer = key.path
        node = graph.get(key)
        assert node.group_name == market
        assert node.tags["tradecore/layer"]


def test_every_candles_asset_has_blocking_partitioned_checks():
    graph = defs.resolve_asset_graph()
    candle_keys = [k for k in graph.get_all_asset_keys() if k.path[-1] == "candles"]
    assert candle_keys
    for key in candle_keys:
        checks = {c.name: c for c in graph.get_check_keys_for_assets({key})}
        assert set(checks) == {"schema", "time_grid", "ohlc_sanity", "gaps", "coverage"}
        for check_key in checks.values():
            spec = graph.get_check_spec(check_key)
            assert spec.blocking and spec.partitions_def is not None


def test_loading_definitions_imports_no_heavy_ml_library():
    code = (
        "import sys, tradecore_pipelines.definitions\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_live_markets_have_freshness_retries_and_a_refresh_schedule():
    graph = defs.resolve_asset_graph()
    for name, live in (("kraken_spot_btc_usd", True), ("synthetic_btc_usd", False)):
        node = graph.get(dg.AssetKey([name, "candles"]))
        assert (node.freshness_policy is not None) is live
        assert (node.assets_def.op.retry_policy is not None) is live
    schedules = {s.name for s in defs.schedules}
    assert schedules == {
        *(f"refresh_candles__{m}" for m in ("kraken_spot_btc_usd", "kraken_spot_eth_usd",
                                            "kraken_spot_sol_usd", "kraken_futures_btc_usd")),
        "broom_closet_weekly",
    }
    markets = {key.path[0] for key in graph.get_all_asset_keys() if key.path[-1] == "candles"}
    assert {s.name for s in defs.sensors} == {
        "landing_folder_sensor", "dead_run_worker_sensor", "runpod_reaper",
        "features_follow_candles", "champion_monitor", "signals_refresh",
        "run_failure_alerts", "alert_redelivery",
        *(f"retrain__{market}" for market in markets),
    }


def test_direction_chains_for_markets_with_a_direction_preset_and_a_transformer_per_venue():
    graph = defs.resolve_asset_graph()
    layers = ("direction_model", "direction_evaluation", "direction_champion",
              "direction_signals")
    for model_key in ("synthetic_btc_usd", "synthetic_lag_usd", "synthetic_null_usd",
                      "kraken_spot_sol_usd", "synthetic_multi", "kraken_spot_multi"):
        for layer in layers:
            assert graph.has(dg.AssetKey([model_key, layer])), (model_key, layer)
    assert not graph.has(dg.AssetKey(["synthetic_edge_usd", "direction_model"]))  # no preset
    assert not graph.has(dg.AssetKey(["kraken_futures_multi", "direction_model"]))
    # each venue's transformer reads its markets' features, the controls left out
    for venue, coins in (("synthetic", ("btc", "eth", "sol")),
                         ("kraken_spot", ("btc", "eth", "sol"))):
        parents = graph.get(dg.AssetKey([f"{venue}_multi", "direction_model"])).parent_keys
        assert parents == {dg.AssetKey([f"{venue}_{coin}_usd", "features"]) for coin in coins}
    checks = {c.name for c in graph.get_check_keys_for_assets(
        {dg.AssetKey(["synthetic_multi", "direction_evaluation"])})}
    assert checks == {"direction_gate"}


def test_every_description_renders_as_written():
    """The UI renders descriptions as Markdown, where ``<market>`` is an HTML tag and
    vanishes: a placeholder in angle brackets must sit in a code span."""
    texts = {f"asset {key.to_user_string()}": spec.description
             for key, spec in ((k, defs.resolve_asset_graph().get(k))
                               for k in defs.resolve_all_asset_keys())}
    texts |= {f"check {spec.key.name}": spec.description for checks in defs.asset_checks or []
              for spec in checks.check_specs}
    texts |= {f"sensor {s.name}": s.description for s in defs.sensors or []}
    texts |= {f"schedule {s.name}": s.description for s in defs.schedules or []}
    swallowed = {where: re.findall(r"<[A-Za-z_/][^>]*>", re.sub(r"`[^`]*`", "", text))
                 for where, text in texts.items() if text}
    assert {where: tags for where, tags in swallowed.items() if tags} == {}
    manifest = texts["asset synthetic_btc_usd/manifest"]
    assert "`<manifests folder>/synthetic_btc_usd.json`" in manifest
