"""champion_monitor/<market> and its rolling_performance check through Dagster, on real lake
data: a synthetic control market's months in the lake, a champion checkpoint from the real
training entry point (a few hundred PPO steps: only a model to play is needed), its
evaluation by the real engine, and the records stored the way the record IO manager stores
them. The monitor sensor's requests are executed as they are; a warning raises an alert and
lets the retraining sensor retrain before its month threshold."""

from __future__ import annotations

import dagster as dg
import pytest

from tests.lakes import write_synthetic_months
from tests.pipelines.chain import resources
from tradecore_lib.alerts import CHAMPION_DEGRADED, read_alerts
from tradecore_lib.evaluation.evaluate import evaluate_record
from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.evaluation.summary import EvaluationSummary
from tradecore_lib.markets import get_market
from tradecore_lib.monitoring import MonitorRecord, RetrainPolicy, monitor_key
from tradecore_lib.months import Month, iso_utc, months_between, utc_now_ms
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.launch import TrainRequest, plan_folds
from tradecore_lib.train.record import FoldRun, RecordModel, RunRecord
from tradecore_pipelines.assets.champion_monitor import CHECK_NAME
from tradecore_pipelines.automation import build_monitor_sensor, build_retrain_sensor
from tradecore_pipelines.definitions import chain_resources, chains_definitions, market_chain
from tradecore_pipelines.io_managers import RECORD_KEY, record_key

MARKET = get_market("synthetic_edge_usd")  # control features, cpu-control windows 1 + 1 + 1
JAN, FEB, MAR, APR, MAY = (Month(2024, m) for m in range(1, 6))
# cpu-control shortened to one small PPO update, its windows anchored at 2024-03: trains on
# January, validated on February, tested on March; April and May come after.
TINY = {"total_timesteps": 512, "checkpoint_every_steps": 512, "n_envs": 4,
        "ppo": {"batch_size": 256}, "windows": {"anchor": "2024-03"}}


class Quiet:
    """The training entry point's reporter, keeping its lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    warning = info

    def result(self, metadata: dict) -> None:
        self.lines.append(str(metadata))


def key(layer: str) -> dg.AssetKey:
    return dg.AssetKey([MARKET.name, layer])


def store_record(instance, lake, layer: str, record: RecordModel, name: str) -> None:
    """A record materialized the way the record IO manager leaves it."""
    lake_key = record_key(key(layer), name)
    lake.write_bytes(lake_key, record.to_json().encode())
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=key(layer), metadata={RECORD_KEY: lake_key}))


def promising(summary: EvaluationSummary, total_return: float, sharpe: float
              ) -> EvaluationSummary:
    """``summary`` with the agent's validation metrics replaced: what the champion promised."""
    fold = summary.newest
    validation = fold.splits["validation"]
    agent = validation.policies["agent"].model_copy(update={"total_return": total_return,
                                                             "daily_sharpe": sharpe})
    splits = {**fold.splits, "validation": validation.model_copy(update={
        "policies": {**validation.policies, "agent": agent}})}
    return summary.model_copy(update={"folds": (*summary.folds[:-1],
                                                fold.model_copy(update={"splits": splits}))})


