"""One month of features in the lake: read candles (+ the previous month), compute, publish.

Layout, beside the candles and readable the same way::

    <lake_root>/features/<preset>/<venue>/<BASE-QUOTE>/1m/year=YYYY/month=MM/part-0.parquet
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tradecore_lib.features.compute import FeatureTable, compute_features
from tradecore_lib.features.presets import Preset
from tradecore_lib.features.xray import column_stats, xray_png
from tradecore_lib.lake import Lake, StoredFile, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month


class MissingCandlesError(FileNotFoundError):
    """The month's candle partition is not in the lake."""


def feature_key(preset_name: str, market: Market, month: Month) -> str:
    """The lake-relative key of a market's feature partition for ``preset_name``."""
    return f"features/{preset_name}/{candle_key(market, month)}"


def read_candles(lake: Lake, market: Market, month: Month) -> pa.Table | None:
    """The stored candles of ``month``, or None when that partition was never written."""
    key = candle_key(market, month)
    return lake.read_table(key) if lake.exists(key) else None


@dataclass(frozen=True)
class PublishedFeatures:
    """A written feature partition and what the metadata shows about it.

    ``stats`` is one dict per feature column (see :func:`column_stats`); ``chart_png`` the
    X-Ray chart of the month.
    """

    month: Month
    stored: StoredFile
    features: FeatureTable
    stats: list[dict[str, Any]]
    chart_png: bytes


def publish_month(
    lake: Lake,
    market: Market,
    month: Month,
    preset: Preset,
    candles: pa.Table,
    previous: pa.Table | None,
) -> PublishedFeatures:
    """Compute ``month``'s features warmed up on ``previous`` and write them atomically."""
    features = compute_features(candles, preset, history=previous)
    stored = lake.write_table(feature_key(preset.name, market, month), features.table)
    chart = xray_png(
        features.series,
        features.history_rows,
        f"{market.name} {month}: close, Bollinger (20, 2), RSI (14), volume",
    )
    return PublishedFeatures(
        month, stored, features, column_stats(features.table, preset.columns), chart
    )


def publish_months(
    lake: Lake, market: Market, months: list[Month], preset: Preset
) -> Iterator[PublishedFeatures]:
    """Publish each month in order, each warmed up on the month before it.

    Every month's candles are read once: a month serves as its successor's history. Raises
    :class:`MissingCandlesError` before writing anything if any month's candles are absent.
    """
    months = sorted(months)
    missing = [str(m) for m in months if not lake.exists(candle_key(market, m))]
    if missing:
        raise MissingCandlesError(
            f"{market.name}/features: {market.name}/candles has no partition for "
            f"{', '.join(missing)} in {lake.uri('')}; materialize those candle months first"
        )
    loaded: dict[Month, pa.Table] = {}
    for month in months:
        previous = loaded.pop(month.previous(), None)
        if previous is None:
            previous = read_candles(lake, market, month.previous())
        candles = lake.read_table(candle_key(market, month))
        yield publish_month(lake, market, month, preset, candles, previous)
        loaded[month] = candles
