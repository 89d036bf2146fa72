"""Feature tables (the "Blender"): a preset applied to one month of candles plus warm-up history.

A month's features are computed on the continuous series *previous candles + this month*
and then cut to this month's rows, so the first minute of a month sees the same history as
it would in one long series. Rows that still lack a full lookback (the first month of a
market, or a sparse previous month) are flagged in ``warmup_incomplete``, never filled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tradecore_lib.features.presets import Preset
from tradecore_lib.features.registry import CandleArrays
from tradecore_lib.months import MINUTE_MS

WARMUP_COLUMN = "warmup_incomplete"
PRESET_METADATA_KEY = b"tradecore.preset"


class FeatureInputError(ValueError):
    """The candles and their warm-up history do not form one sorted series."""


@dataclass(frozen=True)
class FeatureTable:
    """The features of one stretch of candles.

    Attributes:
        table: ``ts`` (timestamp[ms, UTC], the candles' own) + one float32 column per
            feature (NaN where undefined) + bool ``warmup_incomplete``; one row per candle.
        series: the continuous input (history rows first), kept for charts.
        history_rows: rows of ``series`` before the first candle of ``table``.
        lookback: bars of history the preset needs before every column is settled.
        warmup_incomplete_rows: rows flagged in ``warmup_incomplete``.
        rows_after_gap: rows whose previous candle is more than one minute earlier
            (indicators treat them as adjacent, so values there bridge the gap).
    """

    table: pa.Table
    series: CandleArrays
    history_rows: int
    lookback: int
    warmup_incomplete_rows: int
    rows_after_gap: int


def compute_features(
    candles: pa.Table, preset: Preset, history: pa.Table | None = None
) -> FeatureTable:
    """Apply ``preset`` to ``candles`` (candle schema), warmed up on ``history``.

    Args:
        candles: the rows to produce features for, sorted by ``ts``.
        preset: a validated preset.
        history: candles immediately before ``candles`` (typically the previous month),
            or None for a series' first stretch.

    Returns:
        A :class:`FeatureTable` with exactly ``candles.num_rows`` rows.
    """
    h = history.num_rows if history is not None else 0
    series_table = (
        pa.concat_tables([history.select(candles.column_names), candles]) if h else candles
    )
    series = CandleArrays.from_table(series_table)
    steps = np.diff(series.ts_ms)
    if np.any(steps <= 0):
        where = "history + candles" if h else "candles"
        raise FeatureInputError(f"{where}: timestamps must be strictly increasing")
    n = len(series)
    columns: dict[str, np.ndarray] = {}
    if n:
        for choice in preset.indicators:
            # Each indicator's float64 outputs die right after their float32 copy, so the
            # allocator hands the same (already mapped) memory to the next indicator.
            for name, values in choice.indicator.compute(series, choice.params).items():
                columns[name] = values[h:].astype(np.float32)
        # Intermediates shared between indicators are not needed past this call; the series
        # lives on in the result (for charts) and must not pin them.
        series.clear_cache()
    else:
        columns = {name: np.empty(0, np.float32) for name in preset.columns}
    warm = np.zeros(n - h, dtype=bool)
    warm[: max(preset.lookback - h, 0)] = True
    after_gap = int(np.count_nonzero(steps[max(h - 1, 0) :] > MINUTE_MS))
    fields = [candles.schema.field("ts")]
    fields += [pa.field(name, pa.float32()) for name in preset.columns]
    fields.append(pa.field(WARMUP_COLUMN, pa.bool_(), nullable=False))
    schema = pa.schema(fields).with_metadata(
        {PRESET_METADATA_KEY: json.dumps(preset.to_dict()).encode()}
    )
    arrays = [candles.column("ts"), *(pa.array(columns[name]) for name in preset.columns)]
    table = pa.Table.from_arrays([*arrays, pa.array(warm)], schema=schema)
    return FeatureTable(
        table=table,
        series=series,
        history_rows=h,
        lookback=preset.lookback,
        warmup_incomplete_rows=int(warm.sum()),
        rows_after_gap=after_gap,
    )
