"""X-Ray metadata helpers: per-column statistics and the PNG chart."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tradecore_lib.features import compute_features, load_feature_preset
from tradecore_lib.features.xray import column_stats, xray_png
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month


def test_column_stats_ignore_nan_and_count_it() -> None:
    table = pa.table({
        "a": pa.array([1.0, np.nan, 3.0], pa.float32()),
        "b": pa.array([np.nan, np.nan, np.nan], pa.float32()),
    })
    a, b = column_stats(table, ["a", "b"])
    assert a == {"column": "a", "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "nan_count": 1}
    assert b == {"column": "b", "mean": None, "std": None, "min": None, "max": None,
                 "nan_count": 3}


def test_xray_png_of_a_warmed_up_day() -> None:
    candles = generate_month(SyntheticOptions(), "synthetic_btc_usd", Month(2024, 1))
    features = compute_features(candles.slice(1_440, 1_440), load_feature_preset("default"),
                                history=candles.slice(0, 1_440))
    png = xray_png(features.series, features.history_rows, "synthetic_btc_usd day 2")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 10_000 < len(png) < 400_000  # small enough for the event log
