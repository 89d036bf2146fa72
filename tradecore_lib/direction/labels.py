"""The one labelling rule of the direction models (shared by training, prediction and G's
evaluation and baselines).

For bar ``t`` of a market's one-minute bars and a horizon of ``H`` minutes:

* ``forward_return[t] = ln(close[t + H] / close[t])`` when the bar exactly ``H`` minutes after
  bar ``t`` exists (and, where a split end is given, opens before it), else NaN. "Exactly
  ``H`` minutes" is a timestamp test, not a row offset: a gap inside the horizon makes the row
  ``H`` rows on a different span of time, and such a bar has no label.
* ``label[t] = 1.0`` if ``forward_return > dead_zone``, ``0.0`` if ``forward_return <
  -dead_zone``, else NaN: inside the dead zone (``|forward_return| <= dead_zone``, log-return
  units) and where the forward return is undefined. NaN labels never enter training; the
  evaluation scores dead-zone bars separately (they have a forward return but no label).

A sample at ``t`` reads the features of bars ``t - L + 1 .. t`` only (see
:mod:`tradecore_lib.direction.data` for its validity), so a label never sees an input from
its own horizon.

Pure numpy: no torch, no pandas beyond the frame helper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradecore_lib.months import MINUTE_MS


def ts_millis(ts: pd.Series) -> np.ndarray:
    """UTC milliseconds (int64, (N,)) of a frame's ``ts`` column (timezone-aware or naive)."""
    values = ts.dt.tz_convert(None) if ts.dt.tz is not None else ts
    return values.to_numpy(dtype="datetime64[ms]").view(np.int64)


def forward_returns(ts_ms: np.ndarray, close: np.ndarray, horizon: int,
                    end_ms: int | None = None) -> np.ndarray:
    """``ln(close[t+H] / close[t])`` per bar (float64, (N,)); NaN where the bar ``horizon``
    minutes later is absent or (with ``end_ms``) at or after ``end_ms``.

    Args:
        ts_ms: (N,) int64 bar open times in UTC ms, strictly increasing (the lake's minute
            grid).
        close: (N,) close prices.
        horizon: ``H`` in minutes, >= 1.
        end_ms: exclusive end of the split the labels belong to: a label whose horizon bar
            lies past it is NaN, so no label of a split reads a price of the next one.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 minute, got {horizon}")
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(ts_ms), np.nan)
    if len(ts_ms) == 0:
        return out
    target = ts_ms + horizon * MINUTE_MS
    j = np.searchsorted(ts_ms, target)
    found = j < len(ts_ms)
    found[found] &= ts_ms[j[found]] == target[found]
    if end_ms is not None:
        found &= target < end_ms
    rows = np.flatnonzero(found)
    out[rows] = np.log(close[j[rows]] / close[rows])
    return out


def direction_labels(forward_return: np.ndarray, dead_zone: float) -> np.ndarray:
    """1.0 above ``dead_zone``, 0.0 below ``-dead_zone``, NaN inside it or where
    ``forward_return`` is NaN (float64, same shape)."""
    if dead_zone < 0:
        raise ValueError(f"dead_zone must be >= 0 (log-return units), got {dead_zone}")
    forward_return = np.asarray(forward_return, dtype=np.float64)
    out = np.full(forward_return.shape, np.nan)
    out[forward_return > dead_zone] = 1.0
    out[forward_return < -dead_zone] = 0.0
    return out


def label_frame(frame: pd.DataFrame, horizon: int, dead_zone: float,
                end_ms: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(forward_return, label)`` of every row of a frame with ``ts`` and ``close`` columns
    (both float64, (N,)); see :func:`forward_returns` for ``end_ms``."""
    forward = forward_returns(ts_millis(frame["ts"]), frame["close"].to_numpy(), horizon, end_ms)
    return forward, direction_labels(forward, dead_zone)


def persistence(ts_ms: np.ndarray, close: np.ndarray, horizon: int) -> np.ndarray:
    """The sign of the last ``horizon`` minutes' return as a label guess: 1.0 when
    ``close[t] > close[t - H]``, 0.0 when lower, NaN when equal or when the bar ``H`` minutes
    earlier is absent ((N,) float64). The persistence baseline's rule (one definition, shared
    with the evaluation)."""
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    close = np.asarray(close, dtype=np.float64)
    out = np.full(len(ts_ms), np.nan)
    if len(ts_ms) == 0:
        return out
    source = ts_ms - horizon * MINUTE_MS
    j = np.searchsorted(ts_ms, source)
    found = (j < len(ts_ms)) & (ts_ms[np.minimum(j, len(ts_ms) - 1)] == source)
    rows = np.flatnonzero(found)
    past = np.log(close[rows] / close[j[rows]])
    out[rows[past > 0]] = 1.0
    out[rows[past < 0]] = 0.0
    return out
