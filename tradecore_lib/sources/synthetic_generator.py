"""The synthetic venue's generator: seeded one-minute candles that need no network.

Every minute is a pure function of ``(options, market, minute)``, so a month is byte-identical
however often and in whatever order it is generated, and never depends on which other months
were generated. ``process`` (``source:`` in ``configs/markets.yaml``) picks what the prices do:

``regime`` (the default; realistic candles for the demo and the pipeline tests)
    * An **hourly skeleton** (log price at each hour boundary and the hour's volatility) is
      drawn once per ``(seed, market)`` over a fixed horizon (:data:`EPOCH` ..
      :data:`HORIZON_END`). Volatility clusters (an AR(1) in log volatility), regimes shift
      (calm / normal / turbulent segments lasting days to weeks, each with its own drift), and
      the log price mean-reverts slowly around ``start_price`` so prices stay plausible.
    * **Minutes inside a day** come from a generator keyed by ``(seed, market, day)``:
      fat-tailed increments scaled by an intraday volatility profile, tied to the skeleton by a
      variance-weighted Brownian bridge per hour, so every hour ends on the next hour's anchor.
    * Volume follows intraday and weekly seasonality and the size of the move.

    Its drifts and mean reversion make it unfit as a control: an agent can learn a month's drift.

    **Several markets jointly** (``factor:`` in a regime market's options; a market without it
    is generated exactly as before, bit for bit). A *shared factor* is a set of random streams
    keyed by the factor's own seed (``factor.seed``, a venue-level seed: it names no market),
    so every market naming the same factor reads the same values, and each market keeps its
    own idiosyncratic streams keyed by ``(seed, market)``. With ``c = factor.correlation``
    and loading ``sqrt(c)``, every standardized shock of a market is

        ``shock = sqrt(c) * factor_shock + sqrt(1 - c) * own_shock``

    for the three shocks that move prices: the hourly skeleton shock (Student t, 5 d.o.f.,
    unit variance), each minute's increment (t, 4 d.o.f., unit variance; the factor's are
    drawn per ``(factor seed, day)``) and each regime segment's drift. The factor also owns
    the volatility path: regime segments (of mean length ``factor.regime_mean_days``) and the
    AR(1) in log volatility are the factor's, and a market's hourly volatility is that common
    path times its own ``annual_vol``. Because the volatilities of two markets are then
    proportional and the Brownian bridge treats both with the same weights, the correlation
    of their **one-minute log returns** is ``sqrt(c_a * c_b)``: ``c`` itself for two markets
    configuring the same ``correlation``, 0 for a market without the factor. Only the small
    drift terms (mean reversion to each market's own ``start_price``) and price rounding move
    it, by far less than a month's sampling error. What stays each market's own: price level
    (``start_price``), volatility (``annual_vol``), tick (``price_decimals``), volume
    (``base_volume``; its size still follows each bar's move, so volumes co-move too), wicks,
    trade counts and missing minutes. A minute is still a pure function of ``(options,
    market, minute)``: the factor's streams are keyed by its seed and the UTC day only.

The **control processes** share one construction, so their candles look alike and differ only
in what (if anything) predicts the next return. Per UTC day ``d`` and minute ``m`` of the day:

* an observable **AR(1) signal** ``s[m] = signal_ar * s[m-1] + sqrt(1 - signal_ar**2) * z[m]``,
  unit variance, restarted from its stationary law at each UTC midnight;
* the bar's **range encodes the signal**: ``hl_range = (high - low) / close = (range_bps +
  range_signal_bps * s[m]) * 1e-4`` exactly, up to price rounding (the ``hl_range`` column of
  the ``range`` indicator; :func:`signal_from_range` inverts it). Where that range would be
  narrower than the bar's body, the range is the body (rare: at the defaults it needs the
  signal below about -3.5 sigma and a body of more than about 4 noise sigmas at once);
* the **log return** ``r[m] = ln(close[m] / close[m-1]) = mu[m] - sigma**2 / 2 + sigma * e[m]``
  with ``sigma = noise_bps * 1e-4`` and i.i.d. standard normal ``e``: given everything known
  after bar ``m - 1``, ``E[close[m] / close[m-1]] = exp(mu[m])``, so without ``mu`` the price is
  a martingale. ``open[m] = close[m-1]`` (no gaps between bars);
* ``mu`` (the planted edge, expected next-bar log return) is

  ``null``: ``mu = 0``. A martingale: no drift, no mean reversion, no volatility clustering
      (constant ``sigma``); the range's signal predicts nothing. The control an agent must
      refuse to trade.
  ``planted_linear``: ``mu[m] = edge_bps * 1e-4 * s[m-1]`` (``mu = 0`` on the first minute of
      a UTC day): linear in ONE current feature, the previous bar's ``hl_range``. At the
      defaults (1 bp edge, 5 bp noise, AR 0.99) the regression of the next log return on the
      signal has slope 1 bp per signal sigma and R^2 = 1 / (1 + 5**2) = 3.8 %; a sign-following
      oracle earns ``edge * E|s| = 0.80 bp`` per bar before costs, and because the signal is
      persistent (half-life 69 bars) the hysteresis oracle of
      :func:`tradecore_lib.evaluation.controls.oracle_positions` changes position only every
      ~150 bars (mostly flips): about +2.9 log return a month net of 6 bp per unit traded (the
      default env's 5 bp taker fee + 1 bp slippage), where the same rule on the null loses its
      fees. The feature preset ``control`` (``configs/tools/control.json``) computes
      ``hl_range``; the env z-scores it over a trailing day, and the same rule on that z-score
      keeps ~88 % of the oracle's net.
  ``planted_temporal``: ``mu[m] = edge_bps * 1e-4 * sign(S)`` with ``S = ln(close[m-1-lag_near]
      / close[m-2-lag_far])``, the log return over bars ``lag_near .. lag_far`` back from the
      decision bar ``m - 1`` (5..30 at the defaults), when all those bars lie in the same UTC day
      (else ``mu = 0``: the first ``lag_far + 1`` minutes of each day). Momentum feeds itself,
      so the sign persists for ~20 bars at a 1 bp edge and ~50 at 1.5 bp. The current row
      carries almost nothing of it: the R^2 of the next return on the row's range features and
      its own return is < 0.1 % at 1 bp (< 0.5 % at 1.5 bp), against 3.4 % (7.5 %) on
      ``sign(S)`` and 2.5 % (5.9 %) for a linear model of the last 64 one-bar returns, the
      env's window. The oracle nets about +1.7 (1 bp) and +5.0 (1.5 bp) log return a month
      after 6 bp per unit traded, flipping every ~21 (~50) bars.

``noise_bps``, ``edge_bps``, ``signal_ar`` and the lags are the knobs; the figures above are
measured in ``tests/lib/test_synthetic.py`` and ``tests/lib/test_controls.py``. Volume (intraday
and weekly seasonality, independent of the price) and missing minutes are as in ``regime``.

The price level is continuous across days: each day starts where the previous one closed. The
day-start levels come from each day's total log return, computed once per ``(options,
market)`` in blocks of :data:`_BLOCK_DAYS` days from :data:`EPOCH` (a fraction of a second).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.config import ConfigModel, validate
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.months import MINUTE_MS, Month

EPOCH = datetime(2018, 1, 1, tzinfo=UTC)
HORIZON_END = datetime(2040, 1, 1, tzinfo=UTC)
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
BPS = 1e-4
_EPOCH_MS = int(EPOCH.timestamp() * 1000)
_HORIZON_MS = int(HORIZON_END.timestamp() * 1000)
_HOURS = (_HORIZON_MS - _EPOCH_MS) // HOUR_MS
_DAYS = _HOURS // 24
_MINUTES = 1440

_REGIME_VOL = np.array([0.55, 1.0, 2.1])  # calm, normal, turbulent
_SKELETON_STREAM, _DAY_STREAM, _CONTROL_CORE_STREAM, _CONTROL_CANDLE_STREAM = 1, 2, 3, 4
# Streams of the joint regime process: a market's own (keyed by seed and market, distinct from
# the standalone streams above) and the shared factor's (keyed by the factor's seed).
_JOINT_SKELETON_STREAM, _JOINT_DAY_STREAM, _FACTOR_SKELETON_STREAM, _FACTOR_DAY_STREAM = 5, 6, 7, 8
_BLOCK_DAYS = 128

Process = Literal["regime", "null", "planted_linear", "planted_temporal"]
CONTROL_PROCESSES = ("null", "planted_linear", "planted_temporal")
PLANTED_PROCESSES = ("planted_linear", "planted_temporal")

# Options that only some processes read: setting one for another process is a mistake.
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "annual_vol": ("regime",),
    "factor": ("regime",),
    "mean_reversion_half_life_days": ("regime",),
    "regime_mean_days": ("regime",),
    "noise_bps": CONTROL_PROCESSES,
    "signal_ar": CONTROL_PROCESSES,
    "range_bps": CONTROL_PROCESSES,
    "range_signal_bps": CONTROL_PROCESSES,
    "edge_bps": PLANTED_PROCESSES,
    "lag_near": ("planted_temporal",),
    "lag_far": ("planted_temporal",),
}


class SyntheticRangeError(TradeCoreError, ValueError):
    """A month outside the synthetic venue's horizon was requested."""


