"""``champion/<market>``: the promoted agent, materialized only when the gate passes.

Declared with ``output_required=False``: it receives the evaluation summary it depends on and
yields the :class:`~tradecore_lib.evaluation.promotion.ChampionRecord` (moving the MLflow alias
``champion`` to the same model version) when the verdict passed, and yields nothing otherwise.
A refusal is a normal outcome: the run succeeds, ``champion`` and everything downstream of it
(``signals``) are skipped, and no failure, retry or alert fires. The asset is the source of
truth; the MLflow alias mirrors it.
"""

from collections.abc import Iterator

import dagster as dg

from tradecore_lib.evaluation.promotion import ChampionRecord, promote
from tradecore_lib.evaluation.summary import EvaluationSummary
from tradecore_lib.markets import Market
from tradecore_pipelines.assets.evaluation import evaluation_key
from tradecore_pipelines.constants import CHAMPION, asset_key, layer_tags
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.io_managers import RECORDS_IO_MANAGER
from tradecore_pipelines.resources_ml import MlflowResource


def champion_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, CHAMPION)


def build_champion(market: Market) -> dg.AssetsDefinition:
    """The ``champion/<market>`` asset."""

    @dg.asset(
        key=champion_key(market),
        group_name=market.name,
        tags=layer_tags(CHAMPION),
        ins={"evaluation": dg.AssetIn(key=evaluation_key(market))},
        io_manager_key=RECORDS_IO_MANAGER,
        output_required=False,
        kinds={"mlflow", "python"},
        description=f"The champion agent of {market.name}: materialized when the evaluation "
        "it depends on passed the promotion gate (and its preset is eligible), moving the "
        "MLflow alias `champion` to that model version. A refusal materializes nothing and "
        "skips signals; the previous champion stays. Its value is the champion record "
        "(run, checkpoint, model version) that signals and warm starts read.",
        metadata={"market": market.name},
    )
    def champion(
        context: dg.AssetExecutionContext, evaluation: EvaluationSummary, mlflow: MlflowResource
    ) -> Iterator[dg.Output[ChampionRecord]]:
        verdict = evaluation.verdict
        if not verdict.passed:
            context.log.info(f"{market.name}/champion not materialized for run "
                             f"{evaluation.run.run_id}: {verdict.explanation()}")
            return
        tracker = mlflow.get_tracker()
        before = evaluation.champion
        with step_failures():
            record = promote(tracker, evaluation.run, verdict,
                             dagster_run_id=context.run.run_id,
                             evaluation_dagster_run_id=evaluation.dagster_run_id)
        if before is None:
            replaced = "the first champion"
        elif before.run_id == record.run_id:
            replaced = "already the champion: confirmed"
        else:
            replaced = f"replacing {before.model_name} v{before.model_version}"
        context.log.info(f"promoted {record.label} (run {record.run_id}) to champion, "
                         f"{replaced}; MLflow alias moved ({tracker.where})")
        yield dg.Output(record, metadata={
            "run_id": record.run_id,
            "model_name": record.model_name,
            "model_version": record.model_version,
            "checkpoint": dg.MetadataValue.path(record.run.checkpoint_uri),
            "previous": f"{before.model_name} v{before.model_version}" if before else "-",
            "evaluation_dagster_run_id": evaluation.dagster_run_id or "-",
            "reason": record.reason,
        })

    return champion