def crown(world, evaluation_run: str, summary: EvaluationSummary) -> ChampionRecord:
    """Store ``summary`` as the evaluation of Dagster run ``evaluation_run`` and its run as
    the champion."""
    instance, lake, _, run = world
    store_record(instance, lake, "evaluation", summary, evaluation_run)
    champion = ChampionRecord(market=MARKET.name, run=run, model_name="tradecore-ppo-edge",
                              model_version="1", promoted_at=iso_utc(utc_now_ms()),
                              reason="passed", evaluation_dagster_run_id=evaluation_run)
    store_record(instance, lake, "champion", champion, f"champion-{evaluation_run}")
    return champion


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Instance, lake, chain resources, the champion's run record; 2024-01..05 in the lake
    and their materializations in the event log; alerts under the temporary folder."""
    root = tmp_path_factory.mktemp("monitor")
    patch = pytest.MonkeyPatch()
    patch.setenv("TRADECORE_DATA_DIR", str(root / "data"))
    for variable in ("TRADECORE_ALERT_WEBHOOK", "TRADECORE_TELEGRAM_BOT_TOKEN",
                     "TRADECORE_TELEGRAM_CHAT_ID"):
        patch.delenv(variable, raising=False)
    lake_resource, mlflow = resources(str(root))
    lake = lake_resource.get_lake()
    write_synthetic_months(lake, MARKET, months_between(JAN, MAY))
    from tradecore_lib.train.ppo_train import train

    # The folds planned as ppo_agent plans them, trained by the entry point it launches.
    cfg, [(fold, request)] = plan_folds(lake, MARKET, TrainRequest(
        market=MARKET.name, preset="cpu-control", overrides=TINY, lake_root=lake_resource.root),
        utc_now_ms())
    reported = train(request, Quiet())
    store = RunStore(lake, MARKET.name, str(reported["run_id"]))
    run = RunRecord.of(MARKET.name, cfg, None, [FoldRun.from_store(store, fold.index)])
    assert run.newest.validation_months == ("2024-02",)
    with dg.instance_for_test() as instance:
        for layer in ("candles", "features"):
            for month in months_between(JAN, MAY):
                instance.report_runless_asset_event(dg.AssetMaterialization(
                    asset_key=key(layer), partition=month.partition_key))
        yield instance, lake, chain_resources(lake_resource, mlflow), run
    patch.undo()


@pytest.fixture(scope="module")
def evaluated(world) -> EvaluationSummary:
    _, lake, _, run = world
    return evaluate_record(lake, MARKET, run, champion=None, dagster_run_id="eval-a").summary


def tick(world, sensor: dg.SensorDefinition, cursor: str | None = None):
    instance, lake, chain, _ = world
    defs = chains_definitions([MARKET], chain, sensors=[sensor])
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                 resources={"lake": chain["lake"]}) as context:
        return sensor.evaluate_tick(context)


def materialize_monitor(world, tags: dict | None = None, partition: Month | None = None,
                        **config) -> dg.ExecuteInProcessResult:
    instance, _, chain, _ = world
    run_config = {"ops": {"synthetic_edge_usd__champion_monitor": {"config": config}}}
    return dg.materialize(market_chain(MARKET), instance=instance, resources=chain,
                          selection=[key("champion_monitor")], tags=tags,
                          partition_key=partition.partition_key if partition else None,
                          run_config=run_config if config else None, raise_on_error=False)


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.partition[:7]: e for e in result.get_asset_check_evaluations()}


def test_the_monitor_scores_each_live_month_once_per_champion(world, evaluated):
    instance, lake, _, run = world
    sensor = build_monitor_sensor([MARKET])
    assert "no champion yet" in tick(world, sensor).skip_message
    # What the champion did on validation, modest: the months after hold up to it.
    crown(world, "eval-a", promising(evaluated, -0.99, -50.0))
    data = tick(world, sensor)
    [request] = data.run_requests  # the months after validation (2024-02), as one run
    assert (request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"]) == ("2024-03-01", "2024-05-01")
    assert request.tags["tradecore/champion_run_id"] == run.run_id
    assert request.asset_check_keys == [dg.AssetCheckKey(key("champion_monitor"), CHECK_NAME)]
    result = materialize_monitor(world, tags=request.tags)
    assert result.success
    materialized = {m.partition[:7]: m.metadata for m in
                    result.asset_materializations_for_node("synthetic_edge_usd__champion_monitor")}
    assert sorted(materialized) == ["2024-03", "2024-04", "2024-05"]
    record = MonitorRecord.from_json(lake.read_bytes(monitor_key(MARKET.name, MAY)))
    assert record.champion_run_id == run.run_id and record.split.months == ("2024-05",)
    assert materialized["2024-05"]["net_return"].value == \
        record.split.policies["agent"].total_return
    checks = checks_of(result)
    assert set(checks) == {"2024-03", "2024-04", "2024-05"}
    assert all(c.check_name == CHECK_NAME and c.severity == dg.AssetCheckSeverity.WARN
               and c.passed for c in checks.values())
    # the three-month window is judged once all its months come after validation
    assert [checks[m].metadata["judged"].value for m in ("2024-03", "2024-04", "2024-05")] == \
        [False, False, True]
    assert record.window.months == ("2024-03", "2024-04", "2024-05")
    assert checks["2024-05"].description.startswith("2024-05: tradecore-ppo-edge v1 holding up")

    assert tick(world, sensor, data.cursor).run_requests == []
    assert tick(world, sensor).run_requests == []  # a lost cursor too: the months are scored
    # an ingestion rebuilt 2024-04's features: that month is scored again
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=key("features"), partition=APR.partition_key))
    [again] = tick(world, sensor, data.cursor).run_requests
    assert again.tags["dagster/asset_partition_range_start"] == "2024-04-01"
    assert again.tags["dagster/asset_partition_range_end"] == "2024-04-01"
    assert read_alerts() == []


def test_a_champion_behind_its_validation_window_warns_alerts_and_retrains_early(
        world, evaluated):
    instance, _, _, run = world
    retrain = build_retrain_sensor(MARKET, policy=RetrainPolicy(new_months=3))
    held = tick(world, retrain)
    assert held.run_requests == []  # two months since the champion's windows, no warning
    assert "2 new complete month(s) (2024-04..2024-05" in held.skip_message
    # The same run, now judged against a validation window that promised far more.
    crown(world, "eval-b", promising(evaluated, 1.0, 100.0))
    result = materialize_monitor(world, partition=MAY)
    assert result.success  # a warning, not a failure
    check = checks_of(result)["2024-05"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "fell behind its validation window" in check.description
    [alert] = read_alerts()
    assert alert.kind == CHAMPION_DEGRADED and alert.market == MARKET.name
    assert alert.partition == "2024-05-01" and alert.details["window"] == \
        "2024-03, 2024-04, 2024-05"
    assert alert.details["validation_monthly_net_return"] == pytest.approx(1.0)

    [request] = tick(world, retrain).run_requests
    assert request.tags["tradecore/retrain_trigger"] == "monitor_warning"
    assert request.tags["tradecore/retrain_months"] == "2024-03..2024-05"
    assert "champion monitor warning (2024-05:" in request.tags["tradecore/retrain_reason"]
    # the alert is raised once per champion and month (here judged on May alone: the window
    # is the launchpad's to change)
    again = materialize_monitor(world, partition=MAY, window_months=1)
    assert not checks_of(again)["2024-05"].passed
    assert checks_of(again)["2024-05"].metadata["window"].value == "2024-05"
    assert len(read_alerts()) == 1
    assert alert.details["champion_run_id"] == run.run_id


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    [failure] = result.get_step_failure_events()
    return failure.event_specific_data.error.message


def test_a_month_the_champion_trained_on_and_the_month_in_progress_are_refused(world):
    message = failure_message(materialize_monitor(world, partition=JAN))
    assert "trained on 2024-01; scoring it there would be in-sample" in message
    assert "from 2024-03 on" in message
    current = Month.of_ms(utc_now_ms())
    message = failure_message(materialize_monitor(world, partition=current))
    assert f"{current} is in progress; the monitor scores completed months only" in message
