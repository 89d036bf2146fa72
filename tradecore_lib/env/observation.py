"""Market data prepared once per frame: prices, causally normalized columns, episode bounds.

Observation columns (``C = 5 + F`` for ``F`` features), computed once for the whole frame and
shared by every environment built on it (the vector env's N envs share one copy):

* ``open, high, low, close``: ``100 * log(price / previous close)`` (percent log moves; the
  first row uses its own open as the previous close),
* ``volume``: z-score of ``log1p(volume)`` over the trailing ``norm_window`` bars,
* each feature: z-score over the trailing ``norm_window`` bars (current bar included).

Every value at bar ``t`` uses rows ``<= t`` only (causal), is clipped to
``[-obs_clip, obs_clip]`` and stored as float32. Rows where a value is missing (the first
``norm_min_periods - 1`` rows, feature warm-up NaNs, rows flagged by ``exclude_column``) are
*unusable*: no episode and no observation window touches them.

The observation window of decision bar ``t`` is rows ``t - W + 1 .. t``; :attr:`windows` holds
all of them as a zero-copy strided view of shape ``(T - W + 1, W * C)`` (time-major: element
``k * C + c`` is column ``c`` at bar ``t - W + 1 + k``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import as_strided

from tradecore_lib.env.config import EnvConfig
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.months import MINUTE_MS

PRICE_COLUMNS = ("open", "high", "low", "close")
REQUIRED_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
# A frame column of the funding charged on each bar (fraction of notional; a venue's history
# with each funding period on its bar); without it the preset's funding_rate_8h applies.
FUNDING_COLUMN = "funding_charge"
FUNDING_MINUTES = 8 * 60  # funding_rate_8h is quoted per 8 hours
NON_FEATURE_COLUMNS = frozenset({"ts", "open", "high", "low", "close", "volume", "trades",
                                 FUNDING_COLUMN})
DAY_MS = 86_400_000


class FrameError(TradeCoreError, ValueError):
    """The frame cannot back an environment (the message says what and where)."""


def feature_columns(frame: pd.DataFrame, cfg: EnvConfig) -> list[str]:
    """The feature columns the env observes: ``cfg.features`` or every numeric non-bool one."""
    if cfg.features is not None:
        missing = [c for c in cfg.features if c not in frame.columns]
        if missing:
            raise FrameError(f"feature column(s) {missing} of env preset {cfg.name!r} are not "
                             f"in the frame (columns: {list(frame.columns)})")
        bad = [c for c in cfg.features if not _is_numeric_feature(frame[c])]
        if bad:
            raise FrameError(f"feature column(s) {bad} are not numeric (bool columns are "
                             "markers, not features)")
        return list(cfg.features)
    return [
        c for c in frame.columns
        if c not in NON_FEATURE_COLUMNS and c != cfg.exclude_column
        and _is_numeric_feature(frame[c])
    ]


def _is_numeric_feature(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _ts_ms(frame: pd.DataFrame) -> np.ndarray:
    """``ts`` (UTC timestamps, or int64 epoch milliseconds) as int64 epoch milliseconds."""
    ts = frame["ts"]
    if pd.api.types.is_integer_dtype(ts):
        return ts.to_numpy(dtype=np.int64)
    stamps = pd.to_datetime(ts, utc=True).dt.tz_convert(None)
    return stamps.to_numpy(dtype="datetime64[ms]").astype(np.int64)


def _rolling_z(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Trailing z-score of each column of (T, K) ``values`` (rows <= t only)."""
    rolling = pd.DataFrame(values).rolling(window, min_periods=min_periods)
    mean = rolling.mean().to_numpy()
    std = rolling.std(ddof=0).to_numpy()
    return (values - mean) / (std + 1e-8)


