"""Stored candle check results, read by every consumer before it builds on a month.

A blocking check stops the downstream steps of its own run only. Later runs are protected
here: a consumer (``features/<market>``, training, anything reading candles) calls
:func:`require_checked_candles` for the months it reads, and it refuses unless, for each of
them, the latest evaluation of every candle check was made on **the file stored now** (its
sha256, recorded by the check in its metadata, equals the sha256 of the stored bytes) and
passed. A month whose file changed since it was checked, or that was never checked (a lake
filled before checks existed, a fresh ``DAGSTER_HOME``), is refused like a failed one.

The one command that checks every stored month of a market (or of every market) and records
the results in the instance::

    make check-candles [MARKET=<market>]
    python -m tradecore_pipelines.check_records [--market <market> ...]

It launches the check-only selection of ``candles/<market>`` over each run of consecutive
stored months, on ``DAGSTER_HOME``'s instance, and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import Market, get_market, load_markets
from tradecore_lib.months import Month, months_between, utc_now_ms
from tradecore_pipelines.assets.candles import (
    CHECK_NAMES,
    CHECKED_SHA256,
    build_candle_checks,
    build_candles_asset,
    candles_key,
)
from tradecore_pipelines.resources import LakeResource, default_lake_resource

CHECK_COMMAND = "make check-candles MARKET={market}"


class UncheckedCandlesError(TradeCoreError):
    """A consumer was asked to build on candle months whose stored checks did not pass.

    Permanent: re-running the consumer cannot help until the month is fixed or re-checked.
    """


@dataclass(frozen=True)
class CheckProblem:
    """Why one stored month may not be consumed."""

    month: Month
    check: str
    detail: str


def check_problems(
    instance: dg.DagsterInstance, lake: Lake, market: Market, months: Iterable[Month]
) -> list[CheckProblem]:
    """The problems of the stored candle ``months`` of ``market``, oldest first.

    A month not stored in the lake is skipped: nothing of it is consumed, and the consumer
    reports a missing month itself. For a stored month, each check in
    :data:`~tradecore_pipelines.assets.candles.CHECK_NAMES` must have a latest completed
    evaluation on the stored file's sha256, and it must have passed.
    """
    key = candles_key(market)
    problems = []
    for month in sorted(set(months)):
        stored = candle_key(market, month)
        if not lake.exists(stored):
            continue
        digest = lake.sha256(stored)
        for name in CHECK_NAMES:
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(key, name),
                limit=1,
                status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
                partition_filter=PartitionKeyFilter(key=month.partition_key),
            )
            evaluation = history[0].event.asset_check_evaluation if history else None
            if evaluation is None:
                problems.append(CheckProblem(month, name, "never checked"))
                continue
            checked = evaluation.metadata.get(CHECKED_SHA256)
            if checked is None or checked.value != digest:
                problems.append(CheckProblem(
                    month, name, f"last checked on another file (sha256 "
                    f"{str(checked.value)[:12] if checked else 'unknown'}), not on the file "
                    f"stored now (sha256 {digest[:12]})"))
            elif not evaluation.passed:
                problems.append(CheckProblem(
                    month, name, f"FAILED on the file stored now (sha256 {digest[:12]}): "
                    f"{evaluation.description}"))
    return problems


def require_checked_candles(
    instance: dg.DagsterInstance,
    lake: Lake,
    market: Market,
    months: Iterable[Month],
    *,
    consumer: str,
) -> None:
    """Refuse (raise :class:`UncheckedCandlesError`) unless every stored month in ``months``
    passed all its candle checks on the file stored now.

    Args:
        instance: the Dagster instance holding the check records (``context.instance``).
        lake: the lake the consumer reads.
        market: the market whose candles are consumed.
        months: every candle month the consumer reads (a features month reads M-1 and M; a
            training run every month of its windows).
        consumer: what is refused, for the message, e.g. ``"synthetic_btc_usd/features
            2024-03"``.
    """
    problems = check_problems(instance, lake, market, months)
    if not problems:
        return
    lines = "\n".join(f"  - partition {p.month}: check {p.check}: {p.detail}" for p in problems)
    failed = sorted({str(p.month) for p in problems if p.detail.startswith("FAILED")})
    unchecked = sorted({str(p.month) for p in problems} - set(failed))
    fixes = []
    if failed:
        fixes.append(f"fix the data of {', '.join(failed)} and re-materialize those months of "
                     f"{candles_key(market).to_user_string()} (their checks run with them)")
    if unchecked:
        fixes.append(f"check {', '.join(unchecked)} on the stored files: "
                     f"`{CHECK_COMMAND.format(market=market.name)}` checks every stored month")
    raise UncheckedCandlesError(
        f"{consumer} refuses to build: market {market.name}, candles "
        f"{candles_key(market).to_user_string()} have {len(problems)} check problem(s):\n"
        f"{lines}\nTo fix: " + "; or ".join(fixes) + "."
    )


def stored_month_runs(lake: Lake, market: Market, last: Month) -> list[list[Month]]:
    """The stored candle months of ``market`` up to ``last``, as runs of consecutive months."""
    runs: list[list[Month]] = []
    for month in months_between(market.first_month, last):
        if not lake.exists(candle_key(market, month)):
            continue
        if runs and month == runs[-1][-1].next():
            runs[-1].append(month)
        else:
            runs.append([month])
    return runs


def check_stored_months(
    instance: dg.DagsterInstance, lake: LakeResource, market: Market
) -> list[dg.AssetCheckEvaluation]:
    """Run the candle checks of ``market`` over every stored month, one run per consecutive
    range, recording the results in ``instance``; returns the evaluations."""
    store = lake.get_lake()
    evaluations: list[dg.AssetCheckEvaluation] = []
    for months in stored_month_runs(store, market, Month.of_ms(utc_now_ms())):
        result = dg.materialize(
            [build_candles_asset(market), build_candle_checks(market)],
            selection=dg.AssetSelection.checks_for_assets(candles_key(market)),
            instance=instance,
            resources={"lake": lake},
            # A check-only selection has no partitions definition of its own: the range
            # travels in the run tags, as the UI sets them.
            tags={
                "dagster/asset_partition_range_start": months[0].partition_key,
                "dagster/asset_partition_range_end": months[-1].partition_key,
                "tradecore/check_stored_months": market.name,
            },
            raise_on_error=False,
        )
        evaluations.extend(result.get_asset_check_evaluations())
    return evaluations


def main(argv: list[str] | None = None) -> int:
    """``python -m tradecore_pipelines.check_records``: check every stored month."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--market", action="append", help="a market name (repeatable); "
                        "default: every enabled market")
    args = parser.parse_args(argv)
    markets = [get_market(name) for name in args.market] if args.market else load_markets()
    lake = default_lake_resource()  # the lake the code location uses
    failed = 0
    with dg.DagsterInstance.get() as instance:
        for market in markets:
            evaluations = check_stored_months(instance, lake, market)
            bad = [e for e in evaluations if not e.passed]
            failed += len(bad)
            months = len({e.partition for e in evaluations})
            print(f"{market.name}: {months} stored month(s) checked, {len(bad)} failed check(s)")
            for evaluation in bad:
                print(f"  {evaluation.partition[:7]} {evaluation.check_name}: "
                      f"{evaluation.description}")
        print(f"results recorded in the Dagster instance at {instance.root_directory}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
