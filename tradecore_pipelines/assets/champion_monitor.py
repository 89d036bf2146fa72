"""``champion_monitor/<market>``: the champion judged again on each completed month.

Monthly partitions, the chain's own (a job over the whole chain keeps one partitions
definition); the month in progress is refused, a month is scored once complete. A partition
holds the current
champion's dry run scored on that month with the one engine and its evaluation's costs, and
its rolling window ending there judged against the champion's validation window
(:mod:`tradecore_lib.monitoring`), as ``champion_monitor/<market>/year=YYYY/month=MM/
monitor.json`` in the lake. The champion comes from ``champion/<market>`` through the record
IO manager (the latest champion for a run of the monitor alone); its validation metrics from
the evaluation record that promoted it.

The non-blocking check ``rolling_performance`` reports the window's verdict the record
carries and changes nothing: a warning (``WARN``) when the champion fell behind its
validation window by more than the margins; it raises a ``champion_degraded`` alert, once
per champion and month, and the retraining sensor reads it.

No ``from __future__ import annotations`` here: Dagster resolves the config class's field
types at definition time.
"""

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    # Not exported by dagster 1.13; the Dagster family is pinned exactly (pyproject.toml).
    AssetCheckEvaluationTargetMaterializationData,
)
from pydantic import Field

from tradecore_lib import months as clock
from tradecore_lib.alerts import CHAMPION_DEGRADED, Alert, raise_alert
from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.evaluation.summary import ROW_DESCRIPTIONS, EvaluationSummary, metric_row
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.monitoring import (
    MonitorPolicy,
    MonitorRecord,
    ValidationReference,
    WindowVerdict,
    monitor_key,
)
from tradecore_lib.months import Month
from tradecore_lib.progress import Progress
from tradecore_lib.train.checkpoints import EVAL_SUMMARY, RunStore
from tradecore_lib.train.record import RecordError
from tradecore_pipelines.assets.champion import champion_key
from tradecore_pipelines.assets.features import features_key
from tradecore_pipelines.constants import CHAMPION_MONITOR, EVALUATION, asset_key, layer_tags
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.io_managers import read_record, record_key
from tradecore_pipelines.metadata import records_table
from tradecore_pipelines.partitions import monthly_partitions
from tradecore_pipelines.resources import LakeResource

CHECK_NAME = "rolling_performance"
# Check metadata the retraining sensor reads.
JUDGED = "judged"
CHAMPION_RUN_ID = "champion_run_id"
MONTH = "month"


class ChampionMonitorConfig(dg.Config):
    window_months: int | None = Field(
        default=None, description="Completed months in the rolling window; null: the "
        "deployment's default.")
    sharpe_margin: float | None = Field(
        default=None, description="Warn when the window's daily Sharpe is more than this "
        "below the validation window's; null: the deployment's default.")
    return_margin: float | None = Field(
        default=None, description="Warn when the window's net return per month (fraction) is "
        "more than this below the validation window's; null: the deployment's default.")


def champion_monitor_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, CHAMPION_MONITOR)


def validation_reference(lake: Lake, market: Market, champion: ChampionRecord
                         ) -> ValidationReference | None:
    """The champion's validation metrics: from the evaluation record that promoted it, else
    (an adopted champion) the ``eval_summary.json`` beside its checkpoint when it judged this
    run; None when neither exists."""
    key = asset_key(market.name, EVALUATION)
    if champion.evaluation_dagster_run_id:
        try:
            summary = read_record(lake, key, record_key(key, champion.evaluation_dagster_run_id))
        except RecordError:
            summary = None
        if isinstance(summary, EvaluationSummary) and summary.run.run_id == champion.run_id:
            return ValidationReference.of(summary)
    store = RunStore(lake, market.name, champion.run_id)
    if store.exists(EVAL_SUMMARY):
        summary = EvaluationSummary.from_json(store.read_bytes(EVAL_SUMMARY),
                                              where=store.uri(EVAL_SUMMARY))
        if summary.run.run_id == champion.run_id:
            return ValidationReference.of(summary)
    return None


