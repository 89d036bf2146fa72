"""Indicator implementations, registered into :data:`tradecore_lib.features.registry.REGISTRY`.

TA-Lib computes everything it has (its definitions are the reference and it is C-fast); numpy
(and pandas for time-zone arithmetic) the rest. All windows count candle rows (one-minute
bars). Every output is a float64 array aligned with the input rows, NaN where the indicator
has no value yet; the value at row ``t`` depends only on rows ``<= t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib
from numpy.lib.stride_tricks import sliding_window_view

from tradecore_lib.features.registry import (
    CandleArrays,
    Indicator,
    Params,
    ParamSpec,
    ema_settle_bars,
    register,
)

# Longest simple window: one week of minutes.
MAX_WINDOW = 10_080
# Exponential windows are capped lower because their settling time is ~8-16x the window;
# presets also reject combinations (MACD slow + signal) that outgrow one previous month.
MAX_EMA_WINDOW = 4_000
MAX_WILDER_WINDOW = 1_000
HOUR_MS = 3_600_000


def _window(default: int, what: str, high: int = MAX_WINDOW, name: str = "window") -> ParamSpec:
    return ParamSpec(name, "int", default, 2, high, f"{what} (bars)")


def _windows(default: tuple[int, ...], what: str, high: int) -> ParamSpec:
    return ParamSpec("windows", "int_list", default, 2, high, f"{what} (bars)")


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio, NaN where the denominator is 0: the feature is undefined there."""
    # Divide everywhere, then overwrite the (rare) zero denominators: cheaper than a NaN-filled
    # output plus a masked ``where=`` division, which touches every element twice.
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(numerator, denominator)
    np.putmask(out, denominator == 0, np.nan)
    return out


