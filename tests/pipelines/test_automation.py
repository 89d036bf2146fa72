"""The automation sensors on a temporary instance, with real materializations and a clock the
tests move: features follow candles (once per change, old months too, never past a failed
check, never before the candle run finished), the retraining sensor (first training, the
threshold, the cooldown, the same data never twice, bounded retries then an alert), the
signals refresh, and no storm after days switched off.

Candles and features are materialized by the real assets on a synthetic control market; the
requests the sensors make are executed as they are against the real chain. Where a sensor
only reads the event log and the stored records (retraining, signals), upstream months and
records are reported the way the assets and the record IO manager leave them, without
training an agent."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest

from tests.pipelines.chain import resources
from tradecore_lib import months as clock
from tradecore_lib.alerts import RETRAINING_GAVE_UP, read_alerts
from tradecore_lib.candles import GapTolerance
from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.markets import Market, get_market
from tradecore_lib.monitoring import HOUR_MS, RetrainPolicy
from tradecore_lib.months import Month, iso_utc, months_between
from tradecore_lib.train.config import PromotionGate
from tradecore_lib.train.record import FoldRun, RecordModel, RunRecord
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.features import build_features_asset
from tradecore_pipelines.automation import (
    ATTEMPT_TAG,
    DATA_TAG,
    automation_definitions,
    build_features_sensor,
    build_monitor_sensor,
    build_retrain_sensor,
)
from tradecore_pipelines.definitions import chain_resources, chains_definitions, market_chain
from tradecore_pipelines.io_managers import RECORD_KEY, record_key
from tradecore_pipelines.partitions import monthly_partitions
from tradecore_pipelines.schedules import build_signals_refresh_sensor

MARKET = get_market("synthetic_edge_usd")  # control features, cpu-control (windows 1+1+1)
JAN, FEB, MAR, APR, MAY = (Month(2024, m) for m in range(1, 6))


def key(layer: str, market: Market = MARKET) -> dg.AssetKey:
    return dg.AssetKey([market.name, layer])


@pytest.fixture
def now(monkeypatch):
    """TradeCore's clock, starting at the real time (Dagster stamps events with it too);
    ``now.advance(hours)`` moves it."""

    class Clock:
        ms = int(time.time() * 1000)

        def advance(self, hours: float) -> None:
            self.ms += int(hours * HOUR_MS)

    moved = Clock()
    monkeypatch.setattr(clock, "utc_now_ms", lambda: moved.ms)
    return moved


@pytest.fixture
def world(tmp_path, monkeypatch):
    """An instance, the chain's resources under a temporary folder, alerts under it too."""
    monkeypatch.setenv("TRADECORE_DATA_DIR", str(tmp_path / "data"))
    for variable in ("TRADECORE_ALERT_WEBHOOK", "TRADECORE_TELEGRAM_BOT_TOKEN",
                     "TRADECORE_TELEGRAM_CHAT_ID"):
        monkeypatch.delenv(variable, raising=False)
    lake, mlflow = resources(str(tmp_path))
    with dg.instance_for_test() as instance:
        yield instance, lake, chain_resources(lake, mlflow)


class Sensor:
    """A sensor evaluated tick after tick on one instance, its cursor kept between ticks as
    the daemon keeps it."""

    def __init__(self, definition: dg.SensorDefinition, world: tuple,
                 markets: list[Market] | None = None) -> None:
        self.definition = definition
        self.instance, self.lake, chain = world
        # the code location the sensor is part of (its requests are resolved against it)
        self.defs = chains_definitions(markets or [MARKET], chain, sensors=[definition])
        self.cursor: str | None = None
        self.skip: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                     definitions=self.defs, resources={"lake": self.lake}
                                     ) as context:
            data = self.definition.evaluate_tick(context)
        self.cursor = data.cursor
        self.skip = data.skip_message
        return list(data.run_requests or [])


def land(instance, lake, months: list[Month], market: Market = MARKET, *,
         with_features: bool = False) -> dg.ExecuteInProcessResult:
    """Materialize candles (with their blocking checks) of consecutive ``months`` in one
    run, as a refresh, a backfill or an archive import does; features in the same run too."""
    parts = [build_candles_asset(market), build_candle_checks(market)]
    if with_features:
        parts.append(build_features_asset(market))
    return dg.materialize(parts, instance=instance, resources={"lake": lake},
                          tags={"dagster/asset_partition_range_start": months[0].partition_key,
                                "dagster/asset_partition_range_end": months[-1].partition_key},
                          raise_on_error=False)


