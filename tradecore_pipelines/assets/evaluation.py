"""``evaluation/<market>`` and its read-only ``promotion_gate`` check.

The evaluation receives the :class:`~tradecore_lib.train.record.RunRecord` of the
``ppo_agent`` materialization it depends on (through the record IO manager: the same run, the
re-executed run's parent, or the latest materialization for a run of evaluation alone) and
returns the typed :class:`~tradecore_lib.evaluation.summary.EvaluationSummary`, verdict
included. The one read outside that lineage is the current champion, scored on the same
window (:func:`~tradecore_pipelines.io_managers.current_champion`; an edge from champion back
to evaluation would be a cycle).

The check reports the verdict the summary carries and changes nothing. It is not blocking:
a refusal is a normal outcome (``champion`` then yields nothing and ``signals`` are skipped),
not a failed run.
"""

import tempfile
from pathlib import Path

import dagster as dg

from tradecore_lib.evaluation.metrics import PolicyMetrics
from tradecore_lib.evaluation.summary import EvaluationSummary, summary_table
from tradecore_lib.markets import Market
from tradecore_lib.train.checkpoints import EQUITY_PNG, EVAL_SUMMARY, RunStore
from tradecore_lib.train.record import RunRecord
from tradecore_pipelines.assets.training import ppo_agent_key
from tradecore_pipelines.constants import EVALUATION, asset_key, layer_tags
from tradecore_pipelines.failures import step_failures
from tradecore_pipelines.io_managers import RECORDS_IO_MANAGER, current_champion
from tradecore_pipelines.metadata import png_markdown, records_table
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource

# The comparison table's column descriptions: the metrics' own field descriptions.
METRIC_DESCRIPTIONS = {name: field.description
                       for name, field in PolicyMetrics.model_fields.items()}


def evaluation_key(market: Market) -> dg.AssetKey:
    return asset_key(market.name, EVALUATION)


def build_evaluation(market: Market) -> dg.AssetsDefinition:
    """The ``evaluation/<market>`` asset."""

    @dg.asset(
        key=evaluation_key(market),
        group_name=market.name,
        tags=layer_tags(EVALUATION),
        ins={"ppo_agent": dg.AssetIn(key=ppo_agent_key(market))},
        io_manager_key=RECORDS_IO_MANAGER,
        kinds={"python"},
        description=f"Out-of-sample backtest of the ppo_agent/{market.name} run it depends on, "
        "per fold on its validation and test months with the training env's engine and fees, "
        "next to the baselines (true buy-and-hold, always-long with stops, flat) and the "
        "current champion: "
        "total return, annualized Sharpe and Sortino, max drawdown, turnover, fees, trades, "
        "win rate, exposure. Its value is the evaluation summary with the promotion gate's "
        "verdict (validation only); eval_summary.json and equity.png land beside the "
        "checkpoint.",
        metadata={"market": market.name},
    )
    def evaluation(
        context: dg.AssetExecutionContext, ppo_agent: RunRecord, lake: LakeResource,
        mlflow: MlflowResource,
    ) -> dg.Output[EvaluationSummary]:
        from tradecore_lib.evaluation.evaluate import evaluate_record

        store_lake = lake.get_lake()
        with step_failures():
            champion = current_champion(context.instance, store_lake, market.name,
                                        mlflow.get_tracker)
            result = evaluate_record(store_lake, market, ppo_agent, champion=champion,
                                     dagster_run_id=context.run.run_id)
        summary = result.summary
        context.log.info(f"evaluation of run {ppo_agent.run_id} (ppo_agent of Dagster run "
                         f"{ppo_agent.dagster_run_id}):\n{summary_table(summary.rows())}\n"
                         f"gate: {summary.verdict.explanation()}")
        with tempfile.TemporaryDirectory() as tmp:
            files = [Path(tmp) / EVAL_SUMMARY, Path(tmp) / EQUITY_PNG]
            files[0].write_text(summary.to_json())
            files[1].write_bytes(result.chart_png)
            mlflow.get_tracker().log_evaluation(summary, files)
        store = RunStore(store_lake, market.name, ppo_agent.run_id)
        return dg.Output(summary, metadata={
            **_judged(summary),
            "eval_summary": dg.MetadataValue.path(store.uri(EVAL_SUMMARY)),
            "comparison": records_table(summary.rows(), METRIC_DESCRIPTIONS),
            "equity_curve": png_markdown(result.chart_png, "equity curves"),
        })

    return evaluation


def _judged(summary: EvaluationSummary) -> dict:
    """What was judged and the verdict, as flat metadata."""
    run = summary.run
    mlflow = run.newest.mlflow
    validation = summary.newest.splits["validation"].policies
    champion = summary.champion
    return {
        "run_id": run.run_id,
        "ppo_agent_dagster_run_id": run.dagster_run_id or "-",
        "model_name": (mlflow and mlflow.model_name) or "-",
        "model_version": (mlflow and mlflow.version) or "-",
        "champion": f"{champion.model_name} v{champion.model_version}: {champion.note}"
        if champion else "none",
        "gate_passed": summary.verdict.passed,
        "gate": summary.verdict.explanation(),
        "validation_agent_total_return": validation["agent"].total_return,
        "validation_agent_sharpe": validation["agent"].sharpe,
        "validation_buy_and_hold_sharpe": validation["buy_and_hold"].sharpe,
    }


def build_promotion_gate(market: Market) -> dg.AssetChecksDefinition:
    """The read-only ``promotion_gate`` check of ``evaluation/<market>``."""

    @dg.asset_check(
        asset=evaluation_key(market),
        name="promotion_gate",
        blocking=False,
        description="Reports the promotion gate's verdict that the evaluation summary "
        "carries (validation only, every fold): each rule's value, limit and margin, and "
        "whether the preset is eligible. Read-only: champion/<market> acts on the verdict; a "
        "refusal is a warning, not a failed run.",
    )
    def promotion_gate(evaluation: EvaluationSummary) -> dg.AssetCheckResult:
        verdict = evaluation.verdict
        return dg.AssetCheckResult(
            passed=verdict.passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=verdict.explanation(),
            metadata={
                "run_id": evaluation.run.run_id,
                "eligible": verdict.eligible,
                "eligibility": verdict.eligibility or "eligible",
                "rules": records_table([rule.model_dump() for rule in verdict.rules]),
                "not_judged": ", ".join(verdict.not_judged) or "-",
            },
        )

    return promotion_gate
