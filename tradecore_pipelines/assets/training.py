"""``ppo_agent/<market>``: SB3 PPO trained in a child process; its value is the run record.

Training runs through Dagster Pipes (``PipesSubprocessClient``, resource
``pipes_subprocess_client``): ``python -m tradecore_lib.train.ppo_train``, the command a GPU pod
runs, once per walk-forward fold (one fold for fixed-month presets). Its logs and progress
stream into the run. When the folds are done this step logs them to MLflow from their
checkpoints in the lake (a pod cannot reach a local MLflow store), registers the newest, and
returns the :class:`~tradecore_lib.train.record.RunRecord` through the record IO manager.
torch, stable-baselines3 and mlflow are never imported here.

No ``from __future__ import annotations`` here: Dagster resolves the generated config class's
field types at definition time.
"""

from collections.abc import Callable

import dagster as dg

from tradecore_lib.markets import Market
from tradecore_lib.months import utc_now_ms
from tradecore_lib.runpod import load_pod_spec
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.config import Fold, TrainConfig, load_train_config
from tradecore_lib.train.launch import (
    TrainRequest,
    drop_unset,
    plan_folds,
)
from tradecore_lib.train.record import FoldRun, RunRecord
from tradecore_pipelines.assets.features import features_key
from tradecore_pipelines.check_records import require_checked_candles
from tradecore_pipelines.constants import PPO_AGENT, asset_key, layer_tags
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.io_managers import RECORDS_IO_MANAGER, current_champion
from tradecore_pipelines.metadata import records_table
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource
from tradecore_pipelines.runpod import PipesRunPodClient
from tradecore_pipelines.training_compute import (
    TRAINING_POOL,
    check_compute,
    ppo_run_folder,
    train_local,
    train_on_runpod,
    training_config,
)

# The launchpad config: every TrainConfig field, optional, as an override of the preset; the
# compute it runs on; and the pod, for RunPod compute.
PPOAgentConfig = training_config(
    TrainConfig, "Training preset in configs/train/; null takes the market's train_preset. "
    "Every other field set here overrides the preset's value.")


def ppo_agent_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, PPO_AGENT)


def build_ppo_agent(market: Market) -> dg.AssetsDefinition:
    """The ``ppo_agent/<market>`` asset."""
    # The default preset, for the description (load_markets has validated it already).
    preset = load_train_config(market.train_preset)

    @dg.asset(
        key=ppo_agent_key(market),
        group_name=market.name,
        tags=layer_tags(PPO_AGENT),
        deps=[features_key(market)],
        io_manager_key=RECORDS_IO_MANAGER,
        pool=TRAINING_POOL,
        kinds={"pytorch", "python"},
        description=f"SB3 PPO agent of {market.name} trained on TradeVecEnv over the preset's "
        f"train months (default preset `{market.train_preset}`"
        f"{'' if preset.windows is None else ', walk-forward folds'}), through Dagster Pipes "
        "in a child process (compute local) or a RunPod GPU pod (compute runpod). One "
        "versioned checkpoint per run under "
        f"`<lake_root>/models/{market.name}/<run_id>/`; re-running after a crash resumes it. "
        "Logged to MLflow (the newest fold registered). Its value is the run record "
        "(run ids, checkpoints, config and lineage digests) that evaluation judges.",
        metadata={"market": market.name, "default_preset": market.train_preset},
    )
    def ppo_agent(
        context: dg.AssetExecutionContext,
        config: PPOAgentConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
        pipes_subprocess_client: dg.PipesSubprocessClient,
        runpod: PipesRunPodClient,
    ) -> dg.Output[RunRecord]:
        overrides = drop_unset(config.model_dump())
        compute = overrides.pop("compute")
        pod_preset, pod_overrides = overrides.pop("runpod_preset"), overrides.pop("runpod", {})
        request = TrainRequest(market=market.name,
                               preset=overrides.pop("preset", None) or market.train_preset,
                               overrides=overrides, lake_root=lake.root)
        store_lake = lake.get_lake()
        with step_failures():
            check_compute(compute, runpod)
            spec = load_pod_spec(pod_preset, pod_overrides) if compute == "runpod" else None
            # A bad value, a missing month or unchecked candles fail here, before training.
            cfg, folds = plan_folds(store_lake, market, request, utc_now_ms())
            require_checked_candles(context.instance, store_lake, market,
                                    {m for fold, _ in folds for m in fold.months},
                                    consumer=ppo_agent_key(market).to_user_string())
            if cfg.warm_start:
                start = _champion_run(context, lake, mlflow, market)
                folds = [(fold, fold_request.model_copy(update={"warm_start_from": start}))
                         for fold, fold_request in folds]
        def train_fold(fold_request: TrainRequest) -> dict:
            if spec is None:
                return train_local(context, pipes_subprocess_client, lake, fold_request)
            return train_on_runpod(context, runpod, spec, lake, fold_request,
                                   ppo_run_folder(store_lake, market, cfg, fold_request))

        with step_failures():  # RunPod's refusals and outages fail the step, redacted
            runs, reported = _train_folds(context, lake, market, folds, train_fold)
        tracker = mlflow.get_tracker()
        record = tracker.log_record(store_lake,
                                    RunRecord.of(market.name, cfg, context.run.run_id, runs))
        context.log.info(f"MLflow ({tracker.where}): {record.newest.mlflow}")
        newest = RunStore(store_lake, market.name, record.run_id)
        return dg.Output(record, metadata={**_metadata(record, newest, reported, request),
                                           "compute": compute})

    return ppo_agent