class SharedFactor(ConfigModel):
    """The shared factor a regime market moves with (``factor:`` of its ``source:``).

    Markets whose ``seed`` and ``regime_mean_days`` here are equal share one factor; the module
    docstring gives the model.
    """

    seed: int = Field(ge=0, description="Seed of the factor's streams (a venue-level seed, "
                      "independent of any market's own seed); markets naming the same factor "
                      "move together.")
    correlation: float = Field(ge=0.0, le=1.0, description="This market's c: the correlation "
                               "of its one-minute log returns with those of another market on "
                               "the same factor that configures the same c (in general "
                               "sqrt(c_a * c_b)); its loading on the factor is sqrt(c).")
    regime_mean_days: float = Field(default=12.0, ge=1, le=365, description="Mean length of "
                                    "the factor's volatility regimes (days), which every market "
                                    "on it shares.")


class SyntheticOptions(ConfigModel):
    """Options of the synthetic venue (``source:`` of a synthetic market in markets.yaml)."""

    seed: int = Field(default=7, ge=0, description="Master seed; with the market name it fixes "
                      "every value.")
    process: Process = Field(default="regime", description="What prices do: regime (realistic), "
                             "null (martingale control), planted_linear or planted_temporal "
                             "(a documented, learnable edge).")
    start_price: float = Field(default=42_000.0, gt=0, le=1e9, description="Price level "
                               "(quote currency) at the start; regime reverts to it.")
    annual_vol: float = Field(default=0.6, gt=0, le=5, description="regime: long-run "
                              "annualized volatility of log returns.")
    mean_reversion_half_life_days: float = Field(default=180.0, ge=1, le=36_500,
                                                 description="regime: half-life of the pull "
                                                 "towards start_price (days).")
    regime_mean_days: float = Field(default=12.0, ge=1, le=365, description="regime: mean "
                                    "length of a volatility regime (days).")
    factor: SharedFactor | None = Field(default=None, description="regime: the shared factor "
                                        "this market moves with (seed, correlation of one-minute "
                                        "log returns, regime length); null generates the market "
                                        "on its own.")
    noise_bps: float = Field(default=5.0, gt=0, le=500, description="Controls: standard "
                             "deviation of the unpredictable part of each minute's log return "
                             "(basis points).")
    edge_bps: float = Field(default=1.0, ge=0, le=100, description="Planted: size of the "
                            "planted expected log return per unit of predictor (basis points).")
    signal_ar: float = Field(default=0.99, ge=0, le=0.9999, description="Controls: AR(1) "
                             "coefficient of the per-minute signal encoded in the bar's range.")
    range_bps: float = Field(default=50.0, gt=0, le=5_000, description="Controls: mean "
                             "(high - low) / close of a bar (basis points).")
    range_signal_bps: float = Field(default=8.0, ge=0, le=1_000, description="Controls: change "
                                    "of the range per unit of signal (basis points).")
    lag_near: int = Field(default=5, ge=1, le=1_000, description="planted_temporal: nearest "
                          "bar back (from the decision bar) in the predictive return window.")
    lag_far: int = Field(default=30, ge=2, le=1_000, description="planted_temporal: farthest "
                         "bar back in the predictive return window.")
    base_volume: float = Field(default=4.0, gt=0, le=1e12, description="Mean volume per "
                               "minute (base currency) before seasonality.")
    trades_per_volume: float = Field(default=6.0, ge=0, le=1e6, description="Mean trades per "
                                     "unit of volume.")
    missing_minute_rate: float = Field(default=0.0005, ge=0, le=0.5, description="Probability "
                                       "that a single minute is missing.")
    outages_per_day: float = Field(default=0.02, ge=0, le=100, description="Mean number of "
                                   "multi-minute outages per day.")
    max_outage_minutes: int = Field(default=45, ge=2, le=1_440, description="Longest outage "
                                    "(minutes).")
    price_decimals: int = Field(default=1, ge=0, le=8, description="Prices are rounded to this "
                                "many decimals (the tick size).")

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticOptions:
        misplaced = [name for name, processes in _ONLY_FOR.items()
                     if name in self.model_fields_set and self.process not in processes]
        if self.factor is not None and "regime_mean_days" in self.model_fields_set:
            raise ValueError("regime_mean_days does not apply with a factor: the volatility "
                             "regimes are the factor's (set factor.regime_mean_days)")
        if misplaced:
            raise ValueError(
                f"option(s) {', '.join(misplaced)} do not apply to process {self.process!r} ("
                + "; ".join(f"{n}: {', '.join(_ONLY_FOR[n])}" for n in misplaced) + ")"
            )
        if self.range_bps <= 4.0 * self.range_signal_bps:
            raise ValueError(f"range_bps ({self.range_bps}) must exceed 4 x range_signal_bps "
                             f"({self.range_signal_bps}) so the range stays positive")
        if self.process == "planted_linear" and self.range_signal_bps == 0:
            raise ValueError("planted_linear needs range_signal_bps > 0: the range is where "
                             "the signal is observed")
        if self.lag_near >= self.lag_far:
            raise ValueError(f"lag_near ({self.lag_near}) must be smaller than lag_far "
                             f"({self.lag_far})")
        return self

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "synthetic source") -> SyntheticOptions:
        """Validate ``raw`` (a ``source:`` mapping); :class:`ConfigError` naming ``where``."""
        return validate(cls, raw, where)

    def provenance(self) -> dict[str, Any]:
        """The options the process reads, for partition metadata (flat scalars: the factor's
        fields as ``factor_<field>``; no factor key for a market generated on its own)."""
        read = {name: value for name, value in self.model_dump().items()
                if self.process in _ONLY_FOR.get(name, (self.process,))}
        factor = read.pop("factor", None)
        if factor is not None:
            read.pop("regime_mean_days")  # the factor's, listed below
            read.update({f"factor_{name}": value for name, value in factor.items()})
        return read


