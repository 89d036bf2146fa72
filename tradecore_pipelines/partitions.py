"""Partition definitions: one monthly definition per first month, current month included."""

from __future__ import annotations

from functools import cache

import dagster as dg

from tradecore_lib.markets import Market


@cache
def _monthly(start_key: str) -> dg.MonthlyPartitionsDefinition:
    # end_offset=1 adds the month in progress, so the current month can be refreshed.
    return dg.MonthlyPartitionsDefinition(start_date=start_key, end_offset=1)


def monthly_partitions(market: Market) -> dg.MonthlyPartitionsDefinition:
    """Monthly partitions of ``market`` from its first month to the current month."""
    return _monthly(market.first_month.partition_key)
