"""Warm-up across month boundaries, first-month flagging, gaps, and parity with direct TA-Lib.

The reference values are computed on one continuous series starting a month earlier than the
history the feature code sees (Dec + Jan + Feb vs. Jan as history for Feb), so they check that
one previous month settles every indicator, from the very first minute of the month.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pytest
import talib

from tradecore_lib.candles import ts_millis
from tradecore_lib.features import WARMUP_COLUMN, compute_features, load_feature_preset
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month

MARKET = "synthetic_btc_usd"


@cache
def month(year: int, number: int) -> pa.Table:
    return generate_month(SyntheticOptions(), MARKET, Month(year, number))


@cache
def continuous() -> pa.Table:
    return pa.concat_tables([month(2023, 12), month(2024, 1), month(2024, 2)])


def feb_rows() -> slice:
    return slice(month(2023, 12).num_rows + month(2024, 1).num_rows, None)


def assert_float32_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal to float32 precision; the absolute floor scales with the column's magnitude,
    so columns crossing zero (MACD histogram, ratios) are judged on their own scale."""
    expected32 = expected.astype(np.float32)
    assert np.array_equal(np.isnan(actual), np.isnan(expected32)), f"{what}: NaN pattern differs"
    scale = float(np.nanmax(np.abs(expected))) if np.isfinite(expected).any() else 1.0
    np.testing.assert_allclose(actual, expected32, rtol=2e-5, atol=1e-6 * scale, err_msg=what)


@pytest.fixture(scope="module")
def feb_full() -> pa.Table:
    preset = load_feature_preset("full")
    return compute_features(month(2024, 2), preset, history=month(2024, 1)).table


def test_month_with_previous_month_equals_longer_continuous_series(feb_full: pa.Table) -> None:
    full = load_feature_preset("full")
    reference = compute_features(continuous(), full).table.slice(feb_rows().start)
    assert feb_full.column("ts").equals(reference.column("ts"))
    assert not feb_full.column(WARMUP_COLUMN).to_numpy().any()
    for name in full.columns:
        assert_float32_close(
            feb_full.column(name).to_numpy(), reference.column(name).to_numpy(), name
        )


def test_columns_equal_direct_talib_calls_from_first_minute(feb_full: pa.Table) -> None:
    series = continuous()
    h, lo, c, v = (series.column(n).to_numpy() for n in ("high", "low", "close", "volume"))
    typical = (h + lo + c) / 3.0
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    line, signal, hist = talib.MACD(c, 12, 26, 9)
    obv = talib.OBV(c, v)
    r1 = np.concatenate([[np.nan], np.diff(np.log(c))])
    expected = {
        "zscore_60": (c - talib.SMA(c, 60)) / talib.STDDEV(c, 60, 1.0),
        "natr_14": talib.NATR(h, lo, c, 14),
        "rsi_14": talib.RSI(c, 14),
        "bb_20_upper_dist": upper / c - 1.0,
        "bb_20_lower_dist": lower / c - 1.0,
        "bb_20_pctb": (c - lower) / (upper - lower),
        "bb_20_bandwidth": (upper - lower) / middle,
        "macd_12_26_9_line_to_close": line / c,
        "macd_12_26_9_signal_to_close": signal / c,
        "macd_12_26_9_hist_to_close": hist / c,
        "rvol_60": np.sqrt(talib.SUM(r1**2, 60)),
        "volume_ratio_60": v / talib.SMA(v, 60),
        "volume_trend_15_60": talib.SMA(v, 15) / talib.SMA(v, 60) - 1.0,
        "hl_range": (h - lo) / c,
        "range_atr_14": (h - lo) / talib.ATR(h, lo, c, 14),
        "obv_flow_60": (obv - np.roll(obv, 60)) / talib.SUM(v, 60),
    }
    expected["vwap_dist_60"] = c / (talib.SUM(typical * v, 60) / talib.SUM(v, 60)) - 1.0
    for n in (20, 60, 240):
        expected[f"sma_{n}_ratio"] = c / talib.SMA(c, n) - 1.0
    for n in (12, 60, 240):
        expected[f"ema_{n}_ratio"] = c / talib.EMA(c, n) - 1.0
    for n in (1, 5, 15, 60):
        expected[f"logret_{n}"] = np.log(c) - np.log(np.roll(c, n))
    for name, values in expected.items():
        assert_float32_close(feb_full.column(name).to_numpy(), values[feb_rows()], name)


