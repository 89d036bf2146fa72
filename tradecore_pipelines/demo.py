"""``make demo``: the control markets' whole chains on the local Dagster instance, judged by the
real promotion gate, and the direction models' chains beside them.

Two synthetic control markets (``configs/markets.yaml``; their processes are documented in
:mod:`tradecore_lib.sources.synthetic_generator`): ``synthetic_edge_usd``, whose next one-minute
return carries a planted edge of 1 bp per unit of a signal the bar's range shows, and
``synthetic_null_usd``, a martingale with nothing to learn. For both: candles 2024-01..04 (one
run, blocking checks), manifests, features 2024-02..04 (one run; 2024-01 is their warm-up
month), then per market ``ppo_agent -> evaluation (+ promotion gate) -> champion -> signals``
with the markets' own training preset ``cpu-control`` (eligible for promotion: train 2024-02,
validate 2024-03, test 2024-04). The real gate decides on validation: the edge market's agent
is promoted and publishes its signals; the null market's is refused with the rules it missed,
its champion and signals are skipped and its run still succeeds. There is no plumbing preset
and no loosened gate in the PPO part of the demo.

Then the direction chains (``direction_model -> direction_evaluation -> direction_champion ->
direction_signals``): the LSTMs of the controls ``synthetic_lag_usd`` (the planted temporal
edge: promoted, its confidence-tiered signals written) and ``synthetic_null_usd`` (refused) with
their preset ``cpu-control``, and the LSTMs of ``synthetic_btc_usd``, ``synthetic_eth_usd``,
``synthetic_sol_usd`` and the venue's transformer ``synthetic_multi`` over the three with their
preset ``cpu-smoke``: a plumbing preset (seconds), refused as not eligible, which shows the
chain and the multi-market model run end to end without claiming an edge the jointly
simulated markets do not have.

Runs against ``DAGSTER_HOME`` (the Makefile points it at ``.dagster_home``), so the runs, checks
and metadata are there to browse afterwards with ``make ui``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import dagster as dg

from tradecore_lib.evaluation.summary import EvaluationSummary, summary_table
from tradecore_lib.markets import Market, get_market
from tradecore_lib.months import Month
from tradecore_lib.redaction import redact_url, redacted_cause
from tradecore_pipelines.constants import (
    CANDLES,
    CHAMPION,
    DIRECTION_CHAMPION,
    DIRECTION_EVALUATION,
    DIRECTION_MODEL,
    DIRECTION_SIGNALS,
    EVALUATION,
    FEATURES,
    MANIFEST,
    PPO_AGENT,
    SIGNALS,
    asset_key,
)
from tradecore_pipelines.definitions import defs
from tradecore_pipelines.io_managers import record_key
from tradecore_pipelines.resources_ml import MlflowResource

# The planted edge first (promoted), then the martingale (refused).
MARKETS = ("synthetic_edge_usd", "synthetic_null_usd")
# The direction models: the controls (planted temporal edge, martingale), then the jointly
# simulated markets' LSTMs and their venue's transformer.
DIRECTION_MODELS = ("synthetic_lag_usd", "synthetic_null_usd", "synthetic_btc_usd",
                    "synthetic_eth_usd", "synthetic_sol_usd", "synthetic_multi")
DIRECTION_MARKETS = ("synthetic_lag_usd", "synthetic_btc_usd", "synthetic_eth_usd",
                     "synthetic_sol_usd")
# Candle months; features start one month later (their first month only warms them up), which
# leaves cpu-control's one fold of train + validation + test months.
FIRST, LAST = Month(2024, 1), Month(2024, 4)
BACK_HALF = (PPO_AGENT, EVALUATION, CHAMPION, SIGNALS)
DIRECTION_CHAIN = (DIRECTION_MODEL, DIRECTION_EVALUATION, DIRECTION_CHAMPION, DIRECTION_SIGNALS)


class DemoStepFailed(RuntimeError):
    """One of the demo's runs failed; its logs are in the UI."""


def _run(
    instance: dg.DagsterInstance, selection: list[dg.AssetKey], tags: dict[str, str]
) -> dg.ExecuteInProcessResult:
    names = ", ".join(key.to_user_string() for key in selection)
    print(f"\n== {names}", flush=True)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        instance=instance,
        asset_selection=selection,
        tags=tags,
        raise_on_error=False,
    )
    if not result.success:
        raise DemoStepFailed(f"run {result.run_id} ({names}) failed; see it in the UI (make ui)")
    return result


