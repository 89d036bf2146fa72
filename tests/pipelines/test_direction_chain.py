"""The direction chains through Dagster (issue 14): ``direction_model -> direction_evaluation
(+ direction_gate) -> direction_champion -> direction_signals``, for a market's LSTM and a
venue's transformer, and the controls judged by the real gate.

Four synthetic markets run on a temporary lake, an MLflow SQLite store and a test instance:
candles and features 2024-01..04, then one run of three chains.
``synthetic_btc_usd`` and ``synthetic_eth_usd`` carry their own direction preset ``cpu-smoke``
(plumbing: never eligible), so the venue's transformer ``synthetic_multi`` over the two
exercises the chain; the controls ``synthetic_null_usd`` (a martingale) and
``synthetic_lag_usd`` (the planted temporal edge) carry ``cpu-control`` (eligible, the real
gate; train 2024-02, validate 2024-03, test 2024-04), nothing overridden. CPU training is
seeded and deterministic, so each outcome is the same on every run.
"""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq
import pytest

from tests.pipelines.chain import resources
from tradecore_lib.direction.record import DirectionChampionRecord, DirectionJudgement
from tradecore_lib.markets import get_market
from tradecore_lib.tracking import Tracker
from tradecore_pipelines.constants import (
    CANDLES,
    DIRECTION_CHAMPION,
    DIRECTION_EVALUATION,
    DIRECTION_MODEL,
    DIRECTION_SIGNALS,
    FEATURES,
    asset_key,
)
from tradecore_pipelines.definitions import chain_resources, chains_definitions
from tradecore_pipelines.io_managers import record_key

BTC, ETH = get_market("synthetic_btc_usd"), get_market("synthetic_eth_usd")
NULL, LAG = get_market("synthetic_null_usd"), get_market("synthetic_lag_usd")
MULTI = "synthetic_multi"
JOB = "direction"
CHAIN = (DIRECTION_MODEL, DIRECTION_EVALUATION, DIRECTION_CHAMPION, DIRECTION_SIGNALS)