def test_session_and_calendar_columns_match_zoneinfo(feb_full: pa.Table) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    hours = {"session_tokyo": ("Asia/Tokyo", 9, 18), "session_london": ("Europe/London", 8, 17),
             "session_new_york": ("America/New_York", 8, 17)}
    ts = ts_millis(feb_full)
    for row in range(0, feb_full.num_rows, 997):
        when = datetime.fromtimestamp(ts[row] / 1000, tz=UTC)
        for column, (zone, start, end) in hours.items():
            local = when.astimezone(ZoneInfo(zone))
            expected = float(start <= local.hour < end and local.weekday() < 5)
            assert feb_full.column(column)[row].as_py() == expected, (column, when)
        assert feb_full.column("day_of_week")[row].as_py() == when.weekday()
        assert feb_full.column("weekend")[row].as_py() == float(when.weekday() >= 5)


def test_vol_regime_matches_brute_force_terciles(feb_full: pa.Table) -> None:
    series = continuous()
    c = series.column("close").to_numpy()
    ts = ts_millis(series)
    r1 = np.concatenate([[np.nan], np.diff(np.log(c))])
    rv = np.sqrt(talib.SUM(r1**2, 60))
    hour = ts // 3_600_000
    first_of_hour = np.concatenate([[True], hour[1:] != hour[:-1]])
    offset = feb_rows().start
    regimes = feb_full.column("vol_regime").to_numpy()
    for row in range(0, feb_full.num_rows, 1_009):
        t = offset + row
        samples = rv[:t][first_of_hour[:t]][-168:]  # hourly samples strictly before t
        low, high = np.quantile(samples, [1 / 3, 2 / 3])
        assert regimes[row] == int(rv[t] > low) + int(rv[t] > high), row


def test_first_month_flags_unsettled_rows_and_settled_rows_match() -> None:
    full = load_feature_preset("full")
    jan = month(2024, 1)
    alone = compute_features(jan, full).table
    reference = compute_features(pa.concat_tables([month(2023, 12), jan]), full).table
    reference = reference.slice(month(2023, 12).num_rows)
    warm = alone.column(WARMUP_COLUMN).to_numpy()
    assert warm[: full.lookback].all() and not warm[full.lookback :].any()
    for name in full.columns:
        values = alone.column(name).to_numpy()
        assert np.isfinite(values[~warm]).all(), f"{name}: NaN after the declared lookback"
        assert_float32_close(values[~warm], reference.column(name).to_numpy()[~warm], name)
    # The unsettled head keeps TA-Lib's NaNs instead of being filled.
    assert np.isnan(alone.column("rsi_14").to_numpy()[:14]).all()


def test_each_indicator_lookback_is_enough_on_its_own() -> None:
    """Per indicator, rows past its own lookback match the continuous series: a too-small
    lookback in any one card would be hidden by the preset-wide maximum above."""
    full = load_feature_preset("full")
    jan = month(2024, 1)
    dec = month(2023, 12)
    for choice in full.indicators:
        single = full.__class__("one", "", (choice,), "test")
        alone = compute_features(jan, single).table
        reference = compute_features(jan, single, history=dec).table
        settled = slice(choice.lookback, None)
        for name in choice.outputs:
            assert_float32_close(
                alone.column(name).to_numpy()[settled],
                reference.column(name).to_numpy()[settled],
                f"{choice.name}:{name}",
            )


def test_rows_after_gap_are_counted() -> None:
    jan = month(2024, 1)
    ts = ts_millis(jan)
    gaps_inside = int(np.count_nonzero(np.diff(ts) > MINUTE_MS))
    assert gaps_inside > 0  # the synthetic venue drops minutes
    features = compute_features(jan, load_feature_preset("default"))
    assert features.rows_after_gap == gaps_inside
    # A hole at the month boundary counts for the month after it.
    feb = month(2024, 2)
    trimmed = month(2024, 1).slice(0, month(2024, 1).num_rows - 5)
    with_history = compute_features(feb, load_feature_preset("default"), history=trimmed)
    inside_feb = int(np.count_nonzero(np.diff(ts_millis(feb)) > MINUTE_MS))
    assert with_history.rows_after_gap == inside_feb + 1


def test_history_must_precede_candles() -> None:
    from tradecore_lib.features import FeatureInputError

    with pytest.raises(FeatureInputError, match="strictly increasing"):
        compute_features(month(2024, 1), load_feature_preset("default"), history=month(2024, 2))


def test_empty_month_gives_empty_table() -> None:
    empty = month(2024, 1).slice(0, 0)
    table = compute_features(empty, load_feature_preset("full"), history=month(2023, 12)).table
    assert table.num_rows == 0
    assert table.column_names == ["ts", *load_feature_preset("full").columns, WARMUP_COLUMN]