def _ratio_minus_one(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator - 1`` with one allocation (these are 8 MB per year)."""
    out = np.divide(numerator, denominator)
    out -= 1.0
    return out


def _sma(c: CandleArrays, source: str, n: int) -> np.ndarray:
    return c.cached(("sma", source, n), lambda: talib.SMA(getattr(c, source), n))


def _volume_sum(c: CandleArrays, n: int) -> np.ndarray:
    return c.cached(("volume_sum", n), lambda: talib.SUM(c.volume, n))


def _atr(c: CandleArrays, n: int) -> np.ndarray:
    return c.cached(("atr", n), lambda: talib.ATR(c.high, c.low, c.close, n))


def _log_close(c: CandleArrays) -> np.ndarray:
    return c.cached(("log_close",), lambda: np.log(c.close))


def _return_1(c: CandleArrays) -> np.ndarray:
    """One-bar log return; row 0 is NaN (TA-Lib skips leading NaNs)."""

    def compute() -> np.ndarray:
        out = np.empty(len(c))
        out[0] = np.nan
        np.subtract(_log_close(c)[1:], _log_close(c)[:-1], out=out[1:])
        return out

    return c.cached(("return_1",), compute)


def _realized_vol(c: CandleArrays, n: int) -> np.ndarray:
    # Running sums can drift a hair below zero on flat stretches; clip before the root.
    return c.cached(
        ("rvol", n),
        lambda: np.sqrt(np.maximum(talib.SUM(_return_1(c) ** 2, n), 0.0)),
    )


def _wilder_lookback(n: int) -> int:
    return n + ema_settle_bars(1.0 / n)


def _ema_lookback(n: int) -> int:
    return n - 1 + ema_settle_bars(2.0 / (n + 1))


# --- VWAP -------------------------------------------------------------------------------


def _vwap(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n = int(p["window"])
    weighted = c.high + c.low
    weighted += c.close
    weighted *= c.volume
    weighted /= 3.0
    vwap = _divide(talib.SUM(weighted, n), _volume_sum(c, n))
    return {f"vwap_dist_{n}": _ratio_minus_one(c.close, vwap)}


register(
    Indicator(
        name="vwap",
        label="Rolling VWAP",
        description="vwap_dist_N = close / VWAP_N - 1 (dimensionless), VWAP_N being the "
        "volume-weighted average of the typical price (high+low+close)/3 over the last N bars. "
        "The VWAP level itself is not a column: a price level lets a model memorize where a "
        "month's prices were. NaN when the window traded no volume.",
        params=(_window(60, "rolling window"),),
        outputs=lambda p: [f"vwap_dist_{p['window']}"],
        lookback=lambda p: int(p["window"]) - 1,
        compute=_vwap,
        talib=("SUM",),
    )
)

# --- z-score ----------------------------------------------------------------------------


def _zscore(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n = int(p["window"])
    std = talib.STDDEV(c.close, n, 1.0)
    return {f"zscore_{n}": _divide(c.close - _sma(c, "close", n), std)}


register(
    Indicator(
        name="zscore",
        label="Z-score of close",
        description="zscore_N = (close - SMA(close, N)) / STDDEV(close, N) with TA-Lib's "
        "population standard deviation (dimensionless). NaN on a flat window.",
        params=(_window(60, "rolling window"),),
        outputs=lambda p: [f"zscore_{p['window']}"],
        lookback=lambda p: int(p["window"]) - 1,
        compute=_zscore,
        talib=("SMA", "STDDEV"),
    )
)

# --- ATR ----------------------------------------------------------------------------------


def _atr_columns(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n = int(p["window"])
    return {f"natr_{n}": talib.NATR(c.high, c.low, c.close, n)}


register(
    Indicator(
        name="atr",
        label="Average True Range",
        description="natr_N = TA-Lib NATR(high, low, close, N): the Wilder-smoothed true "
        "range in percent of close (stationary; the ATR level in quote currency is not a "
        "column).",
        params=(_window(14, "Wilder smoothing window", MAX_WILDER_WINDOW),),
        outputs=lambda p: [f"natr_{p['window']}"],
        lookback=lambda p: _wilder_lookback(int(p["window"])),
        compute=_atr_columns,
        talib=("NATR",),
    )
)

# --- RSI ----------------------------------------------------------------------------------

register(
    Indicator(
        name="rsi",
        label="Relative Strength Index",
        description="rsi_N = TA-Lib RSI(close, N), Wilder's RSI on a 0..100 scale.",
        params=(_window(14, "Wilder smoothing window", MAX_WILDER_WINDOW),),
        outputs=lambda p: [f"rsi_{p['window']}"],
        lookback=lambda p: _wilder_lookback(int(p["window"])),
        compute=lambda c, p: {f"rsi_{p['window']}": talib.RSI(c.close, int(p["window"]))},
        talib=("RSI",),
    )
)

# --- Bollinger Bands ------------------------------------------------------------------------


def _bbands(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n, k = int(p["window"]), float(p["nbdev"])
    upper, middle, lower = talib.BBANDS(c.close, n, k, k, 0)
    width = upper - lower
    return {
        f"bb_{n}_upper_dist": _ratio_minus_one(upper, c.close),
        f"bb_{n}_lower_dist": _ratio_minus_one(lower, c.close),
        f"bb_{n}_pctb": _divide(c.close - lower, width),
        f"bb_{n}_bandwidth": _divide(width, middle),
    }


register(
    Indicator(
        name="bbands",
        label="Bollinger Bands",
        description="TA-Lib BBANDS(close, N, nbdev, nbdev, SMA), as ratios (the band levels "
        "in quote currency are not columns): bb_N_upper_dist = upper / close - 1, "
        "bb_N_lower_dist = lower / close - 1; bb_N_pctb = (close - lower) / (upper - lower) "
        "(0 at the lower band, 1 at the upper); bb_N_bandwidth = (upper - lower) / middle.",
        params=(
            _window(20, "moving-average window"),
            ParamSpec("nbdev", "float", 2.0, 0.5, 5.0, "band width in standard deviations"),
        ),
        outputs=lambda p: [
            f"bb_{p['window']}_{part}"
            for part in ("upper_dist", "lower_dist", "pctb", "bandwidth")
        ],
        lookback=lambda p: int(p["window"]) - 1,
        compute=_bbands,
        talib=("BBANDS",),
    )
)

# --- MACD ---------------------------------------------------------------------------------


def _macd_name(p: Params) -> str:
    return f"macd_{p['fast']}_{p['slow']}_{p['signal']}"


def _macd(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    line, signal, hist = talib.MACD(c.close, int(p["fast"]), int(p["slow"]), int(p["signal"]))
    name = _macd_name(p)
    return {f"{name}_{part}_to_close": _divide(value, c.close)
            for part, value in (("line", line), ("signal", signal), ("hist", hist))}


register(
    Indicator(
        name="macd",
        label="MACD",
        description="TA-Lib MACD(close, fast, slow, signal) divided by close (dimensionless; "
        "MACD in quote currency scales with the price level): macd_F_S_G_line_to_close = "
        "(EMA_F - EMA_S) / close, _signal_to_close = EMA_G of the line / close, "
        "_hist_to_close = (line - signal) / close.",
        params=(
            _window(12, "fast EMA window", MAX_EMA_WINDOW, "fast"),
            _window(26, "slow EMA window", MAX_EMA_WINDOW, "slow"),
            _window(9, "signal EMA window", MAX_EMA_WINDOW, "signal"),
        ),
        outputs=lambda p: [
            f"{_macd_name(p)}_{part}_to_close" for part in ("line", "signal", "hist")
        ],
        lookback=lambda p: _ema_lookback(int(p["slow"])) + _ema_lookback(int(p["signal"])),
        compute=_macd,
        talib=("MACD",),
        check=lambda p: [] if p["fast"] < p["slow"] else [
            f"fast ({p['fast']}) must be smaller than slow ({p['slow']})"
        ],
    )
)

# --- moving-average ratios --------------------------------------------------------------------


def _ma_ratio_indicator(kind: str, label: str, default: tuple[int, ...], high: int) -> Indicator:
    function = getattr(talib, kind.upper())

    def average(c: CandleArrays, n: int) -> np.ndarray:
        # SMAs use _sma's cache key, so z-score and SMA ratios share one SMA of close. No other
        # indicator reads an EMA of close: caching it would only keep 8 MB/year alive longer.
        return _sma(c, "close", n) if kind == "sma" else function(c.close, n)

    def compute(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
        return {f"{kind}_{n}_ratio": _ratio_minus_one(c.close, average(c, n)) for n in p["windows"]}

    settle = (lambda n: n - 1) if kind == "sma" else _ema_lookback
    return Indicator(
        name=kind,
        label=f"{label} price ratios",
        description=f"{kind}_N_ratio = close / TA-Lib {kind.upper()}(close, N) - 1 for each "
        "window N (dimensionless; > 0 when the price is above its average).",
        params=(_windows(default, f"{label.lower()} windows", high),),
        outputs=lambda p: [f"{kind}_{n}_ratio" for n in p["windows"]],
        lookback=lambda p: max(settle(int(n)) for n in p["windows"]),
        compute=compute,
        talib=(kind.upper(),),
    )


register(_ma_ratio_indicator("sma", "Simple moving average", (20, 60, 240), MAX_WINDOW))
register(_ma_ratio_indicator("ema", "Exponential moving average", (12, 60, 240), MAX_EMA_WINDOW))

# --- log returns and realized volatility ------------------------------------------------------


def _log_returns(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    log_close = _log_close(c)
    out = {}
    for h in p["horizons"]:
        column = np.full(len(c), np.nan)
        np.subtract(log_close[h:], log_close[:-h], out=column[h:])
        out[f"logret_{h}"] = column
    return out


register(
    Indicator(
        name="log_returns",
        label="Log returns",
        description="logret_H = ln(close_t / close_{t-H}) for each horizon H (bars back).",
        params=(
            ParamSpec("horizons", "int_list", (1, 5, 15, 60), 1, MAX_WINDOW, "horizons (bars)"),
        ),
        outputs=lambda p: [f"logret_{h}" for h in p["horizons"]],
        lookback=lambda p: max(int(h) for h in p["horizons"]),
        compute=_log_returns,
    )
)

register(
    Indicator(
        name="realized_vol",
        label="Realized volatility",
        description="rvol_N = sqrt(sum of squared one-bar log returns over the last N bars): "
        "the volatility of the window, not annualized (dimensionless).",
        params=(_window(60, "window"),),
        outputs=lambda p: [f"rvol_{p['window']}"],
        lookback=lambda p: int(p["window"]),
        compute=lambda c, p: {f"rvol_{p['window']}": _realized_vol(c, int(p["window"]))},
        talib=("SUM",),
    )
)

# --- volume -------------------------------------------------------------------------------


def _volume(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    fast, slow = int(p["fast"]), int(p["slow"])
    slow_ma = _sma(c, "volume", slow)
    return {
        f"volume_ratio_{slow}": _divide(c.volume, slow_ma),
        f"volume_trend_{fast}_{slow}": _ratio_minus_one(_sma(c, "volume", fast), slow_ma),
    }


register(
    Indicator(
        name="volume",
        label="Volume features",
        description="volume_ratio_S = volume / SMA(volume, S) (the average's level in base "
        "currency is not a column); volume_trend_F_S = SMA(volume, F) / SMA(volume, S) - 1 (> 0 "
        "when recent volume rises). NaN when the slow window traded nothing.",
        params=(
            _window(15, "fast volume average", name="fast"),
            _window(60, "slow volume average", name="slow"),
        ),
        outputs=lambda p: [
            f"volume_ratio_{p['slow']}",
            f"volume_trend_{p['fast']}_{p['slow']}",
        ],
        lookback=lambda p: int(p["slow"]) - 1,
        compute=_volume,
        talib=("SMA",),
        check=lambda p: [] if p["fast"] < p["slow"] else [
            f"fast ({p['fast']}) must be smaller than slow ({p['slow']})"
        ],
    )
)

# --- range-based spread proxies ------------------------------------------------------------


def _range(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n = int(p["atr_window"])
    spread = c.high - c.low
    return {"hl_range": spread / c.close, f"range_atr_{n}": _divide(spread, _atr(c, n))}


register(
    Indicator(
        name="range",
        label="Range spread proxies",
        description="hl_range = (high - low) / close, the bar's range as a fraction of price; "
        "range_atr_N = (high - low) / ATR(N), the bar's range against its recent average.",
        params=(_window(14, "ATR window", MAX_WILDER_WINDOW, "atr_window"),),
        outputs=lambda p: ["hl_range", f"range_atr_{p['atr_window']}"],
        lookback=lambda p: _wilder_lookback(int(p["atr_window"])),
        compute=_range,
        talib=("ATR",),
    )
)

# --- sessions -------------------------------------------------------------------------------

# Local business hours [open, close) of each financial centre; local time follows DST.
SESSIONS = {
    "tokyo": ("Asia/Tokyo", 9, 18),
    "london": ("Europe/London", 8, 17),
    "new_york": ("America/New_York", 8, 17),
}


def _sessions(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    utc = pd.DatetimeIndex(c.ts_ms.astype("datetime64[ms]")).tz_localize("UTC")
    out = {}
    for city, (zone, open_hour, close_hour) in SESSIONS.items():
        local = utc.tz_convert(zone)
        hour = np.asarray(local.hour)
        weekday = np.asarray(local.day_of_week) < 5
        out[f"session_{city}"] = ((hour >= open_hour) & (hour < close_hour) & weekday) * 1.0
    day = np.asarray(utc.day_of_week, dtype=np.float64)
    out["day_of_week"] = day
    out["weekend"] = (day >= 5) * 1.0
    return out


register(
    Indicator(
        name="session",
        label="Trading sessions and calendar",
        description="session_tokyo/london/new_york = 1.0 during the centre's local business "
        "hours on a local weekday (Tokyo 09-18, London and New York 08-17, DST-aware), else "
        "0.0; day_of_week = UTC weekday (0 Monday .. 6 Sunday); weekend = 1.0 on UTC "
        "Saturday and Sunday.",
        params=(),
        outputs=lambda p: [*(f"session_{city}" for city in SESSIONS), "day_of_week", "weekend"],
        lookback=lambda p: 0,
        compute=_sessions,
    )
)

# --- volatility regime ---------------------------------------------------------------------


def _vol_regime(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    rv = _realized_vol(c, int(p["rv_window"]))
    hours = int(p["window_hours"])
    # Terciles come from hourly samples (the first bar of each clock hour): a week of samples
    # ranks volatility as well as a week of minutes at 1/60 of the cost, and sampling on the
    # clock, not on row numbers, makes the result independent of where the series starts.
    hour = c.ts_ms // HOUR_MS
    sample_rows = np.flatnonzero(np.diff(hour, prepend=hour[0] - 1) != 0)
    regime = np.full(len(c), np.nan)
    if sample_rows.size < hours:
        return {"vol_regime": regime}
    # np.quantile propagates NaN, so windows still holding unsettled samples stay NaN.
    thresholds = np.quantile(
        sliding_window_view(rv[sample_rows], hours), [1.0 / 3.0, 2.0 / 3.0], axis=1
    )
    # Row t uses the window ending at the last sample strictly before t: past values only.
    window = np.searchsorted(sample_rows, np.arange(len(c)), side="left") - hours
    usable = window >= 0
    low = np.full(len(c), np.nan)
    high = np.full(len(c), np.nan)
    low[usable] = thresholds[0, window[usable]]
    high[usable] = thresholds[1, window[usable]]
    known = np.isfinite(low) & np.isfinite(high) & np.isfinite(rv)
    regime[known] = (rv[known] > low[known]) * 1.0 + (rv[known] > high[known])
    return {"vol_regime": regime}


register(
    Indicator(
        name="vol_regime",
        label="Volatility regime",
        description="vol_regime = 0 (low), 1 (medium) or 2 (high): where the current realized "
        "volatility rvol_R falls among the terciles of its hourly samples over the past H "
        "hours (samples strictly before the current bar, so causal).",
        params=(
            _window(60, "realized-volatility window", 1_440, "rv_window"),
            ParamSpec("window_hours", "int", 168, 24, 336, "tercile window (hours of samples)"),
        ),
        outputs=lambda p: ["vol_regime"],
        lookback=lambda p: int(p["rv_window"]) + 60 * int(p["window_hours"]),
        compute=_vol_regime,
        talib=("SUM",),
    )
)

# --- OBV ------------------------------------------------------------------------------------


def _obv(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n = int(p["window"])
    obv = talib.OBV(c.close, c.volume)
    change = np.full(len(c), np.nan)
    np.subtract(obv[n:], obv[:-n], out=change[n:])
    return {f"obv_flow_{n}": _divide(change, _volume_sum(c, n))}


register(
    Indicator(
        name="obv",
        label="On-balance volume flow",
        description="obv_flow_N = (OBV_t - OBV_{t-N}) / (volume summed over the last N bars) "
        "with TA-Lib OBV: the signed share of recent volume, -1..1. Raw OBV is a running "
        "total whose level depends on where the series starts, so only its windowed change "
        "is a feature.",
        params=(_window(60, "window"),),
        outputs=lambda p: [f"obv_flow_{p['window']}"],
        lookback=lambda p: int(p["window"]),
        compute=_obv,
        talib=("OBV", "SUM"),
    )
)

# --- execution-cost proxies -------------------------------------------------------------------


def _chl_spread(c: CandleArrays, n: int) -> np.ndarray:
    """Abdi-Ranaldo close-high-low effective spread over the last ``n`` bar pairs (fraction of
    price); see the ``execution`` card."""

    def compute() -> np.ndarray:
        log_close = _log_close(c)
        mid = np.log(c.high)
        mid += np.log(c.low)
        mid *= 0.5
        # Pair (t-1, t): the previous close against its own bar's mid-range and the current
        # one; both bars are known at t, so the estimate never reads the next bar.
        term = np.empty(len(c))
        term[0] = np.nan
        np.multiply(log_close[:-1] - mid[:-1], log_close[:-1] - mid[1:], out=term[1:])
        mean = talib.SUM(term, n)
        mean *= 4.0 / n
        # A negative window estimate means "no measurable spread" (Abdi & Ranaldo set them
        # to zero); NaN (warm-up) stays NaN.
        np.maximum(mean, 0.0, out=mean, where=np.isfinite(mean))
        return np.sqrt(mean)

    return c.cached(("chl_spread", n), compute)


def _execution(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n, m = int(p["window"]), int(p["atr_window"])
    spread = _chl_spread(c, n)
    return {
        f"chl_spread_{n}": spread,
        f"chl_spread_atr_{n}": _divide(spread * c.close, _atr(c, m)),
    }


register(
    Indicator(
        name="execution",
        label="Execution-cost proxies",
        description="chl_spread_N: the effective bid-ask spread estimated from candles by "
        "Abdi & Ranaldo's close-high-low estimator (2017), as a fraction of price: "
        "sqrt(max(0, 4 * mean over the last N bar pairs of (c[t-1] - m[t-1]) * (c[t-1] - "
        "m[t]))), c = ln close, m = (ln high + ln low) / 2; what a market order pays in "
        "full spread (half of it against the mid). chl_spread_atr_N = chl_spread_N * close / "
        "ATR(atr_window): that cost in units of the average true range (TA-Lib ATR), i.e. "
        "the share of a typical bar's move that execution costs.",
        params=(
            _window(60, "bar pairs averaged", MAX_WINDOW),
            _window(14, "ATR window", MAX_WILDER_WINDOW, "atr_window"),
        ),
        outputs=lambda p: [f"chl_spread_{p['window']}", f"chl_spread_atr_{p['window']}"],
        lookback=lambda p: max(int(p["window"]), _wilder_lookback(int(p["atr_window"]))),
        compute=_execution,
        talib=("SUM", "ATR"),
    )
)

# --- volume average against its own longer average ------------------------------------------


def _volume_ma(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    n, base = int(p["window"]), int(p["base_window"])
    return {f"volume_ma_{n}_to_avg_{base}": _divide(_sma(c, "volume", n),
                                                     _sma(c, "volume", base))}


register(
    Indicator(
        name="volume_ma",
        label="Volume average level",
        description="volume_ma_N_to_avg_B = SMA(volume, N) / SMA(volume, B) (TA-Lib SMA): the "
        "recent volume average as a ratio to its own longer average (1 = usual activity; "
        "the average's level in base currency is not a column). NaN when the long window "
        "traded nothing.",
        params=(
            _window(20, "volume average", name="window"),
            _window(1_440, "longer average it is compared with", name="base_window"),
        ),
        outputs=lambda p: [f"volume_ma_{p['window']}_to_avg_{p['base_window']}"],
        lookback=lambda p: int(p["base_window"]) - 1,
        compute=_volume_ma,
        talib=("SMA",),
        check=lambda p: [] if p["window"] < p["base_window"] else [
            f"window ({p['window']}) must be smaller than base_window ({p['base_window']})"
        ],
    )
)

# --- SMA slopes -------------------------------------------------------------------------------


def _sma_slope(c: CandleArrays, p: Params) -> dict[str, np.ndarray]:
    out = {}
    for n in p["windows"]:
        sma = _sma(c, "close", int(n))
        column = np.full(len(c), np.nan)
        np.divide(sma[1:], sma[:-1], out=column[1:])
        column[1:] -= 1.0
        out[f"sma_{n}_slope"] = column
    return out


register(
    Indicator(
        name="sma_slope",
        label="Simple moving average slopes",
        description="sma_N_slope = SMA(close, N)[t] / SMA(close, N)[t-1] - 1 for each window N "
        "(TA-Lib SMA; dimensionless, per bar): the moving average's own movement, "
        "(close[t] - close[t-N]) / (N * SMA[t-1]). With the sma card's price ratios it "
        "carries what the SMA levels carry, without a price level.",
        params=(_windows((7, 14, 21, 50), "simple moving average windows", MAX_WINDOW),),
        outputs=lambda p: [f"sma_{n}_slope" for n in p["windows"]],
        lookback=lambda p: max(int(n) for n in p["windows"]),
        compute=_sma_slope,
        talib=("SMA",),
    )
)
