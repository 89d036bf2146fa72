"""``signals/<market>``: dry-run actions of the champion on the newest month. No orders.

It depends on ``champion/<market>`` and takes the model from the champion record (its value,
through the record IO manager): in the run that promoted it, or the latest materialization
when signals run alone. A run whose gate refused the challenger skips signals.
"""

import dagster as dg

from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_pipelines.assets.champion import champion_key
from tradecore_pipelines.constants import SIGNALS, asset_key, layer_tags
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.metadata import records_table
from tradecore_pipelines.resources import LakeResource


def build_signals(market: Market) -> dg.AssetsDefinition:
    """The ``signals/<market>`` asset."""

    @dg.asset(
        key=asset_key(market.name, SIGNALS),
        group_name=market.name,
        tags=layer_tags(SIGNALS),
        ins={"champion": dg.AssetIn(key=champion_key(market))},
        kinds={"parquet", "python"},
        description=f"Dry-run signals of {market.name}/champion on the newest month of "
        f"{market.name} candles and features: time, target position, action probabilities, "
        f"confidence, model version, under `<lake_root>/signals/{market.name}/`. No order is "
        "sent anywhere.",
        metadata={"market": market.name},
    )
    def signals(
        context: dg.AssetExecutionContext, champion: ChampionRecord, lake: LakeResource
    ) -> dg.MaterializeResult:
        from tradecore_lib.signals import publish_signals

        with step_failures():
            published = publish_signals(lake.get_lake(), market, champion.run_id,
                                        champion.label, Month.of_ms(utc_now_ms()))
        table = published.table
        last = table.slice(table.num_rows - 1).to_pylist()[0]
        context.log.info(f"{table.num_rows} dry-run signals of {champion.label} on "
                         f"{published.month}; latest target {last['target_position']:+.2f} at "
                         f"{last['execute_at']}")
        preview = [
            {"ts": str(r["ts"]), "target_position": r["target_position"],
             "confidence": r["confidence"]}
            for r in table.slice(max(table.num_rows - 10, 0)).to_pylist()
        ]
        return dg.MaterializeResult(metadata={
            "dagster/row_count": table.num_rows,
            "path": dg.MetadataValue.path(published.stored.uri),
            "month": str(published.month),
            "model": champion.label,
            "model_version": champion.model_version,
            "run_id": champion.run_id,
            "champion_dagster_run_id": champion.dagster_run_id or "(adopted)",
            "latest_target_position": last["target_position"],
            "latest": records_table(preview),
        })

    return signals
