"""``candles/<market>``: monthly one-minute candles in the lake, and their per-partition checks."""

import hashlib
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    # Not exported by dagster 1.13; the Dagster family is pinned exactly (pyproject.toml).
    AssetCheckEvaluationTargetMaterializationData,
)
from pydantic import Field

from tradecore_lib.candles import (
    CheckOutcome,
    inspect_coverage,
    inspect_gaps,
    inspect_ohlc,
    inspect_schema,
    inspect_time_grid,
)
from tradecore_lib.ingest import PublishedPartition, ingest_month
from tradecore_lib.lake import candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_lib.progress import Progress
from tradecore_lib.sources import source_for
from tradecore_pipelines.constants import CANDLES, asset_key, layer_tags
from tradecore_pipelines.failures import VENUE_RETRY, step_failures
from tradecore_pipelines.metadata import markdown_table, timestamp_or_dash
from tradecore_pipelines.partitions import monthly_partitions
from tradecore_pipelines.resources import LakeResource

CHECK_NAMES = ("schema", "time_grid", "ohlc_sanity", "gaps", "coverage")
# Metadata key of every check evaluation: the sha256 of the stored file it inspected, which
# consumers compare with the file stored now (tradecore_pipelines.check_records).
CHECKED_SHA256 = "checked_sha256"
_CHECK_DESCRIPTIONS = {
    "schema": "Columns, order and dtypes equal the fixed candle schema; no nulls in ts/OHLCV.",
    "time_grid": "Timestamps on the minute grid, sorted, unique and inside the partition's month.",
    "ohlc_sanity": "high >= max(open, close), low <= min(open, close), prices > 0, volume >= 0, "
    "no NaN/inf.",
    "gaps": "Missing minutes between the first and last candle against the market's tolerance "
    "(warning within it, failure past it); uncovered month head/tail reported separately.",
    "coverage": "A finished month's data reaches within gap_tolerance.max_uncovered_tail_minutes "
    "of the month's end (warning for a shorter uncovered tail); the month in progress is "
    "exempt.",
}


class CandlesConfig(dg.Config):
    archive_file: str | None = Field(
        default=None,
        description="Import this Kraken OHLCVT archive (ZIP or CSV) for the selected months "
        "instead of calling the venue's API.",
    )


def candles_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, CANDLES)


def _partition_metadata(published: PublishedPartition) -> dict:
    gaps = published.gaps
    return {
        "dagster/row_count": published.stored.rows,
        "first_ts": timestamp_or_dash(published.first_ts_ms),
        "last_ts": timestamp_or_dash(published.last_ts_ms),
        "missing_minutes": gaps.missing_minutes,
        "longest_gap_minutes": gaps.longest_gap_minutes,
        "uncovered_head_minutes": gaps.uncovered_head_minutes,
        "uncovered_tail_minutes": gaps.uncovered_tail_minutes,
        "path": dg.MetadataValue.path(published.stored.uri),
        "sha256": published.stored.sha256,
        "size_bytes": published.stored.size_bytes,
        "preview": markdown_table(published.preview),
        **published.source_metadata,
        "month_complete": published.month_complete,
    }


def build_candles_asset(market: Market) -> dg.AssetsDefinition:
    """The ``<market>/candles`` asset: fetch, validate and atomically publish each month."""

    @dg.asset(
        key=candles_key(market),
        group_name=market.name,
        tags=layer_tags(CANDLES),
        partitions_def=monthly_partitions(market),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=VENUE_RETRY if market.live else None,
        freshness_policy=(
            dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=market.freshness_fail_hours))
            if market.live
            else None
        ),
        kinds={"parquet", "ccxt" if market.live else "python"},
        description=f"One-minute {market.symbol} candles from {market.venue}, one parquet file "
        f"per month under `<lake_root>/{market.venue}/{market.pair_dir}/1m/`.",
        metadata={
            "market": market.name,
            "venue": market.venue,
            "symbol": market.symbol,
            "layout": f"{market.venue}/{market.pair_dir}/1m/year=YYYY/month=MM/part-0.parquet",
        },
    )
    def candles(
        context: dg.AssetExecutionContext, config: CandlesConfig, lake: LakeResource
    ) -> None:
        store = lake.get_lake()
        months = [Month.parse(key) for key in context.partition_keys]
        now_ms = utc_now_ms()
        with step_failures(), Progress(
            len(months), what=f"{market.name}/candles", unit="months", log=context.log.info
        ) as progress:
            source = source_for(market, lake=store, archive_file=config.archive_file)
            for month in months:
                published = ingest_month(
                    store, source, market, month, now_ms=now_ms, log=context.log.info
                )
                context.add_asset_metadata(
                    _partition_metadata(published), partition_key=month.partition_key
                )
                progress.update()

    return candles