def _market_key(market: str) -> int:
    return int.from_bytes(hashlib.sha256(market.encode()).digest()[:8], "little")


def _to_ticks(price: np.ndarray, scale: float) -> np.ndarray:
    """``price`` rounded to the tick ``1 / scale``."""
    return np.round(price * scale) / scale


def _intraday_profile(minute_of_day: np.ndarray) -> np.ndarray:
    """Relative activity by UTC minute of day: Asia, London and a New York peak."""
    hour = minute_of_day / 60.0
    return (
        0.55
        + 0.25 * np.exp(-(((hour - 2.0) / 2.5) ** 2))
        + 0.45 * np.exp(-(((hour - 8.5) / 2.0) ** 2))
        + 0.85 * np.exp(-(((hour - 14.5) / 2.5) ** 2))
    )


def _weekly_factor(day: int) -> float:
    """Volume factor of UTC day ``day`` (weekends trade less)."""
    return 0.6 if (EPOCH.weekday() + day) % 7 >= 5 else 1.0


def _present_minutes(rng: np.random.Generator, options: SyntheticOptions) -> np.ndarray:
    """(1440,) bool: minutes of a day that exist (single missing minutes plus outages)."""
    present = rng.random(_MINUTES) >= options.missing_minute_rate
    for _ in range(rng.poisson(options.outages_per_day)):
        start = int(rng.integers(0, _MINUTES))
        present[start : start + int(rng.integers(2, options.max_outage_minutes + 1))] = False
    return present


