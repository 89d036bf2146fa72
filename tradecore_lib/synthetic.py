"""The synthetic venue: seeded, realistic one-minute candles that need no network.

Every minute is a pure function of ``(seed, market, minute)``:

* An **hourly skeleton** (log price at each hour boundary and the hour's volatility) is drawn
  once per ``(seed, market)`` over a fixed horizon (:data:`EPOCH` .. :data:`HORIZON_END`),
  so it never depends on which months are asked for. Volatility clusters (an AR(1) in log
  volatility), regimes shift (calm / normal / turbulent segments lasting days to weeks, each
  with its own drift), and the log price mean-reverts slowly around ``start_price`` so prices
  stay plausible over years.
* **Minutes inside a day** come from a generator keyed by ``(seed, market, day)``: fat-tailed
  increments scaled by an intraday volatility profile, tied to the skeleton by a variance-
  weighted Brownian bridge per hour, so every hour ends exactly at the next hour's anchor.
* OHLC is consistent by construction (open = previous close, wicks beyond both), volume
  follows intraday and weekly seasonality and the size of the move, trades are Poisson in
  volume, and minutes go missing at a configurable rate plus occasional multi-minute outages.

A month is therefore byte-identical however often and in whatever order it is generated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import pyarrow as pa
from scipy.signal import lfilter

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.options import options_from_mapping

EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
HORIZON_END = datetime(2040, 1, 1, tzinfo=UTC)
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
_EPOCH_MS = int(EPOCH.timestamp() * 1000)
_HORIZON_MS = int(HORIZON_END.timestamp() * 1000)
_HOURS = (_HORIZON_MS - _EPOCH_MS) // HOUR_MS
_DAYS = _HOURS // 24

_REGIME_VOL = np.array([0.55, 1.0, 2.1])  # calm, normal, turbulent
_SKELETON_STREAM, _DAY_STREAM = 1, 2


class SyntheticRangeError(ValueError):
    """A month outside the synthetic venue's horizon was requested."""


@dataclass(frozen=True)
class SyntheticParams:
    """Knobs of the generator (``source:`` in ``configs/markets.yaml``).

    Attributes:
        seed: master seed; with the market name it fixes every value.
        start_price: price level (quote currency) the log price reverts to.
        annual_vol: long-run annualized volatility of log returns.
        mean_reversion_half_life_days: half-life of the pull towards ``start_price``.
        regime_mean_days: mean length of a volatility regime.
        base_volume: mean volume per minute (base currency) before seasonality.
        trades_per_volume: mean trades per unit of volume.
        missing_minute_rate: probability that a single minute is missing.
        outages_per_day: mean number of multi-minute outages per day.
        max_outage_minutes: longest outage.
        price_decimals: prices are rounded to this many decimals (the tick size).
    """

    seed: int = 7
    start_price: float = 42_000.0
    annual_vol: float = 0.6
    mean_reversion_half_life_days: float = 180.0
    regime_mean_days: float = 12.0
    base_volume: float = 4.0
    trades_per_volume: float = 6.0
    missing_minute_rate: float = 0.0005
    outages_per_day: float = 0.02
    max_outage_minutes: int = 45
    price_decimals: int = 1

    @classmethod
    def from_mapping(cls, raw: dict) -> SyntheticParams:
        """Build from a config mapping, rejecting unknown keys by name."""
        return options_from_mapping(cls, raw, "synthetic source")