def build_champion_monitor(market: Market, policy: MonitorPolicy | None = None
                           ) -> dg.AssetsDefinition:
    """The ``champion_monitor/<market>`` asset; ``policy`` gives the defaults of its config."""
    defaults = policy or MonitorPolicy()

    @dg.asset(
        key=champion_monitor_key(market),
        group_name=market.name,
        tags=layer_tags(CHAMPION_MONITOR),
        partitions_def=monthly_partitions(market),
        ins={"champion": dg.AssetIn(key=champion_key(market))},
        # The month scored and the window before it, each warmed on the month before it.
        deps=[dg.AssetDep(features_key(market), partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-defaults.window_months, allow_nonexistent_upstream_partitions=True))],
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"json", "python"},
        description=f"The current {market.name}/champion scored again on each completed "
        "month, with the same engine, costs, baselines and matched random policies as its "
        "evaluation (warmed on the month before), and its rolling window of the last "
        f"{defaults.window_months} month(s) (months chained) judged against its validation "
        "window: net return per month and daily Sharpe. Months the champion trained on are "
        f"never scored. Stored as champion_monitor/{market.name}/year=YYYY/month=MM/"
        "monitor.json; the check rolling_performance warns when the champion fell behind.",
        metadata={"market": market.name, "window_months": defaults.window_months,
                  "sharpe_margin": defaults.sharpe_margin,
                  "return_margin": defaults.return_margin},
    )
    def champion_monitor(context: dg.AssetExecutionContext, config: ChampionMonitorConfig,
                         champion: ChampionRecord, lake: LakeResource) -> None:
        from tradecore_lib.monitoring import MonitoredModel, MonitorScorer

        chosen = defaults.model_copy(update={
            k: v for k, v in config.model_dump().items() if v is not None})
        chosen = MonitorPolicy.model_validate(chosen.model_dump())  # bounds of the overrides
        months = [Month.parse(key) for key in context.partition_keys]
        store = lake.get_lake()
        current = Month.of_ms(clock.utc_now_ms())
        if months[-1] >= current:
            raise dg.Failure(f"{champion_monitor_key(market).to_user_string()}: {current} is "
                             "in progress; the monitor scores completed months only (the "
                             "champion_monitor sensor asks for each one when it closes)",
                             allow_retries=False)
        with step_failures(), Progress(len(months), what=f"{market.name}/champion_monitor",
                                       unit="months", log=context.log.info) as progress:
            reference = validation_reference(store, market, champion)
            scorer = MonitorScorer(store, market, MonitoredModel.load(store, champion),
                                   reference, chosen)
            context.log.info(f"monitoring {champion.label} (run {champion.run_id}) on "
                             f"{months[0]}..{months[-1]}; live from {scorer.model.first_live}")
            for month in months:
                record = scorer.record(month)
                stored = monitor_key(market.name, month)
                store.write_bytes(stored, record.to_json().encode())
                context.log.info(f"{month}: {record.window.explanation}")
                context.add_asset_metadata(_metadata(record, store.uri(stored)),
                                           partition_key=month.partition_key)
                progress.update()

    return champion_monitor


def _metadata(record: MonitorRecord, uri: str) -> dict:
    split, window = record.split, record.window
    agent, hold = split.policies["agent"], split.policies["buy_and_hold"]
    return {
        CHAMPION_RUN_ID: record.champion_run_id,
        "champion": record.champion_label,
        MONTH: record.month,
        "path": dg.MetadataValue.path(uri),
        "net_return": agent.total_return,
        "daily_sharpe": agent.daily_sharpe,
        "buy_and_hold_net_return": hold.total_return,
        "buy_and_hold_daily_sharpe": hold.daily_sharpe,
        "random_percentile": split.agent.random_percentile,
        "trades": agent.trades,
        **_window_metadata(window),
        "comparison": records_table([metric_row(name, m) for name, m in split.policies.items()],
                                    ROW_DESCRIPTIONS),
    }


