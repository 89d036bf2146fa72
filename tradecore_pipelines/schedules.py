"""Schedules: hourly refresh of the current month of each live (Kraken) market."""

from __future__ import annotations

import dagster as dg

from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_pipelines.assets.candles import candles_key
from tradecore_pipelines.assets.funding import has_funding_asset
from tradecore_pipelines.constants import FUNDING, asset_key

# For this long after a month ends its partition is refreshed once more alongside the new
# month, so the last minutes of the old month (closed after the previous tick) land too.
MONTH_CLOSE_GRACE_HOURS = 6


def build_refresh_schedule(
    market: Market,
    *,
    cron_schedule: str = "0 * * * *",
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule materializing ``candles/<market>`` (and ``<market>/funding`` of a perpetual
    future, so the funding the engine charges keeps up with the candles) for the current
    month (UTC).

    Args:
        market: the market to refresh (a live venue; history is filled by backfills).
        cron_schedule: when to refresh, in UTC; hourly by default.
        default_status: whether the schedule starts running when the code location loads.

    Within :data:`MONTH_CLOSE_GRACE_HOURS` of a month's end the previous month is requested
    too. The Kraken spot source continues from its stored cursor, so a refresh downloads only
    the trades since the last one.
    """
    key = candles_key(market)
    keys = [key, asset_key(market.name, FUNDING)] if has_funding_asset(market) else [key]

    @dg.schedule(
        name=f"refresh_candles__{market.name}",
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        target=dg.AssetSelection.assets(*keys),
        default_status=default_status,
        description=f"Refreshes the current month of {market.name}/candles"
        + (" and its funding." if len(keys) > 1 else "."),
    )
    def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        tick_ms = int(context.scheduled_execution_time.timestamp() * 1000)
        current = Month.of_ms(tick_ms)
        months = [current]
        if tick_ms - current.start_ms < MONTH_CLOSE_GRACE_HOURS * 3_600_000:
            months.insert(0, current.previous())
        return [
            dg.RunRequest(
                run_key=f"{market.name}:{month}:{tick_ms}",
                partition_key=month.partition_key,
                tags={"tradecore/refresh": "current_month"},
            )
            for month in months
            if month >= market.first_month
        ]

    return refresh
