"""The direction chains: ``<model_key>/direction_model`` -> ``direction_evaluation`` (+ its
read-only ``direction_gate`` check) -> ``direction_champion`` -> ``direction_signals``.

``model_key`` is a market name (its LSTM, built for every market whose ``direction_preset`` is
set in ``configs/markets.yaml``) or ``<venue>_multi`` (the venue's transformer over its markets
with a direction preset, when there are at least two). One factory builds the four assets
for either kind, beside the market's PPO chain and reading the same ``features``.

The hand-offs are typed records through the record IO manager, as in the PPO chain:

* ``direction_model`` trains through Dagster Pipes (``python -m
  tradecore_lib.direction.train``, in a child process or a RunPod pod, the same compute choice
  as ``ppo_agent``) and returns the :class:`~tradecore_lib.direction.record.DirectionRecord`
  (run id, checkpoint, months, digests, MLflow model version);
* ``direction_evaluation`` scores it per market on validation and test against the
  baselines, with the economic check through the one trading engine, and returns the
  :class:`~tradecore_lib.direction.record.DirectionJudgement` whose verdict reads validation
  only (one verdict per model: a transformer passes only when every market it predicts
  passes);
* ``direction_champion`` materializes only when that verdict passed (``output_required=False``),
  moving the MLflow alias ``champion`` of ``tradecore-direction-<model_key>``;
* ``direction_signals`` writes the champion's dry-run probabilities with confidence tiers on
  the newest month. No orders, anywhere.

torch, the evaluation engine and mlflow are imported inside the steps only.

No ``from __future__ import annotations`` here: Dagster resolves the generated config class's
field types at definition time.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from tradecore_lib.direction.config import DirectionConfig, load_direction_config
from tradecore_lib.direction.launch import (
    DirectionRequest,
    is_control,
    model_markets,
    multi_model_key,
    plan_direction_folds,
    venue_markets,
)
from tradecore_lib.direction.record import (
    DirectionChampionRecord,
    DirectionJudgement,
    DirectionRecord,
)
from tradecore_lib.direction.store import FINAL, DirectionStore, direction_prefix
from tradecore_lib.errors import ConfigError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_lib.runpod import load_pod_spec
from tradecore_lib.train.launch import drop_unset
from tradecore_pipelines.assets.evaluation import RULE_DESCRIPTIONS, rule_row
from tradecore_pipelines.assets.features import features_key
from tradecore_pipelines.check_records import require_checked_candles
from tradecore_pipelines.constants import (
    DIRECTION_CHAMPION,
    DIRECTION_EVALUATION,
    DIRECTION_MODEL,
    DIRECTION_SIGNALS,
    asset_key,
    layer_tags,
)
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.io_managers import RECORDS_IO_MANAGER, latest_record
from tradecore_pipelines.metadata import png_markdown, records_table
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource
from tradecore_pipelines.runpod import PipesRunPodClient
from tradecore_pipelines.training_compute import (
    TRAINING_POOL,
    RunFolder,
    check_compute,
    train_local,
    train_on_runpod,
    training_config,
)

# The launchpad config: every DirectionConfig field, optional, as an override of the preset;
# the compute it trains on; and the pod, for RunPod compute (as PPOAgentConfig's).
DirectionModelConfig = training_config(
    DirectionConfig, "Direction preset in configs/direction/; null takes the market's "
    "direction_preset. Every other field set here overrides the preset's value.")


@dataclass(frozen=True)
class DirectionModelSpec:
    """One direction model the code location builds a chain for.

    Attributes:
        model_key: the market's name (LSTM) or ``<venue>_multi`` (transformer).
        markets: the markets it predicts, in the model's order.
        preset: its default direction preset (the markets' ``direction_preset``).
        group: the UI group (the market's own group; ``<venue>_multi`` for a transformer).
    """

    model_key: str
    markets: tuple[Market, ...]
    preset: str
    group: str

    @property
    def kind(self) -> str:
        return "lstm" if self.model_key == self.markets[0].name else "transformer"


def direction_models(markets: list[Market]) -> list[DirectionModelSpec]:
    """The direction models of the enabled ``markets``: an LSTM per market with a
    ``direction_preset``, and per venue the transformer over the markets it trains on
    (:func:`~tradecore_lib.direction.launch.model_markets`: by default the venue's markets
    with a direction preset, controls left out) when there are at least two.

    Raises:
        ConfigError: the markets of one venue's transformer name different direction presets
            (the transformer trains on one preset).
    """
    with_preset = [m for m in markets if m.direction_preset is not None]
    specs = [DirectionModelSpec(m.name, (m,), m.direction_preset, m.name) for m in with_preset]
    for venue in dict.fromkeys(m.venue for m in with_preset if not is_control(m)):
        key = multi_model_key(venue)
        presets = {m.direction_preset for m in venue_markets(venue, markets)}
        if len(presets) > 1:
            raise ConfigError(f"configs/markets.yaml: the markets of {key} use different "
                              f"direction presets {sorted(presets)}; its transformer trains "
                              "on one: give them the same direction_preset")
        (preset,) = presets
        members = model_markets(key, load_direction_config(preset), markets)
        if len(members) >= 2:
            specs.append(DirectionModelSpec(key, tuple(members), preset, key))
    return specs


def direction_key(model_key: str, layer: str) -> dg.AssetKey:
    return asset_key(model_key, layer)


def build_direction_chain(spec: DirectionModelSpec
                          ) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """The four assets and the gate check of one direction model."""
    return [build_direction_model(spec), build_direction_evaluation(spec),
            build_direction_gate(spec), build_direction_champion(spec),
            build_direction_signals(spec)]


def _subject(spec: DirectionModelSpec) -> str:
    names = ", ".join(m.name for m in spec.markets)
    if spec.kind == "lstm":
        return f"the per-market LSTM of {names}"
    return f"the multi-market transformer of {names}"


def build_direction_model(spec: DirectionModelSpec) -> dg.AssetsDefinition:
    """The ``<model_key>/direction_model`` asset."""
    key = spec.model_key

    @dg.asset(
        key=direction_key(key, DIRECTION_MODEL),
        group_name=spec.group,
        tags=layer_tags(DIRECTION_MODEL),
        deps=[features_key(m) for m in spec.markets],
        io_manager_key=RECORDS_IO_MANAGER,
        pool=TRAINING_POOL,
        kinds={"pytorch", "python"},
        description=f"Direction model: {_subject(spec)}, predicting the sign of the next "
        "horizon's log return (default preset "
        f"`{spec.preset}`; labels inside the dead zone are dropped from training and scored "
        "apart). Trained in PyTorch through Dagster Pipes (`python -m "
        "tradecore_lib.direction.train`) in a child process (compute local) or a RunPod GPU "
        "pod (compute runpod), on the preset's train months, validation monitored, seeded, "
        "resumable from its checkpoint under "
        f"`<lake_root>/{direction_prefix(key, '<run_id>')}/`. Logged to MLflow as a version of "
        f"tradecore-direction-{key}. Its value is the direction record that "
        "direction_evaluation judges.",
        metadata={"model_key": key, "markets": ", ".join(m.name for m in spec.markets),
                  "default_preset": spec.preset},
    )
    def direction_model(
        context: dg.AssetExecutionContext,
        config: DirectionModelConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
        pipes_subprocess_client: dg.PipesSubprocessClient,
        runpod: PipesRunPodClient,
    ) -> dg.Output[DirectionRecord]:
        overrides = drop_unset(config.model_dump())
        compute = overrides.pop("compute")
        pod_preset, pod_overrides = overrides.pop("runpod_preset"), overrides.pop("runpod", {})
        if spec.kind == "transformer" and "multi_markets" not in overrides:
            # The markets this asset depends on, named in the run (and its run id): the
            # child process reads the same list, whatever the markets file says by then.
            overrides["multi_markets"] = [m.name for m in spec.markets]
        request = DirectionRequest(model_key=key,
                                   preset=overrides.pop("preset", None) or spec.preset,
                                   overrides=overrides, lake_root=lake.root)
        store_lake = lake.get_lake()
        with step_failures():
            check_compute(compute, runpod)
            pod = load_pod_spec(pod_preset, pod_overrides) if compute == "runpod" else None
            # A bad value, a missing month or unchecked candles fail here, before training.
            cfg, folds = plan_direction_folds(store_lake, request, utc_now_ms())
            fold, fold_request = folds[-1]  # one model is judged and promoted: the newest
            fold_cfg = cfg.for_fold(fold)
            for market in spec.markets:
                require_checked_candles(context.instance, store_lake, market, fold.months,
                                        consumer=direction_key(key, DIRECTION_MODEL)
                                        .to_user_string())
        context.log.info(f"{key}: train {[str(m) for m in fold.train]}, validate "
                         f"{[str(m) for m in fold.validation]}, test "
                         f"{[str(m) for m in fold.test]} (preset {cfg.name})")
        with step_failures():  # RunPod's refusals and outages fail the step, redacted
            if pod is None:
                reported = train_local(context, pipes_subprocess_client, lake, fold_request)
            else:
                folder = RunFolder(inputs=_input_keys(spec, fold_cfg),
                                   prefix=lambda run_id: direction_prefix(key, run_id),
                                   complete=FINAL)
                reported = train_on_runpod(context, runpod, pod, lake, fold_request, folder)
            store = DirectionStore(store_lake, key, str(reported["run_id"].value))
            record = DirectionRecord.of(store, fold_cfg, context.run.run_id)
        tracker = mlflow.get_tracker()
        record = tracker.log_direction_record(store_lake, record)
        context.log.info(f"MLflow ({tracker.where}): {record.label}")
        curve = [{k: row.get(k) for k in ("epoch", "loss", "accuracy", "val_loss",
                                          "val_accuracy", "samples_per_s")}
                 for row in store.read_metrics()]
        return dg.Output(record, metadata={
            **reported,
            "compute": compute,
            "preset": record.preset,
            "eligible_for_promotion": record.eligible,
            "overrides": dg.MetadataValue.json(request.overrides),
            "checkpoint": dg.MetadataValue.path(record.checkpoint_uri),
            "config_digest": record.config_digest,
            "lineage_digest": record.lineage_digest,
            "training_curve": records_table(_rounded(curve)),
            "model_name": (record.mlflow and record.mlflow.model_name) or "-",
            "model_version": (record.mlflow and record.mlflow.version) or "-",
        })

    return direction_model


def _input_keys(spec: DirectionModelSpec, cfg: DirectionConfig) -> list[str]:
    """The lake keys a direction training reads: candles and features of its train and
    validation months (validation is monitored every epoch) and the month before them (the
    sequences' warm-up), for every market of the model."""
    months = sorted({*cfg.data.months("train"), *cfg.data.months("validation")})
    months = sorted({months[0].previous(), *months})
    keys = []
    for market in spec.markets:
        preset = cfg.data.feature_preset or market.feature_preset
        for month in months:
            if month >= market.first_month:
                keys += [candle_key(market, month), feature_key(preset, market, month)]
    return keys


def _rounded(rows: list[dict]) -> list[dict]:
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
            for row in rows]


def build_direction_evaluation(spec: DirectionModelSpec) -> dg.AssetsDefinition:
    """The ``<model_key>/direction_evaluation`` asset."""
    key = spec.model_key

    @dg.asset(
        key=direction_key(key, DIRECTION_EVALUATION),
        group_name=spec.group,
        tags=layer_tags(DIRECTION_EVALUATION),
        ins={"direction_model": dg.AssetIn(key=direction_key(key, DIRECTION_MODEL))},
        io_manager_key=RECORDS_IO_MANAGER,
        kinds={"python"},
        description=f"Out-of-sample judgement of {_subject(spec)} (the direction_model run it "
        "depends on), per market on its validation and test months: accuracy, balanced "
        "accuracy, log-loss, Brier score and expected calibration error against the "
        "baselines (majority class, persistence of the last horizon's sign, a logistic "
        "regression on the same inputs fitted on the train months), the bootstrap 95 % "
        "interval of its accuracy minus the best baseline's, a reliability diagram and a "
        "confusion table; and the economic check: long above p_long, short below 1 - "
        "p_long, flat between, traded through the one engine with all costs against the RL "
        "evaluation's baselines. The gate reads validation only; the test split is "
        "recorded, never judged. Its value is the judgement, verdict included.",
        metadata={"model_key": key},
    )
    def direction_evaluation(
        context: dg.AssetExecutionContext, direction_model: DirectionRecord,
        lake: LakeResource, mlflow: MlflowResource,
    ) -> dg.Output[DirectionJudgement]:
        import tempfile
        from pathlib import Path

        from tradecore_lib.direction.judge import (
            evaluation_files,
            evaluation_uri,
            judge_direction_run,
        )
        from tradecore_lib.direction.summary import ROW_DESCRIPTIONS

        store_lake = lake.get_lake()
        tracker = mlflow.get_tracker()
        champion = _current_champion(context, lake, key)
        with step_failures():
            judgement, evaluations = judge_direction_run(
                store_lake, direction_model, champion=champion,
                dagster_run_id=context.run.run_id, trials=tracker.direction_trials(key))
        verdict = judgement.verdict
        context.log.info(f"{key} run {direction_model.run_id}: {verdict.explanation()}")
        metadata: dict = {
            "run_id": direction_model.run_id,
            "direction_model_dagster_run_id": direction_model.dagster_run_id or "-",
            "model_version": (direction_model.mlflow and direction_model.mlflow.version) or "-",
            "champion": champion.label if champion else "none",
            "gate_passed": verdict.passed,
            "gate": verdict.explanation(),
        }
        for market, evaluation in evaluations.items():
            summary = evaluation.summary
            prefix = "" if spec.kind == "lstm" else f"{market}/"
            validation = summary.splits["validation"].models["model"].scores
            metadata |= {
                f"{prefix}validation_accuracy": round(validation.accuracy, 4),
                f"{prefix}validation_ece": round(validation.ece, 4),
                f"{prefix}scores": records_table(summary.rows(), ROW_DESCRIPTIONS),
                f"{prefix}accuracy_vs_best_baseline": records_table(summary.difference_rows()),
                f"{prefix}confusion": records_table(summary.confusion_rows()),
                f"{prefix}economic": records_table(summary.economic_rows()),
                f"{prefix}reliability_diagram": png_markdown(evaluation.reliability_png,
                                                             f"{market} reliability"),
                f"{prefix}equity_curve": png_markdown(evaluation.equity_png, f"{market} equity"),
            }
        metadata["judgement"] = dg.MetadataValue.path(evaluation_uri(store_lake, direction_model))
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name, data in evaluation_files(judgement, evaluations).items():
                path = Path(tmp) / name.replace("/", "-")  # one flat MLflow folder
                path.write_bytes(data)
                paths.append(path)
            tracker.log_direction_evaluation(judgement, paths)
        return dg.Output(judgement, metadata=metadata)

    return direction_evaluation


def _current_champion(context: dg.AssetExecutionContext, lake: LakeResource,
                      model_key: str) -> DirectionChampionRecord | None:
    """The latest ``<model_key>/direction_champion`` record, scored on the challenger's
    window (the one read outside the run lineage, as for PPO: an edge back would be a
    cycle)."""
    found = latest_record(context.instance, lake.get_lake(),
                          direction_key(model_key, DIRECTION_CHAMPION))
    if found is None:
        return None
    record = found[0]
    assert isinstance(record, DirectionChampionRecord)
    return record


def build_direction_gate(spec: DirectionModelSpec) -> dg.AssetChecksDefinition:
    """The read-only ``direction_gate`` check of ``<model_key>/direction_evaluation``."""

    @dg.asset_check(
        asset=direction_key(spec.model_key, DIRECTION_EVALUATION),
        name="direction_gate",
        blocking=False,
        description="Reports the direction gate's verdict that the judgement carries "
        "(validation only): accuracy above the best baseline with the bootstrap 95 % lower "
        "bound of the difference above the margin, expected calibration error at most "
        "max_ece, the optional min_accuracy, and the economic check's RL rules, for every "
        "market the model predicts; each rule's value, limit and margin. Read-only: "
        "direction_champion acts on it; a refusal is a warning, not a failed run.",
    )
    def direction_gate(direction_evaluation: DirectionJudgement) -> dg.AssetCheckResult:
        verdict = direction_evaluation.verdict
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=verdict.explanation(),
            metadata={"run_id": direction_evaluation.record.run_id,
                      "eligible": verdict.eligible,
                      "eligibility": verdict.eligibility or "eligible",
                      "rules": records_table([rule_row(rule) for rule in verdict.rules],
                                             RULE_DESCRIPTIONS)},
        )

    return direction_gate


def build_direction_champion(spec: DirectionModelSpec) -> dg.AssetsDefinition:
    """The ``<model_key>/direction_champion`` asset."""
    key = spec.model_key

    @dg.asset(
        key=direction_key(key, DIRECTION_CHAMPION),
        group_name=spec.group,
        tags=layer_tags(DIRECTION_CHAMPION),
        ins={"direction_evaluation": dg.AssetIn(key=direction_key(key, DIRECTION_EVALUATION))},
        io_manager_key=RECORDS_IO_MANAGER,
        output_required=False,
        kinds={"mlflow", "python"},
        description=f"The champion of {_subject(spec)}: materialized when the judgement it "
        "depends on passed the direction gate (and its preset is eligible), moving the MLflow "
        f"alias `champion` of tradecore-direction-{key} to that version. A refusal "
        "materializes nothing and skips direction_signals; the previous champion stays.",
        metadata={"model_key": key},
    )
    def direction_champion(
        context: dg.AssetExecutionContext, direction_evaluation: DirectionJudgement,
        mlflow: MlflowResource,
    ) -> Iterator[dg.Output[DirectionChampionRecord]]:
        from tradecore_lib.direction.judge import promote_direction

        verdict = direction_evaluation.verdict
        if not verdict.passed:
            context.log.info(f"{key}/direction_champion not materialized for run "
                             f"{direction_evaluation.record.run_id}: {verdict.explanation()}")
            return
        tracker = mlflow.get_tracker()
        with step_failures():
            record = promote_direction(
                tracker, direction_evaluation, direction_evaluation.record,
                dagster_run_id=context.run.run_id,
                evaluation_dagster_run_id=direction_evaluation.dagster_run_id)
        context.log.info(f"promoted {record.label} (run {record.run_id}) to champion; MLflow "
                         f"alias moved ({tracker.where})")
        yield dg.Output(record, metadata={
            "run_id": record.run_id, "model_name": record.model_name,
            "model_version": record.model_version,
            "checkpoint": dg.MetadataValue.path(record.record.checkpoint_uri),
            "reason": record.reason,
        })

    return direction_champion


def build_direction_signals(spec: DirectionModelSpec) -> dg.AssetsDefinition:
    """The ``<model_key>/direction_signals`` asset."""
    key = spec.model_key

    @dg.asset(
        key=direction_key(key, DIRECTION_SIGNALS),
        group_name=spec.group,
        tags=layer_tags(DIRECTION_SIGNALS),
        ins={"direction_champion": dg.AssetIn(key=direction_key(key, DIRECTION_CHAMPION))},
        kinds={"parquet", "python"},
        description=f"Dry-run direction signals of {key}/direction_champion on the newest "
        "month with candles and features: per minute and market the probability of an up "
        "move over the horizon, the direction, its confidence max(p, 1 - p) and confidence "
        "tier (the preset's signals.tiers), when it would execute, model version and run, "
        f"under `<lake_root>/signals/direction/{key}/`. No order is sent anywhere.",
        metadata={"model_key": key},
    )
    def direction_signals(
        context: dg.AssetExecutionContext, direction_champion: DirectionChampionRecord,
        lake: LakeResource,
    ) -> dg.MaterializeResult:
        from tradecore_lib.direction.signals import publish_direction_signals

        with step_failures():
            published = publish_direction_signals(
                lake.get_lake(), key, direction_champion.run_id, direction_champion.label,
                Month.of_ms(utc_now_ms()), tiers=direction_champion.record.signals.tiers)
        table = published.table
        tiers = table.group_by("tier").aggregate([("tier", "count")]).to_pylist()
        last = table.slice(max(table.num_rows - 10, 0)).to_pylist()
        context.log.info(f"{table.num_rows} dry-run direction signals of "
                         f"{direction_champion.label} on {published.month}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": table.num_rows,
            "path": dg.MetadataValue.path(published.stored.uri),
            "month": str(published.month),
            "model": direction_champion.label,
            "model_version": direction_champion.model_version,
            "run_id": direction_champion.run_id,
            "tiers": records_table(sorted(({"tier": r["tier"], "signals": r["tier_count"]}
                                           for r in tiers), key=lambda r: r["tier"])),
            "latest": records_table([{"ts": str(r["ts"]), "market": r["market"],
                                      "p_up": round(r["p_up"], 4), "tier": r["tier"]}
                                     for r in last]),
        })

    return direction_signals