# --- regime ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Skeleton:
    log_price: np.ndarray  # (_HOURS + 1,) log price at each hour boundary
    hour_sigma: np.ndarray  # (_HOURS,) std of the log return over each hour


@lru_cache(maxsize=8)
def _skeleton(params: SyntheticOptions, market: str) -> _Skeleton:
    if params.factor is not None:
        return _joint_skeleton(params, params.factor, market)
    # scipy.signal takes a second to import; the options model is imported when the code
    # location loads (markets.yaml validation), the generator only when candles are made.
    from scipy.signal import lfilter

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


# The factor's key in the seed sequence: no market is named so (market names start with a
# letter), so a factor never reads a market's streams.
_FACTOR_KEY = _market_key("__shared_factor__")


@dataclass(frozen=True)
class _FactorSkeleton:
    segment_of_hour: np.ndarray  # (_HOURS,) int: regime segment of each hour
    vol_profile: np.ndarray  # (_HOURS,) hourly volatility relative to a market's base sigma
    shocks: np.ndarray  # (_HOURS,) unit-variance t(5) hourly shocks
    drift_per_day: np.ndarray  # (segments,) unit-free drift draws N(0, 1) of each segment


@lru_cache(maxsize=4)
def _factor_skeleton(factor: SharedFactor) -> _FactorSkeleton:
    """The shared factor's hourly streams over the whole horizon (a function of ``factor``)."""
    from scipy.signal import lfilter  # see _skeleton

    rng = np.random.default_rng([factor.seed, _FACTOR_KEY, _FACTOR_SKELETON_STREAM])
    n_segments = int(_DAYS / factor.regime_mean_days * 3) + 16
    lengths = rng.geometric(1.0 / factor.regime_mean_days, n_segments)
    regime = rng.choice(3, size=n_segments, p=[0.3, 0.5, 0.2])
    segment_of_day = np.searchsorted(np.cumsum(lengths), np.arange(_DAYS), side="right")
    segment_of_hour = np.repeat(segment_of_day, 24)
    # The same volatility law as a standalone market, shared: clustering persists ~2 days.
    log_vol_noise = lfilter([1.0], [1.0, -0.98], rng.normal(0.0, 0.12, _HOURS))
    vol_profile = _REGIME_VOL[regime[segment_of_hour]] * np.exp(log_vol_noise - 0.36)
    shocks = rng.standard_t(5, _HOURS) / np.sqrt(5.0 / 3.0)
    return _FactorSkeleton(segment_of_hour=segment_of_hour, vol_profile=vol_profile,
                           shocks=shocks, drift_per_day=rng.standard_normal(n_segments))


