"""ppo_agent -> evaluation (+ promotion gate) -> signals through Dagster, on a temporary lake
and a temporary MLflow SQLite store, with the cpu-smoke preset and the real components
(PipesSubprocessClient running the training entry point, SB3 PPO, MLflow)."""

from __future__ import annotations

import json
import sys

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster_aws.s3 import S3Resource

from tradecore_lib.markets import get_market
from tradecore_lib.tracking import Tracker, model_name
from tradecore_lib.train.checkpoints import RunStore
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.features import build_features_asset
from tradecore_pipelines.assets.manifest import build_manifest_asset
from tradecore_pipelines.assets.training import build_training_assets
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource

MARKET = get_market("synthetic_btc_usd")
RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-03-01",
}
AGENT = dg.AssetKey([MARKET.name, "ppo_agent"])
EVALUATION = dg.AssetKey([MARKET.name, "evaluation"])
SIGNALS = dg.AssetKey([MARKET.name, "signals"])
GATE = dg.AssetCheckKey(EVALUATION, "promotion_gate")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Definitions with the whole chain, candles and features already materialized."""
    root = tmp_path_factory.mktemp("chain")
    lake = LakeResource(root=str(root / "lake"), manifests_dir=str(root / "manifests"),
                        s3=S3Resource())
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    defs = dg.Definitions(
        assets=[build_candles_asset(MARKET), build_manifest_asset(MARKET),
                build_features_asset(MARKET), *build_training_assets(MARKET)],
        asset_checks=[build_candle_checks(MARKET)],
        resources={"lake": lake, "mlflow": mlflow,
                   "pipes_subprocess_client": dg.PipesSubprocessClient()},
    )
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        for selection in ([dg.AssetKey([MARKET.name, "candles"])],
                          [dg.AssetKey([MARKET.name, "manifest"])],
                          [dg.AssetKey([MARKET.name, "features"])]):
            result = job.execute_in_process(instance=instance, asset_selection=selection,
                                            tags=RANGE)
            assert result.success
        yield defs, job, instance, lake, Tracker(mlflow.tracking_uri)


def _train_evaluate_signal(job, instance, agent_config: dict) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(
        instance=instance,
        asset_selection=[AGENT, EVALUATION, SIGNALS],
        run_config={"ops": {f"{MARKET.name}__ppo_agent": {"config": agent_config}}},
        raise_on_error=False,
    )


def test_chain_trains_evaluates_promotes_and_signals(chain) -> None:
    _, job, instance, lake, tracker = chain
    result = _train_evaluate_signal(job, instance, {})
    assert result.success

    agent = result.asset_materializations_for_node(f"{MARKET.name}__ppo_agent")[0].metadata
    store = RunStore(lake.get_lake(), MARKET.name, agent["run_id"].value)
    for name in ("model.zip", "vecnormalize.pkl", "config.json", "lineage.json",
                 "metrics.jsonl", "eval_summary.json", "equity.png"):
        assert store.exists(name), name
    assert agent["timesteps"].value == 4096
    assert agent["model_version"].value == "1"

    # Lineage: only the train month, with the sha256 the manifest records for its candles.
    lineage = store.read_json("lineage.json")
    manifest = json.loads((lake.manifest_folder() / f"{MARKET.name}.json").read_text())
    assert [p["month"] for p in lineage["partitions"]] == ["2024-01"]
    assert lineage["partitions"][0]["candles_sha256"] == manifest["months"][0]["sha256"]

    # MLflow: params, metric history over steps, artifacts, registered version, champion.
    run = tracker.client.get_run(agent["mlflow_run_id"].value)
    assert run.data.params["ppo.n_steps"] == "128"
    history = tracker.client.get_metric_history(run.info.run_id, "train/fps")
    assert [m.step for m in history] == list(range(512, 4097, 512))
    assert "test/agent/sharpe" in run.data.metrics
    artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id, "checkpoint")}
    assert "checkpoint/model.zip" in artifacts
    assert tracker.champion(MARKET.name).version == "1"

    evaluation = result.asset_materializations_for_node(f"{MARKET.name}__evaluation")[0]
    assert "data:image/png;base64," in evaluation.metadata["equity_curve"].value
    policies = {r.data["policy"] for r in evaluation.metadata["comparison"].value.records}
    assert policies == {"agent", "buy_and_hold", "flat", "random"}
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and "promoted v1" in check.description

    signals = result.asset_materializations_for_node(f"{MARKET.name}__signals")[0].metadata
    table = pq.read_table(signals["path"].value)
    assert table.num_rows == 1440 and set(table["model_version"].to_pylist()) == {"1"}
    assert signals["month"].value == "2024-03"


def test_failing_gate_keeps_the_champion_and_skips_signals(chain) -> None:
    _, job, instance, lake, tracker = chain
    if tracker.champion(MARKET.name) is None:
        assert _train_evaluate_signal(job, instance, {}).success
    champion = tracker.champion(MARKET.name).version
    signals_before = instance.get_latest_materialization_event(SIGNALS)

    # Another seed is another run (version); a trade count no agent reaches fails the gate.
    result = _train_evaluate_signal(
        job, instance, {"seed": 1, "promotion": {"min_trades": 10**9}})

    check = result.get_asset_check_evaluations()[0]
    assert not check.passed
    assert "test trades" in check.description and "short by" in check.description
    assert f"v{champion} stays champion" in check.description
    assert tracker.champion(MARKET.name).version == champion
    versions = tracker.client.search_model_versions(f"name = '{model_name(MARKET.name)}'")
    assert len(versions) == 2
    # Blocking: signals did not run, the previous signals are still the latest.
    assert instance.get_latest_materialization_event(SIGNALS).run_id == signals_before.run_id
    assert not result.asset_materializations_for_node(f"{MARKET.name}__signals")


def test_bad_launchpad_value_fails_before_training_with_a_clear_message(chain) -> None:
    _, job, instance, lake, _ = chain
    result = job.execute_in_process(
        instance=instance, asset_selection=[AGENT], raise_on_error=False,
        run_config={"ops": {f"{MARKET.name}__ppo_agent": {"config": {
            "ppo": {"ent_coef": -0.5}, "data": {"test_months": ["2024-01"]}}}}},
    )
    assert not result.success
    message = str(result.failure_data_for_node(f"{MARKET.name}__ppo_agent").error)
    assert "ppo.ent_coef" in message and "-0.5" in message
    assert "test month 2024-01 is not after the last validation month" in message


def test_loading_the_training_assets_imports_no_heavy_library() -> None:
    import subprocess

    code = ("import sys\nfrom tradecore_lib.markets import get_market\n"
            "from tradecore_pipelines.assets.training import build_training_assets\n"
            "build_training_assets(get_market('synthetic_btc_usd'))\n"
            "print([m for m in ('torch', 'stable_baselines3', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
