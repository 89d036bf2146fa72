"""The ``restart`` preset: the restart plan's 39 columns, stationary, causal, documented, warmed up
by one previous month; and its new cards (execution, volume_ma, sma_slope) against formulas
computed here from scratch."""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pyarrow as pa
import pytest
import talib

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.features import WARMUP_COLUMN, Preset, compute_features, load_feature_preset
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SharedFactor, SyntheticOptions, generate_month

MARKET = "synthetic_eth_usd"
# A market on a shared factor (as the shipped ETH), so the preset is checked on joint data.
OPTIONS = SyntheticOptions(seed=8, start_price=2300.0, annual_vol=0.75, base_volume=40.0,
                           price_decimals=2, factor=SharedFactor(seed=1, correlation=0.8))
COLUMNS = [
    "session_tokyo", "session_london", "session_new_york", "day_of_week", "weekend",
    "logret_1", "logret_5", "logret_15", "logret_60", "logret_240",
    "hl_range", "range_atr_14", "natr_14", "chl_spread_60", "chl_spread_atr_60", "vwap_dist_60",
    "volume_ma_20_to_avg_1440", "volume_ratio_20", "volume_trend_5_20",
    "sma_7_ratio", "sma_14_ratio", "sma_21_ratio", "sma_50_ratio",
    "sma_7_slope", "sma_14_slope", "sma_21_slope", "sma_50_slope",
    "rsi_14", "macd_12_26_9_line_to_close", "macd_12_26_9_signal_to_close",
    "macd_12_26_9_hist_to_close",
    "bb_20_upper_dist", "bb_20_lower_dist", "bb_20_pctb", "bb_20_bandwidth",
    "rvol_15", "rvol_60", "rvol_240", "vol_regime",
]


@cache
def month(year: int, number: int) -> pa.Table:
    return generate_month(OPTIONS, MARKET, Month(year, number))


@cache
def preset() -> Preset:
    return load_feature_preset("restart")


def assert_float32_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal to float32 precision, judged on the column's own scale."""
    expected32 = expected.astype(np.float32)
    assert np.array_equal(np.isnan(actual), np.isnan(expected32)), f"{what}: NaN pattern differs"
    scale = float(np.nanmax(np.abs(expected))) if np.isfinite(expected).any() else 1.0
    np.testing.assert_allclose(actual, expected32, rtol=2e-5, atol=1e-6 * scale, err_msg=what)


def test_the_preset_has_the_39_documented_columns() -> None:
    restart = preset()
    assert restart.columns == COLUMNS and len(restart.columns) == 39
    # Every column is documented in the preset itself.
    named = set(re.findall(r"\b[a-z][a-z0-9_]*_[a-z0-9_]+\b|\bweekend\b", restart.description))
    assert set(COLUMNS) <= named, set(COLUMNS) - named
    assert "39 columns" in restart.description
    # A week of warm-up (the volatility regime's terciles), within one previous month.
    assert restart.lookback == 60 + 168 * 60


def test_no_column_sees_the_future() -> None:
    """Changing candles after minute ``cut`` never changes a value at or before it (the
    pattern of test_features_lookahead.py, over the whole preset on ten days of candles)."""
    table = month(2024, 3).slice(0, 10 * 1_440)
    cut = 12_000
    restart = preset()
    assert restart.lookback < cut
    base = compute_features(table, restart).table
    rng = np.random.default_rng(3)
    factor = np.ones(table.num_rows)
    factor[cut + 1:] = rng.uniform(0.8, 1.25, table.num_rows - cut - 1)
    volume_factor = np.ones(table.num_rows)
    volume_factor[cut + 1:] = rng.uniform(0.0, 3.0, table.num_rows - cut - 1)
    # Wider wicks too (still valid OHLC), so columns of one bar's shape change as well.
    wick = np.ones(table.num_rows)
    wick[cut + 1:] = rng.uniform(1.0, 1.002, table.num_rows - cut - 1)
    cols = {n: table.column(n).to_numpy() * factor for n in ("open", "high", "low", "close")}
    perturbed = candle_table(ts_millis(table), cols["open"], cols["high"] * wick,
                             cols["low"] / wick, cols["close"],
                             table.column("volume").to_numpy() * volume_factor, None)
    other = compute_features(perturbed, restart).table
    calendar = {"session_tokyo", "session_london", "session_new_york", "day_of_week", "weekend"}
    for column in COLUMNS:
        before, after = base.column(column).to_numpy(), other.column(column).to_numpy()
        assert np.isfinite(before[restart.lookback:cut + 1]).all(), column
        np.testing.assert_array_equal(after[:cut + 1], before[:cut + 1],
                                      err_msg=f"{column} saw the future")
        if column not in calendar:  # the probe reaches every price/volume column
            assert not np.array_equal(after[cut + 1:], before[cut + 1:], equal_nan=True), column