def _joint_skeleton(params: SyntheticOptions, factor: SharedFactor, market: str) -> _Skeleton:
    """The hourly skeleton of a market on a shared factor: the factor's regimes and volatility
    path scaled by the market's ``annual_vol``; shocks and segment drifts mixed from the
    factor's and the market's own with loadings ``sqrt(c)`` and ``sqrt(1 - c)``."""
    from scipy.signal import lfilter  # see _skeleton

    shared = _factor_skeleton(factor)
    rng = np.random.default_rng([params.seed, _market_key(market), _JOINT_SKELETON_STREAM])
    load, own = np.sqrt(factor.correlation), np.sqrt(1.0 - factor.correlation)
    drift_draws = load * shared.drift_per_day + own * rng.standard_normal(
        shared.drift_per_day.size)
    shocks = load * shared.shocks + own * rng.standard_t(5, _HOURS) / np.sqrt(5.0 / 3.0)
    hour_sigma = params.annual_vol / np.sqrt(365.0 * 24.0) * shared.vol_profile
    drift = 0.003 * drift_draws[shared.segment_of_hour] / 24.0  # N(0, 0.3 %) a day, as alone
    kappa = np.log(2.0) / (params.mean_reversion_half_life_days * 24.0)
    deviation = lfilter([1.0], [1.0, -(1.0 - kappa)], drift + hour_sigma * shocks)
    log_price = np.log(params.start_price) + np.concatenate([[0.0], deviation])
    return _Skeleton(log_price=log_price, hour_sigma=hour_sigma)