def direction_job(root: str) -> dg.JobDefinition:
    """The four markets' chains with their resources under ``root``, as one in-process job."""
    lake, mlflow = resources(root)
    defs = chains_definitions(
        [BTC, ETH, NULL, LAG], chain_resources(lake, mlflow),
        jobs=[dg.define_asset_job(JOB, selection=dg.AssetSelection.all(),
                                  executor_def=dg.in_process_executor)],
    )
    return defs.resolve_job_def(JOB)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Instance, lake and tracker with the four markets' candles and features in place, and
    the one run that materialized the transformer's and the controls' direction chains."""
    root = str(tmp_path_factory.mktemp("direction"))
    lake, mlflow = resources(root)
    job = direction_job(root)
    with dg.instance_for_test() as instance:
        for layer in (CANDLES, FEATURES):
            assert job.execute_in_process(
                instance=instance, asset_selection=[asset_key(m.name, layer)
                                                    for m in (BTC, ETH, NULL, LAG)],
                tags={"dagster/asset_partition_range_start": "2024-01-01",
                      "dagster/asset_partition_range_end": "2024-04-01"}).success
        result = job.execute_in_process(instance=instance, asset_selection=[
            asset_key(key, layer) for key in (MULTI, NULL.name, LAG.name) for layer in CHAIN])
        assert result.success  # refusals are successful runs too
        yield result, instance, lake.get_lake(), Tracker(mlflow.tracking_uri)


def _outcomes(result: dg.ExecuteInProcessResult, model_key: str) -> dict[str, str]:
    steps = {f"{model_key}__{layer}": layer for layer in CHAIN}
    return {steps[e.step_key]: e.event_type_value for e in result.all_events
            if e.event_type_value in ("STEP_SUCCESS", "STEP_SKIPPED", "STEP_FAILURE")
            and e.step_key in steps}


def _judgement(lake, model_key: str, result: dg.ExecuteInProcessResult) -> DirectionJudgement:
    return DirectionJudgement.from_json(lake.read_bytes(
        record_key(asset_key(model_key, DIRECTION_EVALUATION), result.run_id)))


def _gate(result: dg.ExecuteInProcessResult, model_key: str):
    (gate,) = [e for e in result.get_asset_check_evaluations()
               if e.asset_key == asset_key(model_key, DIRECTION_EVALUATION)]
    return gate


REFUSED = {DIRECTION_MODEL: "STEP_SUCCESS", DIRECTION_EVALUATION: "STEP_SUCCESS",
           DIRECTION_CHAMPION: "STEP_SUCCESS", DIRECTION_SIGNALS: "STEP_SKIPPED"}


def test_the_code_location_builds_a_chain_per_lstm_and_one_transformer_per_venue(tmp_path):
    graph = direction_job(str(tmp_path)).asset_layer.asset_graph
    keys = graph.get_all_asset_keys()
    for model_key in (BTC.name, ETH.name, NULL.name, LAG.name, MULTI):
        assert {asset_key(model_key, layer) for layer in CHAIN} <= keys
    # the venue's transformer reads its markets' features; the controls are not among them
    assert graph.get(asset_key(MULTI, DIRECTION_MODEL)).parent_keys == {
        asset_key(BTC.name, FEATURES), asset_key(ETH.name, FEATURES)}


def test_the_smoke_transformer_runs_the_chain_and_is_never_promoted(chain):
    """The transformer over BTC and ETH trains through Pipes, is logged and registered in MLflow,
    judged per market, and refused because its preset is a plumbing one."""
    result, instance, lake, tracker = chain
    assert _outcomes(result, MULTI) == REFUSED

    judgement = _judgement(lake, MULTI, result)
    assert judgement.record.kind == "transformer"
    assert judgement.record.markets == (BTC.name, ETH.name)
    assert set(judgement.summaries) == {BTC.name, ETH.name}
    for summary in judgement.summaries.values():
        assert set(summary.splits) == {"validation", "test"}
        assert {"model", "majority", "persistence", "logistic"} <= set(
            summary.splits["validation"].models)
    verdict = judgement.verdict
    assert not verdict.passed and not verdict.eligible
    assert verdict.explanation().startswith("not eligible (smoke preset")
    gate = _gate(result, MULTI)
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN

    (model,) = result.asset_materializations_for_node(f"{MULTI}__{DIRECTION_MODEL}")
    assert model.metadata["model_name"].value == f"tradecore-direction-{MULTI}"
    assert judgement.record.mlflow is not None and judgement.record.mlflow.version == "1"
    (evaluation,) = result.asset_materializations_for_node(f"{MULTI}__{DIRECTION_EVALUATION}")
    for market in (BTC.name, ETH.name):
        assert "data:image/png;base64," in evaluation.metadata[
            f"{market}/reliability_diagram"].value
        assert f"{market}/confusion" in evaluation.metadata
    assert tracker.direction_champion(MULTI) is None
    progress = [e.message for e in instance.all_logs(result.run_id)
                if "epoch" in (e.message or "") and "samples/s" in (e.message or "")]
    assert progress, "the training's progress lines reach the Dagster run"


def test_on_the_null_market_the_direction_gate_refuses(chain):
    """A martingale's next 15 minutes cannot be predicted: the LSTM's accuracy is a coin's and
    cannot clear the best baseline by a bootstrap margin; its positions lose their fees."""
    result, instance, lake, tracker = chain
    assert _outcomes(result, NULL.name) == REFUSED
    verdict = _judgement(lake, NULL.name, result).verdict
    assert verdict.eligible and not verdict.passed
    assert not _gate(result, NULL.name).passed
    assert instance.get_latest_materialization_event(
        asset_key(NULL.name, DIRECTION_CHAMPION)) is None
    assert tracker.direction_champion(NULL.name) is None


def test_on_the_planted_temporal_edge_the_lstm_beats_every_baseline_and_is_promoted(chain):
    """The sign of the return 5-30 bars back carries 1.5 bp a bar: out of sample the LSTM is
    right more often than majority, persistence and the logistic regression on the same inputs,
    passes the gate on validation and becomes the champion whose signals are written."""
    result, instance, lake, tracker = chain
    assert _outcomes(result, LAG.name) == {layer: "STEP_SUCCESS" for layer in CHAIN}

    judgement = _judgement(lake, LAG.name, result)
    assert judgement.verdict.passed, judgement.verdict.explanation()
    test = judgement.summaries[LAG.name].splits["test"]
    accuracy = test.models["model"].scores.accuracy
    for baseline in ("majority", "persistence", "logistic"):
        assert accuracy > test.models[baseline].scores.accuracy, baseline

    champion = DirectionChampionRecord.from_json(lake.read_bytes(
        record_key(asset_key(LAG.name, DIRECTION_CHAMPION), result.run_id)))
    assert champion.run_id == judgement.record.run_id
    alias = tracker.direction_champion(LAG.name)
    assert alias is not None and alias.version == champion.model_version

    (signals,) = result.asset_materializations_for_node(f"{LAG.name}__{DIRECTION_SIGNALS}")
    table = pq.read_table(str(signals.metadata["path"].value))
    assert {"ts", "market", "p_up", "confidence", "tier", "run_id"} <= set(table.column_names)
    assert table.num_rows > 0
    assert set(table.column("tier").to_pylist()) <= {"none", "low", "medium", "high"}
