"""``make demo``: materialize the synthetic market's candles and manifest on the local instance.

Runs against ``DAGSTER_HOME`` (the Makefile points it at ``.dagster_home``), so the runs,
checks and metadata are there to browse afterwards with ``make ui``.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from tradecore_lib.markets import get_market
from tradecore_pipelines.definitions import defs


def _run(
    selection: list[dg.AssetKey], instance: dg.DagsterInstance, tags: dict
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        instance=instance,
        asset_selection=selection,
        tags=tags,
        raise_on_error=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--market", default="synthetic_btc_usd")
    parser.add_argument("--months", type=int, default=3, help="months from the market's first")
    args = parser.parse_args(argv)

    market = get_market(args.market)
    months = [market.first_month]
    while len(months) < args.months:
        months.append(months[-1].next())
    first, last = months[0], months[-1]
    candles = dg.AssetKey(["candles", market.name])
    manifest = dg.AssetKey(["manifest", market.name])

    instance = dg.DagsterInstance.get()
    print(f"TradeCore demo: candles/{market.name} {first}..{last} in one run, then its manifest")
    result = _run(
        [candles],
        instance,
        {
            "dagster/asset_partition_range_start": first.partition_key,
            "dagster/asset_partition_range_end": last.partition_key,
        },
    )
    checks = result.get_asset_check_evaluations()
    if result.success:
        result = _run([manifest], instance, {})
    if not result.success:
        print("demo failed; see the run in the UI (make ui)", file=sys.stderr)
        return 1

    lake = defs.resources["lake"]
    print(f"\n{'month':8} {'check':12} {'result':8} detail")
    for evaluation in checks:
        status = "passed" if evaluation.passed else "FAILED"
        if (
            evaluation.passed
            and evaluation.metadata.get("warning")
            and evaluation.metadata["warning"].value
        ):
            status = "warning"
        month = evaluation.partition[:7]
        print(f"{month:8} {evaluation.check_name:12} {status:8} {evaluation.description}")
    manifest_meta = result.asset_materializations_for_node(f"manifest__{market.name}")[0].metadata
    print(f"\nlake:      {lake.root}/{market.venue}/{market.pair_dir}/1m/")
    print(f"manifest:  {manifest_meta['path'].value}")
    print(
        f"rows:      {manifest_meta['total_rows'].value}  missing minutes: "
        f"{manifest_meta['total_missing_minutes'].value}"
    )
    print(f"instance:  {instance.root_directory}")
    print("UI:        make ui  ->  http://127.0.0.1:3000 (asset graph, checks, run logs)")
    return 0 if all(e.passed for e in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
