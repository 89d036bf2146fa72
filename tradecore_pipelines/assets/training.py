"""``ppo_agent/<market>``, ``evaluation/<market>`` (+ its promotion gate) and ``signals/<market>``.

Training runs in a child process through Dagster Pipes (``PipesSubprocessClient``, resource
``pipes_subprocess_client``): ``python -m tradecore_lib.train.ppo_train``, the command a GPU
pod runs. Its logs and progress stream into the run; when it exits, this step logs the run to
MLflow from the checkpoint in the lake (a pod cannot reach a local MLflow store) and registers
the model. torch, stable-baselines3 and mlflow are imported inside the asset bodies only, so
loading the code location stays fast.

No ``from __future__ import annotations`` here: Dagster resolves the generated config classes'
field types at definition time.
"""

import base64
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import dagster as dg
from pydantic import BaseModel, Field, create_model

from tradecore_lib.evaluation.promotion import judge
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_lib.tracking import CHAMPION
from tradecore_lib.train.checkpoints import CONFIG, EVAL_SUMMARY, MODEL, RunStore
from tradecore_lib.train.config import TrainConfig, load_train_config
from tradecore_pipelines.assets.features import features_key
from tradecore_pipelines.constants import EVALUATION, PPO_AGENT, SIGNALS, asset_key, layer_tags
from tradecore_pipelines.metadata import records_table
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource

# Files of a finished run logged to MLflow as artifacts (periodic checkpoints stay in the lake).
_ARTIFACTS = (MODEL, "vecnormalize.pkl", CONFIG, "lineage.json", "metrics.jsonl")


# -- launchpad config: every TrainConfig field, optional, as an override of the preset --------
def _launchpad_type(annotation: Any) -> Any:
    """The Dagster-friendly type of a TrainConfig field (sections become nested configs)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _overrides_config(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return str
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _launchpad_type(inner)
    return annotation


def _overrides_config(model: type[BaseModel], **extra: Any) -> type[dg.Config]:
    fields: dict[str, Any] = {
        name: (_launchpad_type(field.annotation) | None,
               Field(default=None, title=field.title, description=field.description))
        for name, field in model.model_fields.items()
        if name != "name"
    }
    return create_model(f"{model.__name__}Overrides", __base__=dg.Config, **extra, **fields)


PPOAgentConfig = _overrides_config(
    TrainConfig,
    preset=(str | None, Field(default=None, description="Training preset in configs/train/; "
                              "null takes the market's train_preset. Every other field set "
                              "here overrides the preset's value.")),
)


def split_config(config: dg.Config, market: Market) -> tuple[str, dict[str, Any]]:
    """(preset name, overrides) of the launchpad config; unset fields are not overrides."""
    values = config.model_dump(exclude_none=True)
    preset = values.pop("preset", None) or market.train_preset
    return preset, _drop_empty(values)


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "env_overrides":
            value = _drop_empty(value)
            if not value:
                continue
        out[key] = value
    return out


# -- helpers ---------------------------------------------------------------------------------
def ppo_agent_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, PPO_AGENT)


def evaluation_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, EVALUATION)


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, needed: str) -> dict:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key.to_user_string()} has never been materialized; {needed}")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _child_env(lake: LakeResource) -> dict[str, str]:
    """Lake settings for the training process (credentials travel as env vars, never args)."""
    values = {
        "TRADECORE_S3_ENDPOINT_URL": lake.s3.endpoint_url,
        "AWS_REGION": lake.s3.region_name,
        "AWS_ACCESS_KEY_ID": lake.s3.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": lake.s3.aws_secret_access_key,
        "AWS_SESSION_TOKEN": lake.s3.aws_session_token,
    }
    return {k: v for k, v in values.items() if v}


def _png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _log_training_to_mlflow(store: RunStore, mlflow: MlflowResource, market: Market):
    """Replay a finished run's checkpoint files and metric history into MLflow."""
    tracker = mlflow.get_tracker()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in _ARTIFACTS:
            if store.exists(name):
                (folder / name).write_bytes(store.read_bytes(name))
        lineage = store.read_json("lineage.json")
        registered = tracker.log_training(
            market.name, store.run_id, store.read_json(CONFIG), store.read_metrics(), folder,
            tags={"checkpoint_uri": store.uri(), "feature_preset": lineage["feature_preset"],
                  "code_version": lineage["code_version"], "seed": str(lineage["seed"])},
        )
    return tracker, registered


