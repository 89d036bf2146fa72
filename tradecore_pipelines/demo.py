"""``make demo``: the synthetic market's whole chain on the local Dagster instance.

candles (three months, one run) -> manifest -> features (one run) -> ppo_agent -> evaluation
(+ promotion gate) -> champion -> signals, with the market's training preset (``cpu-smoke``, a
plumbing preset that is never eligible for promotion: its gate refuses, so champion and
signals are skipped and the run still succeeds). Runs against ``DAGSTER_HOME`` (the Makefile
points it at ``.dagster_home``), so the runs, checks and metadata are there to browse
afterwards with ``make ui``.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from tradecore_lib.evaluation.summary import summary_table
from tradecore_lib.markets import Market, get_market
from tradecore_lib.redaction import redact_url, redacted_cause
from tradecore_pipelines.constants import (
    CANDLES,
    CHAMPION,
    EVALUATION,
    FEATURES,
    MANIFEST,
    PPO_AGENT,
    SIGNALS,
    asset_key,
)
from tradecore_pipelines.definitions import defs
from tradecore_pipelines.resources_ml import MlflowResource


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


def _check_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        warning = evaluation.metadata.get("warning")
        status = "passed" if evaluation.passed else "FAILED"
        if evaluation.passed and warning is not None and warning.value:
            status = "warning"
        elif not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN:
            status = "refused"  # a non-blocking check (the promotion gate): not a failure
        where = (evaluation.partition or "")[:7] or evaluation.asset_key.to_user_string()
        lines.append(f"{where:24} {evaluation.check_name:15} {status:8} {evaluation.description}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--market", default="synthetic_btc_usd")
    parser.add_argument("--months", type=int, default=3, help="months from the market's first")
    args = parser.parse_args(argv)

    market = get_market(args.market)
    months = [market.first_month]
    while len(months) < args.months:
        months.append(months[-1].next())
    key = {layer: asset_key(market.name, layer) for layer in (
        CANDLES, MANIFEST, FEATURES, PPO_AGENT, EVALUATION, CHAMPION, SIGNALS)}
    month_range = {
        "dagster/asset_partition_range_start": months[0].partition_key,
        "dagster/asset_partition_range_end": months[-1].partition_key,
    }
    instance = dg.DagsterInstance.get()
    print(f"TradeCore demo: {market.name} {months[0]}..{months[-1]}, "
          f"training preset {market.train_preset}")
    try:
        candles = _run(instance, [key[CANDLES]], month_range)
        manifest = _run(instance, [key[MANIFEST]], {})
        _run(instance, [key[FEATURES]], month_range)
        judged = _run(instance, [key[layer] for layer in (PPO_AGENT, EVALUATION, CHAMPION,
                                                          SIGNALS)], {})
    except DemoStepFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1

    try:
        _print_summary(market, instance, candles, manifest, judged)
    except Exception as exc:  # noqa: BLE001 - the chain succeeded; its summary is a courtesy
        # The runs, checks and files are in place; a summary that cannot be printed (an
        # unreachable store, a renamed metadata entry) must not turn `make demo` into a failure.
        print(f"\n(the chain succeeded; its summary could not be printed: "
              f"{redacted_cause(exc)})", file=sys.stderr)
    return 0


def _print_summary(
    market: Market,
    instance: dg.DagsterInstance,
    candles: dg.ExecuteInProcessResult,
    manifest: dg.ExecuteInProcessResult,
    judged: dg.ExecuteInProcessResult,
) -> None:
    """The checks, the evaluation table and where everything is."""

    def metadata(result: dg.ExecuteInProcessResult, layer: str) -> dict | None:
        found = result.asset_materializations_for_node(f"{market.name}__{layer}")
        return dict(found[0].metadata) if found else None

    print("\nChecks")
    print("\n".join(_check_lines(candles) + _check_lines(judged)))
    evaluation = metadata(judged, EVALUATION)
    rows = [record.data for record in evaluation["comparison"].value.records]
    print("\nEvaluation (out of sample)\n" + summary_table(rows))
    lake = defs.resources["lake"]
    print(f"\nlake:        {lake.root}/{market.venue}/{market.pair_dir}/1m/")
    print(f"manifest:    {metadata(manifest, MANIFEST)['path'].value}")
    print(f"\nPromotion gate: {evaluation['gate'].value}")
    champion, signals = metadata(judged, CHAMPION), metadata(judged, SIGNALS)
    skipped = "skipped (the gate refused; the run still succeeded)"
    print(f"\ncheckpoint:  {metadata(judged, PPO_AGENT)['checkpoint'].value}")
    print(f"evaluation:  {evaluation['eval_summary'].value}")
    print(f"champion:    {champion['model_name'].value} v{champion['model_version'].value}"
          if champion else f"champion:    {skipped}")
    print(f"signals:     {signals['path'].value}" if signals else f"signals:     {skipped}")
    print("\n".join(location_lines(instance, defs.resources["mlflow"])))


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
