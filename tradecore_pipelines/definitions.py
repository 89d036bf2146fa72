"""The TradeCore code location: one asset chain per market in ``configs/markets.yaml``."""

from __future__ import annotations

import dagster as dg

from tradecore_lib.markets import load_markets
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.features import build_features_asset
from tradecore_pipelines.assets.manifest import build_manifest_asset
from tradecore_pipelines.resources import default_lake_resource


def build_definitions() -> dg.Definitions:
    markets = load_markets()
    return dg.Definitions(
        assets=[
            asset
            for market in markets
            for asset in (
                build_candles_asset(market),
                build_manifest_asset(market),
                build_features_asset(market),
            )
        ],
        asset_checks=[build_candle_checks(market) for market in markets],
        resources={"lake": default_lake_resource()},
    )


defs = build_definitions()