def _month_range(first: Month, last: Month) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first.partition_key,
            "dagster/asset_partition_range_end": last.partition_key}


def _check_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """The candle checks in one line per outcome, then every check that did not simply pass."""
    counts: Counter[str] = Counter()
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        warning = evaluation.metadata.get("warning")
        status = "passed" if evaluation.passed else "FAILED"
        if evaluation.passed and warning is not None and warning.value:
            status = "warning"
        counts[status] += 1
        if status != "passed":
            where = f"{evaluation.asset_key.to_user_string()} {evaluation.partition or ''}"
            lines.append(f"  {where:40} {evaluation.check_name:12} {status:8} "
                         f"{evaluation.description}")
    total = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return [f"candle checks: {total}", *lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)

    markets = [get_market(name) for name in MARKETS]
    every = [market.name for market in markets]
    data = list(dict.fromkeys([*every, *DIRECTION_MARKETS]))
    presets = sorted({market.train_preset for market in markets})
    instance = dg.DagsterInstance.get()
    print(f"TradeCore demo: PPO on {', '.join(every)}, direction models "
          f"{', '.join(DIRECTION_MODELS)}; candles and features {FIRST}..{LAST}, training "
          f"preset {', '.join(presets)}")
    try:
        candles = _run(instance, [asset_key(m, CANDLES) for m in data], _month_range(FIRST, LAST))
        manifest = _run(instance, [asset_key(m, MANIFEST) for m in every], {})
        # The first month's features only warm up the PPO controls' (their fold starts in
        # February); the smoke direction preset trains on January.
        _run(instance, [asset_key(m, FEATURES) for m in data], _month_range(FIRST, LAST))
        judged = {market.name: _run(instance, [asset_key(market.name, layer)
                                               for layer in BACK_HALF], {})
                  for market in markets}
        directed = {key: _run(instance, [asset_key(key, layer) for layer in DIRECTION_CHAIN],
                              {}) for key in DIRECTION_MODELS}
    except DemoStepFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1

    try:
        _print_summary(markets, instance, candles, manifest, judged)
        _print_direction(directed)
    except Exception as exc:  # noqa: BLE001 - the chain succeeded; its summary is a courtesy
        # The runs, checks and files are in place; a summary that cannot be printed (an
        # unreachable store, a renamed metadata entry) must not turn `make demo` into a failure.
        print(f"\n(the chain succeeded; its summary could not be printed: "
              f"{redacted_cause(exc)})", file=sys.stderr)
    return 0


def _metadata(result: dg.ExecuteInProcessResult, market: str, layer: str) -> dict | None:
    found = result.asset_materializations_for_node(f"{market}__{layer}")
    return dict(found[0].metadata) if found else None


def _agent_lines(summary: EvaluationSummary) -> list[str]:
    """The agent's statistics per split, in words."""
    lines = []
    for row in summary.agent_rows():
        recovery = "" if row["recovery"] is None else f", recovery {row['recovery']:.3f}"
        lines.append(
            f"  {row['split']:10} matched random percentile {row['random_percentile']} "
            f"(p {row['random_p_value']}), daily Sharpe - buy-and-hold "
            f"{row['sharpe_minus_buy_and_hold']} (95 % low {row['difference_95_low']}), PSR "
            f"{row['psr']}, DSR {row['dsr']}{recovery}")
    return lines


def _verdict_lines(summary: EvaluationSummary) -> list[str]:
    """PROMOTED with the rules met, or REFUSED with each rule missed."""
    verdict = summary.verdict
    if verdict.passed:
        return ["Promotion gate: PROMOTED", *(f"  met:    {rule.explanation}"
                                              for rule in verdict.rules)]
    if not verdict.eligible:
        return [f"Promotion gate: REFUSED, {verdict.explanation()}"]
    return ["Promotion gate: REFUSED", *(f"  missed: {rule.explanation}"
                                         for rule in verdict.rules if not rule.passed)]


