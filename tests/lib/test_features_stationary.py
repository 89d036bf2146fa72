"""Every indicator column is stationary in level: the same under a change of price or volume units.

A price level (a VWAP, a band, a moving average) or a volume level scales with the units of
the candles; a ratio, return, z-score or flag does not. Multiplying every price by 1000 and
every volume by 0.01 must leave each column unchanged (to float32 precision), which is what
keeps an agent from memorizing where a month's prices were.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.features import REGISTRY, compute_features, parse_preset
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month

SMALL_PARAMS = {"vol_regime": {"rv_window": 30, "window_hours": 24}}
PRICE_UNITS = 1_000.0
VOLUME_UNITS = 0.01


def _rescaled(table: pa.Table) -> pa.Table:
    cols = {n: table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume")}
    return candle_table(
        ts_millis(table), *(cols[n] * PRICE_UNITS for n in ("open", "high", "low", "close")),
        cols["volume"] * VOLUME_UNITS, None,
    )


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_columns_do_not_depend_on_price_or_volume_units(name: str) -> None:
    candles = generate_month(SyntheticOptions(), "synthetic_btc_usd", Month(2024, 3))
    candles = candles.slice(0, 3 * 1_440)
    preset = parse_preset(
        {"indicators": [{"name": name, "params": SMALL_PARAMS.get(name, {})}]},
        name="probe", source="test",
    )
    base = compute_features(candles, preset).table
    scaled = compute_features(_rescaled(candles), preset).table
    for column in preset.columns:
        before = base.column(column).to_numpy().astype(np.float64)
        after = scaled.column(column).to_numpy().astype(np.float64)
        np.testing.assert_allclose(after, before, rtol=2e-3, atol=1e-5, equal_nan=True,
                                   err_msg=f"{name}:{column} is a level, not a ratio")