def _inspect_partition(
    lake: LakeResource, market: Market, month: Month, now_ms: int
) -> tuple[list[CheckOutcome], str | None]:
    """The outcomes of every check of one stored month, and the sha256 of the bytes they
    inspected (None when there is no file)."""
    store = lake.get_lake()
    key = candle_key(market, month)
    try:
        data = store.read_bytes(key)
    except FileNotFoundError as exc:
        return [CheckOutcome(name, False, f"cannot read partition {month}: {exc}")
                for name in CHECK_NAMES], None
    digest = hashlib.sha256(data).hexdigest()
    try:
        table = store.parse_table(key, data)
    except ValueError as exc:
        return [CheckOutcome(name, False, f"cannot read partition {month}: {exc}")
                for name in CHECK_NAMES], digest
    schema = inspect_schema(table)
    if not schema.passed:
        skipped = f"not inspected: the schema check failed ({schema.description})"
        return [schema, *(CheckOutcome(name, False, skipped) for name in CHECK_NAMES[1:])], digest
    return [
        schema,
        inspect_time_grid(table, month),
        inspect_ohlc(table),
        inspect_gaps(table, month, market.gap_tolerance, now_ms),
        inspect_coverage(table, month, market.gap_tolerance, now_ms),
    ], digest


def _target_materialization(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, partition_key: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    if not records:
        return None
    record = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )


def build_candle_checks(market: Market) -> dg.AssetChecksDefinition:
    """Blocking per-partition checks that re-read each stored month from the lake.

    Reading the stored file (not the in-memory table) is what lets a re-run of the check
    catch a partition corrupted after it was written.
    """
    key = candles_key(market)
    partitions_def = monthly_partitions(market)
    specs = [
        dg.AssetCheckSpec(
            name,
            asset=key,
            blocking=True,
            partitions_def=partitions_def,
            description=_CHECK_DESCRIPTIONS[name],
        )
        for name in CHECK_NAMES
    ]

    @dg.multi_asset_check(
        specs=specs, name=f"candle_checks__{market.name}", required_resource_keys={"lake"}
    )
    def candle_checks(context: dg.AssetCheckExecutionContext):
        lake: LakeResource = context.resources.lake
        now_ms = utc_now_ms()
        for partition_key in context.op_execution_context.partition_keys:
            month = Month.parse(partition_key)
            target = _target_materialization(context, key, partition_key)
            outcomes, digest = _inspect_partition(lake, market, month, now_ms)
            for outcome in outcomes:
                if outcome.warning:
                    context.log.warning(f"{market.name}/candles {month}: {outcome.description}")
                yield dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=outcome.name,
                    passed=outcome.passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=f"{month}: {outcome.description}",
                    metadata={
                        "partition": partition_key,
                        "warning": outcome.warning,
                        CHECKED_SHA256: digest or "-",
                        **outcome.metadata,
                    },
                    partition=partition_key,
                    blocking=True,
                    target_materialization_data=target,
                )
        # A range run reports per partition above; the op's outputs still need a value each.
        for output in context.op_execution_context.op_def.output_defs:
            yield dg.Output(None, output_name=output.name)

    return candle_checks