def _minute_steps(params: SyntheticOptions, rng: np.random.Generator, day: int,
                  sigma_min: np.ndarray) -> np.ndarray:
    """(24, 60) log increments of ``day`` before the bridge: fat-tailed (t, 4 d.o.f., unit
    variance) shocks scaled by ``sigma_min``; on a factor, mixed with the factor's shocks of
    that day. ``rng`` is the market's own stream of the day (its first draw)."""
    if params.factor is None:
        # The standalone expression, kept exactly: its rounding fixes the stored candles.
        return sigma_min * rng.standard_t(4, (24, 60)) / np.sqrt(2.0)
    factor = params.factor
    shared = np.random.default_rng([factor.seed, _FACTOR_KEY, _FACTOR_DAY_STREAM, day])
    common = shared.standard_t(4, (24, 60)) / np.sqrt(2.0)
    own = rng.standard_t(4, (24, 60)) / np.sqrt(2.0)
    return sigma_min * (np.sqrt(factor.correlation) * common
                        + np.sqrt(1.0 - factor.correlation) * own)


def _generate_day(params: SyntheticOptions, market: str, day: int) -> pa.Table:
    """All present minutes of one UTC day (``day`` counted from :data:`EPOCH`)."""
    skeleton = _skeleton(params, market)
    stream = _DAY_STREAM if params.factor is None else _JOINT_DAY_STREAM
    rng = np.random.default_rng([params.seed, _market_key(market), stream, day])
    hours = slice(day * 24, day * 24 + 24)
    anchors = skeleton.log_price[day * 24 : day * 24 + 25]
    sigma_hour = skeleton.hour_sigma[hours][:, None]  # (24, 1)

    minute_of_day = np.arange(_MINUTES)
    activity = _intraday_profile(minute_of_day).reshape(24, 60)
    weight = activity**2 / (activity**2).sum(axis=1, keepdims=True)  # variance share per minute
    sigma_min = sigma_hour * np.sqrt(weight)  # (24, 60)

    # Fat-tailed increments bridged so each hour ends on its skeleton anchor.
    steps = _minute_steps(params, rng, day, sigma_min)
    walk = np.cumsum(steps, axis=1)
    share = np.cumsum(weight, axis=1)
    target = np.diff(anchors)[:, None]
    path = anchors[:-1, None] + walk - share * (walk[:, -1:] - target)
    close_log = path.ravel()
    open_log = np.concatenate([[anchors[0]], close_log[:-1]])

    sigma = sigma_min.ravel()
    wick_up = np.abs(rng.normal(0.0, 0.6, _MINUTES)) * sigma
    wick_down = np.abs(rng.normal(0.0, 0.6, _MINUTES)) * sigma
    scale = 10.0**params.price_decimals
    open_ = _to_ticks(np.exp(open_log), scale)
    close = _to_ticks(np.exp(close_log), scale)
    high = _to_ticks(np.exp(np.maximum(open_log, close_log) + wick_up), scale)
    low = _to_ticks(np.exp(np.minimum(open_log, close_log) - wick_down), scale)
    high = np.maximum(high, np.maximum(open_, close))
    low = np.minimum(low, np.minimum(open_, close))

    move = np.abs(close_log - open_log) / sigma
    volume = (
        params.base_volume
        * _weekly_factor(day)
        * activity.ravel()
        * (0.4 + 0.6 * move)
        * rng.lognormal(-0.045, 0.3, _MINUTES)
    )
    volume = np.round(volume, 8)
    trades = rng.poisson(volume * params.trades_per_volume) + 1

    present = _present_minutes(rng, params)
    ts = _EPOCH_MS + day * DAY_MS + minute_of_day * MINUTE_MS
    keep = np.flatnonzero(present)
    return candle_table(
        ts[keep], open_[keep], high[keep], low[keep], close[keep], volume[keep], trades[keep]
    )