def test_every_column_is_stationary_in_level() -> None:
    """Prices x1000 and volumes x0.01 leave every column unchanged (the check of
    test_features_stationary.py): no column is a price or volume level."""
    table = month(2024, 3).slice(0, 10 * 1_440)
    cols = {n: table.column(n).to_numpy() for n in ("open", "high", "low", "close", "volume")}
    rescaled = candle_table(ts_millis(table), *(cols[n] * 1_000.0 for n in
                                                ("open", "high", "low", "close")),
                            cols["volume"] * 0.01, None)
    base = compute_features(table, preset()).table
    scaled = compute_features(rescaled, preset()).table
    for column in COLUMNS:
        np.testing.assert_allclose(scaled.column(column).to_numpy().astype(np.float64),
                                   base.column(column).to_numpy().astype(np.float64),
                                   rtol=2e-3, atol=1e-5, equal_nan=True,
                                   err_msg=f"{column} is a level, not a ratio")


def test_one_previous_month_warms_every_column_from_the_first_minute() -> None:
    restart = preset()
    feb = compute_features(month(2024, 2), restart, history=month(2024, 1)).table
    continuous = pa.concat_tables([month(2023, 12), month(2024, 1), month(2024, 2)])
    reference = compute_features(continuous, restart).table.slice(
        month(2023, 12).num_rows + month(2024, 1).num_rows)
    assert feb.column("ts").equals(reference.column("ts"))
    assert not feb.column(WARMUP_COLUMN).to_numpy().any()
    for column in COLUMNS:
        values = feb.column(column).to_numpy()
        assert np.isfinite(values).all(), column
        assert_float32_close(values, reference.column(column).to_numpy(), column)


def test_a_first_month_flags_its_unsettled_rows() -> None:
    restart = preset()
    jan = month(2024, 1)
    alone = compute_features(jan, restart).table
    warm = alone.column(WARMUP_COLUMN).to_numpy()
    assert warm[: restart.lookback].all() and not warm[restart.lookback:].any()
    reference = compute_features(jan, restart, history=month(2023, 12)).table
    for choice in restart.indicators:  # each card's own lookback is enough on its own
        single = Preset("one", "", (choice,), "test")
        own = compute_features(jan, single).table
        for column in choice.outputs:
            assert np.isfinite(own.column(column).to_numpy()[choice.lookback:]).all(), column
            assert_float32_close(own.column(column).to_numpy()[choice.lookback:],
                                 reference.column(column).to_numpy()[choice.lookback:],
                                 f"{choice.name}:{column}")


@pytest.fixture(scope="module")
def feb_features() -> tuple[pa.Table, pa.Table]:
    """February's features (January as history) and the continuous candles Jan + Feb."""
    features = compute_features(month(2024, 2), preset(), history=month(2024, 1)).table
    return features, pa.concat_tables([month(2024, 1), month(2024, 2)])


def test_new_cards_equal_their_formulas(feb_features) -> None:
    features, series = feb_features
    rows = slice(month(2024, 1).num_rows, None)
    h, lo, c, v = (series.column(n).to_numpy() for n in ("high", "low", "close", "volume"))
    # Abdi-Ranaldo CHL, written out bar pair by bar pair with windowed means.
    log_c, mid = np.log(c), (np.log(h) + np.log(lo)) / 2.0
    pair = np.concatenate([[np.nan], (log_c[:-1] - mid[:-1]) * (log_c[:-1] - mid[1:])])
    window_mean = np.full(len(c), np.nan)
    window_mean[60:] = np.lib.stride_tricks.sliding_window_view(pair[1:], 60).mean(axis=1)
    chl = np.sqrt(np.clip(4.0 * window_mean, 0.0, None))
    expected = {
        "chl_spread_60": chl,
        "chl_spread_atr_60": chl / (talib.ATR(h, lo, c, 14) / c),
        "volume_ma_20_to_avg_1440": talib.SMA(v, 20) / talib.SMA(v, 1440),
    }
    for n in (7, 14, 21, 50):
        sma = talib.SMA(c, n)
        expected[f"sma_{n}_slope"] = np.concatenate([[np.nan], sma[1:] / sma[:-1] - 1.0])
        expected[f"sma_{n}_ratio"] = c / sma - 1.0
    for column, values in expected.items():
        assert_float32_close(features.column(column).to_numpy(), values[rows], column)


def test_chl_spread_measures_a_known_bid_ask_bounce() -> None:
    """Trades alternating at random between bid and ask around a random-walk mid, with a 10 bp
    spread: the estimator recovers the spread's size, where the bounce-free synthetic venue
    gives (nearly) zero."""
    rng = np.random.default_rng(0)
    n, spread = 20_000, 10e-4
    mid = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n)))
    side = rng.choice([-1.0, 1.0], n)
    close = mid * np.exp(side * spread / 2.0)
    # Each bar's high and low are the ask and bid at its most extreme mids.
    high = np.maximum(close, mid * np.exp(spread / 2.0 + np.abs(rng.normal(0, 2e-4, n))))
    low = np.minimum(close, mid * np.exp(-spread / 2.0 - np.abs(rng.normal(0, 2e-4, n))))
    table = candle_table(1_704_067_200_000 + 60_000 * np.arange(n), close, high, low, close,
                         np.ones(n), None)
    from tradecore_lib.features import inline_preset

    probe = inline_preset([{"name": "execution", "params": {"window": 1_000}}])
    estimate = compute_features(table, probe).table.column("chl_spread_1000").to_numpy()
    assert 0.6 * spread < np.nanmedian(estimate[1_000:]) < 1.4 * spread
    quiet = compute_features(month(2024, 2), probe).table.column("chl_spread_1000").to_numpy()
    assert np.nanmedian(quiet) < 0.3 * spread