# -- the factory -------------------------------------------------------------------------------
def build_training_assets(market: Market) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """``ppo_agent``, ``evaluation`` with its blocking ``promotion_gate``, and ``signals``."""
    # Loading the preset here rejects a broken configs/train file when the code location loads.
    preset = load_train_config(market.train_preset)
    agent_key = ppo_agent_key(market)
    eval_key = evaluation_key(market)

    @dg.asset(
        key=agent_key,
        group_name=market.name,
        tags=layer_tags(PPO_AGENT),
        deps=[features_key(market)],
        kinds={"pytorch", "python"},
        description=f"SB3 PPO agent of {market.name} trained on TradeVecEnv over the preset's "
        f"train months (default preset `{market.train_preset}`: {preset.data.train_months}), "
        "in a child process through Dagster Pipes. One versioned checkpoint per run under "
        f"<lake_root>/models/{market.name}/<run_id>/ (model.zip, vecnormalize.pkl, config.json, "
        "lineage.json, metrics.jsonl, checkpoints/); re-running after a crash resumes it. "
        "Logged to MLflow and registered as a model version.",
        metadata={"market": market.name, "default_preset": market.train_preset},
    )
    def ppo_agent(
        context: dg.AssetExecutionContext,
        config: PPOAgentConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
        pipes_subprocess_client: dg.PipesSubprocessClient,
    ) -> dg.MaterializeResult:
        preset_name, overrides = split_config(config, market)
        cfg = load_train_config(preset_name, overrides)  # a bad value fails before any work
        command = [sys.executable, "-m", "tradecore_lib.train.ppo_train", "--market",
                   market.name, "--preset", preset_name, "--overrides", json.dumps(overrides),
                   "--lake-root", lake.root]
        if cfg.warm_start:
            champion = mlflow.get_tracker().champion(market.name)
            if champion is None:
                context.log.warning("warm_start is on but there is no champion yet; training "
                                    "from a fresh network")
            else:
                context.log.info(f"warm start from champion v{champion.version} "
                                 f"(run {champion.run_id})")
                command += ["--warm-start-from", champion.run_id]
        reported = pipes_subprocess_client.run(
            context=context, command=command, env=_child_env(lake)
        ).get_materialize_result()
        run_id = reported.metadata["run_id"].value
        store = RunStore(lake.get_lake(), market.name, run_id)
        tracker, registered = _log_training_to_mlflow(store, mlflow, market)
        context.log.info(f"MLflow ({tracker.where}): run {registered.mlflow_run_id}, model "
                         f"{registered.model_name} v{registered.version}")
        curve = [
            {"step": r["step"], **{k: r.get(k) for k in ("fps", "ep_rew_mean", "value_loss")}}
            for r in store.read_metrics() if "fps" in r
        ]
        return dg.MaterializeResult(
            metadata={
                **reported.metadata,
                "checkpoint": dg.MetadataValue.path(store.uri()),
                "preset": preset_name,
                "overrides": dg.MetadataValue.json(overrides),
                "mlflow_tracking": tracker.where,
                "mlflow_run_id": registered.mlflow_run_id,
                "model_name": registered.model_name,
                "model_version": registered.version,
                "training_curve": records_table(curve),
            }
        )

    @dg.asset(
        key=eval_key,
        group_name=market.name,
        tags=layer_tags(EVALUATION),
        deps=[agent_key],
        kinds={"python"},
        description=f"Out-of-sample backtest of the latest ppo_agent/{market.name} checkpoint "
        "on its validation and test months with the training env's engine and fees, next to "
        "buy-and-hold, always-flat and a seeded random policy: total return, annualized "
        "Sharpe and Sortino, max drawdown, turnover, fees, trades, win rate, exposure. Writes "
        "eval_summary.json and equity.png beside the checkpoint.",
        metadata={"market": market.name},
    )
    def evaluation(
        context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        from tradecore_lib.evaluation.summary import evaluate_run, summary_table

        trained = _latest_metadata(context.instance, agent_key,
                                   f"materialize {agent_key.to_user_string()} first")
        result = evaluate_run(lake.get_lake(), market, trained["run_id"])
        rows = result.rows()
        context.log.info("evaluation of run " + trained["run_id"] + ":\n" + summary_table(rows))
        tracker = mlflow.get_tracker()
        store = RunStore(lake.get_lake(), market.name, trained["run_id"])
        with tempfile.TemporaryDirectory() as tmp:
            summary_file = Path(tmp) / EVAL_SUMMARY
            summary_file.write_text(json.dumps(result.summary, indent=2))
            chart_file = Path(tmp) / "equity.png"
            chart_file.write_bytes(result.chart_png)
            tracker.log_evaluation(trained["mlflow_run_id"], rows, [summary_file, chart_file])
        test = result.summary["splits"]["test"]["policies"]
        return dg.MaterializeResult(
            metadata={
                "run_id": trained["run_id"],
                "model_name": trained["model_name"],
                "model_version": trained["model_version"],
                "eval_summary": dg.MetadataValue.path(store.uri(EVAL_SUMMARY)),
                "comparison": records_table(rows),
                "equity_curve": _png_markdown(result.chart_png, "equity curves"),
                "test_agent_sharpe": test["agent"]["sharpe"],
                "test_buy_and_hold_sharpe": test["buy_and_hold"]["sharpe"],
                "test_agent_total_return": test["agent"]["total_return"],
                "test_agent_max_drawdown": test["agent"]["max_drawdown"],
                "test_agent_trades": test["agent"]["trades"],
            }
        )

    @dg.asset_check(
        asset=eval_key,
        name="promotion_gate",
        blocking=True,
        description="Judges the test backtest against the preset's promotion thresholds. "
        f"Pass: the MLflow alias `{CHAMPION}` moves to this model version and the promotion is "
        "recorded on it. Fail: the champion stays and each missed threshold is named with "
        "its shortfall; signals in the same run are skipped.",
    )
    def promotion_gate(
        context: dg.AssetCheckExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> dg.AssetCheckResult:
        evaluated = _latest_metadata(context.instance, eval_key,
                                     f"materialize {eval_key.to_user_string()} first")
        store = RunStore(lake.get_lake(), market.name, evaluated["run_id"])
        rules = judge(store.read_json(EVAL_SUMMARY))
        passed = all(rule.passed for rule in rules)
        tracker = mlflow.get_tracker()
        version = str(evaluated["model_version"])
        before = tracker.champion(market.name)
        if passed:
            tracker.promote(market.name, version, {
                "dagster_run_id": context.run.run_id,
                "at_ms": str(utc_now_ms()),
                "rules": "; ".join(rule.explanation for rule in rules) or "no thresholds set",
            })
            if before is not None and str(before.version) == version:
                replaced = f", already {CHAMPION}: confirmed"
            else:
                replaced = f", replacing v{before.version}" if before else ""
            outcome = f"promoted v{version} (run {evaluated['run_id']}) to {CHAMPION}{replaced}"
        else:
            kept = f"v{before.version} stays {CHAMPION}" if before else f"there is no {CHAMPION}"
            failed = "; ".join(rule.explanation for rule in rules if not rule.passed)
            outcome = f"not promoted: {failed}. {kept}"
        context.log.info(f"promotion gate {market.name}: {outcome}")
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=outcome,
            metadata={
                "run_id": evaluated["run_id"],
                "model_version": version,
                "previous_champion": before.version if before else "-",
                "champion": version if passed else (before.version if before else "-"),
                "rules": records_table([
                    rule.to_dict() for rule in rules
                ]),
            },
        )

    @dg.asset(
        key=asset_key(market.name, SIGNALS),
        group_name=market.name,
        tags=layer_tags(SIGNALS),
        deps=[eval_key],
        kinds={"parquet", "python"},
        description=f"Dry-run signals of the {CHAMPION} (MLflow alias) on the newest month of "
        f"{market.name} candles and features: time, target position, action probabilities, "
        f"confidence, model version, under <lake_root>/signals/{market.name}/. No order is "
        "sent anywhere.",
        metadata={"market": market.name},
    )
    def signals(
        context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource
    ) -> dg.MaterializeResult:
        from tradecore_lib.signals import publish_signals

        published = publish_signals(lake.get_lake(), market, mlflow.get_tracker(),
                                    Month.of_ms(utc_now_ms()))
        table = published.table
        last = table.slice(table.num_rows - 1).to_pylist()[0]
        context.log.info(f"{table.num_rows} dry-run signals of {published.model_name} "
                         f"v{published.model_version} on {published.month}; latest target "
                         f"{last['target_position']:+.2f} at {last['execute_at']}")
        preview = [
            {"ts": str(r["ts"]), "target_position": r["target_position"],
             "confidence": r["confidence"]}
            for r in table.slice(max(table.num_rows - 10, 0)).to_pylist()
        ]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": table.num_rows,
                "path": dg.MetadataValue.path(published.stored.uri),
                "month": str(published.month),
                "model_name": published.model_name,
                "model_version": published.model_version,
                "run_id": published.run_id,
                "latest_target_position": last["target_position"],
                "latest": records_table(preview),
            }
        )

    return [ppo_agent, evaluation, promotion_gate, signals]
