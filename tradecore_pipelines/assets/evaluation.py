"""``evaluation/<market>`` and its read-only ``promotion_gate`` check.

The evaluation receives the :class:`~tradecore_lib.train.record.RunRecord` of the
``ppo_agent`` materialization it depends on (through the record IO manager: the same run, the
re-executed run's parent, or the latest materialization for a run of evaluation alone) and
returns the typed :class:`~tradecore_lib.evaluation.summary.EvaluationSummary`, verdict
included. The one read outside that lineage is the current champion, scored on the same
window (:func:`~tradecore_pipelines.io_managers.current_champion`; an edge from champion back
to evaluation would be a cycle).

What the user sees on the asset: the rounded comparison table (every fold and split, every
baseline, matched random as its median and 95th-percentile rows; with several folds the
folds chained as ``all``), the agent's statistics (PSR, DSR, matched random percentile and
p-value, the bootstrap bound of its Sharpe difference to buy-and-hold, recovery on control
markets), the equity curves of agent, buy-and-hold and flat with their drawdowns, and the
paths of ``eval_summary.json`` and of the tearsheet ``tearsheet.html`` beside it.

The check reports the verdict the summary carries and changes nothing. It is not blocking:
a refusal is a normal outcome (``champion`` then yields nothing and ``signals`` are skipped),
not a failed run.
"""

import tempfile
from pathlib import Path

import dagster as dg

from tradecore_lib.evaluation.promotion import Rule
from tradecore_lib.evaluation.summary import ROW_DESCRIPTIONS, EvaluationSummary, summary_table
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

# The tearsheet's file name beside eval_summary.json (tradecore_lib.evaluation.tearsheet.TEARSHEET,
# repeated so that loading the code location does not import the evaluation engine).
TEARSHEET = "tearsheet.html"
AGENT_DESCRIPTIONS = {
    "psr": "probabilistic Sharpe ratio: P(true daily Sharpe > 0)",
    "dsr": "deflated Sharpe ratio over n_trials (every training run of the market in MLflow)",
    "n_trials": "trials the DSR deflates for",
    "random_percentile": "percent of matched random policies with a daily Sharpe at or below "
                         "the agent's",
    "random_p_value": "(1 + #random >= agent) / (1 + #random)",
    "sharpe_minus_buy_and_hold": "agent daily Sharpe - buy-and-hold daily Sharpe",
    "difference_95_low": "paired bootstrap 95 % lower bound of that difference (the gate's)",
    "recovery": "control markets: agent cumulative log return / the oracle's",
}


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
        description=f"Out-of-sample backtest of the {market.name}/ppo_agent run it depends on, "
        "per fold on its validation and test months (each warmed up on the month before) with "
        "the training env's engine and costs, next to the baselines (true buy-and-hold, "
        "always-long with stops, flat, 100+ random policies matched to the agent's trades), "
        "the current champion and, on control markets, the oracle: net return, daily Sharpe "
        "with its bootstrap 95 % interval, per-bar Sharpe, Sortino, max drawdown, exposure, "
        "trades, fees, holding costs, kill-switch hits, guardrail breaches; for the agent "
        "PSR, DSR and its matched random percentile. Its value is the evaluation summary with "
        "the promotion gate's verdict (validation only); eval_summary.json, equity.png and "
        "tearsheet.html land beside the checkpoint.",
        metadata={"market": market.name},
    )
    def evaluation(
        context: dg.AssetExecutionContext, ppo_agent: RunRecord, lake: LakeResource,
        mlflow: MlflowResource,
    ) -> dg.Output[EvaluationSummary]:
        from tradecore_lib.evaluation.evaluate import evaluate_record

        store_lake = lake.get_lake()
        tracker = mlflow.get_tracker()
        with step_failures():
            champion = current_champion(context.instance, store_lake, market.name,
                                        lambda: tracker)
            result = evaluate_record(store_lake, market, ppo_agent, champion=champion,
                                     dagster_run_id=context.run.run_id,
                                     trials=tracker.training_trials(market.name))
        summary = result.summary
        context.log.info(f"evaluation of run {ppo_agent.run_id} (ppo_agent of Dagster run "
                         f"{ppo_agent.dagster_run_id}):\n{summary_table(summary.rows())}\n"
                         f"gate: {summary.verdict.explanation()}")
        with tempfile.TemporaryDirectory() as tmp:
            files = {EVAL_SUMMARY: summary.to_json().encode(), EQUITY_PNG: result.chart_png,
                     TEARSHEET: result.tearsheet.encode()}
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            tracker.log_evaluation(summary, [Path(tmp) / name for name in files])
        store = RunStore(store_lake, market.name, ppo_agent.run_id)
        return dg.Output(summary, metadata={
            **_judged(summary),
            "eval_summary": dg.MetadataValue.path(store.uri(EVAL_SUMMARY)),
            "tearsheet": dg.MetadataValue.path(store.uri(TEARSHEET)),
            "comparison": records_table(summary.rows(), ROW_DESCRIPTIONS),
            "agent_statistics": records_table(summary.agent_rows(), AGENT_DESCRIPTIONS),
            "equity_curve": png_markdown(result.chart_png, "equity curves"),
        })

    return evaluation


def _judged(summary: EvaluationSummary) -> dict:
    """What was judged and the verdict, as flat metadata."""
    run = summary.run
    mlflow = run.newest.mlflow
    validation = summary.newest.splits["validation"]
    agent, hold = validation.policies["agent"], validation.policies["buy_and_hold"]
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
        "validation_agent_total_return": agent.total_return,
        "validation_agent_daily_sharpe": agent.daily_sharpe,
        "validation_buy_and_hold_daily_sharpe": hold.daily_sharpe,
        "validation_sharpe_difference_95_low": validation.agent.sharpe_vs_buy_and_hold.low,
        "validation_random_percentile": validation.agent.random_percentile,
        "validation_dsr": validation.agent.dsr,
    }


def build_promotion_gate(market: Market) -> dg.AssetChecksDefinition:
    """The read-only ``promotion_gate`` check of ``evaluation/<market>``."""

    @dg.asset_check(
        asset=evaluation_key(market),
        name="promotion_gate",
        blocking=False,
        description="Reports the promotion gate's verdict that the evaluation summary "
        "carries (validation only, every fold): each rule's value, limit and margin, and "
        "whether the preset is eligible. Read-only: `<market>/champion` acts on the verdict; a "
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
                "rules": records_table([rule_row(rule) for rule in verdict.rules],
                                       RULE_DESCRIPTIONS),
            },
        )

    return promotion_gate


RULE_DESCRIPTIONS = {
    "fold": "walk-forward fold (1 = oldest)",
    "rule": "the gate's rule",
    "value": "the agent's value on validation (empty: undefined, the rule fails)",
    "limit": "the limit from the preset's promotion section",
    "margin": "signed distance from the limit, positive on the good side",
    "passed": "whether the rule passed",
    "explanation": "the rule in words",
}


def rule_row(rule: Rule) -> dict:
    """One rule of the verdict as a rounded table row."""
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {"fold": rule.fold + 1, "rule": rule.name, "value": rounded(rule.value),
            "limit": rounded(rule.limit), "margin": rounded(rule.margin), "passed": rule.passed,
            "explanation": rule.explanation}
