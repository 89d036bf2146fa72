"""``make demo``: the synthetic market's whole chain on the local Dagster instance.

candles (three months, one run) -> manifest -> features (one run) -> ppo_agent -> evaluation
(+ promotion gate) -> signals, with the market's training preset (``cpu-smoke``). Runs against
``DAGSTER_HOME`` (the Makefile points it at ``.dagster_home``), so the runs, checks and
metadata are there to browse afterwards with ``make ui``.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from tradecore_lib.evaluation.summary import summary_table
from tradecore_lib.markets import get_market
from tradecore_pipelines.constants import asset_key
from tradecore_pipelines.definitions import defs


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
        "candles", "manifest", "features", "ppo_agent", "evaluation", "signals")}
    month_range = {
        "dagster/asset_partition_range_start": months[0].partition_key,
        "dagster/asset_partition_range_end": months[-1].partition_key,
    }
    instance = dg.DagsterInstance.get()
    print(f"TradeCore demo: {market.name} {months[0]}..{months[-1]}, "
          f"training preset {market.train_preset}")
    try:
        candles = _run(instance, [key["candles"]], month_range)
        manifest = _run(instance, [key["manifest"]], {})
        _run(instance, [key["features"]], month_range)
        judged = _run(instance, [key["ppo_agent"], key["evaluation"], key["signals"]], {})
    except DemoStepFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1

    def metadata(result: dg.ExecuteInProcessResult, layer: str) -> dict:
        node = f"{layer}__{market.name}"
        return dict(result.asset_materializations_for_node(node)[0].metadata)

    print("\nChecks")
    print("\n".join(_check_lines(candles) + _check_lines(judged)))
    evaluation = metadata(judged, "evaluation")
    rows = [record.data for record in evaluation["comparison"].value.records]
    print("\nEvaluation (out of sample)\n" + summary_table(rows))
    lake = defs.resources["lake"]
    print(f"\nlake:        {lake.root}/{market.venue}/{market.pair_dir}/1m/")
    print(f"manifest:    {metadata(manifest, 'manifest')['path'].value}")
    print(f"checkpoint:  {metadata(judged, 'ppo_agent')['checkpoint'].value}")
    print(f"evaluation:  {evaluation['eval_summary'].value}")
    print(f"signals:     {metadata(judged, 'signals')['path'].value}")
    print(f"mlflow:      {defs.resources['mlflow'].tracking_uri}")
    print(f"instance:    {instance.root_directory}")
    print("UI:          make ui  ->  http://127.0.0.1:3000 (asset graph, checks, run logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
