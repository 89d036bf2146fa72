"""The TradeCore code location: one asset chain per market in ``configs/markets.yaml``."""

from __future__ import annotations

import dagster as dg

from tradecore_lib.markets import load_markets
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.features import build_features_asset
from tradecore_pipelines.assets.manifest import build_manifest_asset
from tradecore_pipelines.assets.training import build_training_assets
from tradecore_pipelines.resources import default_lake_resource
from tradecore_pipelines.resources_ml import default_mlflow_resource
from tradecore_pipelines.schedules import build_refresh_schedule
from tradecore_pipelines.sensors import build_landing_sensor


def build_definitions() -> dg.Definitions:
    markets = load_markets()
    chains = [
        [
            build_candles_asset(market),
            build_candle_checks(market),
            build_manifest_asset(market),
            build_features_asset(market),
            *build_training_assets(market),
        ]
        for market in markets
    ]
    definitions = [d for chain in chains for d in chain]
    return dg.Definitions(
        assets=[d for d in definitions if not isinstance(d, dg.AssetChecksDefinition)],
        asset_checks=[d for d in definitions if isinstance(d, dg.AssetChecksDefinition)],
        schedules=[
            build_refresh_schedule(market, cron_schedule=market.refresh_cron)
            for market in markets
            if market.live
        ],
        # Dropped archives are local and offline-safe, so the sensor runs by default; the
        # refresh schedules call Kraken and are switched on by the user.
        sensors=[build_landing_sensor(markets, default_status=dg.DefaultSensorStatus.RUNNING)],
        resources={
            "lake": default_lake_resource(),
            "mlflow": default_mlflow_resource(),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
    )


defs = build_definitions()
