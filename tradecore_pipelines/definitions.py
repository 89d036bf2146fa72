"""The TradeCore code location: one asset chain per market in ``configs/markets.yaml``, and a
direction-model chain per market with a ``direction_preset`` and per venue transformer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from tradecore_lib.markets import Market, load_markets
from tradecore_pipelines.alerting import alerting_definitions
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.champion import build_champion
from tradecore_pipelines.assets.champion_monitor import (
    build_champion_monitor,
    build_champion_monitor_check,
)
from tradecore_pipelines.assets.direction import build_direction_chain, direction_models
from tradecore_pipelines.assets.evaluation import build_evaluation, build_promotion_gate
from tradecore_pipelines.assets.features import build_features_asset
from tradecore_pipelines.assets.funding import build_funding_asset, has_funding_asset
from tradecore_pipelines.assets.manifest import build_manifest_asset
from tradecore_pipelines.assets.signals import build_signals
from tradecore_pipelines.assets.training import build_ppo_agent
from tradecore_pipelines.automation import automation_definitions
from tradecore_pipelines.io_managers import RECORDS_IO_MANAGER, RecordIOManager
from tradecore_pipelines.resources import LakeResource, default_lake_resource
from tradecore_pipelines.resources_ml import MlflowResource, default_mlflow_resource
from tradecore_pipelines.run_monitoring import build_run_worker_sensor
from tradecore_pipelines.runpod import PipesRunPodClient, build_runpod_reaper, default_runpod_client
from tradecore_pipelines.schedules import build_refresh_schedule
from tradecore_pipelines.sensors import build_landing_sensor
from tradecore_pipelines.training_compute import default_compute


def market_chain(market: Market) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """One market's assets and checks: candles -> manifest, features -> ppo_agent ->
    evaluation (+ promotion_gate) -> champion -> signals and champion_monitor (+
    rolling_performance); and funding for a perpetual future."""
    return [
        build_candles_asset(market),
        build_candle_checks(market),
        *([build_funding_asset(market)] if has_funding_asset(market) else []),
        build_manifest_asset(market),
        build_features_asset(market),
        build_ppo_agent(market),
        build_evaluation(market),
        build_promotion_gate(market),
        build_champion(market),
        build_signals(market),
        build_champion_monitor(market),
        build_champion_monitor_check(market),
    ]


def chains_definitions(markets: Sequence[Market], resources: dict[str, Any],
                       **extra: Any) -> dg.Definitions:
    """``Definitions`` of the chains of ``markets`` (their PPO chains, and the direction chains
    of the markets with a direction preset and of their venues' transformers) with
    ``resources`` (and any other ``Definitions`` argument in ``extra``: schedules, sensors,
    jobs)."""
    parts = [d for market in markets for d in market_chain(market)]
    parts += [d for spec in direction_models(list(markets)) for d in build_direction_chain(spec)]
    return dg.Definitions(
        assets=[d for d in parts if not isinstance(d, dg.AssetChecksDefinition)],
        asset_checks=[d for d in parts if isinstance(d, dg.AssetChecksDefinition)],
        resources=resources, **extra,
    )


def build_definitions() -> dg.Definitions:
    markets = load_markets()
    runpod = default_runpod_client()
    if default_compute() == "runpod":
        # RunPod as the deployment's compute without its key or volume fails here, at load.
        runpod.check_ready()
    chains = chains_definitions(
        markets, chain_resources(default_lake_resource(), default_mlflow_resource(), runpod),
        schedules=[
            build_refresh_schedule(market, cron_schedule=market.refresh_cron)
            for market in markets
            if market.live
        ],
        # Dropped archives are local and offline-safe, so the sensor runs by default; the
        # refresh schedules call Kraken and are switched on by the user.
        sensors=[build_landing_sensor(markets, default_status=dg.DefaultSensorStatus.RUNNING),
                 build_run_worker_sensor(), build_runpod_reaper()],
    )
    return dg.Definitions.merge(chains, automation_definitions(markets),
                                alerting_definitions(markets))


def chain_resources(lake: LakeResource, mlflow: MlflowResource,
                    runpod: PipesRunPodClient | None = None) -> dict[str, Any]:
    """The resources every chain needs: the lake, MLflow, the Pipes clients for training (a
    local child process, a RunPod pod: the deployment's by default) and the record IO manager
    of the typed hand-offs."""
    return {
        "lake": lake,
        "mlflow": mlflow,
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
        "runpod": runpod if runpod is not None else default_runpod_client(),
        RECORDS_IO_MANAGER: RecordIOManager(lake=lake, mlflow=mlflow),
    }


defs = build_definitions()