def _champion_run(context: dg.AssetExecutionContext, lake: LakeResource,
                  mlflow: MlflowResource, market: Market) -> str | None:
    """The run id a warm start begins from: the current champion's (its asset's record)."""
    champion = current_champion(context.instance, lake.get_lake(), market.name,
                                mlflow.get_tracker)
    if champion is None:
        context.log.warning("warm_start is on but there is no champion yet; training from a "
                            "fresh network")
        return None
    context.log.info(f"warm start from the champion {champion.label} (run {champion.run_id})")
    return champion.run_id


def _train_folds(context: dg.AssetExecutionContext, lake: LakeResource, market: Market,
                 folds: list[tuple[Fold, TrainRequest]],
                 train_fold: Callable[[TrainRequest], dict]) -> tuple[list[FoldRun], dict]:
    """Run ``train_fold`` once per fold, oldest first; the folds' records and the newest
    fold's reported metadata (steps, final reward, ...)."""
    runs, reported = [], {}
    for fold, request in folds:
        context.log.info(f"fold {fold.index + 1}/{len(folds)}: train "
                         f"{[str(m) for m in fold.train]}, validate "
                         f"{[str(m) for m in fold.validation]}")
        reported = train_fold(request)
        store = RunStore(lake.get_lake(), market.name, str(reported["run_id"].value))
        runs.append(FoldRun.from_store(store, fold.index))
    return runs, reported


def _metadata(record: RunRecord, store: RunStore, reported: dict, request: TrainRequest
              ) -> dict:
    newest = record.newest
    curve = [{"step": r["step"], **{k: r.get(k) for k in ("fps", "ep_rew_mean", "value_loss")}}
             for r in store.read_metrics() if "fps" in r]
    folds = [{"fold": f.fold + 1, "run_id": f.run_id, "train": ", ".join(f.train_months),
              "validation": ", ".join(f.validation_months), "test": ", ".join(f.test_months)}
             for f in record.folds]
    return {
        **reported,
        "run_id": newest.run_id,
        "checkpoint": dg.MetadataValue.path(newest.checkpoint_uri),
        "preset": record.preset,
        "eligible_for_promotion": record.eligible,
        "overrides": dg.MetadataValue.json(request.overrides),
        "config_digest": newest.config_digest,
        "lineage_digest": newest.lineage_digest,
        "folds": records_table(folds),
        "training_curve": records_table(curve),
        "mlflow_run_id": newest.mlflow.run_id if newest.mlflow else "-",
        "model_name": (newest.mlflow and newest.mlflow.model_name) or "-",
        "model_version": (newest.mlflow and newest.mlflow.version) or "-",
    }
