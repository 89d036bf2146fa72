"""No look-ahead: changing candles after minute t never changes any feature at or before t."""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pytest

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.features import REGISTRY, compute_features, parse_preset
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month

# Small windows so that three days of candles settle every indicator well before the cut.
SMALL_PARAMS = {"vol_regime": {"rv_window": 30, "window_hours": 24}}
ROWS = 3 * 1_440
CUT = 2_400


@cache
def candles() -> pa.Table:
    return generate_month(SyntheticOptions(), "synthetic_btc_usd", Month(2024, 3)).slice(0, ROWS)


def perturbed_after(table: pa.Table, cut: int, seed: int) -> pa.Table:
    """Rows after ``cut`` with prices and volume scaled by random factors (still valid OHLC)."""
    rng = np.random.default_rng(seed)
    factor = np.ones(table.num_rows)
    factor[cut + 1 :] = rng.uniform(0.8, 1.25, table.num_rows - cut - 1)
    volume_factor = np.ones(table.num_rows)
    volume_factor[cut + 1 :] = rng.uniform(0.0, 3.0, table.num_rows - cut - 1)
    cols = {n: table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume")}
    return candle_table(
        ts_millis(table),
        cols["open"] * factor,
        cols["high"] * factor,
        cols["low"] * factor,
        cols["close"] * factor,
        cols["volume"] * volume_factor,
        None,
    )


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_future_candles_do_not_change_the_past(name: str) -> None:
    preset = parse_preset(
        {"indicators": [{"name": name, "params": SMALL_PARAMS.get(name, {})}]},
        name="probe",
        source="test",
    )
    assert preset.lookback < CUT, "probe params must settle before the cut"
    base = compute_features(candles(), preset).table
    changed_later = False
    for seed in (1, 2):
        other = compute_features(perturbed_after(candles(), CUT, seed), preset).table
        for column in preset.columns:
            before = base.column(column).to_numpy()
            after = other.column(column).to_numpy()
            assert np.isfinite(before[preset.lookback : CUT + 1]).any(), column
            np.testing.assert_array_equal(
                after[: CUT + 1], before[: CUT + 1], err_msg=f"{name}:{column} saw the future"
            )
            changed_later |= not np.array_equal(after[CUT + 1 :], before[CUT + 1 :], equal_nan=True)
    # Calendar columns depend on time only; every other card must react to the perturbation,
    # otherwise this probe could not have caught a leak.
    assert changed_later or name == "session"


def test_future_timestamps_do_not_change_calendar_past() -> None:
    preset = parse_preset({"indicators": [{"name": "session"}]}, name="probe", source="test")
    table = candles()
    ts = ts_millis(table).copy()
    ts[CUT + 1 :] += 7 * 3_600_000  # shift the future seven hours later
    cols = [table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume")]
    shifted = candle_table(ts, *cols, None)
    base = compute_features(table, preset).table
    other = compute_features(shifted, preset).table
    for column in preset.columns:
        np.testing.assert_array_equal(
            other.column(column).to_numpy()[: CUT + 1], base.column(column).to_numpy()[: CUT + 1]
        )