def _market_key(market: str) -> int:
    return int.from_bytes(hashlib.sha256(market.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class _Skeleton:
    log_price: np.ndarray  # (_HOURS + 1,) log price at each hour boundary
    hour_sigma: np.ndarray  # (_HOURS,) std of the log return over each hour


@lru_cache(maxsize=8)
def _skeleton(params: SyntheticParams, market: str) -> _Skeleton:
    rng = np.random.default_rng([params.seed, _market_key(market), _SKELETON_STREAM])
    # Regimes: segments of geometric length, each with a volatility level and a drift.
    n_segments = int(_DAYS / params.regime_mean_days * 3) + 16
    lengths = rng.geometric(1.0 / params.regime_mean_days, n_segments)
    regime = rng.choice(3, size=n_segments, p=[0.3, 0.5, 0.2])
    drift_per_day = rng.normal(0.0, 0.003, n_segments)
    segment_of_day = np.searchsorted(np.cumsum(lengths), np.arange(_DAYS), side="right")
    segment_of_hour = np.repeat(segment_of_day, 24)

    base_sigma = params.annual_vol / np.sqrt(365.0 * 24.0)
    # Volatility clustering: AR(1) in log volatility, persistent over about two days.
    log_vol_noise = lfilter([1.0], [1.0, -0.98], rng.normal(0.0, 0.12, _HOURS))
    hour_sigma = base_sigma * _REGIME_VOL[regime[segment_of_hour]] * np.exp(log_vol_noise - 0.36)
    shocks = rng.standard_t(5, _HOURS) / np.sqrt(5.0 / 3.0)
    drift = drift_per_day[segment_of_hour] / 24.0
    kappa = np.log(2.0) / (params.mean_reversion_half_life_days * 24.0)
    deviation = lfilter([1.0], [1.0, -(1.0 - kappa)], drift + hour_sigma * shocks)
    log_price = np.log(params.start_price) + np.concatenate([[0.0], deviation])
    return _Skeleton(log_price=log_price, hour_sigma=hour_sigma)


def _intraday_profile(minute_of_day: np.ndarray) -> np.ndarray:
    """Relative activity by UTC minute of day: Asia, London and a New York peak."""
    hour = minute_of_day / 60.0
    return (
        0.55
        + 0.25 * np.exp(-(((hour - 2.0) / 2.5) ** 2))
        + 0.45 * np.exp(-(((hour - 8.5) / 2.0) ** 2))
        + 0.85 * np.exp(-(((hour - 14.5) / 2.5) ** 2))
    )


def _generate_day(params: SyntheticParams, market: str, day: int) -> pa.Table:
    """All present minutes of one UTC day (``day`` counted from :data:`EPOCH`)."""
    skeleton = _skeleton(params, market)
    rng = np.random.default_rng([params.seed, _market_key(market), _DAY_STREAM, day])
    hours = slice(day * 24, day * 24 + 24)
    anchors = skeleton.log_price[day * 24 : day * 24 + 25]
    sigma_hour = skeleton.hour_sigma[hours][:, None]  # (24, 1)

    minute_of_day = np.arange(1440)
    activity = _intraday_profile(minute_of_day).reshape(24, 60)
    weight = activity**2 / (activity**2).sum(axis=1, keepdims=True)  # variance share per minute
    sigma_min = sigma_hour * np.sqrt(weight)  # (24, 60)

    # Fat-tailed increments bridged so each hour ends on its skeleton anchor.
    steps = sigma_min * rng.standard_t(4, (24, 60)) / np.sqrt(2.0)
    walk = np.cumsum(steps, axis=1)
    share = np.cumsum(weight, axis=1)
    target = np.diff(anchors)[:, None]
    path = anchors[:-1, None] + walk - share * (walk[:, -1:] - target)
    close_log = path.ravel()
    open_log = np.concatenate([[anchors[0]], close_log[:-1]])

    sigma = sigma_min.ravel()
    wick_up = np.abs(rng.normal(0.0, 0.6, 1440)) * sigma
    wick_down = np.abs(rng.normal(0.0, 0.6, 1440)) * sigma
    scale = 10.0**params.price_decimals
    open_ = np.round(np.exp(open_log) * scale) / scale
    close = np.round(np.exp(close_log) * scale) / scale
    high = np.round(np.exp(np.maximum(open_log, close_log) + wick_up) * scale) / scale
    low = np.round(np.exp(np.minimum(open_log, close_log) - wick_down) * scale) / scale
    high = np.maximum(high, np.maximum(open_, close))
    low = np.minimum(low, np.minimum(open_, close))

    weekday = (EPOCH.weekday() + day) % 7
    weekly = 0.6 if weekday >= 5 else 1.0
    move = np.abs(close_log - open_log) / sigma
    volume = (
        params.base_volume
        * weekly
        * activity.ravel()
        * (0.4 + 0.6 * move)
        * rng.lognormal(-0.045, 0.3, 1440)
    )
    volume = np.round(volume, 8)
    trades = rng.poisson(volume * params.trades_per_volume) + 1

    present = rng.random(1440) >= params.missing_minute_rate
    for _ in range(rng.poisson(params.outages_per_day)):
        start = int(rng.integers(0, 1440))
        present[start : start + int(rng.integers(2, params.max_outage_minutes + 1))] = False

    ts = _EPOCH_MS + day * DAY_MS + minute_of_day * MINUTE_MS
    keep = np.flatnonzero(present)
    return candle_table(
        ts[keep], open_[keep], high[keep], low[keep], close[keep], volume[keep], trades[keep]
    )


def generate_month(
    params: SyntheticParams, market: str, month: Month, now_ms: int | None = None
) -> pa.Table:
    """Candles of ``market`` for ``month`` in the candle schema.

    ``now_ms`` cuts the current month at the present: minutes that have not closed yet are
    not generated, as on a real venue.
    """
    if month.start_ms < _EPOCH_MS or month.end_ms > _HORIZON_MS:
        raise SyntheticRangeError(
            f"synthetic venue covers {EPOCH:%Y-%m} .. {HORIZON_END:%Y-%m} (exclusive); "
            f"{market} asked for {month}"
        )
    first_day = (month.start_ms - _EPOCH_MS) // DAY_MS
    last_day = (month.end_ms - _EPOCH_MS) // DAY_MS
    if now_ms is not None:
        last_day = min(last_day, (now_ms - _EPOCH_MS) // DAY_MS + 1)
    days = [_generate_day(params, market, day) for day in range(first_day, last_day)]
    table = pa.concat_tables(days) if days else candle_table(*(np.empty(0),) * 6, None)
    if now_ms is not None:
        closed = now_ms - now_ms % MINUTE_MS  # the minute in progress is not closed yet
        table = table.slice(
            0, int(np.searchsorted(ts_millis(table), closed))
        )
    return table