def execute(instance, chain_resources_, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run a sensor's request as the daemon would: its selection, tags and run config against
    the real chain."""
    return dg.materialize(market_chain(MARKET), instance=instance, resources=chain_resources_,
                          selection=request.asset_selection, tags=request.tags,
                          run_config=request.run_config or None, raise_on_error=False)


def ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    return [(r.tags["dagster/asset_partition_range_start"][:7],
             r.tags["dagster/asset_partition_range_end"][:7]) for r in requests]


def features_done(instance, months: list[Month], market: Market = MARKET, rows: int = 1000
                  ) -> None:
    """Report features months as materialized (the retraining and signals sensors read only
    the event log)."""
    for month in months:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=key("features", market), partition=month.partition_key,
            metadata={"dagster/row_count": rows}))


def store_record(instance, lake, layer: str, record: RecordModel, name: str) -> None:
    """A record materialized the way the record IO manager leaves it."""
    lake_key = record_key(key(layer), name)
    lake.get_lake().write_bytes(lake_key, record.to_json().encode())
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=key(layer), metadata={RECORD_KEY: lake_key}))


def run_record(train: Month, run_id: str = "cpu-control-0001") -> RunRecord:
    validation, test = train.next(), train.next().next()
    fold = FoldRun(fold=0, run_id=run_id, checkpoint_uri=f"/models/{run_id}",
                   config_digest="0" * 64, lineage_digest="1" * 64,
                   train_months=(str(train),), validation_months=(str(validation),),
                   test_months=(str(test),))
    return RunRecord(market=MARKET.name, preset="cpu-control", eligible=True,
                     promotion=PromotionGate(), dagster_run_id=None, folds=(fold,))


def champion_record(run: RunRecord) -> ChampionRecord:
    return ChampionRecord(market=MARKET.name, run=run, model_name="tradecore-ppo-x",
                          model_version="1", promoted_at=iso_utc(clock.utc_now_ms()),
                          reason="passed")


# ----------------------------------------------------------------------- features follow
def test_features_follow_a_new_candle_month_and_the_next_month_once(world, now):
    instance, lake, chain = world
    sensor = Sensor(build_features_sensor([MARKET]), world)
    assert sensor.tick() == [] and "no new candles" in sensor.skip

    assert land(instance, lake, [JAN, FEB, MAR]).success
    [request] = sensor.tick()
    assert ranges([request]) == [("2024-01", "2024-03")]  # 2024-04 has no candles yet
    assert request.asset_selection == [key("features")]
    assert request.tags["tradecore/automation"] == "features_follow_candles"
    assert request.run_key.startswith("features:synthetic_edge_usd:2024-01..2024-03:")
    result = execute(instance, chain, request)
    assert result.success
    assert sorted(m.partition for m in result.asset_materializations_for_node(
        "synthetic_edge_usd__features")) == [m.partition_key for m in (JAN, FEB, MAR)]
    assert sensor.tick() == []  # the features run changed no candles: no loop

    assert land(instance, lake, [APR]).success  # a new month: its features only
    assert ranges(sensor.tick()) == [("2024-04", "2024-04")]
    assert land(instance, lake, [FEB]).success  # an old month again: it and its next month
    assert ranges(sensor.tick()) == [("2024-02", "2024-03")]
    # candles and features built in the same run need nothing more (2024-05 has no candles)
    assert land(instance, lake, [MAR, APR], with_features=True).success
    assert sensor.tick() == []
    assert "their features are up to date" in sensor.skip


def test_a_failed_candle_check_stops_the_chain(world, now):
    instance, lake, _ = world
    # The same market with a stricter gap tolerance than its data meets: the gaps check fails.
    strict = MARKET.model_copy(update={
        "source": {**MARKET.source, "missing_minute_rate": 0.01},
        "gap_tolerance": GapTolerance(max_missing_fraction=0.001)})
    sensor = Sensor(build_features_sensor([strict]), world, markets=[strict])
    assert land(instance, lake, [JAN]).success
    assert ranges(sensor.tick()) == [("2024-01", "2024-01")]
    failed = land(instance, lake, [FEB], market=strict)
    assert not failed.success  # the blocking check failed the run; the candles were stored
    evaluations = {e.check_name: e.passed for e in failed.get_asset_check_evaluations()}
    assert evaluations["gaps"] is False
    assert sensor.tick() == []  # neither 2024-02's features nor 2024-03's
    assert "wait for passing checks" in sensor.skip


def test_the_sensor_waits_until_the_candle_run_has_finished(world, now):
    instance, lake, _ = world
    sensor = Sensor(build_features_sensor([MARKET]), world)
    seen: list[list[dg.RunRequest]] = []

    @dg.asset(key=["probe"], deps=[key("candles")], partitions_def=monthly_partitions(MARKET))
    def probe() -> None:
        # Runs after candles and its checks, while the run is still in progress.
        seen.append(sensor.tick())

    result = dg.materialize([build_candles_asset(MARKET), build_candle_checks(MARKET), probe],
                            instance=instance, resources={"lake": lake},
                            partition_key=JAN.partition_key)
    assert result.success
    assert seen == [[]] and "waiting for run" in sensor.skip
    assert ranges(sensor.tick()) == [("2024-01", "2024-01")]


# ----------------------------------------------------------------------- retraining
def retrain_sensor(world, **policy) -> Sensor:
    settings = {"new_months": 2, "cooldown_hours": 24, "max_retries": 1,
                "retry_delay_minutes": 0, **policy}
    return Sensor(build_retrain_sensor(MARKET, policy=RetrainPolicy(**settings)), world)


def test_the_first_training_once_its_windows_are_complete_never_twice(world, now):
    instance, lake, _ = world
    sensor = retrain_sensor(world)
    features_done(instance, [JAN, FEB])
    assert sensor.tick() == []
    assert sensor.skip.startswith("the first windows are not complete")
    features_done(instance, [MAR])
    [request] = sensor.tick()
    assert request.asset_selection == [key(layer) for layer in
                                       ("ppo_agent", "evaluation", "champion", "signals")]
    assert request.asset_check_keys == [dg.AssetCheckKey(key("evaluation"), "promotion_gate")]
    assert request.run_key == "retrain:synthetic_edge_usd:cpu-control:2024-01..2024-03:1"
    # the run trains exactly the data that triggered it
    assert request.run_config == {"ops": {"synthetic_edge_usd__ppo_agent": {"config": {
        "windows": {"anchor": "2024-03"}}}}}
    assert request.tags[DATA_TAG] == "cpu-control:2024-01..2024-03"
    assert request.tags["tradecore/retrain_months"] == "2024-01..2024-03"
    assert request.tags["tradecore/retrain_trigger"] == "first_training"
    assert "compute" not in json.dumps(request.run_config)  # the deployment's compute
    assert sensor.tick() == []  # requested, not launched yet
    # a restart: a new sensor object with the stored cursor decides the same
    restarted = retrain_sensor(world)
    restarted.cursor = sensor.cursor
    assert restarted.tick() == []


def test_a_failed_training_is_retried_then_alerted_and_new_data_triggers_again(world, now):
    instance, lake, chain = world
    sensor = retrain_sensor(world, retry_delay_minutes=30)
    features_done(instance, [JAN, FEB, MAR])  # in the event log only: training will fail
    [first] = sensor.tick()
    failed = execute(instance, chain, first)
    assert not failed.success
    assert "missing: 2024-01, 2024-02, 2024-03" in \
        failed.get_step_failure_events()[0].event_specific_data.error.message
    assert sensor.tick() == [] and "failed; retry 1 of 1 at" in sensor.skip
    now.advance(1)
    [retry] = sensor.tick()
    assert retry.tags[ATTEMPT_TAG] == "2" and retry.run_key.endswith(":2")
    assert retry.run_config == first.run_config
    assert retry.tags[DATA_TAG] == first.tags[DATA_TAG]
    assert not execute(instance, chain, retry).success
    now.advance(1)
    assert sensor.tick() == [] and "gave up until new data lands" in sensor.skip
    [alert] = read_alerts()
    assert alert.kind == RETRAINING_GAVE_UP and alert.market == MARKET.name
    assert "cpu-control:2024-01..2024-03 failed 2 time(s)" in alert.summary
    assert sensor.tick() == []  # the same data is not tried again
    assert "already requested" in sensor.skip
    # even with the cursor lost, the runs' tags name the data
    fresh = retrain_sensor(world)
    assert fresh.tick() == []
    features_done(instance, [APR])
    [again] = sensor.tick()  # new data is a new first training
    assert again.tags[DATA_TAG] == "cpu-control:2024-02..2024-04"
    assert again.tags[ATTEMPT_TAG] == "1"
    assert len(read_alerts()) == 1


def test_retraining_after_n_new_months_and_the_cooldown(world, now):
    instance, lake, _ = world
    sensor = retrain_sensor(world)
    trained = run_record(JAN)  # trained on 2024-01, validated on 02, tested on 03
    store_record(instance, lake, "ppo_agent", trained, "run-a")
    store_record(instance, lake, "champion", champion_record(trained), "run-a")
    features_done(instance, [JAN, FEB, MAR, APR])
    assert sensor.tick() == []
    assert "1 new complete month(s) (2024-04, 1000 bars) since 2024-03" in sensor.skip
    features_done(instance, [MAY])
    assert sensor.tick() == []  # the threshold is met, the cooldown is not
    assert "cooldown of 24 h" in sensor.skip
    now.advance(25)
    [request] = sensor.tick()
    assert request.tags["tradecore/retrain_trigger"] == "new_months"
    assert request.tags["tradecore/retrain_new_months"] == "2024-04, 2024-05"
    assert request.tags[DATA_TAG] == "cpu-control:2024-03..2024-05"
    assert request.run_config["ops"]["synthetic_edge_usd__ppo_agent"]["config"] == {
        "windows": {"anchor": "2024-05"}}


def test_bars_count_as_new_data(world, now):
    instance, lake, _ = world
    sensor = retrain_sensor(world, new_months=None, new_bars=1500)
    trained = run_record(JAN)
    store_record(instance, lake, "ppo_agent", trained, "run-a")
    features_done(instance, [JAN, FEB, MAR, APR])
    now.advance(25)
    assert sensor.tick() == [] and "needs 1500 bars" in sensor.skip
    features_done(instance, [MAY])
    [request] = sensor.tick()
    assert request.tags["tradecore/retrain_trigger"] == "new_bars"


# ----------------------------------------------------------------------- signals
def test_signals_follow_new_features_and_new_champions(world, now):
    instance, lake, _ = world
    sensor = Sensor(build_signals_refresh_sensor([MARKET]), world)
    features_done(instance, [JAN, FEB, MAR])
    assert sensor.tick() == [] and "no champion yet" in sensor.skip
    store_record(instance, lake, "champion", champion_record(run_record(JAN)), "run-a")
    [request] = sensor.tick()
    assert request.asset_selection == [key("signals")]
    assert request.tags["tradecore/signals_month"] == "2024-03"
    assert sensor.tick() == []  # requested once
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key("signals")))
    assert sensor.tick() == [] and "signals are newer" in sensor.skip
    features_done(instance, [MAR])  # the newest month refreshed by an ingestion
    [refresh] = sensor.tick()
    assert refresh.tags["tradecore/signals_month"] == "2024-03"
    assert refresh.run_key != request.run_key


# ----------------------------------------------------------------------- no storm
def test_twelve_months_landed_while_automation_was_off_are_one_run_and_one_training(
        world, now):
    instance, lake, chain = world
    defs = automation_definitions([MARKET])
    sensors = {s.name: Sensor(s, world) for s in defs.sensors}
    assert sorted(sensors) == ["champion_monitor", "features_follow_candles",
                               "retrain__synthetic_edge_usd", "signals_refresh"]
    assert all(s.definition.default_status == dg.DefaultSensorStatus.RUNNING
               for s in sensors.values())
    assert all(s.tick() == [] for s in sensors.values())  # on, nothing to do

    # Off for days: twelve months land, in four imports of three months.
    year = months_between(JAN, Month(2024, 12))
    for start in range(0, 12, 3):
        assert land(instance, lake, year[start:start + 3]).success

    # On again: one features run for all twelve months, nothing else yet.
    requests = {name: s.tick() for name, s in sensors.items()}
    assert ranges(requests["features_follow_candles"]) == [("2024-01", "2024-12")]
    assert sum(len(r) for r in requests.values()) == 1
    assert execute(instance, chain, requests["features_follow_candles"][0]).success

    # The features landed: exactly one training (the first), on the newest windows.
    requests = {name: s.tick() for name, s in sensors.items()}
    assert sum(len(r) for r in requests.values()) == 1
    [training] = requests["retrain__synthetic_edge_usd"]
    assert training.tags[DATA_TAG] == "cpu-control:2024-10..2024-12"
    for _ in range(2):  # and then quiet
        assert all(s.tick() == [] for s in sensors.values())
    monitor = Sensor(build_monitor_sensor([MARKET]), world)
    assert monitor.tick() == [] and "no champion yet" in monitor.skip