# --- control processes ------------------------------------------------------------------------


def range_fraction(signal: np.ndarray, options: SyntheticOptions) -> np.ndarray:
    """``(high - low) / close`` that encodes ``signal`` (same shape, a fraction of price)."""
    return (options.range_bps + options.range_signal_bps * signal) * BPS


def signal_from_range(hl_range: np.ndarray, options: SyntheticOptions) -> np.ndarray:
    """The signal a bar's ``hl_range = (high - low) / close`` encodes (inverse of
    :func:`range_fraction`; exact up to price rounding)."""
    return (hl_range / BPS - options.range_bps) / options.range_signal_bps


def _add_temporal_edge(base: np.ndarray, mu: np.ndarray, edge: float, near: int,
                       far: int) -> None:
    """Fill ``mu`` (D, 1440) with the temporal edge and add it to ``base`` (log returns) in
    place, minute by minute: the edge of minute ``m`` reads the log closes the minutes before
    it produced (momentum feeds itself), so the days are stepped together, not vectorized in
    time."""
    path = np.zeros((base.shape[0], _MINUTES + 1))  # path[:, k + 1] = ln(close[k] / day open)
    for m in range(_MINUTES):
        if m >= far + 1:  # bars m-2-far .. m-1-near all lie in this day (path index >= 0)
            mu[:, m] = edge * np.sign(path[:, m - near] - path[:, m - 1 - far])
            base[:, m] += mu[:, m]
        path[:, m + 1] = path[:, m] + base[:, m]


