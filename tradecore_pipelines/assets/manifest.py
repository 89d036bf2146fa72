"""``manifest/<market>``: the coverage view of a market's candles users check before training."""

import dagster as dg

from tradecore_lib.manifest import build_manifest, write_manifest
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_pipelines.assets.candles import candles_key
from tradecore_pipelines.constants import MANIFEST, asset_key, layer_tags
from tradecore_pipelines.metadata import records_table
from tradecore_pipelines.resources import LakeResource


def build_manifest_asset(market: Market) -> dg.AssetsDefinition:
    """One JSON per market: per month first/last ts, rows, missing minutes, sha256, size."""

    @dg.asset(
        key=asset_key(market.name, MANIFEST),
        group_name=market.name,
        tags=layer_tags(MANIFEST),
        deps=[candles_key(market)],
        kinds={"json"},
        description=f"Coverage manifest of {market.name}/candles: for each stored month the "
        "inclusive first/last timestamp, row count, missing minutes, sha256 and size, plus "
        f"totals. Written to `<manifests folder>/{market.name}.json` (`data/manifests/` by "
        "default).",
    )
    def manifest(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        now_ms = utc_now_ms()
        document = build_manifest(lake.get_lake(), market, Month.of_ms(now_ms), now_ms)
        path = write_manifest(lake.manifest_folder(), document)
        totals = document["totals"]
        missing = document["missing_months"]
        if missing:
            context.log.warning(
                f"{market.name}/manifest: {len(missing)} month(s) not stored yet "
                f"(first {missing[0]}, last {missing[-1]}); backfill them from the UI"
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "months": records_table(
                    [{k: v for k, v in m.items() if k != "path"} for m in document["months"]]
                ),
                "missing_months": dg.MetadataValue.json(document["missing_months"]),
                "total_rows": totals["rows"],
                "total_missing_minutes": totals["missing_minutes"],
                "total_size_bytes": totals["size_bytes"],
                "first_ts": totals["first_ts"] or "-",
                "last_ts": totals["last_ts"] or "-",
            }
        )

    return manifest
