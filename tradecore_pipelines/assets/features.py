"""``features/<market>``: monthly indicator features, warmed up on the previous month's candles.

No ``from __future__ import annotations`` here: Dagster resolves the config classes' field
types at definition time and cannot resolve ``dict[str, Any]`` from a string annotation.
"""

import base64
from typing import Any

import dagster as dg
from pydantic import Field

from tradecore_lib.features import (
    REGISTRY,
    Preset,
    PresetError,
    PublishedFeatures,
    inline_preset,
    load_feature_preset,
    publish_months,
)
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.progress import Progress
from tradecore_pipelines.check_records import require_checked_candles
from tradecore_pipelines.constants import CANDLES, FEATURES, asset_key, layer_tags
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.partitions import monthly_partitions
from tradecore_pipelines.resources import LakeResource

# Month M reads candles M-1 and M; the market's first month has no M-1 and is marked instead.
_WARMUP_MAPPING = dg.TimeWindowPartitionMapping(
    start_offset=-1, allow_nonexistent_upstream_partitions=True
)
_STATS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("column", "string"),
        *(dg.TableColumn(stat, "float") for stat in ("mean", "std", "min", "max")),
        dg.TableColumn("nan_count", "int"),
    ]
)


class IndicatorConfig(dg.Config):
    name: str = Field(description="Indicator name, as listed by `tradecore indicators list`.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters; omitted ones take their defaults."
    )


class FeaturesConfig(dg.Config):
    preset: str | None = Field(
        default=None,
        description="A preset name in configs/tools to use instead of the market's own.",
    )
    indicators: list[IndicatorConfig] | None = Field(
        default=None,
        description="An inline custom mix of indicators (instead of a preset); its tables go "
        "to features/custom-<digest>/ so they never replace a named preset's.",
    )


def features_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, FEATURES)


def resolve_preset(config: FeaturesConfig, market: Market) -> Preset:
    """The preset a run uses: inline mix, else the named override, else the market's."""
    if config.indicators is not None and config.preset is not None:
        raise PresetError("run config", ["set either 'preset' or 'indicators', not both"])
    if config.indicators is not None:
        return inline_preset([choice.model_dump() for choice in config.indicators])
    return load_feature_preset(config.preset or market.feature_preset)


def catalog_markdown() -> str:
    """The indicator catalog as a markdown table."""
    rows = ["| indicator | label | parameters | columns at defaults |", "| --- | --- | --- | --- |"]
    for card in REGISTRY.values():
        params = "<br>".join(spec.describe() for spec in card.params) or "-"
        columns = ", ".join(card.outputs(card.defaults()))
        rows.append(f"| `{card.name}` | {card.label} | {params} | {columns} |")
    return "\n".join(rows)


def _partition_metadata(published: PublishedFeatures, preset: Preset) -> dict[str, Any]:
    features = published.features
    chart = base64.b64encode(published.chart_png).decode()
    return {
        "dagster/row_count": features.table.num_rows,
        "path": dg.MetadataValue.path(published.stored.uri),
        "preset": preset.name,
        "preset_digest": preset.digest(),
        "columns": len(preset.columns),
        "lookback_bars": features.lookback,
        "history_rows": features.history_rows,
        "warmup_incomplete_rows": features.warmup_incomplete_rows,
        "rows_after_gap": features.rows_after_gap,
        "sha256": published.stored.sha256,
        "size_bytes": published.stored.size_bytes,
        "column_stats": dg.MetadataValue.table(
            records=[dg.TableRecord(stats) for stats in published.stats], schema=_STATS_SCHEMA
        ),
        "xray": dg.MetadataValue.md(f"![X-Ray {published.month}](data:image/png;base64,{chart})"),
    }


def build_features_asset(market: Market) -> dg.AssetsDefinition:
    """The ``features/<market>`` asset: the market's preset applied month by month."""
    # The market's preset, for the description (load_markets has validated it already).
    preset = load_feature_preset(market.feature_preset)

    @dg.asset(
        key=features_key(market),
        group_name=market.name,
        tags=layer_tags(FEATURES),
        partitions_def=monthly_partitions(market),
        deps=[
            dg.AssetDep(asset_key(market.name, CANDLES), partition_mapping=_WARMUP_MAPPING)
        ],
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"parquet", "python"},
        description=f"Indicator features of {market.symbol} ({market.venue}), preset "
        f"`{preset.name}`: {', '.join(preset.columns)}; float32, one row per candle, "
        f"`warmup_incomplete` marks rows lacking {preset.lookback} bars of history. Each month "
        "is warmed up on the previous month's candles.",
        metadata={
            "market": market.name,
            "preset": preset.name,
            "preset_definition": dg.MetadataValue.json(preset.to_dict()),
            "layout": f"features/{preset.name}/{market.venue}/{market.pair_dir}/1m/"
            "year=YYYY/month=MM/part-0.parquet",
            "indicator_catalog": dg.MetadataValue.md(catalog_markdown()),
        },
    )
    def features(
        context: dg.AssetExecutionContext, config: FeaturesConfig, lake: LakeResource
    ) -> None:
        months = [Month.parse(key) for key in context.partition_keys]
        store = lake.get_lake()
        with step_failures(), Progress(
            len(months), what=f"{market.name}/features", unit="months", log=context.log.info
        ) as progress:
            chosen = resolve_preset(config, market)
            context.log.info(
                f"preset {chosen.name} ({chosen.source}): {len(chosen.columns)} columns, "
                f"lookback {chosen.lookback} bars"
            )
            # Month M reads M-1 for warm-up: both must have passed their stored checks.
            read = {m for month in months for m in (month.previous(), month)
                    if m >= market.first_month}
            require_checked_candles(
                context.instance, store, market, read,
                consumer=f"{features_key(market).to_user_string()} "
                f"{months[0]}..{months[-1]}",
            )
            for published in publish_months(store, market, months, chosen):
                context.add_asset_metadata(
                    _partition_metadata(published, chosen),
                    partition_key=published.month.partition_key,
                )
                progress.update()

    return features