def _window_metadata(window: WindowVerdict) -> dict:
    reference = window.reference
    return {
        "window": ", ".join(window.months),
        JUDGED: window.judged,
        "verdict": window.explanation,
        "window_monthly_return": window.monthly_return,
        "window_daily_sharpe": window.metrics.daily_sharpe if window.metrics else None,
        "validation_months": ", ".join(reference.months) if reference else "-",
        "validation_monthly_return": reference.monthly_return if reference else None,
        "validation_daily_sharpe": reference.daily_sharpe if reference else None,
    }


def build_champion_monitor_check(market: Market) -> dg.AssetChecksDefinition:
    """The non-blocking, per-partition ``rolling_performance`` check of
    ``champion_monitor/<market>``."""
    key = champion_monitor_key(market)
    spec = dg.AssetCheckSpec(
        CHECK_NAME, asset=key, blocking=False, partitions_def=monthly_partitions(market),
        description="Reports the verdict the month's monitor record carries (read-only): a "
        "warning when the champion's rolling net return per month or daily Sharpe fell more "
        "than the margins below its validation window's, which raises a champion_degraded "
        "alert and lets the retraining sensor retrain early. A window with months before the "
        "end of the champion's validation window is not judged (passes).")

    @dg.multi_asset_check(specs=[spec], name=f"champion_monitor_checks__{market.name}",
                          required_resource_keys={"lake"})
    def champion_monitor_checks(context: dg.AssetCheckExecutionContext):
        lake: LakeResource = context.resources.lake
        store = lake.get_lake()
        for partition_key in context.op_execution_context.partition_keys:
            month = Month.parse(partition_key)
            stored = monitor_key(market.name, month)
            if not store.exists(stored):
                raise dg.Failure(f"{key.to_user_string()} {month}: no monitor record at "
                                 f"{store.uri(stored)}; materialize the partition first",
                                 allow_retries=False)
            record = MonitorRecord.from_json(store.read_bytes(stored), where=store.uri(stored))
            window = record.window
            if not window.passed:
                context.log.warning(f"{market.name}/champion_monitor {month}: "
                                    f"{record.champion_label} {window.explanation}")
                _alert(market, record, context.run.run_id)
            yield dg.AssetCheckEvaluation(
                asset_key=key, check_name=CHECK_NAME, passed=window.passed,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{month}: {record.champion_label} {window.explanation}",
                metadata={CHAMPION_RUN_ID: record.champion_run_id, MONTH: record.month,
                          **_window_metadata(window),
                          "rules": records_table([r.model_dump() for r in window.rules])},
                partition=partition_key, blocking=False,
                target_materialization_data=_target(context, key, partition_key))
        for output in context.op_execution_context.op_def.output_defs:
            yield dg.Output(None, output_name=output.name)

    return champion_monitor_checks


def _alert(market: Market, record: MonitorRecord, run_id: str) -> None:
    """A ``champion_degraded`` alert, once per champion and month."""
    window = record.window
    details = {"window": ", ".join(window.months), "champion_run_id": record.champion_run_id}
    details.update({rule.name: round(rule.value, 6) for rule in window.rules})
    details.update({f"validation_{rule.name}": round(rule.reference, 6) for rule in window.rules})
    raise_alert(Alert(
        kind=CHAMPION_DEGRADED, market=market.name, run_id=run_id,
        step=f"{market.name}/champion_monitor", partition=Month.parse(record.month).partition_key,
        summary=f"champion {record.champion_label} {window.explanation}", details=details),
        dedupe_key=f"{market.name}:{record.champion_run_id}:{record.month}")


def _target(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey, partition_key: str
            ) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition_key]), limit=1).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