def _print_summary(
    markets: list[Market],
    instance: dg.DagsterInstance,
    candles: dg.ExecuteInProcessResult,
    manifest: dg.ExecuteInProcessResult,
    judged: dict[str, dg.ExecuteInProcessResult],
) -> None:
    """The checks, each market's evaluation tables and verdict, and where everything is."""
    lake = defs.resources["lake"]
    store = lake.get_lake()
    print("\n" + "\n".join(_check_lines(candles)))
    skipped = "skipped (the gate refused; the run still succeeded)"
    for market in markets:
        result = judged[market.name]
        summary = EvaluationSummary.from_json(store.read_bytes(
            record_key(asset_key(market.name, EVALUATION), result.run_id)))
        months = ", ".join(f"{split} {'+'.join(r.months)}"
                           for split, r in summary.newest.splits.items())
        print(f"\n===== {market.name} ({summary.run.preset}; train "
              f"{'+'.join(summary.run.newest.train_months)}, {months})")
        print(summary_table(summary.rows()))
        print("Agent statistics\n" + "\n".join(_agent_lines(summary)))
        print("\n".join(_verdict_lines(summary)))
        champion = _metadata(result, market.name, CHAMPION)
        signals = _metadata(result, market.name, SIGNALS)
        print(f"checkpoint:  {_metadata(result, market.name, PPO_AGENT)['checkpoint'].value}")
        print(f"evaluation:  {_metadata(result, market.name, EVALUATION)['eval_summary'].value}")
        print(f"champion:    {champion['model_name'].value} v{champion['model_version'].value}"
              if champion else f"champion:    {skipped}")
        print(f"signals:     {signals['path'].value}" if signals else f"signals:     {skipped}")
    print(f"\nlake:        {lake.root}")
    manifests = [str(_metadata(manifest, market.name, MANIFEST)["path"].value)
                 for market in markets]
    print(f"manifests:   {', '.join(manifests)}")
    print("\n".join(location_lines(instance, defs.resources["mlflow"])))


def _print_direction(directed: dict[str, dg.ExecuteInProcessResult]) -> None:
    """Each direction model's validation scores against its baselines, verdict, champion and
    signals."""
    from tradecore_lib.direction.record import DirectionJudgement

    store = defs.resources["lake"].get_lake()
    skipped = "skipped (the gate refused; the run still succeeded)"
    for key, result in directed.items():
        judgement = DirectionJudgement.from_json(store.read_bytes(
            record_key(asset_key(key, DIRECTION_EVALUATION), result.run_id)))
        record = judgement.record
        print(f"\n===== {key}: direction {record.kind} ({record.preset}; train "
              f"{'+'.join(record.train_months)}, validation "
              f"{'+'.join(record.validation_months)}, test {'+'.join(record.test_months)})")
        for market, summary in judgement.summaries.items():
            for split, scored in summary.splits.items():
                scores = ", ".join(
                    f"{name} {f.scores.accuracy:.3f}" for name, f in scored.models.items())
                model = scored.models["model"].scores
                print(f"  {market} {split:10} accuracy: {scores}; model ECE {model.ece:.3f}, "
                      f"log-loss {model.log_loss:.4f}")
        verdict = judgement.verdict
        print(f"Direction gate: {'PROMOTED' if verdict.passed else 'REFUSED'}, "
              f"{verdict.explanation()}")
        champion = _metadata(result, key, DIRECTION_CHAMPION)
        signals = _metadata(result, key, DIRECTION_SIGNALS)
        print(f"champion:    {champion['model_name'].value} v{champion['model_version'].value}"
              if champion else f"champion:    {skipped}")
        print(f"signals:     {signals['path'].value}" if signals else f"signals:     {skipped}")


def tracking_location(mlflow: MlflowResource) -> str:
    """The MLflow store the chain logged to, credentials redacted. ``MLFLOW_TRACKING_URI``
    reaches the resource as an ``EnvVar``, which refuses to be formatted: resolve it here."""
    uri = mlflow.tracking_uri
    return redact_url((uri.get_value() or "") if isinstance(uri, dg.EnvVar) else uri)


def location_lines(instance: dg.DagsterInstance, mlflow: MlflowResource) -> list[str]:
    """The demo's last lines: where the MLflow store, the instance and the UI are."""
    return [
        f"mlflow:      {tracking_location(mlflow)}",
        f"instance:    {instance.root_directory}",
        "UI:          make ui  ->  http://127.0.0.1:3000 (asset graph, checks, run logs)",
    ]


if __name__ == "__main__":
    sys.exit(main())