def _control_core(options: SyntheticOptions, market: str,
                  days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log returns, signal and planted edge of the control process for ``days``.

    Returns:
        (returns, signal, mu), each (D, 1440) float64: minute ``m`` of day ``days[i]`` is
        ``[i, m]``; ``returns`` are ``ln(close / previous close)``, ``mu`` their planted mean.
        Rows depend only on their own day, so any batch of days gives the same rows.
    """
    from scipy.signal import lfilter  # see _skeleton

    key = _market_key(market)
    shocks = np.empty((len(days), 2, _MINUTES))
    for i, day in enumerate(days):
        rng = np.random.default_rng([options.seed, key, _CONTROL_CORE_STREAM, int(day)])
        shocks[i] = rng.standard_normal((2, _MINUTES))
    phi = options.signal_ar
    drive = shocks[:, 0] * np.sqrt(1.0 - phi**2)
    drive[:, 0] = shocks[:, 0, 0]  # start each day from the stationary law N(0, 1)
    signal = lfilter([1.0], [1.0, -phi], drive, axis=1)
    sigma = options.noise_bps * BPS
    returns = sigma * shocks[:, 1] - 0.5 * sigma**2
    mu = np.zeros_like(returns)
    edge = options.edge_bps * BPS
    if options.process == "planted_linear":
        mu[:, 1:] = edge * signal[:, :-1]
        returns += mu
    elif options.process == "planted_temporal":
        _add_temporal_edge(returns, mu, edge, options.lag_near, options.lag_far)
    return returns, signal, mu


@lru_cache(maxsize=1024)
def _block_changes(options: SyntheticOptions, market: str, block: int) -> np.ndarray:
    """Total log return of each day of block ``block`` (days ``block * _BLOCK_DAYS`` ..)."""
    days = np.arange(block * _BLOCK_DAYS, min((block + 1) * _BLOCK_DAYS, _DAYS))
    returns, _, _ = _control_core(options, market, days)
    return np.cumsum(returns, axis=1)[:, -1]


def _day_levels(options: SyntheticOptions, market: str, first_day: int,
                last_day: int) -> np.ndarray:
    """(last_day - first_day,) log price at the start of each day: log start_price plus the
    sequential sum of every earlier day's total, the same floating-point additions that give
    each day's last close, so a day opens exactly at the previous day's close."""
    blocks = [_block_changes(options, market, b) for b in range((last_day - 1) // _BLOCK_DAYS + 1)]
    levels = np.cumsum(np.concatenate([[np.log(options.start_price)], *blocks]))
    return levels[first_day:last_day]


def _control_days(options: SyntheticOptions, market: str, first_day: int,
                  last_day: int) -> pa.Table:
    """All present minutes of days ``first_day .. last_day - 1`` of a control process."""
    if last_day <= first_day:
        return candle_table(*(np.empty(0),) * 6, None)
    days = np.arange(first_day, last_day)
    returns, signal, _ = _control_core(options, market, days)
    levels = _day_levels(options, market, first_day, last_day)[:, None]
    close_log = levels + np.cumsum(returns, axis=1)
    open_px = np.exp(np.concatenate([levels, close_log[:, :-1]], axis=1))
    close_px = np.exp(close_log)
    # The range is placed around the body at a random split between the two wicks.
    width = range_fraction(signal, options) * close_px
    key = _market_key(market)
    scale = 10.0**options.price_decimals
    activity = _intraday_profile(np.arange(_MINUTES))
    minute_ms = np.arange(_MINUTES) * MINUTE_MS
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (
        "ts", "open", "high", "low", "close", "volume", "trades")}
    for i, day in enumerate(days):
        rng = np.random.default_rng([options.seed, key, _CONTROL_CANDLE_STREAM, int(day)])
        o, c = open_px[i], close_px[i]
        spare = np.maximum(width[i] - np.abs(c - o), 0.0)
        split = rng.random(_MINUTES)
        open_, close = _to_ticks(o, scale), _to_ticks(c, scale)
        high = np.maximum(_to_ticks(np.maximum(o, c) + split * spare, scale),
                          np.maximum(open_, close))
        low = np.minimum(_to_ticks(np.minimum(o, c) - (1.0 - split) * spare, scale),
                         np.minimum(open_, close))
        volume = np.round(options.base_volume * _weekly_factor(int(day)) * activity
                          * rng.lognormal(-0.045, 0.3, _MINUTES), 8)
        trades = rng.poisson(volume * options.trades_per_volume) + 1
        keep = np.flatnonzero(_present_minutes(rng, options))
        ts = _EPOCH_MS + int(day) * DAY_MS + minute_ms
        for name, values in (("ts", ts), ("open", open_), ("high", high), ("low", low),
                             ("close", close), ("volume", volume), ("trades", trades)):
            columns[name].append(values[keep])
    return candle_table(*(np.concatenate(columns[name]) for name in (
        "ts", "open", "high", "low", "close", "volume", "trades")))


# --- months ---------------------------------------------------------------------------------


def generate_month(
    params: SyntheticOptions, market: str, month: Month, now_ms: int | None = None
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
    if params.process == "regime":
        days = [_generate_day(params, market, day) for day in range(first_day, last_day)]
        table = pa.concat_tables(days) if days else candle_table(*(np.empty(0),) * 6, None)
    else:
        table = _control_days(params, market, first_day, last_day)
    if now_ms is not None:
        closed = now_ms - now_ms % MINUTE_MS  # the minute in progress is not closed yet
        table = table.slice(0, int(np.searchsorted(ts_millis(table), closed)))
    return table