@dataclass(frozen=True)
class MarketData:
    """Arrays an environment reads; build with :meth:`from_frame`.

    Attributes:
        ts_ms: (T,) int64 bar open times, epoch milliseconds.
        open, high, low, close: (T,) float64 prices, quote currency.
        columns: names of the C observation columns.
        values: (T, C) float32 normalized observation columns.
        windows: (T - W + 1, W * C) float32 read-only strided view; row ``t - W + 1`` is the
            flattened window of decision bar ``t``.
        starts: (K,) int64 sorted decision bars where an episode may begin.
        episode_end: (T,) int64; for a start ``t0`` the last bar its episode may fill on.
        day: (T,) int64 UTC day of each bar (days since the epoch).
        funding: (T,) float64 funding charged on each bar, fraction of notional (a long pays
            a positive charge, a short receives it): the frame's ``funding_charge`` column (a
            venue's history), else the preset's ``funding_rate_8h`` pro rata
            (``* bar_minutes / 480``).
        bar_minutes: length of one bar, the median step of ``ts`` (minutes).
    """

    ts_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    columns: tuple[str, ...]
    values: np.ndarray
    windows: np.ndarray
    starts: np.ndarray
    episode_end: np.ndarray
    day: np.ndarray
    funding: np.ndarray
    bar_minutes: float

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, cfg: EnvConfig) -> MarketData:
        """Validate ``frame`` (``ts``, OHLCV, features) and precompute everything causal."""
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise FrameError(f"frame lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}"
                             " plus numeric feature columns")
        feats = feature_columns(frame, cfg)
        ts = _ts_ms(frame)
        if len(ts) > 1 and not (np.diff(ts) > 0).all():
            row = int(np.argmax(np.diff(ts) <= 0)) + 1
            raise FrameError(f"frame 'ts' must be strictly increasing; row {row} is not")
        prices = {c: frame[c].to_numpy(dtype=np.float64) for c in (*PRICE_COLUMNS, "volume")}
        for c in PRICE_COLUMNS:
            bad = ~np.isfinite(prices[c]) | (prices[c] <= 0)
            if bad.any():
                raise FrameError(f"frame column {c!r} has a missing or non-positive price at "
                                 f"row {int(np.argmax(bad))}")
        o, h, lo, c = (prices[k] for k in PRICE_COLUMNS)
        if ((h < np.maximum(o, c)) | (lo > np.minimum(o, c))).any():
            row = int(np.argmax((h < np.maximum(o, c)) | (lo > np.minimum(o, c))))
            raise FrameError(f"frame row {row}: high/low do not bracket open/close")

        prev_close = np.concatenate([o[:1], c[:-1]])
        cols = [100.0 * np.log(prices[k] / prev_close) for k in PRICE_COLUMNS]
        volume = np.log1p(prices["volume"].clip(min=0.0))
        cols.append(_rolling_z(volume[:, None], cfg.norm_window, cfg.norm_min_periods)[:, 0])
        if feats:
            raw = frame[feats].to_numpy(dtype=np.float64, na_value=np.nan)
            raw = np.where(np.isfinite(raw), raw, np.nan)
            z = _rolling_z(raw, cfg.norm_window, cfg.norm_min_periods)
            cols.extend(z[:, j] for j in range(z.shape[1]))
        stacked = np.stack(cols, axis=1)
        usable = np.isfinite(stacked).all(axis=1)
        if cfg.exclude_column is not None:
            if cfg.exclude_column not in frame.columns:
                raise FrameError(f"exclude_column {cfg.exclude_column!r} is not in the frame")
            usable &= ~frame[cfg.exclude_column].fillna(True).to_numpy(dtype=bool)
        values = np.ascontiguousarray(
            np.clip(np.nan_to_num(stacked, nan=0.0), -cfg.obs_clip, cfg.obs_clip),
            dtype=np.float32,
        )
        starts, episode_end = _episode_bounds(ts, usable, cfg)
        if len(starts) == 0:
            raise FrameError(
                f"no episode fits in the frame ({len(ts)} rows): each needs {cfg.window} usable "
                f"bars of window plus {cfg.episode_length or 1} bar(s) ahead with no gap over "
                f"{cfg.max_gap_minutes} min (usable rows: {int(usable.sum())}; the first "
                f"{cfg.norm_min_periods - 1} rows are normalization warm-up)"
            )
        n_rows, n_cols = values.shape
        w = cfg.window
        flat = values.reshape(-1)
        windows = as_strided(flat, shape=(max(n_rows - w + 1, 0), w * n_cols),
                             strides=(n_cols * flat.itemsize, flat.itemsize), writeable=False)
        bar_minutes = float(np.median(np.diff(ts))) / MINUTE_MS if len(ts) > 1 else 1.0
        if FUNDING_COLUMN in frame.columns:
            funding = frame[FUNDING_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)
            if not np.isfinite(funding).all():
                raise FrameError(f"frame column {FUNDING_COLUMN!r} has a missing value at row "
                                 f"{int(np.argmax(~np.isfinite(funding)))}")
        else:
            per_bar = float(cfg.funding_rate_8h) * bar_minutes / FUNDING_MINUTES
            funding = np.full(len(ts), per_bar)
        return cls(
            ts_ms=ts, open=o, high=h, low=lo, close=c,
            columns=(*PRICE_COLUMNS, "volume", *feats), values=values, windows=windows,
            starts=starts, episode_end=episode_end, day=ts // DAY_MS, funding=funding,
            bar_minutes=bar_minutes,
        )


def _episode_bounds(ts: np.ndarray, usable: np.ndarray,
                    cfg: EnvConfig) -> tuple[np.ndarray, np.ndarray]:
    """Valid episode starts and each start's last bar.

    A segment is a maximal run of usable rows whose consecutive ``ts`` differ by at most
    ``max_gap_minutes``. An episode starting at decision bar ``t0`` needs its window
    ``t0 - W + 1 .. t0`` and its fills ``t0 + 1 .. end`` inside one segment.
    """
    n = len(ts)
    idx = np.arange(n)
    breaks = np.ones(n, dtype=bool)
    if n > 1:
        breaks[1:] = (np.diff(ts) > cfg.max_gap_minutes * MINUTE_MS) | ~usable[:-1]
    breaks |= ~usable
    seg_start = np.maximum.accumulate(np.where(breaks, idx, 0))
    ends_mark = np.ones(n, dtype=bool)
    ends_mark[:-1] = breaks[1:] | ~usable[:-1]
    seg_end = np.minimum.accumulate(np.where(ends_mark, idx, n - 1)[::-1])[::-1]
    ok = usable & (idx - cfg.window + 1 >= seg_start)
    if cfg.episode_length is None:
        episode_end = seg_end.astype(np.int64)
        ok &= seg_end > idx
    else:
        episode_end = (idx + cfg.episode_length).astype(np.int64)
        ok &= episode_end <= seg_end
    return idx[ok].astype(np.int64), episode_end
