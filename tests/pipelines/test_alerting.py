"""The Dagster side of alerts and retention: runs really fail on a temporary instance and the
run-failure sensor's ticks write one record per failed run (step, asset, error, market,
partition) delivered as JSON to a loopback webhook, never twice, and never failing when the
receiver is down (the redelivery sensor delivers it later); the broom_closet job, dry run by
default, reports what it would remove and then removes exactly the safe set, never the
champion's nor a referenced run."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import kraken_market
from tests.fakes.http_receivers import WebhookReceiver, closed_port_url
from tests.lib.test_retention import age_folder, tree_size, write_run
from tradecore_lib.alerts import (
    DELIVERED,
    UNDELIVERED,
    WEBHOOK,
    AlertRecord,
    AlertSettings,
    alert_files,
    read_alerts,
)
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.evaluation.promotion import ChampionRecord, Verdict
from tradecore_lib.evaluation.summary import ChampionScored, EvaluationSummary
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month, iso_utc
from tradecore_lib.train.checkpoints import MODEL
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.record import FoldRun, RecordModel, RunRecord
from tradecore_pipelines.alerting import (
    MARKET_TAG,
    REDELIVERY_SENSOR,
    RUN_FAILURE_SENSOR,
    alerting_definitions,
    build_alert_redelivery_sensor,
    build_run_failure_sensor,
)
from tradecore_pipelines.constants import CHAMPION, EVALUATION, PPO_AGENT, SIGNALS, asset_key
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.io_managers import RECORD_KEY, record_key
from tradecore_pipelines.resources_ml import MlflowResource
from tradecore_pipelines.retention import JOB, OP, SCHEDULE

SECRET = "rp-secret-key-0123456789"
SYNTH = get_market("synthetic_btc_usd")
SPOT = kraken_market("kraken_spot")
MONTHLY = dg.MonthlyPartitionsDefinition(start_date="2024-01-01")


class _BadRows(TradeCoreError):
    """A permanent TradeCore error (what a failed candle validation raises)."""


@dg.asset(key=asset_key(SYNTH.name, "candles"), partitions_def=MONTHLY)
def failing_candles() -> None:
    raise ValueError(f"venue said no; key {SECRET} in the message")


@dg.asset(key=asset_key(SYNTH.name, "features"), deps=[failing_candles],
          partitions_def=MONTHLY)
def features_after() -> None:
    pass


@dg.asset(key=asset_key("kraken_spot_btc_usd", "manifest"))
def failing_manifest() -> None:
    with step_failures():
        raise _BadRows("2 duplicate minutes in 2024-03 (first at 2024-03-04T10:00Z)")


@dg.asset(key=["fine"])
def fine() -> None:
    pass


ASSETS = [failing_candles, features_after, failing_manifest, fine]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADECORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RUNPOD_API_KEY", SECRET)
    for name in ("TRADECORE_ALERT_WEBHOOK", "TRADECORE_TELEGRAM_BOT_TOKEN",
                 "TRADECORE_TELEGRAM_CHAT_ID", "TRADECORE_TELEGRAM_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def fast() -> AlertSettings:
    return AlertSettings.from_env(timeout_s=2.0, attempts=2, backoff_s=0.0, budget_s=4.0)


def materialize(instance: dg.DagsterInstance, selection: str, **kwargs
                ) -> dg.ExecuteInProcessResult:
    return dg.materialize([*ASSETS], instance=instance, selection=selection,
                          raise_on_error=False, **kwargs)


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None
         ) -> str | None:
    """One evaluation of ``sensor`` as the daemon does it; returns the new cursor."""
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
    return data.cursor


def test_each_failed_run_gets_one_alert_delivered_as_json(monkeypatch) -> None:
    sensor = build_run_failure_sensor(settings=fast)
    with WebhookReceiver() as webhook, dg.instance_for_test() as instance:
        monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url + "/hooks/T0KEN-path")
        cursor = tick(sensor, instance, None)  # the first tick only places the cursor
        assert alert_files(fast().folder) == []

        candles = materialize(instance, "synthetic_btc_usd/candles*", partition_key="2024-03-01")
        manifest = materialize(instance, "kraken_spot_btc_usd/manifest",
                               tags={MARKET_TAG: "kraken_spot_btc_usd"})
        assert not candles.success and not manifest.success
        assert materialize(instance, "fine").success

        cursor = tick(sensor, instance, cursor)
        records = {r.run_id: r for r in read_alerts()}
        assert set(records) == {candles.run_id, manifest.run_id}

        first = records[candles.run_id]
        assert first.kind == "run_failure" and first.market == SYNTH.name
        assert first.job == candles.dagster_run.job_name and first.partition == "2024-03-01"
        assert first.step == "synthetic_btc_usd__candles"
        (step,) = first.failed_steps
        assert step.asset == "synthetic_btc_usd/candles"
        assert step.error.class_name == "ValueError"
        assert step.error.message == "venue said no; key *** in the message"
        assert first.error == step.error
        assert first.summary.startswith(f"run {candles.run_id} of ")
        ended = instance.get_run_record_by_id(candles.run_id).end_time
        assert first.time == iso_utc(round(ended * 1000))  # when the run failed

        second = records[manifest.run_id]
        assert second.market == "kraken_spot_btc_usd" and second.partition is None
        assert second.error.class_name == "_BadRows"  # the TradeCore error, not dg.Failure
        assert second.error.message.startswith("2 duplicate minutes in 2024-03")

        payloads = {p["run_id"]: p for p in webhook.payloads()}
        assert set(payloads) == set(records)
        for run_id, record in records.items():
            assert record.deliveries[WEBHOOK].status == DELIVERED
            assert payloads[run_id] == {**record.model_dump(mode="json",
                                                            exclude={"deliveries"}),
                                        "text": record.headline()}
        for path in alert_files(fast().folder):
            text = path.read_text()
            assert SECRET not in text and "T0KEN-path" not in text
            assert AlertRecord.model_validate(json.loads(text)) in records.values()

        # The next tick sees no new failure: nothing is raised or posted again.
        tick(sensor, instance, cursor)
        assert len(alert_files(fast().folder)) == 2 and len(webhook.payloads()) == 2


def test_a_receiver_that_is_down_never_fails_the_tick_and_is_retried_later(
        monkeypatch) -> None:
    sensor = build_run_failure_sensor(settings=fast)
    with dg.instance_for_test() as instance:
        monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", closed_port_url())
        cursor = tick(sensor, instance, None)
        failed = materialize(instance, "kraken_spot_btc_usd/manifest")
        tick(sensor, instance, cursor)  # raises nothing
        (record,) = read_alerts()
        assert record.run_id == failed.run_id
        delivery = record.deliveries[WEBHOOK]
        assert delivery.status == UNDELIVERED and delivery.retryable
        assert "ConnectionError" in delivery.reason

        with WebhookReceiver() as webhook:
            monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url)
            redelivery = build_alert_redelivery_sensor(settings=fast, min_age_s=0)
            redelivery.evaluate_tick(dg.build_sensor_context(instance=instance))
            (payload,) = webhook.payloads()
            assert payload["run_id"] == failed.run_id
            (again,) = read_alerts()
            assert again.deliveries[WEBHOOK].status == DELIVERED
            assert again.deliveries[WEBHOOK].rounds == 2
            redelivery.evaluate_tick(dg.build_sensor_context(instance=instance))
            assert len(webhook.payloads()) == 1


# ------------------------------------------------------------------------------- retention
def fold(run_id: str) -> FoldRun:
    return FoldRun(fold=0, run_id=run_id, checkpoint_uri=f"/lake/{run_id}",
                   config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                   validation_months=("2024-02",), test_months=("2024-03",))


def run_record(run_id: str) -> RunRecord:
    return RunRecord.of(SYNTH.name, load_train_config("cpu-control"), None, [fold(run_id)])


def report(instance: dg.DagsterInstance, lake: Lake, layer: str, record: RecordModel | None,
           name: str, **metadata) -> None:
    """A materialization of ``<market>/<layer>`` whose record is ``record`` (as the record IO
    manager stores it; None: a record file that is missing)."""
    key = asset_key(SYNTH.name, layer)
    lake_key = record_key(key, name)
    if record is not None:
        lake.write_bytes(lake_key, record.to_json().encode())
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=key, metadata={RECORD_KEY: lake_key, **metadata}))


@pytest.fixture
def closet(tmp_path, lake_resource):
    """A lake with runs of synthetic_btc_usd (oldest first) and a champion, evaluation,
    ppo_agent and signals referencing some of them; the broom_closet job over it."""
    lake = lake_resource.get_lake()
    root = Path(lake.root)
    runs = {}
    for name, days in [("champ", 300), ("evalref", 250), ("agent", 200), ("sig", 150),
                       ("r1", 100), ("r2", 90), ("r3", 20), ("r4", 10)]:
        write_run(lake, SYNTH.name, f"cpu-control-{name}")
        runs[name] = root / "models" / SYNTH.name / f"cpu-control-{name}"
        age_folder(runs[name], days)
    lake.write_bytes(f"staging/kraken_spot/{SPOT.pair_dir}/2024-01/state.json", b"{}" * 100)
    lake.write_bytes(candle_key(SPOT, Month(2024, 1)), b"candles")
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    defs = dg.Definitions.merge(alerting_definitions([SYNTH, SPOT]),
                                dg.Definitions(resources={"lake": lake_resource,
                                                          "mlflow": mlflow}))
    return lake, runs, defs.get_job_def(JOB), defs


def sweep_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    return {k: getattr(v, "value", v) for k, v in output.step_output_data.metadata.items()}


def test_the_broom_closet_dry_runs_then_removes_exactly_the_safe_set(closet) -> None:
    lake, runs, job, _ = closet
    staging = Path(lake.root) / "staging" / "kraken_spot" / SPOT.pair_dir / "2024-01"
    with dg.instance_for_test() as instance:
        champion_run = run_record("cpu-control-champ")
        report(instance, lake, CHAMPION, ChampionRecord(
            market=SYNTH.name, run=champion_run, model_name="m", model_version="3",
            promoted_at="2024-04-01T00:00:00.000Z", reason="passed"), "c1")
        report(instance, lake, EVALUATION, EvaluationSummary(
            market=SYNTH.name, run=run_record("cpu-control-evalref"), dagster_run_id="e",
            feature_preset="default", env={}, promotion=champion_run.promotion, folds=(),
            verdict=Verdict(eligible=True, passed=True), generated_at="2024-04-01T00:00:00Z",
            champion=ChampionScored(model_name="m", model_version="3",
                                    run_id="cpu-control-champ", scored=True)), "e1")
        report(instance, lake, PPO_AGENT, run_record("cpu-control-agent"), "a1")
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=asset_key(SYNTH.name, SIGNALS), metadata={"run_id": "cpu-control-sig"}))
        before = {name: tree_size(path) for name, path in runs.items()}
        expected = (before["r1"] + before["r2"] + tree_size(staging)
                    + tree_size(runs["r3"] / "checkpoints")
                    + tree_size(runs["r4"] / "checkpoints"))

        dry = job.execute_in_process(instance=instance, run_config={
            "ops": {OP: {"config": {"keep_runs": 2}}}})
        assert dry.success
        meta = sweep_metadata(dry)
        assert meta["dry_run"] is True and meta["removed_items"] == 0
        assert meta["would_remove_items"] == 5 and meta["would_free_bytes"] == expected
        assert meta["freed_bytes"] == 0
        assert {name: tree_size(path) for name, path in runs.items()} == before
        assert staging.exists()
        kept = {r.data["where"].rsplit("/", 1)[-1]: r.data["reason"]
                for r in meta["kept"].records}
        assert kept["cpu-control-champ"] == "protected: the champion (synthetic_btc_usd/champion)"
        assert kept["cpu-control-evalref"] == "protected: the latest synthetic_btc_usd/evaluation"
        assert kept["cpu-control-agent"] == "protected: the latest synthetic_btc_usd/ppo_agent"
        assert kept["cpu-control-sig"] == "protected: the latest synthetic_btc_usd/signals"
        summary = {r.data["kind"]: r.data for r in meta["summary"].records}
        assert summary["run"]["items"] == 2 and summary["checkpoints"]["items"] == 2
        assert summary["staging"]["items"] == 1 and summary["alert"]["items"] == 0
        assert sum(r.data["bytes"] for r in meta["items"].records) == expected
        assert all(isinstance(r.data["mib"], float) for r in meta["items"].records)

        real = job.execute_in_process(instance=instance, run_config={
            "ops": {OP: {"config": {"keep_runs": 2, "dry_run": False}}}})
        assert real.success
        meta = sweep_metadata(real)
        assert meta["dry_run"] is False and meta["removed_items"] == 5
        assert meta["freed_bytes"] == expected
        assert meta["freed_mib"] == round(expected / 2**20, 2)
        assert not runs["r1"].exists() and not runs["r2"].exists() and not staging.exists()
        for name in ("r3", "r4"):
            assert (runs[name] / MODEL).exists() and not (runs[name] / "checkpoints").exists()
        for name in ("champ", "evalref", "agent", "sig"):
            assert tree_size(runs[name]) == before[name], name  # untouched, checkpoints too


def test_a_record_that_cannot_be_read_stops_the_sweep_before_anything_goes(closet) -> None:
    lake, runs, job, _ = closet
    before = {name: tree_size(path) for name, path in runs.items()}
    with dg.instance_for_test() as instance:
        report(instance, lake, CHAMPION, None, "missing")
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config={
            "ops": {OP: {"config": {"keep_runs": 1, "dry_run": False}}}})
        assert not result.success
        (failure,) = [e for e in result.all_node_events if e.is_step_failure]
        description = failure.step_failure_data.user_failure_data.description
        assert "nothing was removed" in description and "record" in description
        assert "missing" in description
    assert {name: tree_size(path) for name, path in runs.items()} == before


def test_a_bad_limit_is_refused_by_name(closet) -> None:
    _, runs, job, _ = closet
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config={
            "ops": {OP: {"config": {"keep_runs": 0, "dry_run": False}}}})
    (failure,) = [e for e in result.all_node_events if e.is_step_failure]
    user = failure.step_failure_data.user_failure_data
    assert "keep_runs: Input should be greater than or equal to 1" in user.description
    assert user.metadata["error"].value == "ConfigError"  # what a run-failure alert names
    assert all(path.exists() for path in runs.values())


def test_the_definitions_wire_sensors_job_and_a_stopped_weekly_schedule(closet) -> None:
    _, _, job, defs = closet
    failure_sensor = defs.get_sensor_def(RUN_FAILURE_SENSOR)
    redelivery = defs.get_sensor_def(REDELIVERY_SENSOR)
    assert failure_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert redelivery.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.get_schedule_def(SCHEDULE)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 3 * * 0" and schedule.job_name == JOB
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    (request,) = data.run_requests
    # Switched on, the schedule prunes for real; a launchpad run without config is a dry
    # run (test_the_broom_closet_dry_runs_then_removes_exactly_the_safe_set).
    assert request.run_config["ops"][OP]["config"]["dry_run"] is False
    assert job.name == JOB


def test_a_champion_known_only_to_mlflow_is_protected_and_not_adopted(closet) -> None:
    """Before champion/<market> ever materialized, the run MLflow's champion alias names is
    the champion: kept, read only (no adoption written by the sweep)."""
    from tradecore_lib.tracking import RUN_TAG, model_name

    lake, runs, job, defs = closet
    tracker = defs.resources["mlflow"].get_tracker()
    name = model_name(SYNTH.name)
    tracker.client.create_registered_model(name)
    version = tracker.client.create_model_version(
        name, source=str(runs["champ"]), tags={RUN_TAG: "cpu-control-champ"})
    tracker.client.set_registered_model_alias(name, "champion", version.version)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, run_config={
            "ops": {OP: {"config": {"keep_runs": 1, "dry_run": False}}}})
        assert result.success
        kept = {r.data["where"].rsplit("/", 1)[-1]: r.data["reason"]
                for r in sweep_metadata(result)["kept"].records}
        assert instance.get_latest_materialization_event(
            asset_key(SYNTH.name, CHAMPION)) is None
    assert kept["cpu-control-champ"] == f"protected: the MLflow champion {name} v1"
    assert (runs["champ"] / MODEL).exists() and (runs["champ"] / "checkpoints").exists()
    assert not runs["evalref"].exists() and (runs["r4"] / MODEL).exists()
