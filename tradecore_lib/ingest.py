"""Publish one market-month of candles: fetch from a source, validate, write atomically."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tradecore_lib.candles import (
    GapReport,
    gap_report,
    month_complete,
    ts_millis,
    validate_candles,
)
from tradecore_lib.lake import Lake, StoredFile, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.sources import CandleSource


@dataclass(frozen=True)
class PublishedPartition:
    """What :func:`ingest_month` wrote and what the partition looks like.

    ``month_complete``: the month is over and its data reaches within the market's
    ``max_uncovered_tail_minutes`` of its end (see :func:`~tradecore_lib.candles.month_complete`).
    """

    month: Month
    stored: StoredFile
    gaps: GapReport
    first_ts_ms: int | None
    last_ts_ms: int | None
    preview: pa.Table
    source_metadata: dict[str, Any]
    month_complete: bool


def ingest_month(
    lake: Lake,
    source: CandleSource,
    market: Market,
    month: Month,
    *,
    now_ms: int,
    log: Callable[[str], None],
) -> PublishedPartition:
    """Fetch, validate and publish the candles of ``month``.

    Raises :class:`~tradecore_lib.candles.CandleValidationError` before writing anything when
    the source returned bad rows, so the stored partition (if any) stays as it was.
    """
    fetched = source.fetch_month(market, month, now_ms=now_ms, log=log)
    table = validate_candles(fetched.table, market.name, month)
    stored = lake.write_table(candle_key(market, month), table)
    ts = ts_millis(table)
    gaps = gap_report(ts, month, now_ms)
    return PublishedPartition(
        month=month,
        stored=stored,
        gaps=gaps,
        first_ts_ms=int(ts[0]) if ts.size else None,
        last_ts_ms=int(ts[-1]) if ts.size else None,
        preview=table.slice(0, 5),
        source_metadata=fetched.metadata,
        month_complete=month_complete(gaps, month, market.gap_tolerance, now_ms),
    )
